// igpt bench: prefill and decode throughput, seconds to complete the bottom half of an image, and the
// achieved GFLOP/s and GB/s against this machine's limits, measured in the same process.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>

#include "cli_util.h"
#include "commands.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "error.h"
#include "sampler.h"
#include "session.h"

namespace igpt_cli {

namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// The machine's ceilings, measured here: an fp32 1024^3 GEMM with our kernel, and a large memcpy.
struct Limits {
    double gflops = 0, copy_gbs = 0;
};

Limits measure_limits(int32_t threads) {
    Limits L;
    igpt::ThreadPool pool(threads);
    const int64_t n = 1024;
    std::vector<float> a(size_t(n * n)), b(size_t(n * n)), c(size_t(n * n));
    igpt::Rng rng(7);
    for (auto& x : a) x = rng.normal();
    for (auto& x : b) x = rng.normal();
    double best = 1e9;
    for (int r = 0; r < 5; ++r) {
        auto t0 = Clock::now();
        igpt::matmul_nt(a.data(), n, n, b.data(), n, nullptr, c.data(), &pool);
        best = std::min(best, secs(t0, Clock::now()));
    }
    L.gflops = 2.0 * double(n * n * n) / best / 1e9;
    const size_t bytes = size_t(256) << 20;
    std::vector<char> src(bytes, 1), dst(bytes, 0);
    best = 1e9;
    for (int r = 0; r < 3; ++r) {
        auto t0 = Clock::now();
        std::memcpy(dst.data(), src.data(), bytes);
        best = std::min(best, secs(t0, Clock::now()));
    }
    L.copy_gbs = double(bytes) / best / 1e9;
    return L;
}

}  // namespace

