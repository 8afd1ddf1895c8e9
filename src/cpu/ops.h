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

// The same for few rows of X (decode steps) with W in IEEE half precision (a model file stored as f16
// keeps its weights that way in memory: half the bytes to stream per token, and exactly the file's values).
// Native AVX2 + F16C only: have_matmul_f16() says whether this build has it.
bool have_matmul_f16();
void matmul_nt_f16(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, const float* bias, float* Y,
                   ThreadPool* pool);

// Attention products for one (sequence, head), single-threaded (the backend runs one per thread): AVX2
// natively (ops.cpp), wasm SIMD in matmul_wasm.cpp (where Eigen is scalar code).
// S[n, tk] (row stride lds) = Q[n, D] · K[tk, D]^T with strided rows of Q (ldq) and K (ldk).
void attn_scores(const float* Q, int64_t ldq, const float* K, int64_t ldk, int64_t n, int64_t tk, int64_t D, float* S,
                 int64_t lds);
// O[n, D] (row stride ldo) = P[n, tk] (row stride ldp) · V[tk, D] (row stride ldv); `accumulate` adds to O.
void attn_values(const float* P, int64_t ldp, int64_t n, int64_t tk, const float* V, int64_t ldv, int64_t D, float* O,
                 int64_t ldo, bool accumulate);

// C[M, N] = A[M, K] · B[K, N] (`accumulate` adds to C), single-threaded, for products with a thin side
// (one head's 32 or 64 features: the trainer's attention, forward and backward). A is strided both ways,
// element (r, k) at A[r * a_rs + k * a_ks], so a product with A^T needs no copy; B and C are row-major
// with strides ldb, ldc.
// AVX2: 6 x 16 register tiles over 256-deep slices of K; on the training attention shapes it measured
// 1.5-2x Eigen's GEMM (which packs both operands on every call). Keep row strides off multiples of 4 KiB:
// a column walk over such rows falls into one L1 set. Elsewhere a plain loop.
void gemm_strided(int64_t M, int64_t N, int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B,
                  int64_t ldb, float* C, int64_t ldc, bool accumulate);

// In place: row[0, valid) = softmax(scale * row[0, valid)), row[valid, n) = 0 (the causal mask).
void softmax_scaled(float* row, int64_t valid, int64_t n, float scale);

// out[i, :] = x[i, :] * rsqrt(mean(x[i, :]^2) + eps) * g   for M rows of C
void rms_norm(const float* x, const float* g, float eps, int64_t M, int64_t C, float* out);

// x * sigmoid(1.702 x), in place
void quick_gelu(float* x, int64_t n);

}  // namespace igpt
