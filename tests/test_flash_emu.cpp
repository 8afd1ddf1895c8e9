// The CUDA trainer's flash attention kernels (src/train/cuda/flash_attn_kernels.cuh), run on CPU threads by
// tests/cuda_emu (this file is compiled with IGPT_CUDA_EMU), against attention written out in double
// precision here: o and the log-sum-exp of the forward, dq, dk, dv of the backward. So the kernels' tiling,
// causal masks, online softmax and fragment bookkeeping are checked on every machine, with or without a GPU;
// on a GPU, test_train_cuda.cpp checks the real thing against the CPU trainer.
//
// The reference takes the kernels' inputs rounded to bf16 (what the kernels multiply), so what is left is the
// kernels' own rounding of the probabilities and their gradients to bf16, f32 accumulation, and (with bf16
// tensors, the trainer's mixed precision) the outputs' rounding: the tolerance is 1e-2 of each output's
// largest value (2e-2 with bf16 tensors); each case prints what it measured.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include "flash_attn_kernels.cuh"
#include "compare.h"

namespace fl = igpt::cuda::flash;
using igpt_test::normalised_error;

namespace {

using igpt::cuda::bf16_round;

struct Case {
    int32_t B, T, NH, D;
};

struct Reference {
    std::vector<double> o, lse2, dqkv;  // (B*T, C), (B*NH, T), (B*T, 3C)
};

// Causal attention per (image, head) in double: S = q k^T, P = softmax(scale S) over keys <= query, o = P v;
// dv = P^T do, dP = do v^T, dS = P (dP - rowsum(P dP)), dq = scale dS k, dk = scale dS^T q.
Reference reference(const Case& c, const std::vector<float>& qkv, const std::vector<float>& dout, float scale) {
    const int64_t C = int64_t(c.NH) * c.D, T = c.T;
    Reference r;
    r.o.assign(size_t(c.B * T * C), 0.0);
    r.lse2.assign(size_t(c.B * c.NH * T), 0.0);
    r.dqkv.assign(size_t(c.B * T * 3 * C), 0.0);
    std::vector<double> P(size_t(T * T)), dP(size_t(T * T));
    for (int32_t b = 0; b < c.B; ++b)
        for (int32_t h = 0; h < c.NH; ++h) {
            auto q = [&](int64_t t, int d) { return double(bf16_round(qkv[size_t((b * T + t) * 3 * C + h * c.D + d)])); };
            auto k = [&](int64_t t, int d) { return double(bf16_round(qkv[size_t((b * T + t) * 3 * C + C + h * c.D + d)])); };
            auto v = [&](int64_t t, int d) { return double(bf16_round(qkv[size_t((b * T + t) * 3 * C + 2 * C + h * c.D + d)])); };
            auto dO = [&](int64_t t, int d) { return double(bf16_round(dout[size_t((b * T + t) * C + h * c.D + d)])); };
            for (int64_t i = 0; i < T; ++i) {
                double mx = -INFINITY;
                for (int64_t j = 0; j <= i; ++j) {
                    double s = 0;
                    for (int d = 0; d < c.D; ++d) s += q(i, d) * k(j, d);
                    P[size_t(i * T + j)] = scale * s;
                    mx = std::max(mx, scale * s);
                }
                double sum = 0;
                for (int64_t j = 0; j <= i; ++j) sum += std::exp(P[size_t(i * T + j)] - mx);
                r.lse2[size_t((b * c.NH + h) * T + i)] = (mx + std::log(sum)) / std::log(2.0);
                for (int64_t j = 0; j <= i; ++j) P[size_t(i * T + j)] = std::exp(P[size_t(i * T + j)] - mx) / sum;
                for (int d = 0; d < c.D; ++d) {
                    double o = 0;
                    for (int64_t j = 0; j <= i; ++j) o += P[size_t(i * T + j)] * v(j, d);
                    r.o[size_t((b * T + i) * C + h * c.D + d)] = o;
                }
            }
            for (int64_t i = 0; i < T; ++i) {
                double dot = 0;
                for (int64_t j = 0; j <= i; ++j) {
                    double s = 0;
                    for (int d = 0; d < c.D; ++d) s += dO(i, d) * v(j, d);
                    dP[size_t(i * T + j)] = s;
                    dot += P[size_t(i * T + j)] * s;
                }
                for (int64_t j = 0; j <= i; ++j) dP[size_t(i * T + j)] = P[size_t(i * T + j)] * (dP[size_t(i * T + j)] - dot);
            }
            double* dq = r.dqkv.data() + h * c.D;
            for (int64_t i = 0; i < T; ++i)
                for (int d = 0; d < c.D; ++d) {
                    double sq = 0, sk = 0, sv = 0;
                    for (int64_t j = 0; j <= i; ++j) sq += dP[size_t(i * T + j)] * k(j, d);
                    for (int64_t j = i; j < T; ++j) {
                        sk += dP[size_t(j * T + i)] * q(j, d);
                        sv += P[size_t(j * T + i)] * dO(j, d);
                    }
                    const int64_t row = (b * T + i) * 3 * C;
                    dq[row + d] = scale * sq;
                    dq[row + C + d] = scale * sk;
                    dq[row + 2 * C + d] = sv;
                }
        }
    return r;
}


}  // namespace

