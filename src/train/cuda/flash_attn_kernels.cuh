// Flash-style causal attention for the trainer: forward and backward without the T x T matrix in memory
// (FlashAttention-2's algorithm). The kernels read q, k, v straight from the qkv projection (B*T, 3C) and
// write o into the attention output (B*T, C), so no head-major copies are made; the backward writes dq, dk,
// dv straight into d(qkv). qkv, o, d(o) and d(qkv) are all f32 or all bf16 in memory (S = float, or
// uint16_t: the trainer's --cuda-math bf16 or mixed). Tiles are bf16 in shared memory and multiplied on
// tensor cores (mma.sync m16n8k16, f32 accumulation); the softmax probabilities and their gradients are
// rounded to bf16 for their products, as the bf16 GEMMs round their inputs.
//
// Tiles are 64 queries x 64 keys; a block is 4 warps, each warp owns 16 rows of the tile. DP, the head
// dimension padded to a multiple of 16 (16, 32 or 64), is a template argument; the real head dimension D
// (a multiple of 4, at most DP) is a runtime one: the padding is zeros. T need not be a multiple of 64.
//
// This file is device code only (no launchers: flash_attn.cu has them). It compiles with nvcc, and with
// the host compiler under IGPT_CUDA_EMU, where tests/cuda_emu/cuda_emu.h runs it on CPU threads against a
// double-precision reference (tests/test_flash_emu.cpp) on machines without a GPU.
//
// The softmax works in base 2: with c = scale * log2(e), P = exp2(c S - lse2) where S = q k^T and
// lse2 = log2 of the row's sum of exp2(c S). The forward stores lse2 per (b, h, query); the backward
// recomputes P from it.
#pragma once
#include <cstdint>
#include <type_traits>

#include "bf16.cuh"
#include "cuda/common.cuh"
#ifndef IGPT_CUDA_EMU
#include <cuda_runtime.h>
#endif

namespace igpt::cuda::flash {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the host-compiled copies get other symbol names)

constexpr int kTile = 64;       // queries and keys per tile
constexpr int kThreads = 128;   // 4 warps, 16 rows each
constexpr float kLog2e = 1.4426950408889634f;

struct Shape {
    int32_t T = 0, NH = 0, D = 0;  // sequence length, heads, head dimension (D <= DP, D % 4 == 0)
    int64_t ld_qkv = 0;            // row stride of qkv and d(qkv) (3C)
    int64_t ld_o = 0;              // row stride of o and d(o) (C)
    int64_t C = 0;                 // offset of k (C) and v (2C) within a qkv row
    float c = 0;                   // scale * log2(e)
};

// The shape of B images' attention (C = NH * D) and the grids of the kernels below.
inline Shape make_shape(int32_t T, int32_t NH, int32_t D, float scale) {
    Shape sh;
    sh.T = T;
    sh.NH = NH;
    sh.D = D;
    sh.C = int64_t(NH) * D;
    sh.ld_qkv = 3 * sh.C;
    sh.ld_o = sh.C;
    sh.c = scale * kLog2e;
    return sh;
}
inline dim3 tile_grid(const Shape& sh, int32_t B) {  // forward, dkdv, dq: (tiles, B*NH)
    return dim3(unsigned((sh.T + kTile - 1) / kTile), unsigned(B * sh.NH));
}
inline dim3 delta_grid(const Shape& sh, int32_t B) {  // one warp per (row, head)
    const int64_t warps = int64_t(B) * sh.T * sh.NH;
    return dim3(unsigned((warps + kThreads / 32 - 1) / (kThreads / 32)));
}
// Calls f with the padded head dimension DP (16, 32 or 64) for head dimension D, as a compile-time constant.
template <typename F> void dispatch_dp(int32_t D, F&& f) {
    if (D <= 16) f(std::integral_constant<int, 16>{});
    else if (D <= 32) f(std::integral_constant<int, 32>{});
    else f(std::integral_constant<int, 64>{});
}

// --- the tensor-core product ------------------------------------------------------------------------------
#ifdef IGPT_CUDA_EMU
inline void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) { emu_mma_16816<false>(d, a, b); }
#else
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif

// --- shared-memory tiles -----------------------------------------------------------------------------------
// A tile is bf16 bits, R rows of `stride` elements; the stride is padded by 8 so that the fragment loads
// below (row g, column 2t, for the 32 lanes) fall in 32 different banks.
template <int DP> struct Dims {
    static constexpr int kRow = DP + 8;     // stride of a (64, DP) tile
    static constexpr int kCol = kTile + 8;  // stride of a (DP, 64) transposed tile
    static constexpr int kTileElems = kTile * kRow > DP * kCol ? kTile * kRow : DP * kCol;
};

