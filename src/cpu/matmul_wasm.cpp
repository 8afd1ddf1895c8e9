// matmul_nt for the browser build: WebAssembly SIMD (128-bit, 4 floats) kernels, parallel over N.
//
// Y[M, N] = X[M, K] · W[N, K]^T + bias. Both operands are K-contiguous, so every output is a dot product of
// a row of X and a row of W: the micro-kernels keep MR x NR vector accumulators (one per output), stream
// both rows along K four floats at a time, and reduce horizontally once at the end (a 4x4 transpose-add
// yields four finished outputs in one vector). No packing: the weights are used where they lie.
//
//   decode (M = 1, a GEMV): memory-bound on W; kernel 1x4 with K unrolled by 8 (two accumulators per
//     output hide the add latency; SIMD128 has no FMA -- the relaxed-SIMD build's madd() is one).
//   prefill (M up to n_ctx): blocks of MB rows of X (MB*K floats, ~96 KB, stay in L2) against panels of
//     NR rows of W (stay in L1 while the block's rows stream past), kernel 4x2 (8 accumulators + 6 loads
//     fit the 16 registers V8 has on x86-64 without spilling).
// bench/bench_matmul_wasm.cpp measures it against Eigen under node.
#include "cpu/ops.h"

#include <wasm_simd128.h>

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "cpu/thread_pool.h"

