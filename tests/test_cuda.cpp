// The CUDA backend against the CPU backend (tag [cuda]), on random models: logits of a prefill and of
// cached decode steps at batch 1 and 8 (f32 checking mode: tight; f16 / bf16: loose, stated below), greedy
// completions token for token, per-pixel NLL, f16 / int8 model files, sessions (seeds, progress, cancel),
// and the device sampler (top-k / top-p bounds, seeded reproducibility, the distribution it draws from).
// Without a GPU, or in a build without IGPT_WITH_CUDA, every case says "skipped: no GPU" and passes. The
// same cases also run on every machine in igpt_emu_tests, against the backend compiled for tests/cuda_emu
// (CUDA kernels on CPU fibers), where a 12x12 model stands in for the 32x32 tiny one.
// Each comparison prints its measured error ("cuda check: ..."), so a GPU log shows the margins.
#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <thread>

#include "backend.h"
#include "error.h"
#include "session.h"
#include "test_util.h"
#ifdef IGPT_WITH_CUDA
#include "cuda/backend_cuda.h"
#endif

using namespace igpt;

namespace {

// Sets an environment variable for a scope (the CUDA backend reads IGPT_CUDA_FUSED when it is made).
struct ScopedEnv {
    std::string name;
    ScopedEnv(const char* n, const std::string& value) : name(n) { setenv(n, value.c_str(), 1); }
    ~ScopedEnv() { unsetenv(name.c_str()); }
};

bool gpu_or_skip() {
#ifdef IGPT_CUDA_EMU
    static bool said = false;
    if (!said) std::printf("cuda check: running on cuda_emu (the CUDA backend's kernels on the CPU)\n");
    said = true;
    return true;
#elif defined(IGPT_WITH_CUDA)
    if (cuda_available()) return true;
    WARN("skipped: no GPU (this build has the CUDA backend, but no CUDA device is visible)");
#else
    WARN("skipped: no GPU (this build has no CUDA backend: IGPT_WITH_CUDA is off)");
#endif
    return false;
}

#ifdef IGPT_WITH_CUDA

// Tolerances, as max |cuda - cpu| / max |cpu| over all logits compared:
constexpr double kTolF32 = 1e-4;   // f32 mode: IEEE fp32 GEMMs (no TF32), fp32 attention
constexpr double kTolF16 = 3e-2;   // f16 weights, activations and KV cache, fp32 accumulation
constexpr double kTolBF16 = 8e-2;  // bf16: 8 mantissa bits

double tolerance(CudaPrecision p) {
    return p == CudaPrecision::F32 ? kTolF32 : p == CudaPrecision::F16 ? kTolF16 : kTolBF16;
}

// A model with random weights of a config, sharpened so attention is far from uniform (qkv x5), with random
// gains and (if the config has them) biases, so that every parameter matters.
Model random_model(ModelConfig c, uint64_t seed) {
    Model m = init_model(c, igpt_test::random_palette(c.vocab, seed + 100), seed);
    Rng r(seed + 7);
    for (const auto& s : m.specs) {
        float* p = &m.params[s.offset];
        const bool bias = s.name.size() > 2 && s.name.compare(s.name.size() - 2, 2, ".b") == 0;
        const bool gain = s.name.size() > 2 && s.name.compare(s.name.size() - 2, 2, ".g") == 0;
        if (bias)
            for (size_t i = 0; i < s.numel; ++i) p[i] = 0.05f * r.normal();
        else if (gain)
            for (size_t i = 0; i < s.numel; ++i) p[i] = 1.0f + 0.1f * r.normal();
        else if (s.name.find("attn.qkv.w") != std::string::npos)
            for (size_t i = 0; i < s.numel; ++i) p[i] *= 5.0f;
    }
    return m;
}

ModelConfig small_config(bool bias) {  // 8x8 image, 16 colours, width 64, 2 layers, 4 heads (head dim 16)
    return igpt_test::small_config(bias, 64);
}

// The shipped tiny shape: 32x32, 512 colours, width 128, 4 layers, 4 heads. On the emulator (tests/cuda_emu,
// where a pass of that model takes minutes) a shape with the same head dim and long enough to cross the
// attention's chunk boundaries stands in: 12x12, 64 colours, width 64, 2 layers, 4 heads.
#ifdef IGPT_CUDA_EMU
constexpr const char* kTiny = "mid (emulator)";
constexpr int32_t kTinyPrompt = 100;  // decode from here: past the attention's first chunk of keys (64 or 96)
ModelConfig tiny_config(bool bias) {
    ModelConfig c = igpt_test::small_config(bias, 64);
    c.name = "mid";
    c.image_h = c.image_w = 12;
    c.vocab = 64;
    return c;
}
#else
constexpr const char* kTiny = "tiny";
constexpr int32_t kTinyPrompt = 500;  // decode from here: past the attention's key chunks of 64, 128 and 256
ModelConfig tiny_config(bool bias) {
    ModelConfig c = config_preset("tiny");
    c.bias = bias;
    return c;
}
#endif

using igpt_test::random_tokens;

struct Err {
    double norm = 0, max_abs = 0, ref_max = 0;
    size_t at = 0;
};
Err compare(const std::vector<float>& got, const std::vector<float>& ref) {
    Err e;
    for (size_t i = 0; i < ref.size(); ++i) {
        e.ref_max = std::max(e.ref_max, double(std::fabs(ref[i])));
        const double d = std::fabs(double(got[i]) - double(ref[i]));
        if (d > e.max_abs || std::isnan(d)) {
            e.max_abs = std::isnan(d) ? INFINITY : d;
            e.at = i;
        }
    }
    e.norm = e.max_abs / std::max(e.ref_max, 1e-6);
    return e;
}

void check_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref, double tol) {
    REQUIRE(got.size() == ref.size());
    const Err e = compare(got, ref);
    std::printf("cuda check: %-60s normalised error %.3g (max |diff| %.3g at %zu: cuda %.6g cpu %.6g; tolerance %.3g)\n",
                what.c_str(), e.norm, e.max_abs, e.at, double(got[e.at]), double(ref[e.at]), tol);
    INFO(what << ": first values cuda " << got[0] << " " << got[1] << " " << got[2] << ", cpu " << ref[0] << " "
              << ref[1] << " " << ref[2] << "; largest difference " << e.max_abs << " at " << e.at << " (cuda "
              << got[e.at] << ", cpu " << ref[e.at] << "), max |cpu| " << e.ref_max);
    CHECK(e.norm <= tol);
}