void register_bench(CLI::App& app) {
    struct Opts {
        std::string model, config = "tiny", device = "cpu";
        int32_t batch = 1, threads = 0, rows = -1, repeats = 1;
    };
    auto o = std::make_shared<Opts>();
    auto* c = app.add_subcommand("bench", "measure prefill/decode speed and the time to complete half an image");
    c->add_option("model", o->model, "model file (default: random weights of --config)");
    c->add_option("-c,--config", o->config, "named config for random weights (tiny, small, base, S, M, L)");
    c->add_option("-b,--batch", o->batch, "samples completed together")->check(CLI::Range(1, 64));
    c->add_option("-j,--threads", o->threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
    c->add_option("-r,--rows", o->rows, "rows kept (default half)");
    c->add_option("--repeats", o->repeats, "repeat the completion, report the best")->check(CLI::Range(1, 20));
    c->add_option("--device", o->device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}));
    c->callback([o] {
        std::shared_ptr<const igpt::Model> model;
        if (!o->model.empty()) {
            model = load_model_shared(o->model);
        } else {
            igpt::ModelConfig cfg = igpt::config_preset(o->config);
            std::vector<uint8_t> rgb(size_t(cfg.vocab) * 3);
            igpt::Rng r(3);
            for (auto& x : rgb) x = uint8_t(r.next());
            model = std::make_shared<const igpt::Model>(igpt::init_model(cfg, igpt::Palette(rgb), 1));
        }
        const auto& cfg = model->cfg;
        const int32_t threads = o->threads > 0 ? o->threads : int32_t(std::max(1u, std::thread::hardware_concurrency()));
        const int32_t T = cfg.n_ctx(), B = o->batch, V = cfg.vocab;
        const int32_t rows = o->rows < 0 ? cfg.image_h / 2 : std::min(o->rows, cfg.image_h);
        const int32_t k = rows * cfg.image_w;
        const double C = cfg.width, Hd = cfg.hidden(), L = cfg.layers;
        std::printf("model: %s (width %d, layers %d, heads %d, %.2fM params), %dx%d, batch %d, %d threads, device %s\n",
                    cfg.name.c_str(), cfg.width, cfg.layers, cfg.heads, double(cfg.n_params()) / 1e6, cfg.image_h,
                    cfg.image_w, B, threads, o->device.c_str());

        const Limits lim = measure_limits(threads);
        std::printf("machine: fp32 GEMM 1024^3 %.1f GFLOP/s (our kernel, %d threads); memcpy %.1f GB/s\n", lim.gflops,
                    threads, lim.copy_gbs);

        auto backend = igpt::make_backend(parse_device(o->device), *model, threads);
        igpt::Rng rng(5);
        std::vector<int32_t> prompt(static_cast<size_t>(T));
        for (auto& t : prompt) t = int32_t(rng.next() % uint64_t(V));

        // Prefill: B sequences of k+1 positions (the batched forward a trainer or nll would run).
        const int32_t np = std::max(1, k + 1 > T ? T : k + 1);
        std::vector<int32_t> in(size_t(B) * size_t(np));
        for (int32_t b = 0; b < B; ++b) {
            in[size_t(b) * np] = -1;
            for (int32_t i = 1; i < np; ++i) in[size_t(b) * np + size_t(i)] = prompt[size_t(i - 1)];
        }
        std::vector<float> logits(size_t(B) * size_t(V));
        backend->reset(B);
        backend->forward(in.data(), B, np, 0, logits.data(), false);  // warm-up
        double t_pre = 1e9;
        for (int r = 0; r < 3; ++r) {
            auto t0 = Clock::now();
            backend->forward(in.data(), B, np, 0, logits.data(), false);
            t_pre = std::min(t_pre, secs(t0, Clock::now()));
        }
        const double M = double(B) * np;
        const double pre_flops = 2 * M * L * (4 * C * C + 2 * C * Hd) + 2.0 * B * V * C +
                                 L * B * 4.0 * C * (double(np) * (np + 1) / 2);  // causal QK^T and PV
        std::printf("prefill: %d positions x %d: %.3f s, %.0f tokens/s, %.1f GFLOP/s (%.0f%% of the GEMM ceiling)\n", np,
                    B, t_pre, M / t_pre, pre_flops / t_pre / 1e9, 100 * pre_flops / t_pre / 1e9 / lim.gflops);

        // Decode: B sequences, positions np..T-1, one token per step (cache fanned out as a session does).
        backend->reset(B);
        backend->forward(in.data(), 1, np, 0, logits.data(), false);
        backend->copy_cache(0, B, np);
        std::vector<int32_t> step(static_cast<size_t>(B));
        const int32_t steps = T - np;
        auto t0 = Clock::now();
        for (int32_t pos = np; pos < T; ++pos) {
            for (int32_t b = 0; b < B; ++b) step[size_t(b)] = int32_t(rng.next() % uint64_t(V));
            backend->forward(step.data(), B, 1, pos, logits.data(), false);
        }
        const double t_dec = steps > 0 ? secs(t0, Clock::now()) : 0;
        if (steps > 0) {
            const double wbytes = 4.0 * (L * (4 * C * C + 2 * C * Hd) + V * C);  // weights read once per step
            const double kv_bytes = 4.0 * L * B * 2 * C * (double(np) + T) / 2;  // mean cache read per step
            const double per = t_dec / steps;
            const double stream = wbytes / (lim.copy_gbs * 1e9);
            std::printf("decode:  %d steps x %d: %.3f s, %.0f tokens/s, %.2f ms/step, %.1f GB/s "
                        "(weights %.1f MB: streaming them once takes %.2f ms; ratio %.2fx)\n",
                        steps, B, t_dec, double(steps) * B / t_dec, per * 1e3, (wbytes + kv_bytes) / per / 1e9,
                        wbytes / 1e6, stream * 1e3, per / stream);
        }

        // The user's path: a CompletionSession (prefill once, fan out, sample B images).
        double best = 1e9;
        for (int r = 0; r < o->repeats; ++r) {
            igpt::CompletionSession s(model, parse_device(o->device));
            igpt::CompletionParams p;
            p.n_samples = B;
            p.rows_kept = rows;
            p.threads = threads;
            p.top_n = 0;
            auto t1 = Clock::now();
            s.start(prompt, p);
            s.wait();
            best = std::min(best, secs(t1, Clock::now()));
        }
        std::printf("complete: keep %d rows, sample %d pixels x %d: %.3f s\n", rows, T - k, B, best);
    });
}

}  // namespace igpt_cli
