// CPU kernels: GEMM through Eigen and decode products from panel-packed weights (native), attention
// products, RMS norm, softmax, the quick-GELU activation.
#include "ops.h"

#include <cmath>

#include "../half.h"
#include "thread_pool.h"

#ifndef __EMSCRIPTEN__
#include <Eigen/Core>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif
#include <algorithm>
#include <type_traits>

namespace igpt {

#ifndef __EMSCRIPTEN__

#if IGPT_HAVE_PANELS
namespace {

// Eight weights as floats: f32 loads directly, f16 (the file's half precision) converts with F16C.
inline __m256 load8(const float* w) { return _mm256_loadu_ps(w); }
inline __m256 load8(const uint16_t* w) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w))); }

// MR rows of X against NP consecutive panels: MR * NP accumulators of 8 features, each a single FMA chain
// over k (so an output's summation order is the same whatever M is). Few rows take several panels at once
// to keep chains in flight. Several rows' panels are prefetched 2 KiB ahead; a single row's f32 panels are
// not, and it takes two, not four: the decode of one sample streams the weights from memory, and two
// streams per thread without prefetches read them fastest (iGPT-S batch 1, nine interleaved pairs: decode
// 11.0 s against 11.5 s on the mean with four prefetched streams, 8.6-10.1 against 10.3-10.6 s in the
// quietest three; a 300 MB GEMV alone, 24-27 GB/s against 20-21). Prefetching the 8-row tiles' one stream
// still pays (iGPT-S batch 8: 18.6-20.7 s against 21.9-22.1).
template <int MR, int NP, typename WT>
inline void panel_tile(const float* X, int64_t ldx, int64_t K, const WT* P, const float* bias, float* Y, int64_t ldy,
                       int64_t N, int64_t n0) {
    __m256 c[NP][MR];
#pragma GCC unroll 8
    for (int q = 0; q < NP; ++q)
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) c[q][r] = _mm256_setzero_ps();
    constexpr int64_t kLine = 64 / (8 * sizeof(WT));    // k rows per 64-byte line: 2 (f32) or 4 (f16)
    constexpr int64_t kAhead = 2048 / (8 * sizeof(WT));  // prefetch distance, in k rows
    constexpr bool kPrefetch = MR > 1 || sizeof(WT) == 2;
    for (int64_t k = 0; k < K; ++k) {
        if (kPrefetch && k % kLine == 0)
#pragma GCC unroll 8
            for (int q = 0; q < NP; ++q) _mm_prefetch(reinterpret_cast<const char*>(P + (q * K + k + kAhead) * 8), _MM_HINT_T0);
        __m256 w[NP];
#pragma GCC unroll 8
        for (int q = 0; q < NP; ++q) {
            w[q] = load8(P + (q * K + k) * 8);
            __asm__("" : "+x"(w[q]));  // keep it in a register: folded into each FMA it would be loaded MR times
        }
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            const __m256 x = _mm256_broadcast_ss(X + r * ldx + k);
#pragma GCC unroll 8
            for (int q = 0; q < NP; ++q) c[q][r] = _mm256_fmadd_ps(x, w[q], c[q][r]);
        }
    }
#pragma GCC unroll 8
    for (int q = 0; q < NP; ++q) {
        const int64_t n = n0 + 8 * q, valid = std::min<int64_t>(8, N - n);
        if (valid <= 0) break;
        alignas(32) float b[8] = {};
        if (bias) std::copy(bias + n, bias + n + valid, b);
        const __m256 bv = _mm256_load_ps(b);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            const __m256 y = _mm256_add_ps(c[q][r], bv);
            if (valid == 8) {
                _mm256_storeu_ps(Y + r * ldy + n, y);
            } else {
                alignas(32) float t[8];
                _mm256_store_ps(t, y);
                std::copy(t, t + valid, Y + r * ldy + n);
            }
        }
    }
}