__device__ __forceinline__ uint32_t ld32(const uint16_t* s, int row, int stride, int col) {
    return *reinterpret_cast<const uint32_t*>(s + row * stride + col);
}

// Rows [r0, r0 + 64) of one head's slice of a row-major matrix (f32, or bf16 as uint16_t) -> bf16 tile(s):
// `rm` row-major (64, DP) and/or `tr` transposed (DP, 64); rows at or past T and columns at or past D are
// zeros.
__device__ __forceinline__ uint2 load4_bf16(const float* p) {
    const float4 v = *reinterpret_cast<const float4*>(p);
    return uint2{pack_bf16(v.x, v.y), pack_bf16(v.z, v.w)};
}
__device__ __forceinline__ uint2 load4_bf16(const uint16_t* p) { return *reinterpret_cast<const uint2*>(p); }

template <int DP, typename S>
__device__ __forceinline__ void load_tile(const S* __restrict__ src, int64_t ld, int32_t r0, int32_t T, int32_t D,
                                          uint16_t* rm, uint16_t* tr) {
    constexpr int Q4 = DP / 4;  // groups of 4 columns a row
    auto load4 = [&](int r, int c) {
        return r0 + r < T && c < D ? load4_bf16(src + int64_t(r0 + r) * ld + c) : uint2{0u, 0u};
    };
    if (!tr) {  // consecutive threads along a row: coalesced loads, 8-byte stores
        for (int i = int(threadIdx.x); i < kTile * Q4; i += kThreads) {
            const int r = i / Q4, c = (i % Q4) * 4;
            *reinterpret_cast<uint2*>(rm + r * Dims<DP>::kRow + c) = load4(r, c);
        }
        return;
    }
    // Transposed: a thread takes rows 2p and 2p+1 at 4 columns and writes each column's pair as one word.
    // A warp holds 16 pairs (p_lo) x 2 column groups (j_lo): each row's 32 bytes are one memory sector, and
    // the words of tr's column (stride kCol = 72) fall in 32 different banks.
    for (int i = int(threadIdx.x); i < kTile * Q4 / 2; i += kThreads) {
        const int p_lo = i % 16, j_lo = (i / 16) % 2, p_hi = (i / 32) % 2, j_hi = i / 64;
        const int r = 2 * (p_hi * 16 + p_lo), c = (j_hi * 2 + j_lo) * 4;
        const uint2 a = load4(r, c), b = load4(r + 1, c);
        if (rm) {
            *reinterpret_cast<uint2*>(rm + r * Dims<DP>::kRow + c) = a;
            *reinterpret_cast<uint2*>(rm + (r + 1) * Dims<DP>::kRow + c) = b;
        }
        auto* col = reinterpret_cast<uint32_t*>(tr + c * Dims<DP>::kCol + r);  // tr[c][r], tr[c][r + 1]
        constexpr int W = Dims<DP>::kCol / 2;                                   // words a row of tr
        col[0] = (a.x & 0xffffu) | (b.x << 16);
        col[W] = (a.x >> 16) | (b.x & 0xffff0000u);
        col[2 * W] = (a.y & 0xffffu) | (b.y << 16);
        col[3 * W] = (a.y >> 16) | (b.y & 0xffff0000u);
    }
}

// The A fragments of a warp's 16 rows (r0 .. r0+15) of a row-major (64, DP) tile, for all DP/16 k-steps.
template <int DP> __device__ __forceinline__ void load_a(const uint16_t* s, int r0, uint32_t (&a)[DP / 16][4]) {
    const int lane = int(threadIdx.x) & 31, g = lane >> 2, t = lane & 3;
    constexpr int S = Dims<DP>::kRow;
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
        a[kk][0] = ld32(s, r0 + g, S, kk * 16 + 2 * t);
        a[kk][1] = ld32(s, r0 + g + 8, S, kk * 16 + 2 * t);
        a[kk][2] = ld32(s, r0 + g, S, kk * 16 + 8 + 2 * t);
        a[kk][3] = ld32(s, r0 + g + 8, S, kk * 16 + 8 + 2 * t);
    }
}

