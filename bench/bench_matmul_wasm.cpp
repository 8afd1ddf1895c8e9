// Benchmark + check of the wasm SIMD matmul_nt (src/cpu/matmul_wasm.cpp) against Eigen, under node.
// Build and run (from the repo root; needs build-web/sysinc from scripts/build_web.sh):
//   export NODE_PATH=/usr/share/nodejs
//   em++ -O3 -msimd128 -pthread -std=c++17 -Isrc -isystem build-web/sysinc -DEIGEN_DONT_PARALLELIZE \
//     bench/bench_matmul_wasm.cpp src/cpu/matmul_wasm.cpp src/cpu/thread_pool.cpp \
//     -sPTHREAD_POOL_SIZE=4 -sEXIT_RUNTIME=1 -sALLOW_MEMORY_GROWTH=1 -o build-web/bench_matmul.js
//   node --no-experimental-fetch build-web/bench_matmul.js [threads]
#include <Eigen/Core>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "cpu/ops.h"
#include "cpu/thread_pool.h"

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

template <class F>
static double time_it(F&& f, double flops) {
    f();  // warm-up
    int reps = 0;
    double t0 = now_s(), t = 0;
    do { f(); ++reps; t = now_s() - t0; } while (t < 0.3);
    return flops * reps / t * 1e-9;
}

int main(int argc, char** argv) {
    const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
    igpt::ThreadPool pool(threads);
    struct Shape { int64_t M, K, N; const char* what; };
    const Shape shapes[] = {
        {1, 128, 384, "tiny qkv decode"},   {1, 128, 512, "tiny fc/head decode"},
        {1, 512, 128, "tiny mlp.proj decode"}, {8, 128, 512, "tiny fc, batch 8"},
        {1, 512, 2048, "base fc decode"},   {1, 2048, 512, "base mlp.proj decode"},
        {256, 256, 256, "256^3"},           {512, 128, 384, "tiny qkv prefill 512"},
        {512, 512, 1536, "base qkv prefill 512"}, {1024, 512, 2048, "base fc prefill 1024"},
        {13, 130, 67, "odd sizes"},
    };
    std::mt19937 rng(1);
    std::normal_distribution<float> nd(0.f, 1.f);
    std::printf("threads=%d   GFLOP/s: simd kernel vs Eigen (wasm, -msimd128; Eigen single-threaded)\n", threads);
    bool ok = true;
    for (const Shape& s : shapes) {
        std::vector<float> X(s.M * s.K), W(s.N * s.K), b(s.N), Y(s.M * s.N), Ye(s.M * s.N);
        for (auto& v : X) v = nd(rng);
        for (auto& v : W) v = nd(rng);
        for (auto& v : b) v = nd(rng);
        igpt::matmul_nt(X.data(), s.M, s.K, W.data(), s.N, b.data(), Y.data(), &pool);
        double maxerr = 0;
        for (int64_t m = 0; m < s.M; ++m)
            for (int64_t n = 0; n < s.N; ++n) {
                double r = b[n];
                for (int64_t k = 0; k < s.K; ++k) r += double(X[m * s.K + k]) * W[n * s.K + k];
                maxerr = std::max(maxerr, std::abs(r - Y[m * s.N + n]) / std::sqrt(double(s.K)));
            }
        if (maxerr > 1e-4) ok = false;
        Eigen::Map<const RowMat> Xm(X.data(), s.M, s.K), Wm(W.data(), s.N, s.K);
        Eigen::Map<RowMat> Ym(Ye.data(), s.M, s.N);
        Eigen::Map<const Eigen::RowVectorXf> bm(b.data(), s.N);
        const double flops = 2.0 * s.M * s.N * s.K;
        double g_simd = time_it([&] { igpt::matmul_nt(X.data(), s.M, s.K, W.data(), s.N, b.data(), Y.data(), &pool); }, flops);
        double g_eig = time_it([&] { Ym.noalias() = Xm * Wm.transpose(); Ym.rowwise() += bm; }, flops);
        std::printf("  M=%5lld K=%5lld N=%5lld  %-22s simd %6.2f   eigen %6.2f   x%.2f   maxerr %.1e\n",
                    (long long)s.M, (long long)s.K, (long long)s.N, s.what, g_simd, g_eig, g_simd / g_eig, maxerr);
    }
    // Attention of one (sequence, head): K/V rows strided by C = 4 D, as in the CPU backend's KV cache.
    using Stride = Eigen::OuterStride<>;
    for (int64_t tk : {256, 1024}) {
        const int64_t D = 32, C = 128, n = 1;
        std::vector<float> Q(n * 3 * C), Kc(tk * C), Vc(tk * C), S(n * tk), Se(n * tk), O(n * C), Oe(n * C);
        for (auto* v : {&Q, &Kc, &Vc})
            for (auto& x : *v) x = nd(rng);
        Eigen::Map<const RowMat, 0, Stride> Qm(Q.data(), n, D, Stride(3 * C)), Km(Kc.data(), tk, D, Stride(C)),
            Vm(Vc.data(), tk, D, Stride(C));
        Eigen::Map<RowMat> Sm(Se.data(), n, tk);
        Eigen::Map<RowMat, 0, Stride> Om(Oe.data(), n, D, Stride(C));
        const double flops = 2.0 * n * tk * D;
        double g1 = time_it([&] { igpt::attn_scores(Q.data(), 3 * C, Kc.data(), C, n, tk, D, S.data(), tk); }, flops);
        double e1 = time_it([&] { Sm.noalias() = Qm * Km.transpose(); }, flops);
        double g2 = time_it([&] { igpt::attn_values(S.data(), tk, n, tk, Vc.data(), C, D, O.data(), C, false); }, flops);
        double e2 = time_it([&] { Om.noalias() = Sm * Vm; }, flops);
        double err = 0;
        for (int64_t i = 0; i < tk; ++i) err = std::max(err, double(std::abs(S[i] - Se[i])));
        for (int64_t d = 0; d < D; ++d) err = std::max(err, double(std::abs(O[d] - Oe[d])) / std::sqrt(double(tk)));
        if (err > 1e-3) ok = false;
        std::printf("  attention tk=%5lld D=%lld: scores simd %5.2f eigen %5.2f | values simd %5.2f eigen %5.2f  maxerr %.1e\n",
                    (long long)tk, (long long)D, g1, e1, g2, e2, err);
    }
    std::printf(ok ? "matmul_wasm: all shapes match the reference\n" : "matmul_wasm: MISMATCH\n");
    return ok ? 0 : 1;
}