TEST_CASE("flash attention kernels (run on CPU threads) match double-precision attention", "[flash][train]") {
    // head dims 8 (padded to 16), 16, 32, 48 (padded to 64) and 64; T a multiple of the 64-row tile or not
    const Case cases[] = {{2, 64, 2, 16}, {1, 100, 3, 8}, {1, 130, 2, 32}, {1, 72, 1, 48}, {1, 128, 1, 64}};
    for (const Case& c : cases) {
        INFO("B " << c.B << ", T " << c.T << ", heads " << c.NH << ", head dim " << c.D);
        const int64_t C = int64_t(c.NH) * c.D, M = int64_t(c.B) * c.T;
        const float scale = 1.0f / std::sqrt(float(c.D));
        std::mt19937 gen(uint32_t(c.T * 31 + c.D));
        std::normal_distribution<float> nd(0.0f, 1.0f);
        std::vector<float> qkv(size_t(M * 3 * C)), dout(size_t(M * C));
        for (float& x : qkv) x = 1.5f * nd(gen);  // peaked enough that the softmax is not nearly uniform
        for (float& x : dout) x = nd(gen);
        const fl::Shape sh = fl::make_shape(c.T, c.NH, c.D, scale);
        const dim3 tiles = fl::tile_grid(sh, c.B), threads(fl::kThreads);
        // The kernels for storage S (f32, or bf16 as uint16_t); outputs start as NaN: every element must be
        // written. Returns o, lse2, dqkv in f32.
        auto run = [&](auto dp, auto storage, std::vector<float>& o32, std::vector<float>& lse2,
                       std::vector<float>& dqkv32) {
            constexpr int DP = decltype(dp)::value;
            using S = decltype(storage);
            auto to_s = [](const std::vector<float>& v) {
                std::vector<S> r(v.size());
                for (size_t i = 0; i < v.size(); ++i) {
                    if constexpr (std::is_same_v<S, float>) r[i] = v[i];
                    else r[i] = igpt::cuda::bf16_bits(v[i]);
                }
                return r;
            };
            auto to_f = [](const std::vector<S>& v) {
                std::vector<float> r(v.size());
                for (size_t i = 0; i < v.size(); ++i) r[i] = igpt::cuda::load_f(&v[i]);
                return r;
            };
            const std::vector<S> q = to_s(qkv), d = to_s(dout);
            const float nan = std::numeric_limits<float>::quiet_NaN();
            std::vector<S> o = to_s(std::vector<float>(size_t(M * C), nan)),
                           dq = to_s(std::vector<float>(size_t(M * 3 * C), nan));
            std::vector<float> delta(size_t(c.B * c.NH * c.T), nan);
            lse2.assign(delta.size(), nan);
            cuda_emu::launch(tiles, threads, [&] { fl::forward_kernel<DP, S>(q.data(), o.data(), lse2.data(), sh); });
            cuda_emu::launch(fl::delta_grid(sh, c.B), threads,
                             [&] { fl::delta_kernel<S>(d.data(), o.data(), delta.data(), M, sh); });
            cuda_emu::launch(tiles, threads,
                             [&] { fl::dkdv_kernel<DP, S>(q.data(), d.data(), lse2.data(), delta.data(), dq.data(), sh); });
            cuda_emu::launch(tiles, threads,
                             [&] { fl::dq_kernel<DP, S>(q.data(), d.data(), lse2.data(), delta.data(), dq.data(), sh); });
            o32 = to_f(o);
            dqkv32 = to_f(dq);
        };
        auto run_dp = [&](auto storage, std::vector<float>& o, std::vector<float>& lse2, std::vector<float>& dqkv) {
            fl::dispatch_dp(c.D, [&](auto dp) { run(dp, storage, o, lse2, dqkv); });
        };

        const Reference ref = reference(c, qkv, dout, scale);
        const auto part = [&](int which) { return [&, which](size_t i) { return int64_t(i) % (3 * C) / C == which; }; };
        for (const bool bf16 : {false, true}) {  // the trainer's --cuda-math bf16 (f32 tensors) and mixed
            std::vector<float> o, lse2, dqkv;
            if (bf16) run_dp(uint16_t{}, o, lse2, dqkv);
            else run_dp(float{}, o, lse2, dqkv);
            const double e_o = normalised_error(o.data(), ref.o.data(), o.size());
            double e_lse = 0;
            for (size_t i = 0; i < lse2.size(); ++i)
                e_lse = std::isnan(lse2[i]) ? INFINITY : std::max(e_lse, std::fabs(double(lse2[i]) - ref.lse2[i]));
            auto dqkv_error = [&](int which) {
                return normalised_error(dqkv.data(), ref.dqkv.data(), dqkv.size(), part(which));
            };
            const double e_dq = dqkv_error(0), e_dk = dqkv_error(1), e_dv = dqkv_error(2);
            std::printf("flash emu check: %s B %d T %d heads %d dim %d: o %.2e, lse2 %.2e (abs), dq %.2e, dk %.2e, "
                        "dv %.2e\n",
                        bf16 ? "bf16" : "f32 ", c.B, c.T, c.NH, c.D, e_o, e_lse, e_dq, e_dk, e_dv);
            INFO((bf16 ? "bf16 tensors" : "f32 tensors"));
            // bf16 tensors: o itself is rounded, and delta = do . o with it, so dS's rows no longer sum to
            // zero as closely; dq and dk, sums with much cancellation, show it most (measured up to 1.1e-2)
            const double tol = bf16 ? 2e-2 : 1e-2;
            CHECK(e_o < tol);
            CHECK(e_lse < 1e-2);
            CHECK(e_dq < tol);
            CHECK(e_dk < tol);
            CHECK(e_dv < tol);
        }
    }
}

