// CPU kernels: GEMM through Eigen (native), RMS norm, the quick-GELU activation.
#include "ops.h"

#include <cmath>

#include "thread_pool.h"

#ifndef __EMSCRIPTEN__
#include <Eigen/Core>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#include <algorithm>

namespace igpt {

#ifndef __EMSCRIPTEN__

#if defined(__AVX2__) && defined(__FMA__)
namespace {

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Eight weights as floats: f32 loads directly, f16 (the file's half precision) converts with F16C.
inline __m256 load8(const float* w) { return _mm256_loadu_ps(w); }
inline __m256 load8(const uint16_t* w) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w))); }
inline float load1(const float* w) { return *w; }
inline float load1(const uint16_t* w) { return _cvtsh_ss(*w); }

// MB rows of X against 4 rows of W: 4*MB accumulators stay in registers; W streams through once.
template <int MB, typename WT>
inline void dot_block(const float* X, int64_t K, const WT* W, float* out /* MB x 4 */) {
    __m256 acc[MB][4];
    for (int i = 0; i < MB; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        const __m256 w0 = load8(W + k), w1 = load8(W + K + k);
        const __m256 w2 = load8(W + 2 * K + k), w3 = load8(W + 3 * K + k);
        for (int i = 0; i < MB; ++i) {
            const __m256 x = _mm256_loadu_ps(X + i * K + k);
            acc[i][0] = _mm256_fmadd_ps(x, w0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(x, w1, acc[i][1]);
            acc[i][2] = _mm256_fmadd_ps(x, w2, acc[i][2]);
            acc[i][3] = _mm256_fmadd_ps(x, w3, acc[i][3]);
        }
    }
    for (int i = 0; i < MB; ++i)
        for (int j = 0; j < 4; ++j) {
            float t = hsum(acc[i][j]);
            for (int64_t kk = k; kk < K; ++kk) t += X[i * K + kk] * load1(W + j * K + kk);
            out[i * 4 + j] = t;
        }
}

// Y[:, n0:n1] for small M (decode steps): every 4-row panel of W is read from memory once and applied to
// all M rows of X while it sits in L1; Eigen's GEMM would pack (copy) all of W on every call instead.
template <typename WT>
void matmul_small_m(const float* X, int64_t M, int64_t K, const WT* W, int64_t N, const float* bias, float* Y,
                    int64_t n0, int64_t n1) {
    float out[8];
    int64_t n = n0;
    for (; n + 4 <= n1; n += 4) {
        const WT* w = W + n * K;
        // Ask for the next panel now, so that its memory latency overlaps this panel's M rows.
        if (n + 8 <= n1) {
            const char* next = reinterpret_cast<const char*>(w + 4 * K);
            for (int64_t b = 0; b < int64_t(4 * K * sizeof(WT)); b += 64) _mm_prefetch(next + b, _MM_HINT_T0);
        }
        int64_t m = 0;
        for (; m + 2 <= M; m += 2) {
            dot_block<2>(X + m * K, K, w, out);
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 4; ++j) Y[(m + i) * N + n + j] = out[i * 4 + j] + (bias ? bias[n + j] : 0.0f);
        }
        if (m < M) {
            dot_block<1>(X + m * K, K, w, out);
            for (int j = 0; j < 4; ++j) Y[m * N + n + j] = out[j] + (bias ? bias[n + j] : 0.0f);
        }
    }
    for (; n < n1; ++n)
        for (int64_t m = 0; m < M; ++m) {
            float t = bias ? bias[n] : 0.0f;
            for (int64_t k = 0; k < K; ++k) t += X[m * K + k] * load1(W + n * K + k);
            Y[m * N + n] = t;
        }
}

}  // namespace
constexpr int64_t kSmallM = 16;  // up to this many rows the streaming kernel beats Eigen's packed GEMM
#else
constexpr int64_t kSmallM = 0;
#endif