namespace igpt {
namespace {

// a * b + c. With relaxed SIMD (the threaded build's relaxed variant) one f32x4.relaxed_madd, fused where
// the machine has FMA; clang 14 emits it under the proposal's prototype opcode, which web/tools/wasm_relaxed.py
// rewrites to the final one after linking (the builtin's operands are already in the final order). Otherwise
// a multiply and an add.
inline v128_t madd(v128_t a, v128_t b, v128_t c) {
#ifdef __wasm_relaxed_simd__
    return __builtin_wasm_fma_f32x4(a, b, c);
#else
    return wasm_f32x4_add(c, wasm_f32x4_mul(a, b));
#endif
}

inline float hsum(v128_t v) {
    v128_t s = wasm_f32x4_add(v, wasm_i32x4_shuffle(v, v, 2, 3, 0, 1));
    s = wasm_f32x4_add(s, wasm_i32x4_shuffle(s, s, 1, 0, 3, 2));
    return wasm_f32x4_extract_lane(s, 0);
}

// (a0+a1+a2+a3, b0+..., c0+..., d0+...) for four accumulators.
inline v128_t hsum4(v128_t a, v128_t b, v128_t c, v128_t d) {
    v128_t ab_lo = wasm_i32x4_shuffle(a, b, 0, 4, 1, 5);  // a0 b0 a1 b1
    v128_t ab_hi = wasm_i32x4_shuffle(a, b, 2, 6, 3, 7);  // a2 b2 a3 b3
    v128_t cd_lo = wasm_i32x4_shuffle(c, d, 0, 4, 1, 5);
    v128_t cd_hi = wasm_i32x4_shuffle(c, d, 2, 6, 3, 7);
    v128_t ab = wasm_f32x4_add(ab_lo, ab_hi);             // a01' b01' a23' b23' (partial)
    v128_t cd = wasm_f32x4_add(cd_lo, cd_hi);
    v128_t lo = wasm_i32x4_shuffle(ab, cd, 0, 1, 4, 5);
    v128_t hi = wasm_i32x4_shuffle(ab, cd, 2, 3, 6, 7);
    return wasm_f32x4_add(lo, hi);
}

// One row of X against four rows of W (the GEMV kernel). K4 = K rounded down to a multiple of 4.
inline void kernel_1x4(const float* x, const float* w, int64_t K, int64_t ldw, const float* bias, float* y) {
    const float* w0 = w;
    const float* w1 = w + ldw;
    const float* w2 = w + 2 * ldw;
    const float* w3 = w + 3 * ldw;
    v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
    v128_t b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) {
        v128_t xa = wasm_v128_load(x + k), xb = wasm_v128_load(x + k + 4);
        a0 = madd(xa, wasm_v128_load(w0 + k), a0);
        a1 = madd(xa, wasm_v128_load(w1 + k), a1);
        a2 = madd(xa, wasm_v128_load(w2 + k), a2);
        a3 = madd(xa, wasm_v128_load(w3 + k), a3);
        b0 = madd(xb, wasm_v128_load(w0 + k + 4), b0);
        b1 = madd(xb, wasm_v128_load(w1 + k + 4), b1);
        b2 = madd(xb, wasm_v128_load(w2 + k + 4), b2);
        b3 = madd(xb, wasm_v128_load(w3 + k + 4), b3);
    }
    for (; k + 4 <= K; k += 4) {
        v128_t xa = wasm_v128_load(x + k);
        a0 = madd(xa, wasm_v128_load(w0 + k), a0);
        a1 = madd(xa, wasm_v128_load(w1 + k), a1);
        a2 = madd(xa, wasm_v128_load(w2 + k), a2);
        a3 = madd(xa, wasm_v128_load(w3 + k), a3);
    }
    v128_t s = hsum4(wasm_f32x4_add(a0, b0), wasm_f32x4_add(a1, b1), wasm_f32x4_add(a2, b2),
                     wasm_f32x4_add(a3, b3));
    alignas(16) float out[4];
    wasm_v128_store(out, s);
    for (; k < K; ++k) {
        out[0] += x[k] * w0[k];
        out[1] += x[k] * w1[k];
        out[2] += x[k] * w2[k];
        out[3] += x[k] * w3[k];
    }
    for (int j = 0; j < 4; ++j) y[j] = out[j] + (bias ? bias[j] : 0.0f);
}

// MR rows of X against NR rows of W, any K; MR, NR <= 4. Used for the prefill tiles and all edges.
template <int MR, int NR>
inline void kernel_tile(const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t K,
                        const float* bias, float* y, int64_t ldy) {
    v128_t acc[MR][NR];
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NR; ++j) acc[i][j] = wasm_f32x4_splat(0);
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
        v128_t wv[NR];
        for (int j = 0; j < NR; ++j) wv[j] = wasm_v128_load(w + j * ldw + k);
        for (int i = 0; i < MR; ++i) {
            v128_t xv = wasm_v128_load(x + i * ldx + k);
            for (int j = 0; j < NR; ++j) acc[i][j] = madd(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < MR; ++i) {
        for (int j = 0; j < NR; ++j) {
            float s = hsum(acc[i][j]);
            for (int64_t kk = k; kk < K; ++kk) s += x[i * ldx + kk] * w[j * ldw + kk];
            y[i * ldy + j] = s + (bias ? bias[j] : 0.0f);
        }
    }
}

template <int MR>
inline void tile_rows(int nr, const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t K,
                      const float* bias, float* y, int64_t ldy) {
    switch (nr) {
        case 1: kernel_tile<MR, 1>(x, ldx, w, ldw, K, bias, y, ldy); break;
        case 2: kernel_tile<MR, 2>(x, ldx, w, ldw, K, bias, y, ldy); break;
        case 3: kernel_tile<MR, 3>(x, ldx, w, ldw, K, bias, y, ldy); break;
        default: kernel_tile<MR, 4>(x, ldx, w, ldw, K, bias, y, ldy); break;
    }
}

inline void tile(int mr, int nr, const float* x, int64_t ldx, const float* w, int64_t ldw, int64_t K,
                 const float* bias, float* y, int64_t ldy) {
    switch (mr) {
        case 1: tile_rows<1>(nr, x, ldx, w, ldw, K, bias, y, ldy); break;
        case 2: tile_rows<2>(nr, x, ldx, w, ldw, K, bias, y, ldy); break;
        case 3: tile_rows<3>(nr, x, ldx, w, ldw, K, bias, y, ldy); break;
        default: tile_rows<4>(nr, x, ldx, w, ldw, K, bias, y, ldy); break;
    }
}

// Output columns [n0, n1) of Y for all M rows; row strides ldx, ldw, ldy (in floats).
void matmul_cols(const float* X, int64_t ldx, int64_t M, int64_t K, const float* W, int64_t ldw, const float* bias,
                 float* Y, int64_t ldy, int64_t n0, int64_t n1) {
    if (M == 1) {  // decode: GEMV
        int64_t n = n0;
        for (; n + 4 <= n1; n += 4) kernel_1x4(X, W + n * ldw, K, ldw, bias ? bias + n : nullptr, Y + n);
        for (; n < n1; ++n) kernel_tile<1, 1>(X, ldx, W + n * ldw, ldw, K, bias ? bias + n : nullptr, Y + n, ldy);
        return;
    }
    constexpr int MR = 4, NR = 2;
    // Rows of X per block: the block (MB x K floats) stays in L2 while the panels of W pass over it.
    const int64_t MB = std::max<int64_t>(MR, std::min<int64_t>(128, (24 * 1024 / std::max<int64_t>(K, 1)) / MR * MR));
    for (int64_t m0 = 0; m0 < M; m0 += MB) {
        const int64_t m1 = std::min(M, m0 + MB);
        for (int64_t n = n0; n < n1; n += NR) {
            const int nr = int(std::min<int64_t>(NR, n1 - n));
            const float* w = W + n * ldw;
            const float* b = bias ? bias + n : nullptr;
            int64_t m = m0;
            for (; m + MR <= m1; m += MR) {
                if (nr == NR) kernel_tile<MR, NR>(X + m * ldx, ldx, w, ldw, K, b, Y + m * ldy + n, ldy);
                else tile(MR, nr, X + m * ldx, ldx, w, ldw, K, b, Y + m * ldy + n, ldy);
            }
            if (m < m1) tile(int(m1 - m), nr, X + m * ldx, ldx, w, ldw, K, b, Y + m * ldy + n, ldy);
        }
    }
}

}  // namespace