#if defined(__AVX512F__)
// AVX-512 builds, 2-8 rows: the same products on 16-wide registers, two panels a register (panel 2q in the
// low half, 2q+1 in the high half). Every lane still runs one FMA chain over k in the same order, so the
// results are those of panel_tile to the bit, on half as many FMA instructions.
inline __m512 load16(const float* lo, const float* hi) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(lo)), _mm256_loadu_ps(hi), 1);
}
inline __m512 load16(const uint16_t* lo, const uint16_t* hi) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(load8(lo)), load8(hi), 1);
}
template <int MR, int NQ, typename WT>
inline void panel_tile2(const float* X, int64_t ldx, int64_t K, const WT* P, const float* bias, float* Y, int64_t ldy,
                        int64_t N, int64_t n0) {
    __m512 c[NQ][MR];
#pragma GCC unroll 8
    for (int q = 0; q < NQ; ++q)
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) c[q][r] = _mm512_setzero_ps();
    constexpr int64_t kLine = 64 / (8 * sizeof(WT)), kAhead = 2048 / (8 * sizeof(WT));
    for (int64_t k = 0; k < K; ++k) {
        if (k % kLine == 0)
#pragma GCC unroll 8
            for (int q = 0; q < 2 * NQ; ++q) _mm_prefetch(reinterpret_cast<const char*>(P + (q * K + k + kAhead) * 8), _MM_HINT_T0);
        __m512 w[NQ];
#pragma GCC unroll 8
        for (int q = 0; q < NQ; ++q) {
            w[q] = load16(P + (2 * q * K + k) * 8, P + ((2 * q + 1) * K + k) * 8);
            __asm__("" : "+v"(w[q]));
        }
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
            const __m512 x = _mm512_set1_ps(X[r * ldx + k]);
#pragma GCC unroll 8
            for (int q = 0; q < NQ; ++q) c[q][r] = _mm512_fmadd_ps(x, w[q], c[q][r]);
        }
    }
#pragma GCC unroll 8
    for (int q = 0; q < NQ; ++q) {
        const int64_t n = n0 + 16 * q, valid = std::min<int64_t>(16, N - n);
        if (valid <= 0) break;
        alignas(64) float b[16] = {};
        if (bias) std::copy(bias + n, bias + n + valid, b);
        const __m512 bv = _mm512_load_ps(b);
        const __mmask16 mask = valid == 16 ? __mmask16(0xffff) : __mmask16((1u << valid) - 1);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) _mm512_mask_storeu_ps(Y + r * ldy + n, mask, _mm512_add_ps(c[q][r], bv));
    }
}
#endif

// Panels [p0, p1) for all M rows: blocks of 8 rows (a panel then comes from L1/L2 for the next block).
template <typename WT>
void panels_range(const float* X, int64_t ldx, int64_t M, int64_t K, const WT* P, int64_t N, const float* bias, float* Y,
                  int64_t ldy, int64_t p0, int64_t p1) {
    for (int64_t m = 0; m < M; m += 8) {
        const float* x = X + m * ldx;
        float* y = Y + m * ldy;
        const int64_t rows = std::min<int64_t>(8, M - m);
        int64_t p = p0;
        const auto run = [&](auto tile, int64_t np) {
            for (; p + np <= p1; p += np) tile(x, ldx, K, P + p * K * 8, bias, y, ldy, N, p * 8);
        };
#if defined(__AVX512F__)
        switch (rows) {
            case 1: break;
            case 2: run(panel_tile2<2, 4, WT>, 8); break;
            case 3: run(panel_tile2<3, 2, WT>, 4); break;
            case 4: run(panel_tile2<4, 2, WT>, 4); break;
            case 5: run(panel_tile2<5, 1, WT>, 2); break;
            case 6: run(panel_tile2<6, 1, WT>, 2); break;
            case 7: run(panel_tile2<7, 1, WT>, 2); break;
            default: run(panel_tile2<8, 1, WT>, 2); break;
        }
#endif
        switch (rows) {  // (AVX-512: the panels the pair tiles above left)
            case 1:  // f32: two streams, unprefetched (above); f16 (half the bytes, a conversion each) as before
                if constexpr (sizeof(WT) == 4) run(panel_tile<1, 2, WT>, 2);
                else run(panel_tile<1, 4, WT>, 4);
                run(panel_tile<1, 1, WT>, 1);
                break;
            case 2: run(panel_tile<2, 4, WT>, 4); run(panel_tile<2, 1, WT>, 1); break;
            case 3: run(panel_tile<3, 2, WT>, 2); run(panel_tile<3, 1, WT>, 1); break;
            case 4: run(panel_tile<4, 2, WT>, 2); run(panel_tile<4, 1, WT>, 1); break;
            case 5: run(panel_tile<5, 1, WT>, 1); break;
            case 6: run(panel_tile<6, 1, WT>, 1); break;
            case 7: run(panel_tile<7, 1, WT>, 1); break;
            default: run(panel_tile<8, 1, WT>, 1); break;
        }
    }
}

