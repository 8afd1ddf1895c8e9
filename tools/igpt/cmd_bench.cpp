// igpt bench: prefill and decode throughput, seconds to complete the bottom half of an image, and the
// achieved GFLOP/s and GB/s against this machine's limits, measured in the same process.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "cli_util.h"
#include "commands.h"
#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "error.h"
#include "sampler.h"
#include "session.h"
#ifdef IGPT_WITH_CUDA
#include "cuda/backend_cuda.h"
#endif

namespace igpt_cli {

namespace {

using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// The machine's ceilings, measured here: an fp32 1024^3 GEMM with our kernel, and a large memcpy.
struct Limits {
    double gflops = 0, copy_gbs = 0, read_gbs = 0;
};

// The vector instructions this build's CPU kernels and Eigen use (CMakeLists.txt: IGPT_AVX512).
const char* build_isa() {
#if defined(__AVX512F__)
    return "AVX-512";
#elif defined(__AVX2__) && defined(__FMA__)
    return "AVX2 + FMA";
#else
    return "no AVX2";
#endif
}

// The best time of fn() over at least `runs` calls, and more while they add up to under `fill` seconds: a
// short kernel (tiny's prefill, 5-10 ms) needs dozens of runs before one is free of a preemption or a cold
// cache. (A pass over 256 MB needs no more than its `runs`: fill 0.)
template <class F>
double best_time(int runs, F&& fn, double fill = 0.5) {
    double best = 1e9, total = 0;
    for (int r = 0; r < runs || (total < fill && r < 500); ++r) {
        const auto t0 = Clock::now();
        fn();
        const double t = secs(t0, Clock::now());
        best = std::min(best, t);
        total += t;
    }
    return best;
}

Limits measure_limits(int32_t threads) {
    Limits L;
    igpt::ThreadPool pool(threads);
    const int64_t n = 1024;
    std::vector<float> a(size_t(n * n)), b(size_t(n * n)), c(size_t(n * n));
    igpt::Rng rng(7);
    for (auto& x : a) x = rng.normal();
    for (auto& x : b) x = rng.normal();
    double best = best_time(5, [&] { igpt::matmul_nt(a.data(), n, n, b.data(), n, nullptr, c.data(), &pool); });
    L.gflops = 2.0 * double(n * n * n) / best / 1e9;
    const size_t bytes = size_t(256) << 20;
    std::vector<char> src(bytes, 1), dst(bytes, 0);
    best = best_time(3, [&] { std::memcpy(dst.data(), src.data(), bytes); }, 0);
    L.copy_gbs = double(bytes) / best / 1e9;
    // Read bandwidth: every thread sums its share of the buffer (what streaming the weights needs).
    const int64_t nf = int64_t(bytes / 4);
    std::vector<float> buf(size_t(nf), 1.0f);
    std::vector<double> sums(size_t(pool.size()));
    best = best_time(4, [&] {
        pool.parallel_for(nf / 4096, 1, [&](int64_t b, int64_t e, int32_t t) {
            float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int64_t i = b * 4096; i < e * 4096; i += 8)
                for (int j = 0; j < 8; ++j) acc[j] += buf[size_t(i + j)];
            for (float a : acc) sums[size_t(t)] += a;
        });
    }, 0);
    L.read_gbs = double(bytes) / best / 1e9;
    return L;
}

// The decode path the backend's steps took, from its name ("cuda (NVIDIA H200, f16, fused+mma decode)"), as
// the RESULT line names it: fused[+mma][+split[N]][+onepass][+shared], or layered.
std::string decode_path(const std::string& backend_name) {
    const size_t end = backend_name.rfind(" decode)");
    const size_t start = end == std::string::npos ? end : backend_name.rfind(", ", end);
    if (start == std::string::npos) return "unknown";
    const std::string path = backend_name.substr(start + 2, end - start - 2);
    return path == "layer-by-layer" ? "layered" : path;
}

// Peak memory bandwidth (GB/s) from the datasheets of the GPUs this is run on; 0 for others.
[[maybe_unused]] double nominal_hbm_gbs(const std::string& name) {
    struct Known { const char* part; double gbs; };
    static const Known known[] = {{"H200", 4800}, {"H100 PCIe", 2000}, {"H100 NVL", 3900}, {"H100", 3350},
                                  {"A100-SXM4-80GB", 2039}, {"A100 80GB PCIe", 1935}, {"A100", 1555},
                                  {"L40S", 864}, {"L4", 300}};
    for (const Known& k : known)
        if (name.find(k.part) != std::string::npos) return k.gbs;
    return 0;
}

}  // namespace