void matmul_nt(const float* X, int64_t M, int64_t K, const float* W, int64_t N, const float* bias, float* Y,
               ThreadPool* pool) {
    if (M <= 0 || N <= 0) return;
    // Work in groups of 4 output columns so every thread's chunk starts on a kernel boundary.
    const int64_t groups = (N + 3) / 4;
    const int64_t flops_per_group = 8 * M * K;
    const int64_t grain = std::max<int64_t>(1, (64 * 1024) / std::max<int64_t>(flops_per_group, 1));
    if (!pool || pool->size() <= 1 || groups <= grain) {
        matmul_cols(X, K, M, K, W, K, bias, Y, N, 0, N);
        return;
    }
    pool->parallel_for(groups, grain, [&](int64_t g0, int64_t g1, int32_t) {
        matmul_cols(X, K, M, K, W, K, bias, Y, N, g0 * 4, std::min(N, g1 * 4));
    });
}

// ---- decode products from panels (ops.h): weights packed once, 8 features a panel -----------------------

namespace {

// MR (<= 4) rows of X against NP consecutive panels: 2 * MR * NP accumulators of 4 features, each row's
// k-th value broadcast against the panels' k-th rows. No horizontal sums; a panel (K x 8 floats) stays in L1
// for the next rows. Every accumulator is one chain of adds over k, so an output's summation order is the
// same whatever M is; one or two rows take several panels at once to keep at least eight chains in flight
// (without FMA each k's add waits for the previous one: one panel at a time left a single row's product
// bound by the add latency).
template <int MR, int NP>
inline void panel_tile(const float* X, int64_t ldx, int64_t K, const float* P, const float* bias, float* Y, int64_t ldy,
                       int64_t N, int64_t n0) {
    v128_t lo[NP][MR], hi[NP][MR];
    for (int q = 0; q < NP; ++q)
        for (int r = 0; r < MR; ++r) lo[q][r] = hi[q][r] = wasm_f32x4_splat(0);
    for (int64_t k = 0; k < K; ++k) {
        v128_t x[MR];
        for (int r = 0; r < MR; ++r) x[r] = wasm_v128_load32_splat(X + r * ldx + k);
        for (int q = 0; q < NP; ++q) {
            const float* w = P + (q * K + k) * 8;
            const v128_t w0 = wasm_v128_load(w), w1 = wasm_v128_load(w + 4);
            for (int r = 0; r < MR; ++r) {
                lo[q][r] = madd(x[r], w0, lo[q][r]);
                hi[q][r] = madd(x[r], w1, hi[q][r]);
            }
        }
    }
    for (int q = 0; q < NP; ++q) {
        const int64_t n = n0 + 8 * q, valid = std::min<int64_t>(8, N - n);
        if (valid <= 0) break;
        alignas(16) float b[8] = {};
        if (bias) std::copy(bias + n, bias + n + valid, b);
        const v128_t b0 = wasm_v128_load(b), b1 = wasm_v128_load(b + 4);
        for (int r = 0; r < MR; ++r) {
            float* y = Y + r * ldy + n;
            if (valid == 8) {
                wasm_v128_store(y, wasm_f32x4_add(lo[q][r], b0));
                wasm_v128_store(y + 4, wasm_f32x4_add(hi[q][r], b1));
            } else {
                alignas(16) float t[8];
                wasm_v128_store(t, wasm_f32x4_add(lo[q][r], b0));
                wasm_v128_store(t + 4, wasm_f32x4_add(hi[q][r], b1));
                std::copy(t, t + valid, y);
            }
        }
    }
}

void panels_range(const float* X, int64_t ldx, int64_t M, int64_t K, const float* P, int64_t N, const float* bias,
                  float* Y, int64_t ldy, int64_t p0, int64_t p1) {
    if (M >= 4) {  // a panel at a time, for every block of rows (it comes from L1 for the next block)
        for (int64_t p = p0; p < p1; ++p) {
            const float* panel = P + p * K * 8;
            int64_t m = 0;
            for (; m + 4 <= M; m += 4) panel_tile<4, 1>(X + m * ldx, ldx, K, panel, bias, Y + m * ldy, ldy, N, p * 8);
            switch (M - m) {
                case 1: panel_tile<1, 1>(X + m * ldx, ldx, K, panel, bias, Y + m * ldy, ldy, N, p * 8); break;
                case 2: panel_tile<2, 1>(X + m * ldx, ldx, K, panel, bias, Y + m * ldy, ldy, N, p * 8); break;
                case 3: panel_tile<3, 1>(X + m * ldx, ldx, K, panel, bias, Y + m * ldy, ldy, N, p * 8); break;
                default: break;
            }
        }
        return;
    }
    int64_t p = p0;
    const auto run = [&](auto tile, int64_t np) {
        for (; p + np <= p1; p += np) tile(X, ldx, K, P + p * K * 8, bias, Y, ldy, N, p * 8);
    };
    switch (M) {
        case 1: run(panel_tile<1, 4>, 4); run(panel_tile<1, 1>, 1); break;
        case 2: run(panel_tile<2, 2>, 2); run(panel_tile<2, 1>, 1); break;
        default: run(panel_tile<3, 1>, 1); break;
    }
}

}  // namespace

