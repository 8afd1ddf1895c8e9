// The CUDA trainer (train/cuda/) against the CPU trainer (TrainCompute, itself checked against finite
// differences in test_train_model.cpp): the gradient of every tensor (each op's backward shows up in its
// own parameters), the per-pixel loss, and 50 AdamW steps from the same initialisation with the same
// batches, with the optimizer on the host and on the device. f32 GEMMs are the checking mode (tight); bf16
// tensor-core GEMMs get a stated loose tolerance, with the batched-GEMM attention and with flash attention
// (flash_attn.cuh; its kernels are also checked without a GPU, on CPU threads, by test_flash_emu.cpp).
// Without a GPU, or in a build without the CUDA trainer, every case says "skipped: no GPU" and passes.
// Each comparison prints its measured error ("cuda train check: ...").
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "backend.h"
#include "compare.h"
#include "error.h"
#include "model.h"
#include "optim.h"
#include "test_util.h"
#include "train_model.h"
#include "trainer.h"
#ifdef IGPT_TRAIN_CUDA
#include "cuda/train_cuda.h"
#endif

using namespace igpt;
using namespace igpt::train;
using igpt_test::normalised_error;  // (the GPU's tensor, the CPU's): relative to the CPU's largest value
using igpt_test::random_tokens;

namespace {

bool gpu_or_skip() {
#if defined(IGPT_CUDA_EMU)
    static bool said = false;
    if (!said) std::printf("cuda train check: running on cuda_emu (the CUDA trainer's kernels on CPU threads)\n");
    said = true;
    return true;
#elif defined(IGPT_TRAIN_CUDA)
    if (cuda_available()) return true;
    WARN("skipped: no GPU (this build has the CUDA trainer, but no CUDA device is visible)");
#else
    WARN("skipped: no GPU (this build has no CUDA trainer: IGPT_WITH_CUDA is off)");
#endif
    return false;
}

#ifdef IGPT_TRAIN_CUDA
using igpt_test::small_config;  // 8x8 image, 16 colours, width 32, 2 layers, 4 heads (head dim 8)

// The CUDA trainer's variants: GEMM compute and attention.
struct Variant {
    const char* math;
    const char* attention;
};
constexpr Variant kVariants[] = {{"f32", "gemm"}, {"bf16", "gemm"}, {"bf16", "flash"}, {"mixed", "auto"}};
std::string variant_name(const Variant& v) {  // "f32", "bf16", "bf16+flash", "mixed+flash"
    return std::string(v.math) + (cuda_attention_for(v.math, v.attention) == "flash" ? "+flash" : "");
}

std::vector<float> perturbed_params(const ModelConfig& cfg, uint64_t seed) {
    Model m = init_model(cfg, igpt_test::random_palette(cfg.vocab, seed), seed);
    std::mt19937 gen(uint32_t(seed) + 7);
    std::normal_distribution<float> d(0.0f, 0.5f);
    for (float& x : m.params) x += 0.1f * d(gen);  // away from init's exact zeros and ones (biases, gains)
    return m.params;
}

// One forward/backward of batch `tok` (B images) from `params` on the CPU trainer and on `gpu`: checks the
// loss and every tensor's gradient (exact: the f32 tolerances, else the bf16 ones), printing each under
// `label`. Returns the gradients, CPU's then GPU's.
std::pair<std::vector<float>, std::vector<float>> check_gradients(TrainCompute& cpu, StepCompute& gpu,
                                                                  const ModelConfig& cfg,
                                                                  const std::vector<float>& params,
                                                                  const std::vector<int32_t>& tok, int32_t B,
                                                                  bool exact, const std::string& label) {
    const float scale = 1.0f / float(B * cfg.n_ctx());
    std::vector<float> gc(params.size(), 0.0f), gg(params.size(), 0.0f);
    const double lc = cpu.forward_backward(params.data(), tok.data(), B, scale, gc.data());
    const double lg = gpu.forward_backward(params.data(), tok.data(), B, scale, gg.data());
    const double tol = exact ? 1e-4 : 5e-2;
    std::printf("cuda train check: %s: loss cpu %.6f cuda %.6f (relative %.2e)\n", label.c_str(), lc, lg,
                std::fabs(lg - lc) / lc);
    CHECK(std::fabs(lg - lc) / lc < (exact ? 1e-5 : 1e-2));
    for (const ParamSpec& s : param_layout(cfg)) {
        const double e = normalised_error(gg.data() + s.offset, gc.data() + s.offset, s.numel);
        std::printf("cuda train check: %s: gradient %-18s normalised error %.3g (tolerance %.3g)\n", label.c_str(),
                    s.name.c_str(), e, tol);
        INFO(label << ": gradient of " << s.name);
        CHECK(e <= tol);
    }
    return {gc, gg};
}
#endif

}  // namespace