const char* pname(CudaPrecision p) { return cuda_precision_name(p); }

// Prefill of B sequences over all positions (all_positions logits), both backends.
void check_prefill(const Model& m, CudaPrecision prec, int32_t B, const std::string& label) {
    const int32_t T = m.cfg.n_ctx(), V = m.cfg.vocab;
    auto tok = random_tokens(size_t(B) * size_t(T), V, 11 + uint64_t(B));
    for (int32_t b = 0; b < B; ++b) tok[size_t(b) * size_t(T)] = -1;
    auto cpu = make_cpu_backend(m, 0);
    auto gpu = make_cuda_backend(m, prec);
    std::vector<float> ref(size_t(B) * size_t(T) * size_t(V)), got(ref.size());
    cpu->reset(B);
    cpu->forward(tok.data(), B, T, 0, ref.data(), true);
    gpu->reset(B);
    gpu->forward(tok.data(), B, T, 0, got.data(), true);
    check_close(label + " prefill " + pname(prec) + " batch " + std::to_string(B), got, ref, tolerance(prec));
    // The last-position logits of the same forward agree with the all-positions ones.
    std::vector<float> last(size_t(B) * size_t(V));
    gpu->reset(B);
    gpu->forward(tok.data(), B, T, 0, last.data(), false);
    std::vector<float> want;
    for (int32_t b = 0; b < B; ++b)
        want.insert(want.end(), got.begin() + ptrdiff_t((size_t(b) * T + size_t(T - 1)) * V),
                    got.begin() + ptrdiff_t((size_t(b) * T + size_t(T)) * V));
    check_close(label + " last-position logits " + pname(prec) + " batch " + std::to_string(B), last, want, 1e-4);
    // Pooled features (mean over positions of each block's normalised input), used by the linear probes.
    const int32_t C = m.cfg.width;
    std::vector<float> pr(size_t(B) * size_t(C)), pg(pr.size()), fr, fg;
    for (int32_t l = 0; l <= m.cfg.layers; ++l) {
        REQUIRE(cpu->pooled_features(l, pr.data()));
        REQUIRE(gpu->pooled_features(l, pg.data()));
        fr.insert(fr.end(), pr.begin(), pr.end());
        fg.insert(fg.end(), pg.begin(), pg.end());
    }
    check_close(label + " pooled features " + pname(prec) + " batch " + std::to_string(B), fg, fr, tolerance(prec));
}

// A shared prompt prefilled in two chunks, fanned out to B sequences, then decode steps with different
// tokens per sequence, and a 3-position chunk at the end (prefill kernel at pos > 0, batch B). path, when
// given: the decode path the backend must say (name()) its steps took, so that a test of one path cannot
// pass on another (the backend falls back to layer-by-layer when the fused step's plan fails).
void check_decode(const Model& m, CudaPrecision prec, int32_t B, int32_t k, int32_t steps, const std::string& label,
                  const std::string& path = "") {
    const int32_t T = m.cfg.n_ctx(), V = m.cfg.vocab;
    REQUIRE(k + steps + 3 <= T);
    auto prompt = random_tokens(size_t(k), V, 21);
    prompt[0] = -1;
    auto cpu = make_cpu_backend(m, 0);
    auto gpu = make_cuda_backend(m, prec);
    std::vector<float> ref(size_t(B) * size_t(V)), got(ref.size());
    std::vector<float> all_ref, all_got;
    for (auto* be : {cpu.get(), gpu.get()}) {
        auto& out = be == cpu.get() ? ref : got;
        auto& all = be == cpu.get() ? all_ref : all_got;
        Rng r(33);
        be->reset(B);
        const int32_t h = k / 2;
        be->forward(prompt.data(), 1, h, 0, out.data(), false);
        be->forward(prompt.data() + h, 1, k - h, h, out.data(), false);
        all.insert(all.end(), out.begin(), out.begin() + V);
        be->copy_cache(0, B, k);
        std::vector<int32_t> step(static_cast<size_t>(B));
        for (int32_t p = k; p < k + steps; ++p) {
            for (auto& t : step) t = int32_t(r.next() % uint64_t(V));
            be->forward(step.data(), B, 1, p, out.data(), false);
            all.insert(all.end(), out.begin(), out.end());
        }
        std::vector<int32_t> three(size_t(B) * 3);
        for (auto& t : three) t = int32_t(r.next() % uint64_t(V));
        be->forward(three.data(), B, 3, k + steps, out.data(), false);
        all.insert(all.end(), out.begin(), out.end());
    }
    check_close(label + " cached decode " + pname(prec) + " batch " + std::to_string(B), all_got, all_ref,
                tolerance(prec));
    if (!path.empty()) {
        INFO(label << " batch " << B << ": the backend says " << gpu->name());
        CHECK(gpu->name().find(", " + path + " decode)") != std::string::npos);
    }
}