void pack_panels(const float* W, int64_t N, int64_t K, int64_t n_stride, int64_t k_stride, float* P) {
    for (int64_t p = 0; p < (N + 7) / 8; ++p)
        for (int64_t k = 0; k < K; ++k)
            for (int64_t j = 0; j < 8; ++j) {
                const int64_t n = p * 8 + j;
                P[(p * K + k) * 8 + j] = n < N ? W[n * n_stride + k * k_stride] : 0.0f;
            }
}

void matmul_panels(const float* X, int64_t ldx, int64_t M, int64_t K, const float* P, int64_t N, const float* bias,
                   float* Y, int64_t ldy, ThreadPool* pool) {
    for_panel_ranges(M, N, K, pool,
                     [&](int64_t p0, int64_t p1) { panels_range(X, ldx, M, K, P, N, bias, Y, ldy, p0, p1); });
}

// ---- attention and element-wise maths (the CPU backend's Eigen code is scalar under wasm) -----------------

// S[n, tk] (row stride lds) = Q[n, D] · K[tk, D]^T, rows of Q and K strided (ldq, ldk). Single-threaded:
// the backend already runs one (sequence, head) per thread.
// A decode query row (D a multiple of 4, one head's 32 or 64 features) takes its keys four at a time, each a
// chain over D, reduced together by one transpose-add; longer or odd rows go through matmul_cols.
void attn_scores(const float* Q, int64_t ldq, const float* K, int64_t ldk, int64_t n, int64_t tk, int64_t D, float* S,
                 int64_t lds) {
    if (n > 4 || D % 4 != 0) {
        matmul_cols(Q, ldq, n, D, K, ldk, nullptr, S, lds, 0, tk);
        return;
    }
    for (int64_t i = 0; i < n; ++i) {
        const float* q = Q + i * ldq;
        float* s = S + i * lds;
        int64_t j = 0;
        for (; j + 4 <= tk; j += 4) {
            const float* k0 = K + j * ldk;
            v128_t a0 = wasm_f32x4_splat(0), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t d = 0; d < D; d += 4) {
                const v128_t x = wasm_v128_load(q + d);
                a0 = madd(x, wasm_v128_load(k0 + d), a0);
                a1 = madd(x, wasm_v128_load(k0 + ldk + d), a1);
                a2 = madd(x, wasm_v128_load(k0 + 2 * ldk + d), a2);
                a3 = madd(x, wasm_v128_load(k0 + 3 * ldk + d), a3);
            }
            wasm_v128_store(s + j, hsum4(a0, a1, a2, a3));
        }
        if (j < tk) matmul_cols(q, ldq, 1, D, K, ldk, nullptr, s, lds, j, tk);
    }
}