TEST_CASE("cuda train: every tensor's gradient and the per-pixel loss agree with the CPU trainer", "[cuda][train]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_TRAIN_CUDA
    for (bool bias : {false, true})
        for (const Variant& var : kVariants) {
            const std::string math = variant_name(var);
            INFO("variant " << math);  // failures name it (gpu_check.sh tells flash failures apart by it)
            const ModelConfig cfg = small_config(bias);
            const auto params = perturbed_params(cfg, 3);
            const int32_t B = 3, T = cfg.n_ctx();
            const auto tok = random_tokens(size_t(B) * size_t(T), cfg.vocab, 5);
            const float scale = 1.0f / float(B * T);
            TrainCompute cpu(cfg, 2);
            auto gpu = make_cuda_step_compute(cfg, var.math, var.attention);
            const bool exact = math == "f32";
            const double tol = exact ? 1e-4 : 5e-2;
            auto [gc, gg] = check_gradients(cpu, *gpu, cfg, params, tok, B, exact,
                                            math + " bias " + std::to_string(int(bias)));
            // Accumulation: a second call adds the same gradient again.
            gpu->forward_backward(params.data(), tok.data(), B, scale, gg.data());
            for (size_t i = 0; i < gc.size(); ++i) gc[i] *= 2.0f;
            CHECK(normalised_error(gg.data(), gc.data(), gc.size()) <= tol);
            // Per-pixel loss of a forward pass.
            std::vector<float> pc(size_t(B) * size_t(T)), pg(pc.size());
            const double nc = cpu.forward_nll(params.data(), tok.data(), B, pc.data());
            const double ng = gpu->forward_nll(params.data(), tok.data(), B, pg.data());
            double worst = 0;
            for (size_t i = 0; i < pc.size(); ++i) worst = std::max(worst, double(std::fabs(pc[i] - pg[i])));
            std::printf("cuda train check: %s bias %d: per-pixel nll max diff %.3g nats (sum cpu %.6f cuda %.6f)\n",
                        math.c_str(), int(bias), worst, nc, ng);
            CHECK(worst < (exact ? 1e-4 : 5e-2));
        }
#endif
}

