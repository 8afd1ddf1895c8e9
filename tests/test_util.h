// Helpers shared by the tests: temporary folders, running the CLI, small random models.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>
#include <sys/wait.h>

#include "model.h"
#include "sampler.h"

namespace igpt_test {

// A fresh folder under the build tree, removed and recreated on each call with the same name.
inline std::string temp_dir(const std::string& name) {
    const std::string d = std::string(IGPT_BINARY_DIR) + "/test_tmp/" + name;
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    return d;
}

struct RunResult {
    int code = -1;
    std::string output;  // stdout + stderr
};

// Runs a shell command, capturing its output and exit code.
inline RunResult run(const std::string& cmd) {
    RunResult r;
    FILE* p = popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return r;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    const int st = pclose(p);
    r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
}

// The Python that runs the NumPy reference scripts: Debian's (python3-numpy), or IGPT_PYTHON's (a machine
// whose /usr/bin/python3 has no NumPy, such as the lent GPU machine).
inline const char* python() {
    const char* p = std::getenv("IGPT_PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

inline std::string cli() {
#ifdef IGPT_CLI_PATH
    return IGPT_CLI_PATH;
#else
    return std::string(IGPT_BINARY_DIR) + "/tools/igpt/igpt";
#endif
}

// n palette indices in [0, V), uniform, from igpt::Rng(seed).
inline std::vector<int32_t> random_tokens(size_t n, int32_t V, uint64_t seed) {
    igpt::Rng r(seed);
    std::vector<int32_t> t(n);
    for (auto& x : t) x = int32_t(r.next() % uint64_t(V));
    return t;
}
// One image of the model's size.
inline std::vector<int32_t> random_tokens(const igpt::Model& m, uint64_t seed) {
    return random_tokens(size_t(m.cfg.n_ctx()), m.cfg.vocab, seed);
}

inline igpt::Palette random_palette(int32_t k, uint64_t seed) {
    igpt::Rng r(seed);
    std::vector<uint8_t> rgb(size_t(k) * 3);
    for (auto& x : rgb) x = uint8_t(r.next());
    return igpt::Palette(rgb);
}

// A small shape: 8x8 image, 16 colours, 4 heads.
inline igpt::ModelConfig small_config(bool bias = false, int32_t width = 32, int32_t layers = 2) {
    igpt::ModelConfig c;
    c.name = "test";
    c.vocab = 16;
    c.width = width;
    c.layers = layers;
    c.heads = 4;
    c.image_h = c.image_w = 8;
    c.bias = bias;
    return c;
}

// The smallest shape the trainer tests use (finite differences in double): 3x4 image, 11 colours, width 8,
// 2 layers, 2 heads, MLP 16.
inline igpt::ModelConfig micro_config(bool bias = false) {
    igpt::ModelConfig c;
    c.name = "custom";
    c.vocab = 11;
    c.width = 8;
    c.layers = 2;
    c.heads = 2;
    c.image_h = 3;
    c.image_w = 4;
    c.mlp_mult = 2;
    c.bias = bias;
    return c;
}

// A small model (small_config) with random weights.
inline igpt::Model small_model(uint64_t seed = 1, bool bias = false, int32_t width = 32, int32_t layers = 2) {
    const igpt::ModelConfig c = small_config(bias, width, layers);
    igpt::Model m = igpt::init_model(c, random_palette(16, seed + 100), seed);
    if (bias) {
        igpt::Rng r(seed + 7);
        for (const auto& s : m.specs)
            if (s.name.size() > 2 && s.name.compare(s.name.size() - 2, 2, ".b") == 0)
                for (size_t i = 0; i < s.numel; ++i) m.params[s.offset + i] = 0.05f * r.normal();
    }
    return m;
}

}  // namespace igpt_test