// O[n, D] (row stride ldo) (+)= P[n, tk] (row stride ldp) · V[tk, D] (row stride ldv): every output row is a
// sum of rows of V weighted by P, accumulated 32 floats (8 vectors) of D at a time, then 16, 4, 1. Without
// FMA each key's update is a chain of dependent adds per vector; 8 independent chains instead of 4 took
// this function from 21% to 19% of a batch-8 decode under node (1 thread; no change measurable on 2).
void attn_values(const float* P, int64_t ldp, int64_t n, int64_t tk, const float* V, int64_t ldv, int64_t D, float* O,
                 int64_t ldo, bool accumulate) {
    const v128_t zero = wasm_f32x4_splat(0);
    for (int64_t i = 0; i < n; ++i) {
        const float* p = P + i * ldp;
        float* o = O + i * ldo;
        int64_t d = 0;
        for (; d + 32 <= D; d += 32) {
            v128_t a[8];
            for (int j = 0; j < 8; ++j) a[j] = accumulate ? wasm_v128_load(o + d + 4 * j) : zero;
            for (int64_t k = 0; k < tk; ++k) {
                const v128_t w = wasm_f32x4_splat(p[k]);
                const float* v = V + k * ldv + d;
                for (int j = 0; j < 8; ++j) a[j] = madd(w, wasm_v128_load(v + 4 * j), a[j]);
            }
            for (int j = 0; j < 8; ++j) wasm_v128_store(o + d + 4 * j, a[j]);
        }
        for (; d + 16 <= D; d += 16) {
            v128_t a0 = accumulate ? wasm_v128_load(o + d) : zero;
            v128_t a1 = accumulate ? wasm_v128_load(o + d + 4) : zero;
            v128_t a2 = accumulate ? wasm_v128_load(o + d + 8) : zero;
            v128_t a3 = accumulate ? wasm_v128_load(o + d + 12) : zero;
            for (int64_t k = 0; k < tk; ++k) {
                const v128_t w = wasm_f32x4_splat(p[k]);
                const float* v = V + k * ldv + d;
                a0 = madd(w, wasm_v128_load(v), a0);
                a1 = madd(w, wasm_v128_load(v + 4), a1);
                a2 = madd(w, wasm_v128_load(v + 8), a2);
                a3 = madd(w, wasm_v128_load(v + 12), a3);
            }
            wasm_v128_store(o + d, a0);
            wasm_v128_store(o + d + 4, a1);
            wasm_v128_store(o + d + 8, a2);
            wasm_v128_store(o + d + 12, a3);
        }
        for (; d + 4 <= D; d += 4) {
            v128_t a = accumulate ? wasm_v128_load(o + d) : zero;
            for (int64_t k = 0; k < tk; ++k)
                a = madd(wasm_f32x4_splat(p[k]), wasm_v128_load(V + k * ldv + d), a);
            wasm_v128_store(o + d, a);
        }
        for (; d < D; ++d) {
            float a = accumulate ? o[d] : 0.0f;
            for (int64_t k = 0; k < tk; ++k) a += p[k] * V[k * ldv + d];
            o[d] = a;
        }
    }
}

