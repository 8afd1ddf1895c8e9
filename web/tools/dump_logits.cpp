// The browser build's numerics against the independent reference (tests/web/test_wasm_numerics.py): the
// CPU backend compiled to wasm (its own wasm-SIMD kernels: matmul, attention, exp), run under node:
//   dump_logits <model> <tokens> <out prefix> <shared prompt k> [threads=2]
// <tokens>: tests/ref/igpt_ref.py's dump format, S lines of n input ids (-1 = start of sequence at
// position 0), all sequences sharing their first k inputs. Writes two arrays in igpt_ref.py's binary format
// (float64, shape (S, n, V)):
//   <out>.full.bin    one uncached forward of all S sequences at once (the prefill path);
//   <out>.cached.bin  sequence 0's first k inputs prefilled alone, that cache fanned out to all S (the shared
//                     prompt), then one position at a time for all S together (the decode path).
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "backend.h"
#include "model.h"

namespace {

void write_ref_array(const std::string& path, int64_t S, int64_t n, int64_t V, const std::vector<float>& v) {
    std::ofstream f(path, std::ios::binary);
    const int32_t ndim = 3;
    const int64_t dims[3] = {S, n, V};
    f.write("IGPTREF1", 8);
    f.write(reinterpret_cast<const char*>(&ndim), 4);
    f.write(reinterpret_cast<const char*>(dims), sizeof dims);
    for (float x : v) {
        const double d = x;
        f.write(reinterpret_cast<const char*>(&d), 8);
    }
    if (!f) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 5) {
        std::fprintf(stderr, "usage: dump_logits <model> <tokens> <out prefix> <shared prompt k> [threads]\n");
        return 2;
    }
    try {
        const igpt::Model model = igpt::load_model(argv[1]);
        const std::string out = argv[3];
        const int32_t k = std::atoi(argv[4]), threads = argc > 5 ? std::atoi(argv[5]) : 2;
        std::vector<std::vector<int32_t>> seqs;
        std::ifstream tf(argv[2]);
        for (std::string line; std::getline(tf, line);) {
            std::istringstream ls(line);
            std::vector<int32_t> s;
            for (int32_t t; ls >> t;) s.push_back(t);
            if (!s.empty()) seqs.push_back(s);
        }
        const int32_t S = int32_t(seqs.size()), n = S ? int32_t(seqs[0].size()) : 0, V = model.cfg.vocab;
        if (S == 0 || n < 2 || k < 1 || k >= n) throw std::runtime_error("need sequences of n > k >= 1 inputs");
        for (const auto& s : seqs)
            if (int32_t(s.size()) != n) throw std::runtime_error("all sequences must have the same length");

        auto be = igpt::make_cpu_backend(model, threads);
        std::vector<int32_t> all;
        for (const auto& s : seqs) all.insert(all.end(), s.begin(), s.end());
        std::vector<float> full(size_t(S) * n * V);
        be->reset(S);
        be->forward(all.data(), S, n, 0, full.data(), true);
        write_ref_array(out + ".full.bin", S, n, V, full);

        std::vector<float> cached(full.size()), prompt(size_t(k) * V), step(size_t(S) * V);
        be->reset(S);
        be->forward(seqs[0].data(), 1, k, 0, prompt.data(), true);
        be->copy_cache(0, S, k);
        for (int32_t s = 0; s < S; ++s)
            std::copy(prompt.begin(), prompt.end(), cached.begin() + ptrdiff_t(size_t(s) * n * V));
        std::vector<int32_t> col(static_cast<size_t>(S));
        for (int32_t p = k; p < n; ++p) {
            for (int32_t s = 0; s < S; ++s) col[size_t(s)] = seqs[size_t(s)][size_t(p)];
            be->forward(col.data(), S, 1, p, step.data(), false);
            for (int32_t s = 0; s < S; ++s)
                std::copy(step.begin() + ptrdiff_t(size_t(s) * V), step.begin() + ptrdiff_t(size_t(s + 1) * V),
                          cached.begin() + ptrdiff_t((size_t(s) * n + size_t(p)) * V));
        }
        write_ref_array(out + ".cached.bin", S, n, V, cached);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "dump_logits: %s\n", e.what());
        return 1;
    }
    return 0;
}