TEST_CASE("cuda_emu: the mma fragment layout multiplies as the PTX ISA describes", "[flash]") {
    // Each lane loads its fragments from A (16x16) and B (16x8) by the documented layout; the product must
    // be A·B, element by element, independent of the layout used inside the emulated instruction.
    float A[16][16], B[16][8];
    for (int r = 0; r < 16; ++r)
        for (int k = 0; k < 16; ++k) A[r][k] = float((r * 3 + k * 5) % 7 - 3);
    for (int k = 0; k < 16; ++k)
        for (int n = 0; n < 8; ++n) B[k][n] = float((k * 2 + n * 3) % 5 - 2);
    float D[16][8] = {};
    cuda_emu::launch(dim3(1), dim3(32), [&] {
        const int lane = int(threadIdx.x), g = lane / 4, t = lane % 4;
        const uint32_t a[4] = {igpt::cuda::pack_bf16(A[g][2 * t], A[g][2 * t + 1]), igpt::cuda::pack_bf16(A[g + 8][2 * t], A[g + 8][2 * t + 1]),
                               igpt::cuda::pack_bf16(A[g][2 * t + 8], A[g][2 * t + 9]),
                               igpt::cuda::pack_bf16(A[g + 8][2 * t + 8], A[g + 8][2 * t + 9])};
        const uint32_t b[2] = {igpt::cuda::pack_bf16(B[2 * t][g], B[2 * t + 1][g]), igpt::cuda::pack_bf16(B[2 * t + 8][g], B[2 * t + 9][g])};
        float d[4] = {1.0f, 1.0f, 1.0f, 1.0f};
        fl::mma_bf16(d, a, b);
        D[g][2 * t] = d[0];
        D[g][2 * t + 1] = d[1];
        D[g + 8][2 * t] = d[2];
        D[g + 8][2 * t + 1] = d[3];
    });
    for (int r = 0; r < 16; ++r)
        for (int n = 0; n < 8; ++n) {
            float want = 1.0f;
            for (int k = 0; k < 16; ++k) want += A[r][k] * B[k][n];
            CHECK(D[r][n] == want);
        }
}