struct Completion {
    std::vector<int32_t> tokens;
    std::vector<float> entropy;
    std::vector<TokenChoice> choices;
};

Completion cpu_session(std::shared_ptr<const Model> m, const std::vector<int32_t>& image, const CompletionParams& p) {
    CompletionSession s(m, BackendKind::Cpu);
    s.start(image, p);
    s.wait();
    Completion c;
    const int32_t T = m->cfg.n_ctx();
    for (int32_t i = 0; i < p.n_samples; ++i) {
        c.tokens.insert(c.tokens.end(), s.tokens(i), s.tokens(i) + T);
        c.entropy.insert(c.entropy.end(), s.entropy(i), s.entropy(i) + T);
        for (int32_t pos = s.kept(); pos < T; ++pos)
            c.choices.insert(c.choices.end(), s.choices(i, pos), s.choices(i, pos) + p.top_n);
    }
    return c;
}

Completion cuda_generate(const Model& m, CudaPrecision prec, const std::vector<int32_t>& image, const CompletionParams& p,
                         std::vector<int32_t>* progress = nullptr) {
    const int32_t T = m.cfg.n_ctx(), N = p.n_samples, k = p.rows_kept * m.cfg.image_w;
    auto gpu = make_cuda_backend(m, prec);
    Completion c;
    c.tokens.assign(size_t(N) * size_t(T), 0);
    for (int32_t s = 0; s < N; ++s) std::copy_n(image.begin(), k, c.tokens.begin() + ptrdiff_t(size_t(s) * size_t(T)));
    c.entropy.assign(c.tokens.size(), 0.0f);
    std::vector<TokenChoice> choices(c.tokens.size() * size_t(p.top_n));
    GenerateRequest rq;
    rq.prompt = image.data();
    rq.n_kept = k;
    rq.n_samples = N;
    rq.sampler = p.sampler;
    rq.seed = p.seed;
    rq.top_n = p.top_n;
    rq.tokens = c.tokens.data();
    rq.entropy = c.entropy.data();
    rq.choices = choices.data();
    if (progress) rq.on_progress = [progress](int32_t f) { progress->push_back(f); };
    REQUIRE(gpu->generate(rq));
    for (int32_t s = 0; s < N; ++s)
        for (int32_t pos = k; pos < T; ++pos)
            c.choices.insert(c.choices.end(), choices.begin() + ptrdiff_t((size_t(s) * T + size_t(pos)) * p.top_n),
                             choices.begin() + ptrdiff_t((size_t(s) * T + size_t(pos) + 1) * p.top_n));
    return c;
}

#endif  // IGPT_WITH_CUDA

}  // namespace

TEST_CASE("cuda: prefill logits agree with the CPU backend (batch 1 and 8)", "[cuda]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_WITH_CUDA
    const Model small = random_model(small_config(true), 1);
    const Model tiny = random_model(tiny_config(false), 2);
    for (CudaPrecision prec : {CudaPrecision::F32, CudaPrecision::F16, CudaPrecision::BF16})
        for (int32_t B : {1, 8}) {
            check_prefill(small, prec, B, "small+bias");
            check_prefill(tiny, prec, B, kTiny);
        }
#endif
}