namespace {
// Runs fn(n0, n1, thread) over the output features [0, N), split across the pool in multiples of 16 (whole
// SIMD panels); on the caller alone when the product (M*N*K multiply-adds) is too small to share.
template <typename Fn>
void split_columns(int64_t work, int64_t N, ThreadPool* pool, const Fn& fn) {
    if (!pool || pool->size() == 1 || work < (1 << 15)) {
        fn(0, N, 0);
        return;
    }
    pool->parallel_for((N + 15) / 16, 1, [&](int64_t b0, int64_t b1, int32_t t) {
        fn(b0 * 16, std::min(N, b1 * 16), t);
    });
}
}  // namespace

void matmul_nt(const float* X, int64_t M, int64_t K, const float* W, int64_t N, const float* bias, float* Y,
               ThreadPool* pool) {
    using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
    using Stride = Eigen::OuterStride<>;
    auto run = [&](int64_t n0, int64_t n1, int32_t) {
#if defined(__AVX2__) && defined(__FMA__)
        if (M <= kSmallM) {
            matmul_small_m(X, M, K, W, N, bias, Y, n0, n1);
            return;
        }
#endif
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
    split_columns(M * N * K, N, pool, run);
}

bool have_matmul_f16() {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    return true;
#else
    return false;
#endif
}

void matmul_nt_f16(const float* X, int64_t M, int64_t K, const uint16_t* W, int64_t N, const float* bias, float* Y,
                   ThreadPool* pool) {
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    split_columns(M * N * K, N, pool,
                  [&](int64_t n0, int64_t n1, int32_t) { matmul_small_m(X, M, K, W, N, bias, Y, n0, n1); });
#else
    (void)X, (void)M, (void)K, (void)W, (void)N, (void)bias, (void)Y, (void)pool;
#endif
}
#endif

#if defined(__AVX2__) && defined(__FMA__)
void attn_scores(const float* Q, int64_t ldq, const float* K, int64_t ldk, int64_t n, int64_t tk, int64_t D, float* S,
                 int64_t lds) {
    const int64_t D8 = D - D % 8;
    for (int64_t i = 0; i < n; ++i) {
        const float* q = Q + i * ldq;
        float* s = S + i * lds;
        int64_t t = 0;
        for (; t + 4 <= tk; t += 4) {  // four keys at once, reduced together with horizontal adds
            const float* k0 = K + t * ldk;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t d = 0; d < D8; d += 8) {
                const __m256 qv = _mm256_loadu_ps(q + d);
                a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + d), a0);
                a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + ldk + d), a1);
                a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 2 * ldk + d), a2);
                a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k0 + 3 * ldk + d), a3);
            }
            const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
            __m128 r = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            alignas(16) float out[4];
            _mm_store_ps(out, r);
            for (int j = 0; j < 4; ++j) {
                for (int64_t d = D8; d < D; ++d) out[j] += q[d] * k0[j * ldk + d];
                s[t + j] = out[j];
            }
        }
        for (; t < tk; ++t) {
            float acc = 0;
            for (int64_t d = 0; d < D; ++d) acc += q[d] * K[t * ldk + d];
            s[t] = acc;
        }
    }
}