namespace {

// exp of four floats: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for exactness), a degree-6
// polynomial for e^r, 2^n built in the exponent bits. The same range reduction and coefficients as
// Cephes' expf (what Eigen's vectorised exp uses natively), ~1 ulp; inputs clamped to the finite range.
inline v128_t exp4(v128_t x) {
    // pmin/pmax are one instruction each on x86 (min/max's NaN and signed-zero rules take several).
    x = wasm_f32x4_pmin(wasm_f32x4_pmax(x, wasm_f32x4_splat(-87.33654f)), wasm_f32x4_splat(88.37626f));
    // n = round(x / ln 2) by the 1.5 * 2^23 trick: t's low mantissa bits hold n (two's complement), so
    // neither a floor nor a float-to-int conversion (several instructions under V8) is needed.
    const v128_t magic = wasm_f32x4_splat(12582912.0f);
    const v128_t t = wasm_f32x4_add(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)), magic);
    const v128_t fx = wasm_f32x4_sub(t, magic);
    x = wasm_f32x4_sub(x, wasm_f32x4_mul(fx, wasm_f32x4_splat(0.693359375f)));
    x = wasm_f32x4_sub(x, wasm_f32x4_mul(fx, wasm_f32x4_splat(-2.12194440e-4f)));
    v128_t y = wasm_f32x4_splat(1.9875691500e-4f);
    y = wasm_f32x4_add(wasm_f32x4_mul(y, x), wasm_f32x4_splat(1.3981999507e-3f));
    y = wasm_f32x4_add(wasm_f32x4_mul(y, x), wasm_f32x4_splat(8.3334519073e-3f));
    y = wasm_f32x4_add(wasm_f32x4_mul(y, x), wasm_f32x4_splat(4.1665795894e-2f));
    y = wasm_f32x4_add(wasm_f32x4_mul(y, x), wasm_f32x4_splat(1.6666665459e-1f));
    y = wasm_f32x4_add(wasm_f32x4_mul(y, x), wasm_f32x4_splat(5.0000001201e-1f));
    y = wasm_f32x4_add(wasm_f32x4_add(wasm_f32x4_mul(y, wasm_f32x4_mul(x, x)), x), wasm_f32x4_splat(1.0f));
    // 2^n: n in [-126, 127] after the clamp, so (n + 127) << 23 is a normal float's exponent field.
    const v128_t pow2n = wasm_i32x4_shl(wasm_i32x4_add(t, wasm_i32x4_splat(127 - 0x4B400000)), 23);
    return wasm_f32x4_mul(y, pow2n);
}

inline float exp1(float x) {
    float out[4];
    wasm_v128_store(out, exp4(wasm_f32x4_splat(x)));
    return out[0];
}

}  // namespace