TEST_CASE("cuda: cached decode logits agree with the CPU backend (batch 1 and 8)", "[cuda]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_WITH_CUDA
    const Model small = random_model(small_config(true), 3);
    const Model tiny = random_model(tiny_config(false), 4);
    // Every decode path: the fused one-kernel step (the default), the same with every GEMV phase split over
    // K between 4 warps (IGPT_CUDA_SPLITK=4), with its GEMV phases on tensor cores (IGPT_CUDA_MMA=1; f16 and
    // bf16 only, f32 keeps the FMA loop), with one-pass attention (IGPT_CUDA_ONEPASS=1), and the
    // layer-by-layer kernels. Each checks that it took its path.
    for (const std::string mode : {"fused", "fused+split", "fused+mma", "fused+onepass", "layered"}) {
        ScopedEnv env("IGPT_CUDA_FUSED", mode == "layered" ? "0" : "1");
        ScopedEnv mma("IGPT_CUDA_MMA", mode == "fused+mma" ? "1" : "0");
        ScopedEnv split("IGPT_CUDA_SPLITK", mode == "fused+split" ? "4" : "1");
        ScopedEnv onepass("IGPT_CUDA_ONEPASS", mode == "fused+onepass" ? "1" : "0");
        auto path = [&](CudaPrecision prec, int32_t B) -> std::string {
            if (mode == "layered" || B > cuda_fused_max_batch()) return "layer-by-layer";
            if (mode == "fused+mma") return prec == CudaPrecision::F32 ? "fused" : "fused+mma";
            if (mode == "fused+onepass") return mode;
            return mode == "fused+split" ? "fused+split4" : "fused";
        };
        const std::vector<CudaPrecision> precs =
            mode == "fused+mma" ? std::vector<CudaPrecision>{CudaPrecision::F16, CudaPrecision::BF16}
                                : std::vector<CudaPrecision>{CudaPrecision::F32, CudaPrecision::F16};
        for (CudaPrecision prec : precs) {
            for (int32_t B : {1, 8}) {
                check_decode(small, prec, B, 20, 30, mode + " small+bias", path(prec, B));
                check_decode(tiny, prec, B, kTinyPrompt, 24, mode + " " + kTiny, path(prec, B));
            }
            // 3: a batch between the kernel's compiled sizes; 16 (once): past kFusedMaxBatch, layer by layer.
            check_decode(small, prec, 3, 20, 30, mode + " small+bias", path(prec, 3));
            if (mode == "fused") check_decode(small, prec, 16, 20, 30, mode + " small+bias", path(prec, 16));
        }
    }
#endif
}

TEST_CASE("cuda: a bad IGPT_CUDA_SPLITK is refused with one line naming it", "[cuda]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_WITH_CUDA
    const Model m = random_model(small_config(false), 3);
    for (const char* bad : {"3", "32", "-2", "x", "02", "0"}) {
        ScopedEnv split("IGPT_CUDA_SPLITK", bad);
        ScopedEnv layered("IGPT_CUDA_FUSED", "0");  // refused even where the fused step would not run
        CHECK_THROWS_WITH(make_cuda_backend(m, CudaPrecision::F16),
                          Catch::Contains("IGPT_CUDA_SPLITK must be auto or one of 1, 2, 4, 8, 16, not '" +
                                          std::string(bad) + "'"));
    }
    ScopedEnv automatic("IGPT_CUDA_SPLITK", "auto");
    CHECK_NOTHROW(make_cuda_backend(m, CudaPrecision::F16));
#endif
}

TEST_CASE("cuda: model files in f16 and int8 give the CPU's logits", "[cuda]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_WITH_CUDA
    const Model base = random_model(tiny_config(true), 5);
    for (DType dt : {DType::F16, DType::I8}) {
        const auto bytes = serialize_model(base, dt);
        const Model m = load_model_from_memory(bytes.data(), bytes.size(), "test.safetensors");
        for (CudaPrecision prec : {CudaPrecision::F32, CudaPrecision::F16})
            check_prefill(m, prec, 2, std::string(kTiny) + " file " + dtype_name(dt));
    }
#endif
}

TEST_CASE("cuda: greedy completions equal the CPU's token for token", "[cuda]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_WITH_CUDA
    for (const ModelConfig& cfg : {small_config(true), tiny_config(false)}) {
        auto m = std::make_shared<const Model>(random_model(cfg, 6));
        const auto image = random_tokens(size_t(cfg.n_ctx()), cfg.vocab, 8);
        CompletionParams p;
        p.n_samples = 3;
        p.rows_kept = cfg.image_h * 3 / 4;
        p.sampler.temperature = 0.0f;
        p.top_n = 4;
        const Completion ref = cpu_session(m, image, p);
        const Completion got = cuda_generate(*m, CudaPrecision::F32, image, p);
        INFO(cfg.name << " " << cfg.width << " wide");
        size_t mismatches = 0, first = ref.tokens.size();
        for (size_t i = 0; i < ref.tokens.size(); ++i)
            if (ref.tokens[i] != got.tokens[i]) {
                ++mismatches;
                first = std::min(first, i);
            }
        std::printf("cuda check: greedy %s (f32): %zu of %zu tokens differ\n", cfg.name.c_str(), mismatches,
                    ref.tokens.size());
        INFO("first difference at " << first);
        CHECK(mismatches == 0);
        // Entropy and the recorded choices come from the same logits.
        double ent = 0, prob = 0;
        size_t choice_diff = 0;
        for (size_t i = 0; i < ref.entropy.size(); ++i) ent = std::max(ent, double(std::fabs(ref.entropy[i] - got.entropy[i])));
        REQUIRE(ref.choices.size() == got.choices.size());
        for (size_t i = 0; i < ref.choices.size(); ++i) {
            choice_diff += ref.choices[i].token != got.choices[i].token;
            prob = std::max(prob, double(std::fabs(ref.choices[i].prob - got.choices[i].prob)));
        }
        std::printf("cuda check: greedy %s: entropy max diff %.3g bits, choice prob max diff %.3g, %zu choices differ\n",
                    cfg.name.c_str(), ent, prob, choice_diff);
        CHECK(ent < 1e-3);
        CHECK(prob < 1e-4);
        CHECK(choice_diff == 0);
        // IGPT_CUDA_SHARED_KV=1: the fused step reads the fanned-out prompt from sequence 0's cache, the same
        // values, so the same bits come out (f32 here; f16 with 8 samples below, also with one-pass attention).
        const std::pair<CudaPrecision, bool> variants[] = {
            {CudaPrecision::F32, false}, {CudaPrecision::F16, false}, {CudaPrecision::F16, true}};
        for (const auto& [prec, onepass] : variants) {
            ScopedEnv one("IGPT_CUDA_ONEPASS", onepass ? "1" : "0");
            CompletionParams q = p;
            if (prec == CudaPrecision::F16) q.n_samples = 8;
            const Completion own = prec == CudaPrecision::F32 ? got : cuda_generate(*m, prec, image, q);
            ScopedEnv shared("IGPT_CUDA_SHARED_KV", "1");
            const Completion sh = cuda_generate(*m, prec, image, q);
            std::printf("cuda check: greedy %s (%s%s), prompt read from sequence 0: tokens %s, entropy %s\n",
                        cfg.name.c_str(), pname(prec), onepass ? ", one-pass attention" : "",
                        sh.tokens == own.tokens ? "identical" : "DIFFER",
                        sh.entropy == own.entropy ? "identical" : "DIFFERS");
            CHECK(sh.tokens == own.tokens);
            CHECK(sh.entropy == own.entropy);
        }
    }
#endif
}