// acc[n] (16 x 8 for n = 0..N-1) += A (16 x 16*KS, fragments a) · B, where B[k][n'] = s[n'][k]: s holds B's
// columns as rows of `stride` elements (a row-major tile of the right-hand matrix).
template <int N, int KS>
__device__ __forceinline__ void mma_rows(float (&acc)[N][4], const uint32_t (&a)[KS][4], const uint16_t* s,
                                         int stride) {
    const int lane = int(threadIdx.x) & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int n = 0; n < N; ++n)
#pragma unroll
        for (int kk = 0; kk < KS; ++kk) {
            const uint32_t b[2] = {ld32(s, n * 8 + g, stride, kk * 16 + 2 * t),
                                   ld32(s, n * 8 + g, stride, kk * 16 + 8 + 2 * t)};
            mma_bf16(acc[n], a[kk], b);
        }
}

// The accumulators of a 16 x 64 product (8 n-tiles of 8) as the A fragments of the next product (4
// k-steps of 16): the C layout of two adjacent n-tiles is the A layout of one k-step.
__device__ __forceinline__ void acc_to_a(const float (&p)[8][4], uint32_t (&a)[4][4]) {
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
        a[kk][0] = pack_bf16(p[2 * kk][0], p[2 * kk][1]);
        a[kk][1] = pack_bf16(p[2 * kk][2], p[2 * kk][3]);
        a[kk][2] = pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]);
        a[kk][3] = pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3]);
    }
}

template <int N> __device__ __forceinline__ void zero(float (&acc)[N][4]) {
#pragma unroll
    for (int n = 0; n < N; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

// Writes a warp's 16 x DP accumulator (scaled by `mul`, per row half: rows g and g+8) to rows r0 + g,
// r0 + g + 8 of a head's slice of a row-major matrix (f32, or bf16 as uint16_t), columns < D, rows < T.
template <int DP, typename OT>
__device__ __forceinline__ void store_rows(const float (&acc)[DP / 8][4], float mul_lo, float mul_hi, OT* dst,
                                           int64_t ld, int32_t r0, int32_t T, int32_t D) {
    const int lane = int(threadIdx.x) & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int n = 0; n < DP / 8; ++n) {
        const int c = n * 8 + 2 * t;
        if (c >= D) continue;  // D % 4 == 0: c and c + 1 are both in or both out
        if (r0 + g < T) store2_f(dst + int64_t(r0 + g) * ld + c, acc[n][0] * mul_lo, acc[n][1] * mul_lo);
        if (r0 + g + 8 < T) store2_f(dst + int64_t(r0 + g + 8) * ld + c, acc[n][2] * mul_hi, acc[n][3] * mul_hi);
    }
}

// Where a block of the tile kernels and its thread sit: grid (tiles, B*NH), the tiles in reverse order
// (the ones with the most work first).
struct Pos {
    int n_tiles, tile;
    int32_t bh;
    int warp, g, t;  // the warp (16 rows of the tile), and the lane's group and index in it
    int64_t qkv, dout;  // offsets of this (image, head)'s columns in qkv (and d(qkv)), and in o (and d(o))
};
__device__ __forceinline__ Pos block_pos(const Shape& sh) {
    Pos p;
    p.n_tiles = int(gridDim.x);
    p.tile = p.n_tiles - 1 - int(blockIdx.x);
    p.bh = int32_t(blockIdx.y);
    const int32_t b = p.bh / sh.NH, h = p.bh % sh.NH;
    p.warp = int(threadIdx.x) >> 5;
    p.g = (int(threadIdx.x) & 31) >> 2;
    p.t = int(threadIdx.x) & 3;
    p.qkv = int64_t(b) * sh.T * sh.ld_qkv + int64_t(h) * sh.D;
    p.dout = int64_t(b) * sh.T * sh.ld_o + int64_t(h) * sh.D;
    return p;
}

// --- forward: o = softmax(scale q k^T, causal) v, and lse2 per query --------------------------------------
// Grid (query tiles, B*NH); the tiles with the most keys go first.
template <int DP, typename S>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const S* __restrict__ qkv, S* __restrict__ o, float* __restrict__ lse2, Shape sh) {
    using Dm = Dims<DP>;
    __shared__ float4 smem[3 * Dm::kTileElems / 8];  // sQ (staging), sK, sVt: bf16
    uint16_t* sQ = reinterpret_cast<uint16_t*>(smem);
    uint16_t* sK = sQ + Dm::kTileElems;
    uint16_t* sVt = sK + Dm::kTileElems;

    const Pos p = block_pos(sh);
    const int tile = p.tile, warp = p.warp, g = p.g, t = p.t;
    const int32_t bh = p.bh, T = sh.T, q0 = tile * kTile;
    const S* base = qkv + p.qkv;

    load_tile<DP>(base, sh.ld_qkv, q0, T, sh.D, sQ, nullptr);
    __syncthreads();
    uint32_t qa[DP / 16][4];
    load_a<DP>(sQ, warp * 16, qa);

    const int32_t row_lo = q0 + warp * 16 + g, row_hi = row_lo + 8;
    float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f;
    float acc[DP / 8][4];
    zero(acc);
    for (int kt = 0; kt <= tile; ++kt) {
        const int32_t k0 = kt * kTile;
        __syncthreads();  // the previous tile's sK / sVt are no longer read
        load_tile<DP>(base + sh.C, sh.ld_qkv, k0, T, sh.D, sK, nullptr);
        load_tile<DP>(base + 2 * sh.C, sh.ld_qkv, k0, T, sh.D, nullptr, sVt);
        __syncthreads();
        float s[8][4];
        zero(s);
        mma_rows<8, DP / 16>(s, qa, sK, Dm::kRow);
        // scale, mask (key > query), and the running maximum of each of the thread's two rows
        float mx_lo = m_lo, mx_hi = m_hi;
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int32_t key = k0 + n * 8 + 2 * t + (e & 1), row = e < 2 ? row_lo : row_hi;
                const float x = key <= row ? s[n][e] * sh.c : -INFINITY;
                s[n][e] = x;
                if (e < 2) mx_lo = fmaxf(mx_lo, x);
                else mx_hi = fmaxf(mx_hi, x);
            }
        // the four lanes of a row group (same g) hold the row's 64 columns between them
        mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 1));
        mx_lo = fmaxf(mx_lo, __shfl_xor_sync(0xffffffffu, mx_lo, 2));
        mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 1));
        mx_hi = fmaxf(mx_hi, __shfl_xor_sync(0xffffffffu, mx_hi, 2));
        // every row sees key k0 <= row in each tile it visits, so the maxima are finite
        const float a_lo = exp2f(m_lo - mx_lo), a_hi = exp2f(m_hi - mx_hi);
        m_lo = mx_lo;
        m_hi = mx_hi;
        float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
        for (int n = 0; n < 8; ++n) {
            s[n][0] = exp2f(s[n][0] - m_lo);
            s[n][1] = exp2f(s[n][1] - m_lo);
            s[n][2] = exp2f(s[n][2] - m_hi);
            s[n][3] = exp2f(s[n][3] - m_hi);
            sum_lo += s[n][0] + s[n][1];
            sum_hi += s[n][2] + s[n][3];
        }
        l_lo = l_lo * a_lo + sum_lo;  // partial: this thread's columns; summed over the group at the end
        l_hi = l_hi * a_hi + sum_hi;