void softmax_scaled(float* row, int64_t valid, int64_t n, float scale) {
    float mx = -INFINITY;
    int64_t k = 0;
    if (valid >= 4) {  // max is exact: the order does not matter
        v128_t mv = wasm_v128_load(row);
        for (k = 4; k + 4 <= valid; k += 4) mv = wasm_f32x4_pmax(mv, wasm_v128_load(row + k));
        mv = wasm_f32x4_pmax(mv, wasm_i32x4_shuffle(mv, mv, 2, 3, 0, 1));
        mv = wasm_f32x4_pmax(mv, wasm_i32x4_shuffle(mv, mv, 1, 0, 3, 2));
        mx = wasm_f32x4_extract_lane(mv, 0);
    }
    for (; k < valid; ++k) mx = std::max(mx, row[k]);
    mx *= scale;  // scale > 0: max(scale * x) = scale * max(x), rounding included
    const v128_t s4 = wasm_f32x4_splat(scale), m4 = wasm_f32x4_splat(mx);
    // Two vectors a step, two sums: the exponentials' long dependency chains overlap.
    v128_t acc = wasm_f32x4_splat(0), acc2 = acc;
    for (k = 0; k + 8 <= valid; k += 8) {
        const v128_t e = exp4(wasm_f32x4_sub(wasm_f32x4_mul(wasm_v128_load(row + k), s4), m4));
        const v128_t e2 = exp4(wasm_f32x4_sub(wasm_f32x4_mul(wasm_v128_load(row + k + 4), s4), m4));
        wasm_v128_store(row + k, e);
        wasm_v128_store(row + k + 4, e2);
        acc = wasm_f32x4_add(acc, e);
        acc2 = wasm_f32x4_add(acc2, e2);
    }
    for (; k + 4 <= valid; k += 4) {
        const v128_t e = exp4(wasm_f32x4_sub(wasm_f32x4_mul(wasm_v128_load(row + k), s4), m4));
        wasm_v128_store(row + k, e);
        acc = wasm_f32x4_add(acc, e);
    }
    acc = wasm_f32x4_add(acc, acc2);
    float sum = hsum(acc);
    for (; k < valid; ++k) sum += (row[k] = exp1(row[k] * scale - mx));
    const v128_t inv = wasm_f32x4_splat(1.0f / sum);
    for (k = 0; k + 4 <= valid; k += 4) wasm_v128_store(row + k, wasm_f32x4_mul(wasm_v128_load(row + k), inv));
    for (; k < valid; ++k) row[k] *= 1.0f / sum;
    std::fill(row + valid, row + n, 0.0f);
}

void rms_norm(const float* x, const float* g, float eps, int64_t M, int64_t C, float* out) {
    for (int64_t i = 0; i < M; ++i) {
        const float* xi = x + i * C;
        float* oi = out + i * C;
        v128_t acc = wasm_f32x4_splat(0);
        int64_t c = 0;
        for (; c + 4 <= C; c += 4) {
            const v128_t v = wasm_v128_load(xi + c);
            acc = madd(v, v, acc);
        }
        float ss = hsum(acc);
        for (; c < C; ++c) ss += xi[c] * xi[c];
        const float r = 1.0f / std::sqrt(ss / float(C) + eps);
        const v128_t r4 = wasm_f32x4_splat(r);
        for (c = 0; c + 4 <= C; c += 4)
            wasm_v128_store(oi + c, wasm_f32x4_mul(wasm_f32x4_mul(wasm_v128_load(xi + c), r4), wasm_v128_load(g + c)));
        for (; c < C; ++c) oi[c] = xi[c] * r * g[c];
    }
}

void quick_gelu(float* x, int64_t n) {
    const v128_t k = wasm_f32x4_splat(-1.702f), one = wasm_f32x4_splat(1.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const v128_t v = wasm_v128_load(x + i);
        wasm_v128_store(x + i, wasm_f32x4_div(v, wasm_f32x4_add(one, exp4(wasm_f32x4_mul(k, v)))));
    }
    for (; i < n; ++i) x[i] = x[i] / (1.0f + exp1(-1.702f * x[i]));
}

}  // namespace igpt