TEST_CASE("cuda: per-pixel NLL agrees with the CPU within 1e-3 bits (f32 mode)", "[cuda]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_WITH_CUDA
    const Model m = random_model(tiny_config(true), 9);
    const int32_t n = 3, T = m.cfg.n_ctx();
    const auto tokens = random_tokens(size_t(n) * size_t(T), m.cfg.vocab, 10);
    auto cpu = make_cpu_backend(m, 0);
    const NllResult ref = image_nll(m, *cpu, tokens, n, 2);
    for (CudaPrecision prec : {CudaPrecision::F32, CudaPrecision::F16}) {
        auto gpu = make_cuda_backend(m, prec);
        const NllResult got = image_nll(m, *gpu, tokens, n, 2);
        double worst = 0;
        for (size_t i = 0; i < ref.pixel_bits.size(); ++i)
            worst = std::max(worst, double(std::fabs(ref.pixel_bits[i] - got.pixel_bits[i])));
        std::printf("cuda check: nll %s: per-pixel max diff %.3g bits, mean %.5f vs cpu %.5f bits/pixel\n", pname(prec),
                    worst, got.bits_per_pixel, ref.bits_per_pixel);
        if (prec == CudaPrecision::F32) {
            CHECK(worst < 1e-3);
        } else {
            CHECK(std::fabs(got.bits_per_pixel - ref.bits_per_pixel) < 2e-2);
        }
    }
#endif
}