#pragma unroll
        for (int n = 0; n < DP / 8; ++n) {
            acc[n][0] *= a_lo;
            acc[n][1] *= a_lo;
            acc[n][2] *= a_hi;
            acc[n][3] *= a_hi;
        }
        uint32_t pa[4][4];
        acc_to_a(s, pa);
        mma_rows<DP / 8, 4>(acc, pa, sVt, Dm::kCol);
    }
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 1);
    l_lo += __shfl_xor_sync(0xffffffffu, l_lo, 2);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 1);
    l_hi += __shfl_xor_sync(0xffffffffu, l_hi, 2);
    store_rows<DP>(acc, 1.0f / l_lo, 1.0f / l_hi, o + p.dout, sh.ld_o, q0 + warp * 16, T, sh.D);
    if (t == 0) {
        float* L = lse2 + int64_t(bh) * T;
        if (row_lo < T) L[row_lo] = m_lo + log2f(l_lo);
        if (row_hi < T) L[row_hi] = m_hi + log2f(l_hi);
    }
}

// --- backward, step 1: delta[b, h, t] = sum_d do[t, d] o[t, d] (one warp per (row, head)) -----------------
template <typename S>
__global__ void __launch_bounds__(kThreads)
    delta_kernel(const S* __restrict__ dout, const S* __restrict__ o, float* __restrict__ delta, int64_t M,
                 Shape sh) {
    const int64_t w = int64_t(blockIdx.x) * (kThreads / 32) + (int64_t(threadIdx.x) >> 5);
    const int lane = int(threadIdx.x) & 31;
    if (w >= M * sh.NH) return;  // whole warps leave together: the shuffles below see all 32 lanes
    const int64_t row = w / sh.NH;
    const int32_t h = int32_t(w % sh.NH);
    const S* a = dout + row * sh.ld_o + int64_t(h) * sh.D;
    const S* c = o + row * sh.ld_o + int64_t(h) * sh.D;
    float s = 0.0f;
    // do rounded to bf16 as the dP products see it, so that each row of dS sums to (nearly) zero
    for (int d = lane; d < sh.D; d += 32) s += bf16_round(load_f(a + d)) * load_f(c + d);
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    if (lane == 0) {
        const int64_t b = row / sh.T, tq = row % sh.T;
        delta[(b * sh.NH + h) * sh.T + tq] = s;
    }
}

