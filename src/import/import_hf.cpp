// Hugging Face ImageGPT (openai/imagegpt-small|medium|large) -> the project's model.
//
// Layout (ImageGPTForCausalImageModeling): transformer.wte [V+1, C] (row V = start of sequence),
// transformer.wpe [T, C], transformer.h.{i}.{ln_1,ln_2}.weight [C], attn.c_attn.weight [C, 3C] (Conv1D:
// input x output; outputs q | k | v) + bias, attn.c_proj.weight [C, C] + bias, mlp.c_fc.weight [C, H] + bias,
// mlp.c_proj.weight [H, C] + bias, transformer.ln_f.weight [C], lm_head.weight [V, C] (already out x in).
// The norm is the gain-only RMS norm and the MLP's activation is quick_gelu = x * sigmoid(1.702 x): the
// project's own math, so only the layout changes.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "error.h"
#include "formats.h"
#include "import.h"
#include "import_common.h"

namespace igpt {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct HfFiles {
    std::vector<std::string> weights;  // *.safetensors
    std::string config, preprocessor;
};

bool ends_with(const std::string& s, const std::string& e) {
    return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

HfFiles find_files(const std::vector<std::string>& inputs) {
    if (inputs.empty()) throw Error("import hf: no input given (a folder or the model's files)");
    HfFiles f;
    bool saw_bin = false;
    auto add_file = [&](const std::string& p) {
        const std::string name = fs::path(p).filename().string();
        if (ends_with(name, ".safetensors")) f.weights.push_back(p);
        else if (name == "config.json") f.config = p;
        else if (name == "preprocessor_config.json") f.preprocessor = p;
        else if (ends_with(name, ".bin") || ends_with(name, ".pt") || ends_with(name, ".pth")) saw_bin = true;
        else return false;
        return true;
    };
    for (const auto& in : inputs) {
        std::error_code ec;
        if (fs::is_directory(in, ec)) {
            std::vector<std::string> names;
            for (const auto& e : fs::directory_iterator(in, ec)) names.push_back(e.path().string());
            std::sort(names.begin(), names.end());
            for (const auto& n : names) add_file(n);
        } else if (!fs::exists(in, ec)) {
            throw Error("import hf: cannot open " + in + ": no such file or folder");
        } else if (!add_file(in)) {
            throw Error("import hf: " + in + " is not a .safetensors file, config.json or preprocessor_config.json");
        }
    }
    if (f.weights.empty())
        throw Error(saw_bin ? "import hf: only PyTorch weights (.bin) found; convert them to model.safetensors first "
                              "(see docs/import.md, two lines of Python)"
                            : "import hf: no .safetensors weights among the inputs");
    if (f.config.empty()) throw Error("import hf: config.json is missing (download it with the model)");
    if (f.preprocessor.empty())
        throw Error("import hf: preprocessor_config.json is missing (it holds the colour clusters; download it with the model)");
    return f;
}

json read_json(const std::string& path) {
    const std::vector<uint8_t> b = imp::read_whole(path, uint64_t(256) << 20);
    json j = json::parse(b.begin(), b.end(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw Error(path + " is not a JSON object");
    return j;
}

int64_t get_int(const json& j, const std::string& path, const char* key) {
    if (!j.contains(key)) throw Error(path + " lacks \"" + key + "\"");
    if (!j[key].is_number_integer()) throw Error(path + ": \"" + key + "\" is not an integer");
    return j[key].get<int64_t>();
}

ModelConfig config_from_hf(const json& j, const std::string& path) {
    if (j.contains("model_type") && j["model_type"] != "imagegpt")
        throw Error(path + ": model_type is " + j["model_type"].dump() + ", not \"imagegpt\"");
    const int64_t C = get_int(j, path, "n_embd"), L = get_int(j, path, "n_layer"), Hd = get_int(j, path, "n_head"),
                  V1 = get_int(j, path, "vocab_size"), T = get_int(j, path, "n_positions");
    if (C < 1 || C > 16384 || L < 1 || L > 512 || Hd < 1 || C % Hd != 0)
        throw Error(path + ": n_embd " + std::to_string(C) + ", n_layer " + std::to_string(L) + ", n_head " +
                    std::to_string(Hd) + " do not make a model (n_head must divide n_embd)");
    if (V1 < 3 || V1 > 65537) throw Error(path + ": vocab_size " + std::to_string(V1) + " is out of range");
    if (T < 1 || T > 65536) throw Error(path + ": n_positions " + std::to_string(T) + " is out of range");
    ModelConfig c;
    c.vocab = int32_t(V1 - 1);  // the last token is the start of sequence
    c.width = int32_t(C);
    c.layers = int32_t(L);
    c.heads = int32_t(Hd);
    c.image_h = c.image_w = imp::square_side(T, path + ": n_positions");
    c.bias = true;
    if (j.contains("n_inner") && !j["n_inner"].is_null()) {
        const int64_t inner = get_int(j, path, "n_inner");
        if (inner < 1 || inner % C != 0)
            throw Error(path + ": n_inner " + std::to_string(inner) + " is not a multiple of n_embd");
        c.mlp_mult = int32_t(inner / C);
    }
    if (j.contains("layer_norm_epsilon")) {
        if (!j["layer_norm_epsilon"].is_number()) throw Error(path + ": \"layer_norm_epsilon\" is not a number");
        c.norm_eps = j["layer_norm_epsilon"].get<float>();
    }
    if (j.contains("activation_function") && j["activation_function"] != "quick_gelu")
        throw Error(path + ": activation_function is " + j["activation_function"].dump() +
                    "; only \"quick_gelu\" (x * sigmoid(1.702 x), the iGPT activation) is supported");
    if (j.contains("scale_attn_weights") && j["scale_attn_weights"] == false)
        throw Error(path + ": scale_attn_weights false is not supported (attention is scaled by 1/sqrt(head_dim))");
    if (j.contains("scale_attn_by_inverse_layer_idx") && j["scale_attn_by_inverse_layer_idx"] == true)
        throw Error(path + ": scale_attn_by_inverse_layer_idx true is not supported");
    c.name = imp::preset_name_for(c);
    c.validate();
    return c;
}

std::vector<double> clusters_from_hf(const json& j, const std::string& path) {
    if (!j.contains("clusters")) throw Error(path + " lacks \"clusters\" (the colour palette)");
    const json& cl = j["clusters"];
    if (!cl.is_array()) throw Error(path + ": \"clusters\" is not an array");
    std::vector<double> v;
    v.reserve(cl.size() * 3);
    for (const auto& row : cl) {
        if (!row.is_array() || row.size() != 3)
            throw Error(path + ": \"clusters\" must be a list of [r, g, b] triples in [-1, 1]");
        for (const auto& x : row) {
            if (!x.is_number()) throw Error(path + ": \"clusters\" holds a value that is not a number");
            v.push_back(x.get<double>());
        }
    }
    return v;
}

}  // namespace

Model import_hf(const std::vector<std::string>& inputs, const ImportOptions& opts) {
    const HfFiles files = find_files(inputs);
    const ModelConfig cfg = config_from_hf(read_json(files.config), files.config);
    const std::vector<double> clusters = clusters_from_hf(read_json(files.preprocessor), files.preprocessor);
    Model m = imp::empty_model(cfg, palette_from_clusters(clusters, cfg.vocab, files.preprocessor + ": \"clusters\""));

    std::string what = files.weights[0];
    if (files.weights.size() > 1) what += " (+" + std::to_string(files.weights.size() - 1) + " more shards)";
    imp::TensorSource src(what);
    for (const auto& w : files.weights) imp::add_safetensors(src, w);
    // ImageGPTForCausalImageModeling prefixes the trunk with "transformer."; a bare ImageGPTModel does not,
    // and has no lm_head.
    const std::string pre = src.has("transformer.wte.weight") ? "transformer." : src.has("wte.weight") ? "" : "transformer.";
    if (!src.has("lm_head.weight") && src.has(pre + "wte.weight"))
        throw Error(what + " lacks tensor 'lm_head.weight': this is the bare ImageGPTModel; use the checkpoint of "
                           "ImageGPTForCausalImageModeling (openai/imagegpt-*)");

    const int64_t C = cfg.width, V = cfg.vocab, T = cfg.n_ctx(), H = cfg.hidden();
    std::vector<std::string> needed = {pre + "wte.weight", pre + "wpe.weight", pre + "ln_f.weight", "lm_head.weight"};
    for (int i = 0; i < cfg.layers; ++i) {
        const std::string h = pre + "h." + std::to_string(i) + ".";
        for (const char* s : {"ln_1.weight", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                              "attn.c_proj.bias", "ln_2.weight", "mlp.c_fc.weight", "mlp.c_fc.bias",
                              "mlp.c_proj.weight", "mlp.c_proj.bias"})
            needed.push_back(h + s);
    }
    int64_t total = 0;
    for (const auto& n : needed) total += int64_t(src.bytes_of(n));  // also: every tensor is there
    if (opts.on_progress) src.set_progress(opts.on_progress, total);
    if (src.has(pre + "h." + std::to_string(cfg.layers) + ".ln_1.weight"))
        throw Error(what + " has more blocks than n_layer = " + std::to_string(cfg.layers) + " in config.json");

    ParamPtrs p = m.ptrs();
    {
        const std::vector<float> wte = src.read(pre + "wte.weight", {V + 1, C});
        std::copy(wte.begin(), wte.begin() + V * C, p.wte);
        std::copy(wte.begin() + V * C, wte.end(), p.sos);  // row V: start of sequence
    }
    imp::copy_into(src.read(pre + "wpe.weight", {T, C}), p.wpe);
    for (int i = 0; i < cfg.layers; ++i) {
        const std::string h = pre + "h." + std::to_string(i) + ".";
        LayerParams& l = p.layers[size_t(i)];
        imp::copy_into(src.read(h + "ln_1.weight", {C}), l.ln1_g);
        imp::transpose_into(src.read(h + "attn.c_attn.weight", {C, 3 * C}), C, 3 * C, l.qkv_w);
        imp::copy_into(src.read(h + "attn.c_attn.bias", {3 * C}), l.qkv_b);
        imp::transpose_into(src.read(h + "attn.c_proj.weight", {C, C}), C, C, l.proj_w);
        imp::copy_into(src.read(h + "attn.c_proj.bias", {C}), l.proj_b);
        imp::copy_into(src.read(h + "ln_2.weight", {C}), l.ln2_g);
        imp::transpose_into(src.read(h + "mlp.c_fc.weight", {C, H}), C, H, l.fc_w);
        imp::copy_into(src.read(h + "mlp.c_fc.bias", {H}), l.fc_b);
        imp::transpose_into(src.read(h + "mlp.c_proj.weight", {H, C}), H, C, l.mproj_w);
        imp::copy_into(src.read(h + "mlp.c_proj.bias", {C}), l.mproj_b);
    }
    imp::copy_into(src.read(pre + "ln_f.weight", {C}), p.lnf_g);
    imp::copy_into(src.read("lm_head.weight", {V, C}), p.head_w);

    json prov = {{"source", "huggingface"}, {"files", files.weights}, {"config", files.config},
                 {"clusters", files.preprocessor}};
    m.provenance = prov.dump();
    return m;
}

}  // namespace igpt
