// Development helper for the browser app, run under node at build time (NODERAWFS):
//   make_dev_model <committed manifest.json (may be missing)> <out dir>
// Writes <out>/dev-random.safetensors -- the "tiny" shape with random weights and an 8x8x8 RGB grid palette,
// stored as f16 -- and <out>/manifest.json = the committed manifest's models + this one, so the app runs
// before a trained model exists. Never committed: it lives in the build output only.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "config.h"
#include "model.h"
#include "palette.h"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: make_dev_model <manifest.json> <out dir>\n");
        return 2;
    }
    try {
        const std::string out = argv[2];
        std::vector<uint8_t> rgb;
        for (int r = 0; r < 8; ++r)
            for (int g = 0; g < 8; ++g)
                for (int b = 0; b < 8; ++b)
                    for (int c : {r, g, b}) rgb.push_back(uint8_t(c * 255 / 7));
        igpt::ModelConfig cfg = igpt::config_preset("tiny");
        igpt::Model m = igpt::init_model(cfg, igpt::Palette(rgb), 7);
        m.provenance = R"j({"data": "none (random weights, for developing the web app)"})j";
        const std::string file = out + "/dev-random.safetensors";
        igpt::save_model(m, file, igpt::DType::F16);
        std::ifstream f(file, std::ios::binary | std::ios::ate);
        const int64_t size = int64_t(f.tellg());

        nlohmann::json manifest = {{"models", nlohmann::json::array()}};
        std::ifstream in(argv[1]);
        if (in) {
            std::stringstream ss;
            ss << in.rdbuf();
            nlohmann::json j = nlohmann::json::parse(ss.str());
            manifest["models"] = j.is_array() ? j : j.value("models", nlohmann::json::array());
        }
        manifest["models"].push_back({{"name", "random (dev)"}, {"file", "dev-random.safetensors"}, {"size", size},
                                      {"resolution", std::to_string(cfg.image_w) + "x" + std::to_string(cfg.image_h)},
                                      {"trained_on", "nothing: random weights, for development"}});
        std::ofstream(out + "/manifest.json") << manifest.dump(2) << "\n";
        std::printf("make_dev_model: %s (%lld bytes) + manifest with %zu models\n", file.c_str(), (long long)size,
                    manifest["models"].size());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_dev_model: %s\n", e.what());
        return 1;
    }
    return 0;
}
