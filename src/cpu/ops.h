// CPU kernels shared by inference and training. Row-major everywhere.
#pragma once
#include <cstdint>

namespace igpt {
class ThreadPool;

// Y[M, N] = X[M, K] · W[N, K]^T (+ bias[N] if non-null); W is a weight in [out, in] layout.
// Native builds use Eigen; the Emscripten build uses the wasm SIMD kernel in matmul_wasm.cpp.
// Parallel over N (output features) on `pool` (may be null).
void matmul_nt(const float* X, int64_t M, int64_t K, const float* W, int64_t N, const float* bias, float* Y,
               ThreadPool* pool);

// out[i, :] = x[i, :] * rsqrt(mean(x[i, :]^2) + eps) * g   for M rows of C
void rms_norm(const float* x, const float* g, float eps, int64_t M, int64_t C, float* out);

// x * sigmoid(1.702 x), in place
void quick_gelu(float* x, int64_t n);

}  // namespace igpt