// --- backward, step 2: dk and dv of a key tile, over the query tiles at or after it ------------------------
// dS = P (dP - delta), dP = do v^T; dv = P^T do, dk = scale dS^T q. Each warp owns 16 keys and works on
// transposed products (keys as rows), so that P^T and dS^T come out in registers as the A operands.
template <int DP, typename S>
__global__ void __launch_bounds__(kThreads)
    dkdv_kernel(const S* __restrict__ qkv, const S* __restrict__ dout, const float* __restrict__ lse2,
                const float* __restrict__ delta, S* __restrict__ dqkv, Shape sh) {
    using Dm = Dims<DP>;
    __shared__ float4 smem[4 * Dm::kTileElems / 8];  // sQ, sQt, sdO, sdOt (sK, sV while staging)
    __shared__ float s_lse[kTile], s_delta[kTile];
    uint16_t* sQ = reinterpret_cast<uint16_t*>(smem);
    uint16_t* sQt = sQ + Dm::kTileElems;
    uint16_t* sdO = sQt + Dm::kTileElems;
    uint16_t* sdOt = sdO + Dm::kTileElems;

    const Pos p = block_pos(sh);  // (the first key tiles have the most queries)
    const int n_tiles = p.n_tiles, tile = p.tile, warp = p.warp, g = p.g, t = p.t;
    const int32_t bh = p.bh, T = sh.T, k0 = tile * kTile;
    const S *base = qkv + p.qkv, *dbase = dout + p.dout;
    const float* L = lse2 + int64_t(bh) * T;
    const float* Dl = delta + int64_t(bh) * T;

    load_tile<DP>(base + sh.C, sh.ld_qkv, k0, T, sh.D, sQ, nullptr);       // k, staged in sQ
    load_tile<DP>(base + 2 * sh.C, sh.ld_qkv, k0, T, sh.D, sdO, nullptr);  // v, staged in sdO
    __syncthreads();
    uint32_t ka[DP / 16][4], va[DP / 16][4];
    load_a<DP>(sQ, warp * 16, ka);
    load_a<DP>(sdO, warp * 16, va);

    const int32_t key_lo = k0 + warp * 16 + g, key_hi = key_lo + 8;
    float dk[DP / 8][4], dv[DP / 8][4];
    zero(dk);
    zero(dv);
    for (int qt = tile; qt < n_tiles; ++qt) {
        const int32_t q0 = qt * kTile;
        __syncthreads();  // the staging reads above, or the previous tile's reads, are done
        load_tile<DP>(base, sh.ld_qkv, q0, T, sh.D, sQ, sQt);
        load_tile<DP>(dbase, sh.ld_o, q0, T, sh.D, sdO, sdOt);
        for (int i = int(threadIdx.x); i < kTile; i += kThreads) {
            s_lse[i] = q0 + i < T ? L[q0 + i] : 0.0f;
            s_delta[i] = q0 + i < T ? Dl[q0 + i] : 0.0f;
        }
        __syncthreads();
        // S^T (16 keys x 64 queries) = k q^T -> P^T
        float p[8][4];
        zero(p);
        mma_rows<8, DP / 16>(p, ka, sQ, Dm::kRow);
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int qi = n * 8 + 2 * t + (e & 1);
                const int32_t query = q0 + qi, key = e < 2 ? key_lo : key_hi;
                p[n][e] = key <= query && query < T ? exp2f(p[n][e] * sh.c - s_lse[qi]) : 0.0f;
            }
        uint32_t pa[4][4];
        acc_to_a(p, pa);
        mma_rows<DP / 8, 4>(dv, pa, sdOt, Dm::kCol);  // dv += P^T do
        // dP^T (16 keys x 64 queries) = v do^T; dS^T = P^T (dP^T - delta)
        float dp[8][4];
        zero(dp);
        mma_rows<8, DP / 16>(dp, va, sdO, Dm::kRow);
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) dp[n][e] = p[n][e] * (dp[n][e] - s_delta[n * 8 + 2 * t + (e & 1)]);
        uint32_t dsa[4][4];
        acc_to_a(dp, dsa);
        mma_rows<DP / 8, 4>(dk, dsa, sQt, Dm::kCol);  // dk += dS^T q
    }
    const float sc = sh.c / kLog2e;  // the softmax scale
    S* dst = dqkv + p.qkv;
    store_rows<DP>(dk, sc, sc, dst + sh.C, sh.ld_qkv, k0 + warp * 16, T, sh.D);
    store_rows<DP>(dv, 1.0f, 1.0f, dst + 2 * sh.C, sh.ld_qkv, k0 + warp * 16, T, sh.D);
}

