// CPU kernels shared by inference and training. Row-major everywhere.
#pragma once
#include <cstdint>
#include <functional>

namespace igpt {
class ThreadPool;

// Y[M, N] = X[M, K] · W[N, K]^T (+ bias[N] if non-null); W is a weight in [out, in] layout.
// Native builds use Eigen; the Emscripten build uses the wasm SIMD kernel in matmul_wasm.cpp.
// Parallel over N (output features) on `pool` (may be null).
void matmul_nt(const float* X, int64_t M, int64_t K, const float* W, int64_t N, const float* bias, float* Y,
               ThreadPool* pool);

// Decode steps multiply a few rows of X (one per sequence) by every weight matrix, so they stream the
// weights from memory once per token. For them the CPU backend keeps each matrix in "panels": panel p holds
// output features [8p, 8p + 8) as K rows of 8 values (W[8p + j][k] at P[(p * K + k) * 8 + j]), the last
// panel zero-padded. A panel is one contiguous stream, read once per step and applied to all rows of X
// from registers (each row's k-th value broadcast against the panel's k-th row of 8: no horizontal sums).
// The decode steps of samples that share a prompt use the same kernel for its attention: the prompt's keys
// and values, fixed from then on, are packed once, and each step streams them once for all samples.
// Native AVX2 + FMA + F16C builds: 8 x 8 tiles, one FMA chain per output, prefetch ahead of the stream;
// f16 panels hold a half-precision model file's values exactly (half the bytes) and widen with F16C
// (IGPT_HAVE_F16_PANELS). The browser build (wasm SIMD, matmul_wasm.cpp): 4 rows x 8 features, f32 only.
// Elsewhere the backend uses matmul_nt.
#if !defined(__EMSCRIPTEN__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define IGPT_HAVE_PANELS 1
#define IGPT_HAVE_F16_PANELS 1
#elif defined(__EMSCRIPTEN__) && defined(__wasm_simd128__)
#define IGPT_HAVE_PANELS 1
#define IGPT_HAVE_F16_PANELS 0
#else
#define IGPT_HAVE_PANELS 0
#define IGPT_HAVE_F16_PANELS 0
#endif
#if IGPT_HAVE_PANELS
inline int64_t panels_size(int64_t N, int64_t K) { return (N + 7) / 8 * 8 * K; }
// Packs the (N, K) matrix whose element (n, k) is W[n * n_stride + k * k_stride]: a weight in [out, in]
// layout is (K, 1); the cached values V (T, D) seen as V^T, for O = P · V, are (1, D).
void pack_panels(const float* W, int64_t N, int64_t K, int64_t n_stride, int64_t k_stride, float* P);
// Y[M, N] (row stride ldy) = X[M, K] (row stride ldx) · W^T (+ bias) from W's panels; parallel over panels
// on `pool` (may be null). Each output is one multiply-add chain over k on one thread, so the result is the
// same to the bit whatever the thread count and whatever M is.
void matmul_panels(const float* X, int64_t ldx, int64_t M, int64_t K, const float* P, int64_t N, const float* bias,
                   float* Y, int64_t ldy, ThreadPool* pool);
// How the panel products split (both builds): fn(p0, p1) over the panels [0, (N + 7) / 8), on the caller
// alone when the product (M * N * K multiply-adds) is small, else across `pool` in up to 8 chunks a thread
// (memory-bound: with 2 a thread, one thread often waited ~4% for the other).
void for_panel_ranges(int64_t M, int64_t N, int64_t K, ThreadPool* pool, const std::function<void(int64_t, int64_t)>& fn);
#endif
#if IGPT_HAVE_F16_PANELS
void pack_panels(const float* W, int64_t N, int64_t K, int64_t n_stride, int64_t k_stride, uint16_t* P);  // to f16
void matmul_panels(const float* X, int64_t ldx, int64_t M, int64_t K, const uint16_t* P, int64_t N, const float* bias,
                   float* Y, int64_t ldy, ThreadPool* pool);
#endif

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
