// Checkpoint file reading and writing (see checkpoint.h).
#include "checkpoint.h"

#include <cstring>
#include <nlohmann/json.hpp>

#include "error.h"
#include "model.h"  // write_file_atomic, read_file
#include "weights.h"

namespace igpt::train {

namespace {
constexpr char kMagic[8] = {'I', 'G', 'P', 'T', 'C', 'K', 'P', '1'};
}

void save_checkpoint(const std::string& path, const Checkpoint& ck) {
    const size_t n = ck.params.size();
    if (ck.adam_m.size() != n || ck.adam_v.size() != n) throw Error("checkpoint: optimizer state size mismatch");
    nlohmann::json j;
    j["format"] = 1;
    j["config"] = nlohmann::json::parse(ck.cfg.to_json());
    j["options"] = nlohmann::json::parse(ck.options_json);
    j["step"] = ck.step;
    j["epoch"] = ck.cursor.epoch;
    j["pos"] = ck.cursor.pos;
    j["wall_seconds"] = ck.wall_seconds;
    j["n_params"] = n;
    j["palette_k"] = ck.palette.k();
    const std::string js = j.dump();
    const uint64_t jlen = js.size();
    std::vector<uint8_t> out(16 + js.size() + ck.palette.rgb().size() + 3 * n * 4);
    uint8_t* p = out.data();
    std::memcpy(p, kMagic, 8);
    std::memcpy(p + 8, &jlen, 8);
    p += 16;
    std::memcpy(p, js.data(), js.size());
    p += js.size();
    std::memcpy(p, ck.palette.rgb().data(), ck.palette.rgb().size());
    p += ck.palette.rgb().size();
    for (const std::vector<float>* v : {&ck.params, &ck.adam_m, &ck.adam_v}) {
        std::memcpy(p, v->data(), n * 4);
        p += n * 4;
    }
    write_file_atomic(path, out.data(), out.size());
}

Checkpoint load_checkpoint(const std::string& path) {
    std::vector<uint8_t> b = read_file(path, int64_t(1) << 40);
    if (b.size() < 16 || std::memcmp(b.data(), kMagic, 8) != 0) throw Error(path + ": not an igpt checkpoint");
    uint64_t jlen = 0;
    std::memcpy(&jlen, b.data() + 8, 8);
    if (jlen > b.size() - 16) throw Error(path + ": checkpoint is truncated");
    Checkpoint ck;
    nlohmann::json j;
    size_t n = 0, k = 0;
    try {
        j = nlohmann::json::parse(b.begin() + 16, b.begin() + 16 + jlen);
        ck.cfg = ModelConfig::from_json(j.at("config").dump());
        ck.options_json = j.at("options").dump();
        ck.step = j.at("step").get<int64_t>();
        ck.cursor.epoch = j.at("epoch").get<int64_t>();
        ck.cursor.pos = j.at("pos").get<int64_t>();
        ck.wall_seconds = j.at("wall_seconds").get<double>();
        n = j.at("n_params").get<size_t>();
        k = j.at("palette_k").get<size_t>();
    } catch (const nlohmann::json::exception& e) {
        throw Error(path + ": bad checkpoint header (" + std::string(e.what()) + ")");
    }
    if (n != param_count(param_layout(ck.cfg))) throw Error(path + ": checkpoint parameter count does not match its config");
    if (k != size_t(ck.cfg.vocab)) throw Error(path + ": checkpoint palette size does not match its config's vocab");
    if (ck.step < 0 || ck.cursor.epoch < 0 || ck.cursor.pos < 0) throw Error(path + ": checkpoint has a negative step or data position");
    if (b.size() != 16 + jlen + k * 3 + 3 * n * 4) throw Error(path + ": checkpoint is truncated or has trailing bytes");
    const uint8_t* p = b.data() + 16 + jlen;
    ck.palette = Palette(std::vector<uint8_t>(p, p + k * 3));
    p += k * 3;
    for (std::vector<float>* v : {&ck.params, &ck.adam_m, &ck.adam_v}) {
        v->resize(n);
        std::memcpy(v->data(), p, n * 4);
        p += n * 4;
    }
    return ck;
}

}  // namespace igpt::train
