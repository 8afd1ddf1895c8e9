// The served model list of the browser app, made under node at build time (NODERAWFS):
//   make_dev_model <committed manifest.json (may be missing)> <out dir> [--no-dev]
// Writes <out>/manifest.json = the committed manifest's models, where every model stored as f32 (already
// copied into <out>) is replaced by an f16 copy <stem>.f16.safetensors (half the first download; the same
// bits/pixel, assets/models/tiny.md) and a model whose entry names a "web_dtype" (f16 or int8) by a copy
// <stem>.<web_dtype>.safetensors in that encoding, plus -- unless --no-dev -- <out>/dev-random.safetensors: the "tiny"
// shape with random weights and an 8x8x8 RGB grid palette, stored as f16, so the app runs before a trained
// model exists. Never committed: these live in the build output only.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "config.h"
#include "model.h"
#include "palette.h"

int main(int argc, char** argv) {
    if (argc != 3 && !(argc == 4 && std::string(argv[3]) == "--no-dev")) {
        std::fprintf(stderr, "usage: make_dev_model <manifest.json> <out dir> [--no-dev]\n");
        return 2;
    }
    auto file_size = [](const std::string& path) {
        std::ifstream f(path, std::ios::binary | std::ios::ate);
        return int64_t(f.tellg());
    };
    try {
        const std::string out = argv[2];
        const bool dev = argc == 3;
        std::vector<uint8_t> rgb;
        for (int r = 0; r < 8; ++r)
            for (int g = 0; g < 8; ++g)
                for (int b = 0; b < 8; ++b)
                    for (int c : {r, g, b}) rgb.push_back(uint8_t(c * 255 / 7));
        nlohmann::json manifest = {{"models", nlohmann::json::array()}};
        std::ifstream in(argv[1]);
        if (in) {
            std::stringstream ss;
            ss << in.rdbuf();
            nlohmann::json j = nlohmann::json::parse(ss.str());
            manifest["models"] = j.is_array() ? j : j.value("models", nlohmann::json::array());
        }
        for (auto& e : manifest["models"]) {
            if (!e.is_object() || !e.contains("file") || !e["file"].is_string()) continue;
            const std::string name = e["file"].get<std::string>();
            const std::string path = out + "/" + name;
            if (name.find('/') != std::string::npos || !std::ifstream(path)) continue;
            igpt::Model m = igpt::load_model(path);
            // "web_dtype" in the committed entry picks the served encoding (int8 halves an f16 file again:
            // assets/models/small.md); without it an f32 file is served as f16 and any other as it is.
            const std::string want = e.value("web_dtype", m.file_dtype == igpt::DType::F32 ? "f16" : "");
            const igpt::DType dt = want.empty() ? m.file_dtype : igpt::dtype_from_name(want);
            e.erase("web_dtype");
            if (dt == m.file_dtype) {
                e["size"] = file_size(path);
                continue;
            }
            const std::string stem = name.substr(0, name.rfind(".safetensors"));
            const std::string served = stem + "." + want + ".safetensors";
            igpt::save_model(m, out + "/" + served, dt);
            e["file"] = served;
            e["size"] = file_size(out + "/" + served);
            e["dtype"] = want;
            std::printf("make_dev_model: %s -> %s (%lld -> %lld bytes)\n", name.c_str(),
                        e["file"].get<std::string>().c_str(), (long long)file_size(path),
                        (long long)e["size"].get<int64_t>());
        }
        if (dev) {
            igpt::ModelConfig cfg = igpt::config_preset("tiny");
            igpt::Model m = igpt::init_model(cfg, igpt::Palette(rgb), 7);
            m.provenance = R"j({"data": "none (random weights, for developing the web app)"})j";
            const std::string file = out + "/dev-random.safetensors";
            igpt::save_model(m, file, igpt::DType::F16);
            manifest["models"].push_back(
                {{"name", "random (dev)"}, {"file", "dev-random.safetensors"}, {"size", file_size(file)},
                 {"resolution", std::to_string(cfg.image_w) + "x" + std::to_string(cfg.image_h)},
                 {"trained_on", "nothing: random weights, for development"}});
        }
        std::ofstream(out + "/manifest.json") << manifest.dump(2) << "\n";
        std::printf("make_dev_model: manifest with %zu models\n", manifest["models"].size());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_dev_model: %s\n", e.what());
        return 1;
    }
    return 0;
}