void register_bench(CLI::App& app) {
    struct Opts {
        std::string model, config = "tiny", device = "auto";
        int32_t batch = 1, threads = 0, rows = -1, repeats = 1;
        std::string dtype = "f32";
        double hbm_gbs = 0;  // 0: the GPU's datasheet figure (nominal_hbm_gbs)
    };
    auto o = std::make_shared<Opts>();
    auto* c = app.add_subcommand("bench", "measure prefill/decode speed and the time to complete half an image");
    c->add_option("model", o->model, "model file (default: random weights of --config)");
    c->add_option("-c,--config", o->config, "named config for random weights (tiny, small, base, S, M, L)");
    c->add_option("-b,--batch", o->batch, "samples completed together")->check(CLI::Range(1, 64));
    c->add_option("-j,--threads", o->threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
    c->add_option("-r,--rows", o->rows, "rows kept (default half)");
    c->add_option("--repeats", o->repeats, "repeat the completion, report the best")->check(CLI::Range(1, 20));
    c->add_option("--dtype", o->dtype, "random weights stored as f32 or f16 (as if read from such a model file)")
        ->check(CLI::IsMember({"f32", "f16"}));
    c->add_option("--device", o->device, "cpu, cuda or auto (CUDA when a GPU is present)")
        ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
    c->add_option("--hbm-gbs", o->hbm_gbs,
                  "GPU memory bandwidth (GB/s) the decode steps are compared with (default: the GPU's datasheet "
                  "figure, e.g. 3350 for an H100 SXM, 4800 for an H200)")
        ->check(CLI::PositiveNumber);
    c->callback([o] {
        std::shared_ptr<const igpt::Model> model;
        if (!o->model.empty()) {
            model = load_model_shared(o->model);
        } else {
            igpt::ModelConfig cfg = igpt::config_preset(o->config);
            std::vector<uint8_t> rgb(size_t(cfg.vocab) * 3);
            igpt::Rng r(3);
            for (auto& x : rgb) x = uint8_t(r.next());
            igpt::Model m = igpt::init_model(cfg, igpt::Palette(rgb), 1);
            if (o->dtype == "f16") {  // round-trip through an f16 model file: what loading one gives
                const std::vector<uint8_t> bytes = igpt::serialize_model(m, igpt::DType::F16);
                m = igpt::load_model_from_memory(bytes.data(), bytes.size(), "f16 copy");
            }
            model = std::make_shared<const igpt::Model>(std::move(m));
        }
        const auto& cfg = model->cfg;
        const int32_t threads = o->threads > 0 ? o->threads : int32_t(std::max(1u, std::thread::hardware_concurrency()));
        const int32_t T = cfg.n_ctx(), B = o->batch, V = cfg.vocab;
        const int32_t rows = o->rows < 0 ? cfg.image_h / 2 : std::min(o->rows, cfg.image_h);
        const int32_t k = rows * cfg.image_w;
        const double C = cfg.width, Hd = cfg.hidden(), L = cfg.layers;
        const igpt::BackendKind kind = parse_device(o->device);
        const bool gpu = kind == igpt::BackendKind::Cuda;
        auto backend = igpt::make_backend(kind, *model, threads);
        std::printf("model: %s (width %d, layers %d, heads %d, %.2fM params), %dx%d, batch %d, %d threads, device %s\n",
                    cfg.name.c_str(), cfg.width, cfg.layers, cfg.heads, double(cfg.n_params()) / 1e6, cfg.image_h,
                    cfg.image_w, B, threads, backend->name().c_str());

        Limits lim;
        double es = 4;  // bytes per weight and per cached key/value element on the device
        if (!gpu) {
            lim = measure_limits(threads);
            std::printf("machine: fp32 GEMM 1024^3 %.1f GFLOP/s (our kernel, %s, %d threads); memcpy %.1f GB/s; read "
                        "%.1f GB/s\n", lim.gflops, build_isa(), threads, lim.copy_gbs, lim.read_gbs);
#if defined(__x86_64__) && !defined(__AVX512F__)
            if (__builtin_cpu_supports("avx512f"))
                std::printf("note: this CPU has AVX-512 and this build does not use it (cmake -DIGPT_AVX512=AUTO)\n");
#endif
        }
#ifdef IGPT_WITH_CUDA
        if (gpu) {
            const igpt::CudaDeviceInfo info = igpt::cuda_device_info(true);
            es = igpt::cuda_default_precision() == igpt::CudaPrecision::F32 ? 4 : 2;
            const char* source = "--hbm-gbs";
            if (o->hbm_gbs <= 0) {
                o->hbm_gbs = nominal_hbm_gbs(info.name);
                source = "datasheet";
                if (o->hbm_gbs <= 0) o->hbm_gbs = info.copy_gbs, source = "the measured copy: unknown GPU";
            }
            std::printf("gpu: %s, %d SMs, %.0f GB; device-to-device copy %.0f GB/s (read + write, measured); decode "
                        "steps compared with %.0f GB/s (%s)\n",
                        info.name.c_str(), info.sm_count, info.memory_gb, info.copy_gbs, o->hbm_gbs, source);
        }
#endif
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
        const double t_pre = best_time(3, [&] { backend->forward(in.data(), B, np, 0, logits.data(), false); });
        const double M = double(B) * np;
        const double pre_flops = 2 * M * L * (4 * C * C + 2 * C * Hd) + 2.0 * B * V * C +
                                 L * B * 4.0 * C * (double(np) * (np + 1) / 2);  // causal QK^T and PV
        if (gpu)
            std::printf("prefill: %d positions x %d: %.4f s, %.0f tokens/s, %.1f TFLOP/s\n", np, B, t_pre, M / t_pre,
                        pre_flops / t_pre / 1e12);
        else
            std::printf("prefill: %d positions x %d: %.3f s, %.0f tokens/s, %.1f GFLOP/s (%.0f%% of the GEMM ceiling)\n",
                        np, B, t_pre, M / t_pre, pre_flops / t_pre / 1e9, 100 * pre_flops / t_pre / 1e9 / lim.gflops);

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
        // Bytes one decode step must read: every weight matrix once, and the KV cache of every sequence up to
        // its position (mean over the steps).
        const double step_wbytes = es * (L * (4 * C * C + 2 * C * Hd) + V * C);
        const double step_kvbytes = es * L * B * 2 * C * (double(np) + T) / 2;
        if (steps > 0 && gpu) {
            const double per = t_dec / steps, ideal = (step_wbytes + step_kvbytes) / (o->hbm_gbs * 1e9);
            std::printf("decode (forward() per step, host round trip): %d steps x %d: %.3f s, %.3f ms/step "
                        "(weights %.1f MB + KV %.1f MB: %.3f ms at %.0f GB/s; ratio %.2fx)\n",
                        steps, B, t_dec, per * 1e3, step_wbytes / 1e6, step_kvbytes / 1e6, ideal * 1e3, o->hbm_gbs,
                        per / ideal);
        }
        if (steps > 0 && !gpu) {
            // Weights read once per step (f16 model files decode from half-precision weights), and the mean
            // KV cache read per step, compared with a parallel read of a large buffer on the same threads.
            const double wb = model->file_dtype == igpt::DType::F16 && IGPT_HAVE_PANELS ? 2.0 : 4.0;
            const double wbytes = wb * (L * (4 * C * C + 2 * C * Hd) + V * C);
            const double kv_bytes = 4.0 * L * B * 2 * C * (double(np) + T) / 2;
            const double per = t_dec / steps;
            const double stream = wbytes / (lim.read_gbs * 1e9);
            std::printf("decode:  %d steps x %d: %.3f s, %.0f tokens/s, %.2f ms/step, %.1f GB/s "
                        "(weights %.1f MB: reading them once at %.1f GB/s takes %.2f ms; ratio %.2fx)\n",
                        steps, B, t_dec, double(steps) * B / t_dec, per * 1e3, (wbytes + kv_bytes) / per / 1e9,
                        wbytes / 1e6, lim.read_gbs, stream * 1e3, per / stream);
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

        // On a device that samples by itself: the same completion through Backend::generate with the weights
        // already resident (what a PyTorch generate() timing measures), best of the repeats after a warm-up.
        std::vector<int32_t> out(size_t(B) * size_t(T));
        igpt::GenerateRequest rq;
        rq.prompt = prompt.data();
        rq.n_kept = k;
        rq.n_samples = B;
        rq.tokens = out.data();
        igpt::GenerateStats st, best_st;
        rq.stats = &st;
        double best_gen = 1e9;
        bool generated = false;
        for (int r = 0; gpu && r <= std::max(2, o->repeats) && k < T; ++r) {
            auto t1 = Clock::now();
            if (!backend->generate(rq)) break;
            generated = true;
            const double t = secs(t1, Clock::now());
            if (r > 0 && t < best_gen) {
                best_gen = t;
                best_st = st;
            }
        }
        if (generated) {
            const double per = best_st.steps > 0 ? best_st.decode_s / best_st.steps : 0;
            const double ideal = (step_wbytes + step_kvbytes) / (o->hbm_gbs * 1e9);
            std::printf("complete (weights resident, sampling on the device, graph per step): %.3f s (prefill %.4f s, "
                        "decode %.3f ms/step; weights + KV read in %.3f ms at %.0f GB/s: ratio %.2fx)\n",
                        best_gen, best_st.prefill_s, per * 1e3, ideal * 1e3, o->hbm_gbs, per / ideal);
            std::printf("RESULT igpt device=%s decode=%s config=%s batch=%d complete_s=%.4f prefill_s=%.4f step_ms=%.4f "
                        "ideal_ms=%.4f\n",
                        gpu ? "cuda" : "cpu", decode_path(backend->name()).c_str(), cfg.name.c_str(), B, best_gen,
                        best_st.prefill_s, per * 1e3, ideal * 1e3);
        } else {
            std::printf("RESULT igpt device=%s config=%s batch=%d complete_s=%.4f\n", gpu ? "cuda" : "cpu",
                        cfg.name.c_str(), B, best);
        }
    });
}

}  // namespace igpt_cli
