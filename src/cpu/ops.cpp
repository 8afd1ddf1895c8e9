// CPU kernels: GEMM through Eigen (native), RMS norm, the quick-GELU activation.
#include "ops.h"

#include <cmath>

#include "thread_pool.h"

#ifndef __EMSCRIPTEN__
#include <Eigen/Core>
#endif

namespace igpt {

#ifndef __EMSCRIPTEN__
void matmul_nt(const float* X, int64_t M, int64_t K, const float* W, int64_t N, const float* bias, float* Y,
               ThreadPool* pool) {
    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using Stride = Eigen::OuterStride<>;
    auto run = [&](int64_t n0, int64_t n1, int32_t) {
        const int64_t nn = n1 - n0;
        Eigen::Map<const RowMat> x(X, M, K);
        Eigen::Map<const RowMat> w(W + n0 * K, nn, K);
        Eigen::Map<RowMat, 0, Stride> y(Y + n0, M, nn, Stride(N));
        if (M == 1) {
            // GEMV: y^T = W x, row-major W -> contiguous dot products.
            Eigen::Map<Eigen::VectorXf> yv(Y + n0, nn);
            yv.noalias() = w * x.row(0).transpose();
        } else {
            y.noalias() = x * w.transpose();
        }
        if (bias)
            for (int64_t i = 0; i < M; ++i)
                for (int64_t j = 0; j < nn; ++j) Y[i * N + n0 + j] += bias[n0 + j];
    };
    // Split the output features across threads in multiples of 16 (whole SIMD panels).
    const int64_t flops = M * N * K;
    if (!pool || pool->size() == 1 || flops < (1 << 15)) {
        run(0, N, 0);
        return;
    }
    const int64_t blocks = (N + 15) / 16;
    pool->parallel_for(blocks, 1, [&](int64_t b0, int64_t b1, int32_t t) {
        run(b0 * 16, std::min(N, b1 * 16), t);
    });
}
#endif

void rms_norm(const float* x, const float* g, float eps, int64_t M, int64_t C, float* out) {
    for (int64_t i = 0; i < M; ++i) {
        const float* xi = x + i * C;
        float* oi = out + i * C;
        float ss = 0;
        for (int64_t c = 0; c < C; ++c) ss += xi[c] * xi[c];
        const float r = 1.0f / std::sqrt(ss / float(C) + eps);
        for (int64_t c = 0; c < C; ++c) oi[c] = xi[c] * r * g[c];
    }
}

void quick_gelu(float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.0f + std::exp(-1.702f * x[i]));
}

}  // namespace igpt
