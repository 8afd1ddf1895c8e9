// ModelConfig <-> JSON, validation, and the named presets.
#include "config.h"

#include <nlohmann/json.hpp>

#include "error.h"

namespace igpt {

int64_t ModelConfig::n_params() const {
    const int64_t C = width, V = vocab, T = n_ctx(), H = hidden(), b = bias ? 1 : 0;
    const int64_t per_layer = C + 3 * C * C + b * 3 * C + C * C + b * C + C + H * C + b * H + C * H + b * C;
    return C + V * C + T * C + layers * per_layer + C + V * C;
}

std::string ModelConfig::to_json() const {
    nlohmann::json j = {{"name", name},         {"vocab", vocab},     {"width", width},
                        {"layers", layers},     {"heads", heads},     {"image_h", image_h},
                        {"image_w", image_w},   {"mlp_mult", mlp_mult}, {"norm_eps", norm_eps},
                        {"bias", bias}};
    return j.dump();
}

ModelConfig ModelConfig::from_json(const std::string& text) {
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error("model config is not a JSON object");
    ModelConfig c;
    auto get_int = [&](const char* key, int32_t& dst, bool required) {
        if (!j.contains(key)) {
            if (required) throw Error(std::string("model config lacks \"") + key + "\"");
            return;
        }
        const auto& v = j[key];
        if (!v.is_number_integer()) throw Error(std::string("model config \"") + key + "\" is not an integer");
        int64_t x = v.get<int64_t>();
        if (x < 0 || x > (1 << 24)) throw Error(std::string("model config \"") + key + "\" is out of range");
        dst = int32_t(x);
    };
    get_int("vocab", c.vocab, true);
    get_int("width", c.width, true);
    get_int("layers", c.layers, true);
    get_int("heads", c.heads, true);
    get_int("image_h", c.image_h, true);
    get_int("image_w", c.image_w, true);
    get_int("mlp_mult", c.mlp_mult, false);
    if (j.contains("name")) {
        if (!j["name"].is_string()) throw Error("model config \"name\" is not a string");
        c.name = j["name"].get<std::string>();
    }
    if (j.contains("norm_eps")) {
        if (!j["norm_eps"].is_number()) throw Error("model config \"norm_eps\" is not a number");
        c.norm_eps = j["norm_eps"].get<float>();
    }
    if (j.contains("bias")) {
        if (!j["bias"].is_boolean()) throw Error("model config \"bias\" is not a boolean");
        c.bias = j["bias"].get<bool>();
    }
    c.validate();
    return c;
}

void ModelConfig::validate() const {
    auto bad = [](const std::string& m) { throw Error("invalid model config: " + m); };
    if (vocab < 2 || vocab > 65536) bad("vocab must be in [2, 65536]");
    if (width < 1 || width > 16384) bad("width must be in [1, 16384]");
    if (layers < 1 || layers > 512) bad("layers must be in [1, 512]");
    if (heads < 1 || width % heads != 0) bad("heads must divide width");
    if (image_h < 1 || image_w < 1 || int64_t(image_h) * image_w > 65536) bad("image size must be 1..65536 pixels");
    if (mlp_mult < 1 || mlp_mult > 16) bad("mlp_mult must be in [1, 16]");
    if (!(norm_eps > 0.0f && norm_eps < 1.0f)) bad("norm_eps must be in (0, 1)");
    if (n_params() > (int64_t(1) << 34)) bad("too many parameters");
}

namespace {
struct Preset {
    const char* name;
    int32_t width, layers, heads;
};
// Paper: S/M/L. Project: tiny/small/base (trained and shipped here).
const Preset kPresets[] = {
    {"tiny", 128, 4, 4}, {"small", 256, 8, 8}, {"base", 512, 12, 8},
    {"S", 512, 24, 8},   {"M", 1024, 36, 8},  {"L", 1536, 48, 16},
};
}  // namespace

ModelConfig config_preset(const std::string& name) {
    for (const auto& p : kPresets) {
        if (name == p.name) {
            ModelConfig c;
            c.name = p.name;
            c.width = p.width;
            c.layers = p.layers;
            c.heads = p.heads;
            return c;
        }
    }
    std::string names;
    for (const auto& p : kPresets) names += std::string(names.empty() ? "" : ", ") + p.name;
    throw Error("unknown model config '" + name + "' (known: " + names + ")");
}

std::vector<std::string> config_preset_names() {
    std::vector<std::string> v;
    for (const auto& p : kPresets) v.push_back(p.name);
    return v;
}

}  // namespace igpt
