// Helpers shared by the tests: temporary folders, running the CLI, small random models.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
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

inline std::string cli() {
#ifdef IGPT_CLI_PATH
    return IGPT_CLI_PATH;
#else
    return std::string(IGPT_BINARY_DIR) + "/tools/igpt/igpt";
#endif
}

// n palette indices in [0, V), uniform, from std::mt19937(seed).
inline std::vector<int32_t> random_tokens(size_t n, int32_t V, uint32_t seed) {
    std::mt19937 g(seed);
    std::vector<int32_t> t(n);
    for (int32_t& x : t) x = int32_t(g() % uint32_t(V));
    return t;
}

inline igpt::Palette random_palette(int32_t k, uint64_t seed) {
    igpt::Rng r(seed);
    std::vector<uint8_t> rgb(size_t(k) * 3);
    for (auto& x : rgb) x = uint8_t(r.next());
    return igpt::Palette(rgb);
}

// A small model (8x8 image, 16 colours) with random weights.
inline igpt::Model small_model(uint64_t seed = 1, bool bias = false, int32_t width = 32, int32_t layers = 2) {
    igpt::ModelConfig c;
    c.name = "test";
    c.vocab = 16;
    c.width = width;
    c.layers = layers;
    c.heads = 4;
    c.image_h = c.image_w = 8;
    c.bias = bias;
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