TEST_CASE("cuda train: 50 AdamW steps (20 on the emulator) follow the CPU trainer's loss curve", "[cuda][train]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_TRAIN_CUDA
    // Three runs from the same initialisation on the same batches: the CPU trainer; the CUDA forward/backward
    // with the host's clipping and AdamW; and the CUDA device optimizer (train_step, 2 micro-batches of 2).
    for (const Variant& var : kVariants) {
        const std::string math = variant_name(var);
        INFO("variant " << math);
        const ModelConfig cfg = small_config(true);
#ifdef IGPT_CUDA_EMU
        const int32_t steps = 20;  // on the CPU emulator: a shorter curve (the whole 50 take a minute)
#else
        const int32_t steps = 50;
#endif
        const int32_t B = 4, T = cfg.n_ctx();
        const auto specs = param_layout(cfg);
        const auto mask = decay_mask(specs);
        std::vector<double> curve[3], gnorm[3];
        std::vector<float> final_params[3];
        for (int dev = 0; dev < 3; ++dev) {
            std::unique_ptr<StepCompute> compute;
            if (dev == 0) compute = std::make_unique<TrainCompute>(cfg, 2);
            else compute = make_cuda_step_compute(cfg, var.math, var.attention);
            std::vector<float> p = perturbed_params(cfg, 11), g(p.size()), m(p.size(), 0.0f), v(p.size(), 0.0f);
            if (dev == 2) {
                REQUIRE(compute->device_optimizer());
                compute->set_state(p.data(), m.data(), v.data(), mask.data());
            }
            LrSchedule sched;
            sched.lr = 3e-3f;
            sched.min_lr = 3e-4f;
            sched.warmup = 5;
            sched.total = steps;
            AdamWParams ap;
            for (int32_t s = 0; s < steps; ++s) {
                // the same batches everywhere: a structured image (rows of one colour) plus noise
                auto tok = random_tokens(size_t(B) * size_t(T), cfg.vocab, 100 + uint64_t(s));
                for (size_t i = 0; i < tok.size(); i += 2) tok[i] = int32_t((i / size_t(cfg.image_w)) % size_t(cfg.vocab));
                const float scale = 1.0f / float(B * T);
                if (dev == 2) {
                    const auto st = compute->train_step(tok.data(), B / 2, 2, scale, 1.0f, s + 1, sched.at(s), ap.beta1,
                                                        ap.beta2, ap.eps, ap.weight_decay);
                    curve[dev].push_back(st.nats / double(B * T));
                    gnorm[dev].push_back(st.grad_norm);
                    continue;
                }
                std::fill(g.begin(), g.end(), 0.0f);
                const double nats = compute->forward_backward(p.data(), tok.data(), B, scale, g.data());
                curve[dev].push_back(nats / double(B * T));
                gnorm[dev].push_back(clip_grad_norm(g.data(), g.size(), 1.0));
                adamw_step(p.data(), g.data(), m.data(), v.data(), mask.data(), p.size(), s + 1, sched.at(s), ap);
            }
            if (dev == 2) compute->get_state(p.data(), m.data(), v.data());
            final_params[dev] = p;
        }
        const double tol = math == "f32" ? 1e-3 : 3e-2;
        CHECK(curve[0].back() < curve[0].front());  // it learns at all
        for (int dev = 1; dev < 3; ++dev) {
            double worst = 0, worst_norm = 0;
            for (int32_t s = 0; s < steps; ++s) {
                worst = std::max(worst, std::fabs(curve[dev][s] - curve[0][s]) / curve[0][s]);
                worst_norm = std::max(worst_norm, std::fabs(gnorm[dev][s] - gnorm[0][s]) / gnorm[0][s]);
            }
            std::printf("cuda train check: %s %d steps, %s: loss %.4f -> %.4f (cpu) vs %.4f -> %.4f, max relative "
                        "difference %.3g (tolerance %.3g); gradient norm max relative difference %.3g\n",
                        math.c_str(), int(steps), dev == 1 ? "host AdamW" : "device AdamW", curve[0].front(),
                        curve[0].back(),
                        curve[dev].front(), curve[dev].back(), worst, tol, worst_norm);
            INFO(math << (dev == 1 ? ", host AdamW" : ", device AdamW"));
            CHECK(worst <= tol);
            CHECK(worst_norm <= 10 * tol);
        }
        // The device optimizer and the host one, on the same device, end at nearly the same weights.
        const double e = normalised_error(final_params[2].data(), final_params[1].data(), final_params[1].size());
        std::printf("cuda train check: %s %d steps: final weights, device vs host AdamW, normalised error %.3g\n",
                    math.c_str(), int(steps), e);
        CHECK(e <= (math == "f32" ? 1e-2 : 1e-1));
    }
#endif
}

TEST_CASE("cuda train: flash attention over several tiles matches the CPU trainer's gradients",
          "[cuda][train][sanitize]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_TRAIN_CUDA
    // Sequences of several 64-row tiles (and one that is not a multiple of 64), head dims 16, 32 and 64: the
    // shapes small_config's 8x8 image (one tile, head dim 8) leaves out.
    struct Shape {
        int32_t side, width, heads;
    };
    for (const char* math : {"bf16", "mixed"})
    for (const Shape& sh : {Shape{16, 64, 4}, Shape{12, 96, 3}, Shape{16, 128, 2}}) {
        INFO("variant " << math << "+flash, image " << sh.side << "x" << sh.side << ", width " << sh.width);
        ModelConfig cfg = small_config(true, sh.width, 1);
        cfg.heads = sh.heads;
        cfg.image_h = cfg.image_w = sh.side;
        const auto params = perturbed_params(cfg, 21);
        const int32_t B = 2, T = cfg.n_ctx();
        const auto tok = random_tokens(size_t(B) * size_t(T), cfg.vocab, 23);
        TrainCompute cpu(cfg, 2);
        auto gpu = make_cuda_step_compute(cfg, math, "flash");
        check_gradients(cpu, *gpu, cfg, params, tok, B, false,
                        std::string(math) + "+flash T " + std::to_string(T) + " head dim " +
                            std::to_string(cfg.head_dim()));
    }
#endif
}