void attn_values(const float* P, int64_t ldp, int64_t n, int64_t tk, const float* V, int64_t ldv, int64_t D, float* O,
                 int64_t ldo, bool accumulate) {
    for (int64_t i = 0; i < n; ++i) {
        const float* p = P + i * ldp;
        float* o = O + i * ldo;
        int64_t d = 0;
        for (; d + 32 <= D; d += 32) {  // 32 output features in four registers, one FMA each per key
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            if (accumulate) {
                a0 = _mm256_loadu_ps(o + d);
                a1 = _mm256_loadu_ps(o + d + 8);
                a2 = _mm256_loadu_ps(o + d + 16);
                a3 = _mm256_loadu_ps(o + d + 24);
            }
            for (int64_t t = 0; t < tk; ++t) {
                const __m256 w = _mm256_broadcast_ss(p + t);
                const float* v = V + t * ldv + d;
                a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v), a0);
                a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8), a1);
                a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 16), a2);
                a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 24), a3);
            }
            _mm256_storeu_ps(o + d, a0);
            _mm256_storeu_ps(o + d + 8, a1);
            _mm256_storeu_ps(o + d + 16, a2);
            _mm256_storeu_ps(o + d + 24, a3);
        }
        for (; d + 8 <= D; d += 8) {
            __m256 a = accumulate ? _mm256_loadu_ps(o + d) : _mm256_setzero_ps();
            for (int64_t t = 0; t < tk; ++t) a = _mm256_fmadd_ps(_mm256_broadcast_ss(p + t), _mm256_loadu_ps(V + t * ldv + d), a);
            _mm256_storeu_ps(o + d, a);
        }
        for (; d < D; ++d) {
            float acc = accumulate ? o[d] : 0.0f;
            for (int64_t t = 0; t < tk; ++t) acc += p[t] * V[t * ldv + d];
            o[d] = acc;
        }
    }
}
namespace {
// One MR x (8 NV) tile of C over K: MR * NV accumulators (at most 12 of the 16 ymm registers, so that the
// NV loads of B and the broadcast of A stay in registers too). TAIL: the last vector is masked by `tm`.
template <int MR, int NV, bool TAIL>
inline void gemm_tile(int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B, int64_t ldb, float* C,
                      int64_t ldc, bool accumulate, __m256i tm) {
    __m256 c[MR][NV];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) c[r][v] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
        const float* b = B + k * ldb;
        __m256 bv[NV];
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v)
            bv[v] = (TAIL && v == NV - 1) ? _mm256_maskload_ps(b + 8 * v, tm) : _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            const __m256 a = _mm256_broadcast_ss(A + r * a_rs + k * a_ks);
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) c[r][v] = _mm256_fmadd_ps(a, bv[v], c[r][v]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
            float* p = C + r * ldc + 8 * v;
            const bool masked = TAIL && v == NV - 1;
            __m256 x = c[r][v];
            if (accumulate) x = _mm256_add_ps(x, masked ? _mm256_maskload_ps(p, tm) : _mm256_loadu_ps(p));
            if (masked)
                _mm256_maskstore_ps(p, tm, x);
            else
                _mm256_storeu_ps(p, x);
        }
}

// All M rows of one column panel (8 NV wide): 6-row tiles, then one tile of the remaining rows.
template <int NV, bool TAIL>
void gemm_panel(int64_t M, int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B, int64_t ldb,
                float* C, int64_t ldc, bool accumulate, __m256i tm) {
    constexpr int MR = 6;
    int64_t i = 0;
    for (; i + MR <= M; i += MR)
        gemm_tile<MR, NV, TAIL>(K, A + i * a_rs, a_rs, a_ks, B, ldb, C + i * ldc, ldc, accumulate, tm);
    const float* a = A + i * a_rs;
    float* c = C + i * ldc;
    switch (M - i) {
        case 1: gemm_tile<1, NV, TAIL>(K, a, a_rs, a_ks, B, ldb, c, ldc, accumulate, tm); break;
        case 2: gemm_tile<2, NV, TAIL>(K, a, a_rs, a_ks, B, ldb, c, ldc, accumulate, tm); break;
        case 3: gemm_tile<3, NV, TAIL>(K, a, a_rs, a_ks, B, ldb, c, ldc, accumulate, tm); break;
        case 4: gemm_tile<4, NV, TAIL>(K, a, a_rs, a_ks, B, ldb, c, ldc, accumulate, tm); break;
        case 5: gemm_tile<5, NV, TAIL>(K, a, a_rs, a_ks, B, ldb, c, ldc, accumulate, tm); break;
        default: break;
    }
}
}  // namespace

