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

// Attention products for few query rows (decode steps; always in the browser build, where Eigen is scalar
// code); single-threaded, one (sequence, head) per call. AVX2 natively (ops.cpp), wasm SIMD in
// matmul_wasm.cpp. S[n, tk] = Q[n, D] · K[tk, D]^T with strided rows of Q and K, S dense.
void attn_scores(const float* Q, int64_t ldq, const float* K, int64_t ldk, int64_t n, int64_t tk, int64_t D, float* S);
// O[n, D] (row stride ldo) = P[n, tk] · V[tk, D] (row stride ldv).
void attn_values(const float* P, int64_t n, int64_t tk, const float* V, int64_t ldv, int64_t D, float* O, int64_t ldo);

// out[i, :] = x[i, :] * rsqrt(mean(x[i, :]^2) + eps) * g   for M rows of C
void rms_norm(const float* x, const float* g, float eps, int64_t M, int64_t C, float* out);

// x * sigmoid(1.702 x), in place
void quick_gelu(float* x, int64_t n);

}  // namespace igpt
