// Benchmark of a completion in the wasm build, under node (NODERAWFS), or natively for comparison:
//   bench_session <model.safetensors> [threads=2] [batches=1,8]
// Completes the bottom half (kept 16 of 32 rows) of a grey image at each batch size and prints the seconds
// and the decode tokens/s -- the same CompletionSession the browser app runs, without the page around it.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "model.h"
#include "session.h"

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: bench_session <model> [threads] [batch...]\n");
        return 2;
    }
    try {
        auto model = std::make_shared<igpt::Model>(igpt::load_model(argv[1]));
        const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
        const auto& c = model->cfg;
        std::vector<int32_t> tokens(size_t(c.n_ctx()), 0);
        for (int32_t i = 0; i < c.n_ctx(); ++i) tokens[size_t(i)] = (i * 7 + i / c.image_w) % c.vocab;
        std::vector<int> batches;
        for (int i = 3; i < argc; ++i) batches.push_back(std::atoi(argv[i]));
        if (batches.empty()) batches = {1, 8};
        for (int b : batches) {
            igpt::CompletionSession s(model);
            igpt::CompletionParams p;
            p.n_samples = b;
            p.rows_kept = c.image_h / 2;
            p.threads = threads;
            s.start(tokens, p);
            while (!s.done()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
            s.wait();
#ifdef __EMSCRIPTEN__
            const char* build = "wasm";
#else
            const char* build = "native";
#endif
            std::printf("%s %s, %d threads, batch %d: bottom half in %.2f s, %.0f tokens/s\n", build, c.name.c_str(),
                        threads, b, s.elapsed_seconds(), s.tokens_per_second());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_session: %s\n", e.what());
        return 1;
    }
    return 0;
}