void gemm_strided(int64_t M, int64_t N, int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B,
                  int64_t ldb, float* C, int64_t ldc, bool accumulate) {
    if (K == 0) {  // the product is zero
        if (!accumulate)
            for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + N, 0.0f);
        return;
    }
    constexpr int64_t KC = 256;  // a 256 x 16 panel of B (16 KiB) stays in L1 across the row tiles
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t kc = std::min(KC, K - k0);
        const bool acc = accumulate || k0 > 0;
        const float* Ak = A + k0 * a_ks;
        const float* Bk = B + k0 * ldb;
        int64_t j = 0;
        for (; j + 16 <= N; j += 16)
            gemm_panel<2, false>(M, kc, Ak, a_rs, a_ks, Bk + j, ldb, C + j, ldc, acc, __m256i{});
        const int64_t rem = N - j;  // 1..15 columns left: one or two vectors, the last one masked if partial
        if (rem == 0) continue;
        const int last = int(rem > 8 ? rem - 8 : rem);
        alignas(32) int32_t lanes[8];
        for (int t = 0; t < 8; ++t) lanes[t] = t < last ? -1 : 0;
        const __m256i tm = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
        if (rem > 8)
            gemm_panel<2, true>(M, kc, Ak, a_rs, a_ks, Bk + j, ldb, C + j, ldc, acc, tm);
        else
            gemm_panel<1, true>(M, kc, Ak, a_rs, a_ks, Bk + j, ldb, C + j, ldc, acc, tm);
    }
}

#elif !defined(__EMSCRIPTEN__)
void attn_scores(const float* Q, int64_t ldq, const float* K, int64_t ldk, int64_t n, int64_t tk, int64_t D, float* S,
                 int64_t lds) {
    for (int64_t i = 0; i < n; ++i)
        for (int64_t t = 0; t < tk; ++t) {
            float acc = 0;
            for (int64_t d = 0; d < D; ++d) acc += Q[i * ldq + d] * K[t * ldk + d];
            S[i * lds + t] = acc;
        }
}

void attn_values(const float* P, int64_t ldp, int64_t n, int64_t tk, const float* V, int64_t ldv, int64_t D, float* O,
                 int64_t ldo, bool accumulate) {
    for (int64_t i = 0; i < n; ++i)
        for (int64_t d = 0; d < D; ++d) {
            float acc = accumulate ? O[i * ldo + d] : 0.0f;
            for (int64_t t = 0; t < tk; ++t) acc += P[i * ldp + t] * V[t * ldv + d];
            O[i * ldo + d] = acc;
        }
}
#endif

#if !(defined(__AVX2__) && defined(__FMA__))
void gemm_strided(int64_t M, int64_t N, int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B,
                  int64_t ldb, float* C, int64_t ldc, bool accumulate) {
    for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
            float acc = accumulate ? C[i * ldc + j] : 0.0f;
            for (int64_t k = 0; k < K; ++k) acc += A[i * a_rs + k * a_ks] * B[k * ldb + j];
            C[i * ldc + j] = acc;
        }
}
#endif

#ifndef __EMSCRIPTEN__
// Element-wise maths through Eigen's arrays: its exp is vectorised (AVX2 natively), where std::exp in a
// loop is a scalar call per element (it dominated prefill and batched decode before).
using ArrMap = Eigen::Map<Eigen::ArrayXf>;

void softmax_scaled(float* row, int64_t valid, int64_t n, float scale) {
    ArrMap r(row, valid);
    const float mx = r.maxCoeff() * scale;  // scale > 0: max(scale * x) = scale * max(x), rounding included
    r = (r * scale - mx).exp();
    r *= 1.0f / r.sum();
    std::fill(row + valid, row + n, 0.0f);
}

void rms_norm(const float* x, const float* g, float eps, int64_t M, int64_t C, float* out) {
    const Eigen::Map<const Eigen::ArrayXf> gain(g, C);
    for (int64_t i = 0; i < M; ++i) {
        const Eigen::Map<const Eigen::ArrayXf> xi(x + i * C, C);
        const float r = 1.0f / std::sqrt(xi.square().sum() / float(C) + eps);
        ArrMap(out + i * C, C) = xi * r * gain;
    }
}

void quick_gelu(float* x, int64_t n) {
    ArrMap a(x, n);
    a = a / (1.0f + (-1.702f * a).exp());
}
#endif

}  // namespace igpt