template <typename WT>
void matmul_panels_t(const float* X, int64_t ldx, int64_t M, int64_t K, const WT* P, int64_t N, const float* bias,
                     float* Y, int64_t ldy, ThreadPool* pool) {
    for_panel_ranges(M, N, K, pool,
                     [&](int64_t p0, int64_t p1) { panels_range(X, ldx, M, K, P, N, bias, Y, ldy, p0, p1); });
}

// out[8 k + j] = w[j * stride + k] for j, k < 8: an 8 x 8 block transposed in registers.
inline void transpose8x8(const float* w, int64_t stride, float* out) {
    __m256 r[8], t[8];
    for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(w + j * stride);
    for (int j = 0; j < 8; j += 2) {
        t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
        t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
    }
    for (int j = 0; j < 8; j += 4) {
        r[j] = _mm256_shuffle_ps(t[j], t[j + 2], 0x44);
        r[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], 0xEE);
        r[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0x44);
        r[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0xEE);
    }
    for (int j = 0; j < 4; ++j) {
        _mm256_storeu_ps(out + 8 * j, _mm256_permute2f128_ps(r[j], r[j + 4], 0x20));
        _mm256_storeu_ps(out + 8 * (j + 4), _mm256_permute2f128_ps(r[j], r[j + 4], 0x31));
    }
}

template <typename WT, typename Cvt>
void pack_panels_t(const float* W, int64_t N, int64_t K, int64_t n_stride, int64_t k_stride, WT* P, Cvt cvt) {
    for (int64_t p = 0; p < (N + 7) / 8; ++p) {
        int64_t k = 0;
        if constexpr (std::is_same_v<WT, float>) {
            if (k_stride == 1 && p * 8 + 8 <= N)  // a weight's full panel: 8 x 8 blocks in registers
                for (; k + 8 <= K; k += 8) transpose8x8(W + p * 8 * n_stride + k, n_stride, P + (p * K + k) * 8);
        }
        for (; k < K; ++k)  // the rest (and f16, and strided sources) element by element
            for (int64_t j = 0; j < 8; ++j) {
                const int64_t n = p * 8 + j;
                P[(p * K + k) * 8 + j] = cvt(n < N ? W[n * n_stride + k * k_stride] : 0.0f);
            }
    }
}

}  // namespace

void pack_panels(const float* W, int64_t N, int64_t K, int64_t n_stride, int64_t k_stride, float* P) {
    pack_panels_t(W, N, K, n_stride, k_stride, P, [](float v) { return v; });
}
void pack_panels(const float* W, int64_t N, int64_t K, int64_t n_stride, int64_t k_stride, uint16_t* P) {
    pack_panels_t(W, N, K, n_stride, k_stride, P, [](float v) { return float_to_half(v); });
}
void matmul_panels(const float* X, int64_t ldx, int64_t M, int64_t K, const float* P, int64_t N, const float* bias,
                   float* Y, int64_t ldy, ThreadPool* pool) {
    matmul_panels_t(X, ldx, M, K, P, N, bias, Y, ldy, pool);
}
void matmul_panels(const float* X, int64_t ldx, int64_t M, int64_t K, const uint16_t* P, int64_t N, const float* bias,
                   float* Y, int64_t ldy, ThreadPool* pool) {
    matmul_panels_t(X, ldx, M, K, P, N, bias, Y, ldy, pool);
}
#endif

#endif  // !__EMSCRIPTEN__

#if IGPT_HAVE_PANELS
void for_panel_ranges(int64_t M, int64_t N, int64_t K, ThreadPool* pool, const std::function<void(int64_t, int64_t)>& fn) {
    const int64_t np = (N + 7) / 8;
    if (!pool || pool->size() == 1 || M * N * K < (1 << 15)) {
        fn(0, np);
        return;
    }
    pool->parallel_for(np, 4, [&](int64_t p0, int64_t p1, int32_t) { fn(p0, p1); }, 8);
}
#endif