// --- backward, step 3: dq of a query tile, over the key tiles at or before it ------------------------------
// dq = scale dS k, with dS recomputed as in step 2 (no atomics: each block owns its rows of dq).
template <int DP, typename S>
__global__ void __launch_bounds__(kThreads)
    dq_kernel(const S* __restrict__ qkv, const S* __restrict__ dout, const float* __restrict__ lse2,
              const float* __restrict__ delta, S* __restrict__ dqkv, Shape sh) {
    using Dm = Dims<DP>;
    __shared__ float4 smem[3 * Dm::kTileElems / 8];  // sK, sKt, sV (sQ, sdO while staging)
    uint16_t* sK = reinterpret_cast<uint16_t*>(smem);
    uint16_t* sKt = sK + Dm::kTileElems;
    uint16_t* sV = sKt + Dm::kTileElems;

    const Pos p = block_pos(sh);
    const int tile = p.tile, warp = p.warp, g = p.g, t = p.t;
    const int32_t bh = p.bh, T = sh.T, q0 = tile * kTile;
    const S *base = qkv + p.qkv, *dbase = dout + p.dout;

    load_tile<DP>(base, sh.ld_qkv, q0, T, sh.D, sK, nullptr);   // q, staged in sK
    load_tile<DP>(dbase, sh.ld_o, q0, T, sh.D, sV, nullptr);    // do, staged in sV
    __syncthreads();
    uint32_t qa[DP / 16][4], doa[DP / 16][4];
    load_a<DP>(sK, warp * 16, qa);
    load_a<DP>(sV, warp * 16, doa);

    const int32_t row_lo = q0 + warp * 16 + g, row_hi = row_lo + 8;
    const float* L = lse2 + int64_t(bh) * T;
    const float* Dl = delta + int64_t(bh) * T;
    const float lse_lo = row_lo < T ? L[row_lo] : 0.0f, lse_hi = row_hi < T ? L[row_hi] : 0.0f;
    const float del_lo = row_lo < T ? Dl[row_lo] : 0.0f, del_hi = row_hi < T ? Dl[row_hi] : 0.0f;
    float dq[DP / 8][4];
    zero(dq);
    for (int kt = 0; kt <= tile; ++kt) {
        const int32_t k0 = kt * kTile;
        __syncthreads();
        load_tile<DP>(base + sh.C, sh.ld_qkv, k0, T, sh.D, sK, sKt);
        load_tile<DP>(base + 2 * sh.C, sh.ld_qkv, k0, T, sh.D, sV, nullptr);
        __syncthreads();
        float p[8][4], dp[8][4];
        zero(p);
        zero(dp);
        mma_rows<8, DP / 16>(p, qa, sK, Dm::kRow);    // S = q k^T
        mma_rows<8, DP / 16>(dp, doa, sV, Dm::kRow);  // dP = do v^T
#pragma unroll
        for (int n = 0; n < 8; ++n)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int32_t key = k0 + n * 8 + 2 * t + (e & 1);
                const bool hi = e >= 2;
                const int32_t row = hi ? row_hi : row_lo;
                const float pv = key <= row ? exp2f(p[n][e] * sh.c - (hi ? lse_hi : lse_lo)) : 0.0f;
                dp[n][e] = pv * (dp[n][e] - (hi ? del_hi : del_lo));
            }
        uint32_t dsa[4][4];
        acc_to_a(dp, dsa);
        mma_rows<DP / 8, 4>(dq, dsa, sKt, Dm::kCol);  // dq += dS k
    }
    const float sc = sh.c / kLog2e;
    store_rows<DP>(dq, sc, sc, dqkv + p.qkv, sh.ld_qkv, q0 + warp * 16, T, sh.D);
}

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda::flash