TEST_CASE("cuda: sessions keep the prompt, report progress per row, reproduce a seed and cancel", "[cuda]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_WITH_CUDA
    auto m = std::make_shared<const Model>(random_model(tiny_config(false), 12));
    const int32_t T = m->cfg.n_ctx(), W = m->cfg.image_w;
    const auto image = random_tokens(size_t(T), m->cfg.vocab, 13);
    CompletionParams p;
    p.n_samples = 8;
    p.rows_kept = m->cfg.image_h / 2;
    p.sampler.top_k = 40;
    p.seed = 5;
#ifdef IGPT_CUDA_EMU
    // A CompletionSession makes its backend through the core (the real CUDA backend), not the emulated one.
    std::printf("cuda check: sessions over BackendKind::Cuda not run on cuda_emu (they need the real backend); "
                "generate()'s progress and cancel below are\n");
#else
    auto run = [&](const CompletionParams& q, std::vector<int32_t>* seen) {
        CompletionSession s(m, BackendKind::Cuda);
        s.start(image, q);
        int32_t last = 0;
        while (!s.done()) {
            const int32_t f = s.filled();
            if (seen && f != last) seen->push_back(f);
            CHECK(f >= last);
            last = f;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        s.wait();
        REQUIRE(s.filled() == T);
        std::vector<int32_t> out;
        for (int32_t i = 0; i < q.n_samples; ++i) out.insert(out.end(), s.tokens(i), s.tokens(i) + T);
        return out;
    };
    std::vector<int32_t> seen;
    const auto a = run(p, &seen);
    for (int32_t s = 0; s < p.n_samples; ++s)
        for (int32_t i = 0; i < p.rows_kept * W; ++i) REQUIRE(a[size_t(s) * T + size_t(i)] == image[size_t(i)]);
    for (int32_t t : a) REQUIRE((t >= 0 && t < m->cfg.vocab));
    for (int32_t f : seen) CHECK((f == T || f == p.rows_kept * W + 1 || f % W == 0));  // whole rows (and the first pixel)
    CHECK(run(p, nullptr) == a);                                                     // same seed, same samples
    CHECK(!std::equal(a.begin(), a.begin() + T, a.begin() + T));                     // samples differ from each other
    CompletionParams q = p;
    q.seed = 6;
    CHECK(run(q, nullptr) != a);
#endif

    // Progress from generate() itself: the first pixel after the prefill, then one call per row.
    std::vector<int32_t> calls;
    cuda_generate(*m, CudaPrecision::F16, image, p, &calls);
    REQUIRE(!calls.empty());
    CHECK(calls.front() == p.rows_kept * W + 1);
    CHECK(calls.back() == T);
    CHECK(std::is_sorted(calls.begin(), calls.end()));

    // Cancelled once two rows are in: generate() stops within the rows it had queued (at most two ahead of
    // what it published), well before the end; what it published is complete, and nothing past it is written.
    {
        auto gpu = make_cuda_backend(*m, CudaPrecision::F16);
        std::vector<int32_t> tokens(size_t(p.n_samples) * size_t(T), -1);
        GenerateRequest rq;
        rq.n_kept = 0;
        rq.n_samples = p.n_samples;
        rq.sampler = p.sampler;
        rq.seed = p.seed;
        rq.tokens = tokens.data();
        int32_t last = 0;
        rq.on_progress = [&](int32_t f) { last = f; };
        rq.cancelled = [&] { return last >= 2 * W; };
        REQUIRE(gpu->generate(rq));
        std::printf("cuda check: generate() cancelled at %d of %d positions published; stopped at %d\n", 2 * W, T,
                    last);
        CHECK(last >= 2 * W);
        CHECK(last <= 5 * W);
        CHECK(last < T);
        for (int32_t s = 0; s < p.n_samples; ++s)
            for (int32_t i = 0; i < T; ++i) {
                const int32_t t = tokens[size_t(s) * size_t(T) + size_t(i)];
                if (i < last) REQUIRE((t >= 0 && t < m->cfg.vocab));
                else REQUIRE(t == -1);
            }
    }
#ifndef IGPT_CUDA_EMU
    // Cancel right after start: the worker stops between steps, well before the end.
    CompletionSession s(m, BackendKind::Cuda);
    CompletionParams from_top = q;
    from_top.rows_kept = 0;
    s.start(image, from_top);
    s.cancel();
    s.wait();
    CHECK(s.done());
    CHECK(s.filled() < T);
#endif
#endif
}

TEST_CASE("cuda: the device sampler keeps to top-k / top-p, follows the distribution, and is seeded", "[cuda]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_WITH_CUDA
    const int32_t rows = 64, V = 512;
    std::vector<float> logits(size_t(rows) * size_t(V));
    Rng r(14);
    for (auto& x : logits) x = 3.0f * r.normal();
    auto rank_of = [&](int32_t row, int32_t tok) {  // 0 = most likely; ties by lower index
        const float* l = &logits[size_t(row) * V];
        int32_t rank = 0;
        for (int32_t i = 0; i < V; ++i) rank += l[i] > l[tok] || (l[i] == l[tok] && i < tok);
        return rank;
    };
    SamplerParams sp;
    sp.top_k = 5;
    std::vector<int32_t> all;
    for (int32_t pos = 0; pos < 40; ++pos) {
        const auto t = cuda_sample_rows(logits, rows, V, sp, 99, pos);
        for (int32_t i = 0; i < rows; ++i) REQUIRE(rank_of(i, t[size_t(i)]) < sp.top_k);
        all.insert(all.end(), t.begin(), t.end());
    }
    // Same seed and position: the same tokens; another seed: others.
    CHECK(cuda_sample_rows(logits, rows, V, sp, 99, 7) == std::vector<int32_t>(all.begin() + 7 * rows, all.begin() + 8 * rows));
    std::vector<int32_t> other;
    for (int32_t pos = 0; pos < 40; ++pos) {
        const auto t = cuda_sample_rows(logits, rows, V, sp, 100, pos);
        other.insert(other.end(), t.begin(), t.end());
    }
    CHECK(other != all);
    // Top-p: the token lies in the smallest prefix (by rank) whose mass reaches p (with a little slack).
    SamplerParams pp;
    pp.top_p = 0.6f;
    pp.temperature = 1.5f;
    for (int32_t pos = 0; pos < 10; ++pos) {
        const auto t = cuda_sample_rows(logits, rows, V, pp, 3, pos);
        for (int32_t i = 0; i < rows; ++i) {
            const float* l = &logits[size_t(i) * V];
            std::vector<int32_t> idx(static_cast<size_t>(V));
            std::iota(idx.begin(), idx.end(), 0);
            std::sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
            const float mx = l[idx[0]];
            double z = 0;
            for (int32_t j = 0; j < V; ++j) z += std::exp((double(l[j]) - mx) / pp.temperature);
            double before = 0;
            const int32_t rank = rank_of(i, t[size_t(i)]);
            for (int32_t j = 0; j < rank; ++j) before += std::exp((double(l[idx[size_t(j)]]) - mx) / pp.temperature) / z;
            INFO("row " << i << " rank " << rank << " mass before it " << before);
            CHECK(before < pp.top_p + 1e-4);
        }
    }
    // Greedy: the first maximum.
    SamplerParams gp;
    gp.temperature = 0.0f;
    const auto g = cuda_sample_rows(logits, rows, V, gp, 1, 0);
    for (int32_t i = 0; i < rows; ++i) CHECK(rank_of(i, g[size_t(i)]) == 0);
    // Frequencies follow softmax(logits / temperature): 4 tokens, 64 rows x 100 positions = 6400 draws each.
    for (float temp : {1.0f, 0.5f}) {
        const std::vector<float> four = {0.0f, 1.0f, 2.0f, 0.5f};
        std::vector<float> lg;
        for (int32_t i = 0; i < rows; ++i) lg.insert(lg.end(), four.begin(), four.end());
        SamplerParams tp;
        tp.temperature = temp;
        std::vector<double> count(4, 0.0);
        int64_t n = 0;
        for (int32_t pos = 0; pos < 100; ++pos)
            for (int32_t t : cuda_sample_rows(lg, rows, 4, tp, 42, pos)) {
                REQUIRE((t >= 0 && t < 4));
                count[size_t(t)] += 1;
                ++n;
            }
        double z = 0;
        for (float x : four) z += std::exp(double(x) / temp);
        for (int32_t i = 0; i < 4; ++i) {
            const double want = std::exp(double(four[size_t(i)]) / temp) / z, have = count[size_t(i)] / double(n);
            INFO("temperature " << temp << " token " << i << ": frequency " << have << ", probability " << want);
            CHECK(std::fabs(have - want) < 0.02);
        }
    }
#endif
}

TEST_CASE("cuda: the fused decode step on a small model (the compute-sanitizer racecheck run)",
          "[cuda][sanitize][sanitize_fused]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_WITH_CUDA
    const Model m = random_model(small_config(true), 15);
    check_decode(m, CudaPrecision::F32, 2, 20, 10, "sanitize fused small+bias", "fused");
    check_decode(m, CudaPrecision::F16, 5, 20, 10, "sanitize fused small+bias", "fused");
    {
        ScopedEnv split("IGPT_CUDA_SPLITK", "4");  // every GEMV phase split over K
        check_decode(m, CudaPrecision::F16, 5, 20, 10, "sanitize fused+split small+bias", "fused+split4");
        // Width 128 in f32: mproj's rows are 128 chunks of 16 bytes, so each of the 4 slices sums a stripe.
        const Model wide = random_model(igpt_test::small_config(true, 128), 16);
        check_decode(wide, CudaPrecision::F32, 3, 20, 8, "sanitize fused+split width 128", "fused+split4");
    }
    {
        ScopedEnv split("IGPT_CUDA_SPLITK", "auto");  // split where the grid has warps to spare
        check_decode(m, CudaPrecision::F32, 2, 20, 10, "sanitize fused+split auto small+bias", "fused+split");
    }
    {
        ScopedEnv onepass("IGPT_CUDA_ONEPASS", "1");  // one-pass attention, merged by the proj phase's staging
        ScopedEnv profile("IGPT_CUDA_PROFILE", "1");  // and every block timing its phases
        check_decode(m, CudaPrecision::F16, 5, 20, 10, "sanitize fused+onepass small+bias", "fused+onepass");
    }
    ScopedEnv mma("IGPT_CUDA_MMA", "1");  // the GEMV phases on tensor cores
    check_decode(m, CudaPrecision::F16, 5, 20, 10, "sanitize fused+mma small+bias", "fused+mma");
    check_decode(m, CudaPrecision::BF16, 8, 20, 10, "sanitize fused+mma small+bias", "fused+mma");
#endif
}

TEST_CASE("cuda: a small model through every kernel (the compute-sanitizer run)", "[cuda][sanitize]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_WITH_CUDA
    const Model m = random_model(small_config(true), 15);
    check_prefill(m, CudaPrecision::F16, 3, "sanitize small+bias");
    check_prefill(m, CudaPrecision::BF16, 1, "sanitize small+bias");
    {
        ScopedEnv env("IGPT_CUDA_FUSED", "0");
        check_decode(m, CudaPrecision::F16, 2, 20, 10, "sanitize layered small+bias");
    }
    const auto image = random_tokens(size_t(m.cfg.n_ctx()), m.cfg.vocab, 16);
    CompletionParams p;
    p.n_samples = 3;
    p.rows_kept = 2;
    p.sampler.top_k = 3;
    p.sampler.top_p = 0.9f;
    p.top_n = 3;
    const Completion c = cuda_generate(m, CudaPrecision::F16, image, p);
    for (int32_t t : c.tokens) REQUIRE((t >= 0 && t < m.cfg.vocab));
    p.sampler = SamplerParams{};
    p.top_n = 0;
    p.rows_kept = 0;
    const Completion u = cuda_generate(m, CudaPrecision::F16, image, p);
    for (int32_t t : u.tokens) REQUIRE((t >= 0 && t < m.cfg.vocab));
#endif
}
TEST_CASE("cuda: the fused step's profile: block 0's phases, and each phase across the blocks", "[cuda]") {
#ifdef IGPT_WITH_CUDA  // (host arithmetic: no GPU needed)
    constexpr int S = 12;
    std::vector<uint64_t> slots(2 * S, 0);
    CHECK(cuda_fused_profile_report(slots, 2, 8).empty());  // no step yet
    // Two steps. qkv: block 0 works 4 us and waits 3 us, block 1 works 8 us and waits 1 us; mproj: block 1
    // waits 0.4 us; the head: 1 us.
    slots[0] = 4000, slots[1] = 3000, slots[S + 0] = 8000, slots[S + 1] = 1000;
    slots[9] = 600, slots[S + 9] = 400, slots[10] = 1000, slots[11] = slots[S + 11] = 2;
    const std::string r = cuda_fused_profile_report(slots, 2, 8);
    INFO(r);
    CHECK(r.find("batch 8, 2 steps") != std::string::npos);
    CHECK(r.find(" qkv 2.0 + 1.5;") != std::string::npos);
    CHECK(r.find("head 0.5; total 4.3\n") != std::string::npos);
    CHECK(r.find("across 2 blocks") != std::string::npos);
    CHECK(r.find(" qkv 3.0 mean, 4.0 slowest, 0.5 barrier;") != std::string::npos);
    CHECK(r.find(" mproj 0.0 mean, 0.0 slowest, 0.2 barrier;") != std::string::npos);
    CHECK(std::count(r.begin(), r.end(), '\n') == 2);
#else
    gpu_or_skip();
#endif
}

TEST_CASE("cuda: one-pass attention over 1,000 keys, several rounds of keys a thread, scores in the hundreds",
          "[cuda]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_WITH_CUDA
    // Head dim 64 (width 128, 2 heads), 32x32 image: at batch 8 one chunk holds all 1,024 keys of a
    // (sequence, head), so a thread's online softmax takes 2 rounds of keys in f16 and 4 in f32, rescaling
    // its state between them; at batch 1 the keys are split over 4 chunks that the proj phase merges.
    ModelConfig c = igpt_test::small_config(true, 128, 1);
    c.heads = 2;
    c.image_h = c.image_w = 32;
    const Model m = random_model(c, 23);
    ScopedEnv onepass("IGPT_CUDA_ONEPASS", "1");
    for (CudaPrecision prec : {CudaPrecision::F32, CudaPrecision::F16})
        for (int32_t B : {8, 1}) check_decode(m, prec, B, 1000, 3, "long context onepass", "fused+onepass");
    // Scores in the hundreds (qkv weights 8 times larger): exp2 of the scores less the running max must
    // neither overflow nor vanish (f32: f16 rounding would move such sharp weights too far from the CPU's).
    Model sharp = m;
    for (const auto& s : sharp.specs)
        if (s.name.find("attn.qkv.w") != std::string::npos)
            for (size_t i = 0; i < s.numel; ++i) sharp.params[s.offset + i] *= 8.0f;
    for (int32_t B : {8, 1})
        check_decode(sharp, CudaPrecision::F32, B, 1000, 3, "long context sharp onepass", "fused+onepass");
    ScopedEnv two_pass("IGPT_CUDA_ONEPASS", "0");  // and the default attention, on the same scores
    check_decode(sharp, CudaPrecision::F32, 8, 1000, 3, "long context sharp", "fused");
#endif
}

TEST_CASE("cuda: iGPT-S widths on an H100-sized grid: split-K and tensor-core GEMVs, one-pass attention",
          "[cuda]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_WITH_CUDA
    // Width 512, hidden 2048, 8 heads (iGPT-S's layer, two of them, on an 8x8 image), on a grid of 132 SMs
    // (the emulator's IGPT_CUDA_EMU_SMS; a GPU has its own): the fused step's shapes and the split choices
    // of the real model (proj and the head 2 ways, mproj 4 ways with IGPT_CUDA_SPLITK=auto).
    ScopedEnv sms("IGPT_CUDA_EMU_SMS", "132");
    ModelConfig c = igpt_test::small_config(true, 512);
    c.heads = 8;
    const Model m = random_model(c, 21);
    for (const std::string split : {"1", "auto", "auto+onepass"}) {
        ScopedEnv env("IGPT_CUDA_SPLITK", split == "1" ? "1" : "auto");
        ScopedEnv onepass("IGPT_CUDA_ONEPASS", split == "auto+onepass" ? "1" : "0");
        const std::string path = split == "1" ? "fused" : split == "auto" ? "fused+split" : "fused+split+onepass";
        check_decode(m, CudaPrecision::F16, 8, 20, 3, "width 512 " + path, path);
        check_decode(m, CudaPrecision::F32, 1, 20, 3, "width 512 " + path, path);
    }
    // Tensor-core GEMVs: qkv's 192 and fc's 256 tiles of 8 rows outnumber the 132 blocks, so they go two
    // tiles a group; proj's and mproj's 64 one tile a group.
    ScopedEnv mma("IGPT_CUDA_MMA", "1");
    check_decode(m, CudaPrecision::F16, 8, 20, 3, "width 512 fused+mma", "fused+mma");
    check_decode(m, CudaPrecision::BF16, 1, 20, 3, "width 512 fused+mma", "fused+mma");
#endif
}