TEST_CASE("cuda train: combinations flash attention does not run are refused with a message", "[train]") {
#ifdef IGPT_TRAIN_CUDA
    // Checked before the GPU is looked for, so these run on machines without one too.
    const ModelConfig cfg = small_config(false);
    auto message = [&](const ModelConfig& c, const char* math, const char* attention) {
        try {
            make_cuda_step_compute(c, math, attention);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();  // accepted (a GPU is present and the combination runs)
    };
    CHECK_THAT(message(cfg, "f32", "flash"), Catch::Contains("--cuda-math bf16"));
    CHECK_THAT(message(cfg, "tf32", "flash"), Catch::Contains("--cuda-math bf16"));
    ModelConfig wide = small_config(false, 512);
    wide.heads = 4;  // head dim 128
    CHECK_THAT(message(wide, "bf16", "flash"), Catch::Contains("head dimension") && Catch::Contains("128"));
    ModelConfig odd = small_config(false, 36);
    odd.heads = 6;  // head dim 6
    CHECK_THAT(message(odd, "bf16", "flash"), Catch::Contains("is 6"));
    CHECK_THAT(message(cfg, "bf16", "tiled"), Catch::Contains("gemm or flash"));
    CHECK_THAT(message(cfg, "mixed", "gemm"), Catch::Contains("mixed runs with flash attention"));
    CHECK_THAT(message(wide, "mixed", "auto"), Catch::Contains("head dimension"));
#else
    WARN("skipped: this build has no CUDA trainer (IGPT_WITH_CUDA is off), so there is nothing to refuse");
#endif
}

TEST_CASE("cuda train: IGPT_CUDA_PROFILE=1 splits the steps' time into GEMMs, attention, optimizer and the rest",
          "[cuda][train]") {
    if (!gpu_or_skip()) return;
#ifdef IGPT_TRAIN_CUDA
    const ModelConfig cfg = small_config(true);
    const int32_t B = 2, T = cfg.n_ctx();
    const auto specs = param_layout(cfg);
    const auto mask = decay_mask(specs);
    std::vector<float> p = perturbed_params(cfg, 5), m(p.size(), 0.0f), v(p.size(), 0.0f);
    const auto tok = random_tokens(size_t(B) * size_t(T), cfg.vocab, 9);
    for (const Variant& var : {kVariants[1], kVariants[3]}) {
        INFO("variant " << variant_name(var));
        setenv("IGPT_CUDA_PROFILE", "1", 1);
        auto gpu = make_cuda_step_compute(cfg, var.math, var.attention);
        unsetenv("IGPT_CUDA_PROFILE");
        gpu->set_state(p.data(), m.data(), v.data(), mask.data());
        for (int64_t s = 1; s <= 3; ++s)
            gpu->train_step(tok.data(), B, 1, 1.0f / float(B * T), 1.0f, s, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f);
        gpu->forward_nll(p.data(), tok.data(), B);  // an evaluation: not a step, not in the profile
        const std::string r = gpu->profile();
        std::printf("cuda train check: %s %s\n", variant_name(var).c_str(), r.c_str());
        CHECK_THAT(r, Catch::StartsWith("profile: GEMMs ") && Catch::Contains("TFLOP/s") &&
                          Catch::Contains("attention") && Catch::Contains("optimizer") &&
                          Catch::EndsWith("over 3"));
        double step_ms = 0;
        const size_t at = r.find("per step of ");
        REQUIRE(at != std::string::npos);
        step_ms = std::atof(r.c_str() + at + 12);
        CHECK(step_ms > 0);
        CHECK(gpu->profile().empty());  // and a fresh start
    }
    // Without the variable there is no profile.
    auto plain = make_cuda_step_compute(cfg, "bf16", "gemm");
    plain->forward_nll(p.data(), tok.data(), B);
    CHECK(plain->profile().empty());
#endif
}