#ifndef __EMSCRIPTEN__
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
    // Rows [m0, m1) x features [n0, n1) of Y.
    auto run = [&](int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
        const int64_t mm = m1 - m0, nn = n1 - n0;
        Eigen::Map<const RowMat> x(X + m0 * K, mm, K);
        Eigen::Map<const RowMat> w(W + n0 * K, nn, K);
        Eigen::Map<RowMat, 0, Stride> y(Y + m0 * N + n0, mm, nn, Stride(N));
        if (mm == 1) {
            // GEMV: y^T = W x, row-major W -> contiguous dot products.
            Eigen::Map<Eigen::VectorXf> yv(Y + m0 * N + n0, nn);
            yv.noalias() = w * x.row(0).transpose();
        } else {
            y.noalias() = x * w.transpose();
        }
        if (bias)
            for (int64_t i = m0; i < m1; ++i)
                for (int64_t j = n0; j < n1; ++j) Y[i * N + j] += bias[j];
    };
    // Each thread's GEMM packs (copies into its blocked layout) all of the operand that is not split: X
    // when the features are split (in 2 chunks a thread), W when the rows are (one chunk a thread). Split
    // the rows when X is the larger (prefill of a small model: X packed 4 times took 11-14% of it). M >= N,
    // not M >= 2N: tiny's batch-1 prefill (513 rows; 384 and 512 features) 5.5 ms against 6.1, base's 4%
    // faster, small and iGPT-S level (AVX-512 Xeon, interleaved).
    if (pool && pool->size() > 1 && M >= 64 * pool->size() && M >= N && M * N * K >= (1 << 15)) {
        pool->parallel_for((M + 31) / 32, 1, [&](int64_t b0, int64_t b1, int32_t) {
            run(b0 * 32, std::min(M, b1 * 32), 0, N);
        }, 1);
        return;
    }
    split_columns(M * N * K, N, pool, [&](int64_t n0, int64_t n1, int32_t) { run(0, M, n0, n1); });
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
            // The keys stream from memory (a decode step reads each sequence's cache once): ask 8 keys ahead.
            for (int64_t j = 8; j < 12; ++j)
                for (int64_t d = 0; d < D; d += 16) _mm_prefetch(reinterpret_cast<const char*>(k0 + j * ldk + d), _MM_HINT_T0);
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

namespace {
// o[0, 8 NV) (+)= sum_t p[t] V[t, 0:8 NV): NV accumulators, one FMA each per key; the rows of V stream from
// memory, prefetched 8 keys ahead.
template <int NV>
inline void values_block(const float* p, int64_t tk, const float* V, int64_t ldv, float* o, bool accumulate) {
    __m256 a[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) a[v] = accumulate ? _mm256_loadu_ps(o + 8 * v) : _mm256_setzero_ps();
    for (int64_t t = 0; t < tk; ++t) {
        const float* row = V + t * ldv;
#pragma GCC unroll 8
        for (int v = 0; v < NV; v += 2) _mm_prefetch(reinterpret_cast<const char*>(row + 8 * ldv + 8 * v), _MM_HINT_T0);
        const __m256 w = _mm256_broadcast_ss(p + t);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) a[v] = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 8 * v), a[v]);
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) _mm256_storeu_ps(o + 8 * v, a[v]);
}
}  // namespace

void attn_values(const float* P, int64_t ldp, int64_t n, int64_t tk, const float* V, int64_t ldv, int64_t D, float* O,
                 int64_t ldo, bool accumulate) {
    for (int64_t i = 0; i < n; ++i) {
        const float* p = P + i * ldp;
        float* o = O + i * ldo;
        int64_t d = 0;
        for (; d + 64 <= D; d += 64) values_block<8>(p, tk, V + d, ldv, o + d, accumulate);  // one pass over V
        for (; d + 32 <= D; d += 32) values_block<4>(p, tk, V + d, ldv, o + d, accumulate);
        for (; d + 8 <= D; d += 8) values_block<1>(p, tk, V + d, ldv, o + d, accumulate);
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
