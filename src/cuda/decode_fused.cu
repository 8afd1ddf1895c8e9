// Fused decode step (see decode_fused.cuh).
#ifndef IGPT_CUDA_EMU
#include <cooperative_groups.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "decode_fused.cuh"

namespace cg = cooperative_groups;

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

namespace {

constexpr int kThreads = 512, kWarps = kThreads / 32;
static_assert((kWarps & (kWarps - 1)) == 0, "gemv_split gives each row a power-of-two share of the warps");
constexpr int kUnroll = 4;      // 16-byte loads each thread has in flight in the weight loops
constexpr int kAttnUnroll = 8;  // and in the KV cache loops
constexpr int kPartCols = 128;  // a warp's partial products in shared memory: gemv_mma's 2 tiles x 8 rows x 8 sequences

template <typename T> __host__ __device__ constexpr int vec_elems() { return 16 / int(sizeof(T)); }

template <typename T>
__device__ __forceinline__ void unpack(const uint4& u, float* f) {
    const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
    for (int k = 0; k < vec_elems<T>(); ++k) f[k] = to_f32(e[k]);
}

__device__ __forceinline__ uint4 ldcg4(const void* p) { return __ldcg(static_cast<const uint4*>(p)); }

__device__ __forceinline__ unsigned long long global_ns() {
#ifdef IGPT_CUDA_EMU
    return (unsigned long long)std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch()).count();
#else
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
#endif
}

// Asks L2 for the 128-byte line at p (a hint: nothing is loaded into registers).
__device__ __forceinline__ void prefetch_l2(const void* p) {
#ifndef IGPT_CUDA_EMU
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#else
    (void)p;
#endif
}

// s_in (B, C) = rms_norm(x) * g, rounded to T. Every block does all B rows (x is in L2, and every block
// reads the same lines at once, so each round trip is slow): a thread's loads for all B rows are issued
// together, so a pass costs one round trip per kThreads columns, not one per row. With one column a thread
// (C <= kThreads: iGPT-S's 512) the values stay in registers between the two passes: one round trip in
// all. Ends with a barrier.
template <typename T, int MAXB>
__device__ void stage_norm(const float* x, const float* __restrict__ g, int32_t B, int32_t C, float eps, T* s_in) {
    __shared__ float s_red[kWarps * MAXB];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const bool one_column = C <= kThreads;
    float ss[MAXB], kept[MAXB];
#pragma unroll
    for (int b = 0; b < MAXB; ++b) ss[b] = kept[b] = 0.0f;
    const float g_kept = one_column && int32_t(threadIdx.x) < C ? g[threadIdx.x] : 0.0f;  // (with x's loads)
    for (int32_t c = threadIdx.x; c < C; c += kThreads) {
        float v[MAXB];
#pragma unroll
        for (int b = 0; b < MAXB; ++b) v[b] = b < B ? __ldcg(x + int64_t(b) * C + c) : 0.0f;
#pragma unroll
        for (int b = 0; b < MAXB; ++b) {
            ss[b] += v[b] * v[b];
            kept[b] = v[b];
        }
    }
#pragma unroll
    for (int b = 0; b < MAXB; ++b) {
        const float v = warp_sum(ss[b]);
        if (lane == 0) s_red[warp * MAXB + b] = v;
    }
    __syncthreads();
    if (threadIdx.x < MAXB) {  // the rows' 1/rms, through shared memory
        float t = 0.0f;
        for (int w = 0; w < kWarps; ++w) t += s_red[w * MAXB + threadIdx.x];
        s_red[threadIdx.x] = rsqrtf(t / float(C) + eps);  // its slot for w = 0 was read only by this thread
    }
    __syncthreads();
    if (one_column) {  // (a branch, not a select in the loop below: the select made two kernels spill)
        const int32_t c = threadIdx.x;
        if (c < C) {
#pragma unroll
            for (int b = 0; b < MAXB; ++b)
                if (b < B) s_in[int64_t(b) * C + c] = from_f32<T>(kept[b] * s_red[b] * g_kept);
        }
    } else {
        for (int32_t c = threadIdx.x; c < C; c += kThreads) {
            float v[MAXB];
#pragma unroll
            for (int b = 0; b < MAXB; ++b) v[b] = b < B ? __ldcg(x + int64_t(b) * C + c) : 0.0f;
            const float gc = g[c];
#pragma unroll
            for (int b = 0; b < MAXB; ++b)
                if (b < B) s_in[int64_t(b) * C + c] = from_f32<T>(v[b] * s_red[b] * gc);
        }
    }
    __syncthreads();
}

// s_in = src (n elements of T, n * sizeof(T) a multiple of 16): 8 loads a thread in flight per round
// trip. Ends with a barrier.
template <typename T>
__device__ void stage_copy(const T* src, int64_t n, T* s_in) {
    constexpr int kBatch = 8;
    const int64_t words = n * int64_t(sizeof(T)) / 16;
    const uint4* from = reinterpret_cast<const uint4*>(src);
    uint4* to = reinterpret_cast<uint4*>(s_in);
    for (int64_t i0 = threadIdx.x; i0 < words; i0 += int64_t(kThreads) * kBatch) {
        uint4 w[kBatch];
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int64_t i = i0 + int64_t(u) * kThreads;
            w[u] = i < words ? ldcg4(from + i) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < kBatch; ++u) {
            const int64_t i = i0 + int64_t(u) * kThreads;
            if (i < words) to[i] = w[u];
        }
    }
    __syncthreads();
}

// acc[b] += W's row wr · staged row b over the row's 16-byte chunks first, first + step, ... (kUnroll loads in
// flight). Called by a whole warp.
template <typename T, int MAXB>
__device__ __forceinline__ void row_dot(const uint4* __restrict__ wr, const T* s_in, int32_t B, int32_t K,
                                        int32_t first, int32_t step, float (&acc)[MAXB]) {
    constexpr int kv = vec_elems<T>();
    const int32_t nchunks = K / kv;
    for (int32_t c0 = first; c0 < nchunks; c0 += step * kUnroll) {
        uint4 w[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int32_t c = c0 + u * step;
            w[u] = c < nchunks ? __ldg(wr + c) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
            const int32_t c = c0 + u * step;
            if (c >= nchunks) continue;
            float wf[kv];
            unpack<T>(w[u], wf);
#pragma unroll
            for (int b = 0; b < MAXB; ++b) {
                if (b >= B) continue;
                float xf[kv];
                unpack<T>(reinterpret_cast<const uint4*>(s_in + int64_t(b) * K)[c], xf);
#pragma unroll
                for (int k = 0; k < kv; ++k) acc[b] = fmaf(wf[k], xf[k], acc[b]);
            }
        }
    }
}

// res[b * N + n], or 0 when res is null: the residual a GEMV's epilogue adds to (gemv below).
__device__ __forceinline__ float load_res(const float* res, int32_t b, int32_t N, int32_t n) {
    return res ? __ldcg(res + int64_t(b) * N + n) : 0.0f;
}

// For every output row n of W (N, K) and sequence b < B: epi(b, n, dot(W[n], s_in[b]), r) with r = res[b * N +
// n], or 0 when res is null: the residual the epilogue adds to, loaded by the thread that will call epi before
// the row's products, so that its round trip overlaps theirs instead of following them. Rows go to the
// grid's warps round-robin (so a row's owner is the same warp in every layer); each lane streams 16-byte
// chunks of the row, kUnroll loads in flight. next_W: the next layer's matrix of the same shape, whose
// rows this warp will read next; they are prefetched into L2.
template <typename T, int MAXB, typename Epi>
__device__ void gemv(const T* __restrict__ W, const T* s_in, int32_t B, int32_t N, int32_t K,
                     const T* __restrict__ next_W, const float* res, Epi epi) {
    const int lane = threadIdx.x & 31;
    const int32_t gw = int32_t(blockIdx.x) * kWarps + int32_t(threadIdx.x >> 5), GW = int32_t(gridDim.x) * kWarps;
    for (int32_t n = gw; n < N; n += GW) {
        const uint4* wr = reinterpret_cast<const uint4*>(W + int64_t(n) * K);
        const float r = lane < B ? load_res(res, lane, N, n) : 0.0f;  // lane b calls epi for sequence b
        if (next_W) {
            const char* nr = reinterpret_cast<const char*>(next_W + int64_t(n) * K);
            for (int64_t off = int64_t(lane) * 128; off < int64_t(K) * int64_t(sizeof(T)); off += 32 * 128)
                prefetch_l2(nr + off);
        }
        float acc[MAXB];
#pragma unroll
        for (int b = 0; b < MAXB; ++b) acc[b] = 0.0f;
        row_dot<T, MAXB>(wr, s_in, B, K, lane, 32, acc);
        // Lane b hands sequence b's product to epi (every lane holds every sum, the same bits: a butterfly),
        // so the B epilogues run side by side. From one lane they ran one after another: proj's and mproj's
        // read x and write it back, and the compiler may not start one sequence's read before the previous
        // write (it cannot prove the rows apart), so at batch 8 they took 8 round trips to L2 a row.
        float mine = 0.0f;
#pragma unroll
        for (int b = 0; b < MAXB; ++b) {
            if (b >= B) continue;
            const float v = warp_sum(acc[b]);
            if (lane == b) mine = v;
        }
        if (lane < B) epi(lane, n, mine, r);
    }
}

// The same products split over K, for matrices with fewer rows than the grid has warps (proj and mproj,
// 512 rows against 132 x 16 warps for iGPT-S: gemv above keeps three warps in four idle there, and each
// busy one walks a whole row). A block takes R = kWarps / S rows at a time; the S warps of a row take its
// 32-chunk stripes s, s + S, s + 2S, ...; the block sums their partial products in shared memory in a
// fixed order (the same bits every run) and hands them to epi. Not inlined: inlined at its five call sites it
// made the batch-8 kernels spill (ptxas -v); called, it costs a 176-byte frame once per group of rows.
template <typename T, int MAXB, typename Epi>
IGPT_NOINLINE void gemv_split(const T* __restrict__ W, const T* s_in, int32_t B, int32_t N, int32_t K, int32_t S,
                              const T* __restrict__ next_W, const float* res, float (*s_part)[kPartCols], Epi epi) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int32_t R = kWarps / S, r = warp / S, s = warp % S, groups = (N + R - 1) / R;
    // the thread that calls epi for (row rr of the group, sequence eb), if any
    const bool epi_thread = int32_t(threadIdx.x) < R * MAXB;
    const int32_t rr = int32_t(threadIdx.x) / MAXB, eb = int32_t(threadIdx.x) % MAXB;
    const int64_t bytes = int64_t(K) * int64_t(sizeof(T));
    for (int32_t grp = int32_t(blockIdx.x); grp < groups; grp += int32_t(gridDim.x)) {
        const int32_t n = grp * R + r, nn = grp * R + rr;
        const bool epi_here = epi_thread && eb < B && nn < N;
        const float res_v = epi_here ? load_res(res, eb, N, nn) : 0.0f;
        float acc[MAXB];
#pragma unroll
        for (int b = 0; b < MAXB; ++b) acc[b] = 0.0f;
        if (n < N) {  // warp-uniform
            if (next_W) {  // this warp's stripes (512 bytes each) of the row in the next layer: 4 lanes a stripe
                const char* nr = reinterpret_cast<const char*>(next_W + int64_t(n) * K);
                for (int64_t j = lane >> 2;; j += 8) {
                    const int64_t off = (int64_t(s) + int64_t(S) * j) * 512 + int64_t(lane & 3) * 128;
                    if (off >= bytes) break;
                    prefetch_l2(nr + off);
                }
            }
            const uint4* wr = reinterpret_cast<const uint4*>(W + int64_t(n) * K);
            row_dot<T, MAXB>(wr, s_in, B, K, s * 32 + lane, 32 * S, acc);
        }
#pragma unroll
        for (int b = 0; b < MAXB; ++b) {
            if (b >= B) continue;
            const float v = warp_sum(acc[b]);
            if (lane == 0) s_part[warp][b] = v;
        }
        __syncthreads();
        if (epi_here) {
            float v = 0.0f;
            for (int32_t s2 = 0; s2 < S; ++s2) v += s_part[rr * S + s2][eb];
            epi(eb, nn, v, res_v);
        }
        __syncthreads();  // s_part is rewritten for the next group
    }
}

// How many warps share a row in gemv_split: `forced` when non-zero (IGPT_CUDA_SPLITK=N; 1, the default for
// now, is gemv), else (IGPT_CUDA_SPLITK=auto) doubled while the grid's warps outnumber the row slices twice
// over and every slice keeps at least one 16-byte chunk per lane.
__device__ __forceinline__ int32_t gemv_splits(int32_t N, int32_t K, int32_t kv, int32_t forced) {
    if (forced > 0) return forced;
    const int32_t warps = int32_t(gridDim.x) * kWarps, nchunks = K / kv;
    int32_t S = 1;
    while (S < kWarps && 2 * S * N <= warps && nchunks >= 64 * S) S *= 2;
    return S;
}

// The same products on tensor cores (IGPT_CUDA_MMA=1; f16 and bf16, K a multiple of 32, sm_80+). At batch 8
// the loop above is bound by instructions, not memory: each 16-byte chunk of a row is converted and
// multiplied against B staged rows, ~150 instructions a chunk. Here one mma.sync m16n8k16 multiplies 8 rows
// of W by 16 of K for all (up to 8) sequences: A = the staged rows (sequences as A's rows 0-7; rows 8-15
// are zero), B = the 8 rows of W (W's rows as B's columns). Any order of K within a product is fine if A
// and B agree on it: lane (g, t) = (lane / 4, lane % 4) loads the 16 bytes at K offset 8t of a 32-element
// block, of W's row g and of sequence g, and hands the first 4 elements to one MMA, the last 4 to another,
// as the pairs (k 2t, 2t+1) and (k 2t+8, 2t+9) of the fragment layout. Rows go to blocks in groups of 8 or
// 16 (grid-stride); a block's 16 warps split K, and their 8 x 8 partial products a tile are summed in shared
// memory in a fixed order (same bits every run), then handed to epi.
template <typename T>
__device__ __forceinline__ void mma_m16n8k16(float (&c)[4], uint32_t a0, uint32_t a2, uint32_t b0, uint32_t b1) {
#ifdef IGPT_CUDA_EMU
    emu_mma_16816<std::is_same_v<T, __half>>(c, {a0, 0u, a2, 0u}, {b0, b1});
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const uint32_t z = 0;
    if constexpr (std::is_same_v<T, __half>)
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a0), "r"(z), "r"(a2), "r"(z), "r"(b0), "r"(b1));
    else
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a0), "r"(z), "r"(a2), "r"(z), "r"(b0), "r"(b1));
#endif
}

template <typename T, typename Epi>
__device__ void gemv_mma(const T* __restrict__ W, const T* s_in, int32_t B, int32_t N, int32_t K,
                         const T* __restrict__ next_W, const float* res, float (*s_part)[kPartCols], Epi epi) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    // A group is one tile of 8 rows, or two (16 rows) where the matrix has more tiles than the grid has
    // blocks (iGPT-S's qkv and fc: 192 and 256 tiles on 132 SMs), so that the groups take one round, not
    // two. Each row's products are the same either way (the warps split K alike), so are the bits.
    const int32_t nt = (N + 7) / 8 > int32_t(gridDim.x) ? 2 : 1, R = 8 * nt;
    const int32_t nkb = K / 32, groups = (N + R - 1) / R;
    // epi's (tile, sequence, row) for threads < 64 * nt: the index of its sum in s_part's rows
    const int32_t ej = int32_t(threadIdx.x) >> 6, eb = (int32_t(threadIdx.x) >> 3) & 7, er = int32_t(threadIdx.x) & 7;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    for (int32_t grp = int32_t(blockIdx.x); grp < groups; grp += int32_t(gridDim.x)) {
        const int32_t n0 = grp * R, rows = min(R, N - n0);
        const bool epi_here = int32_t(threadIdx.x) < 64 * nt && eb < B && 8 * ej + er < rows;
        const float res_v = epi_here ? load_res(res, eb, N, n0 + 8 * ej + er) : 0.0f;
        if (next_W) {  // the group's rows of the next layer's matrix are contiguous
            const char* nr = reinterpret_cast<const char*>(next_W + int64_t(n0) * K);
            for (int64_t off = int64_t(threadIdx.x) * 128; off < int64_t(rows) * K * int64_t(sizeof(T));
                 off += int64_t(kThreads) * 128)
                prefetch_l2(nr + off);
        }
        const bool x_ok = g < B;
        const uint4* xr = reinterpret_cast<const uint4*>(s_in + int64_t(x_ok ? g : 0) * K + 8 * t);
        bool w_ok[2];
        const uint4* wr[2];
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            w_ok[j] = j < nt && 8 * j + g < rows;
            wr[j] = reinterpret_cast<const uint4*>(W + int64_t(n0 + (w_ok[j] ? 8 * j + g : 0)) * K + 8 * t);
        }
        float c[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
        for (int32_t kb0 = warp; kb0 < nkb; kb0 += kWarps * kUnroll) {
            uint4 w[kUnroll][2], x[kUnroll];
#pragma unroll
            for (int u = 0; u < kUnroll; ++u) {
                const int32_t kb = kb0 + u * kWarps;  // a block of 32 elements is 4 uint4 of 8
                x[u] = kb < nkb && x_ok ? xr[int64_t(kb) * 4] : zero;
#pragma unroll
                for (int j = 0; j < 2; ++j) w[u][j] = kb < nkb && w_ok[j] ? __ldg(wr[j] + int64_t(kb) * 4) : zero;
            }
#pragma unroll
            for (int u = 0; u < kUnroll; ++u)
#pragma unroll
                for (int j = 0; j < 2; ++j) {
                    if (j >= nt) continue;  // (uniform over the warp, as mma.sync needs)
                    mma_m16n8k16<T>(c[j], x[u].x, x[u].y, w[u][j].x, w[u][j].y);
                    mma_m16n8k16<T>(c[j], x[u].z, x[u].w, w[u][j].z, w[u][j].w);
                }
        }
        // c[j][0], c[j][1]: sequence g, rows n0 + 8j + 2t and + 1 (c[j][2], c[j][3]: A's zero rows 8-15)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
            if (j >= nt) continue;
            s_part[warp][64 * j + g * 8 + 2 * t] = c[j][0];
            s_part[warp][64 * j + g * 8 + 2 * t + 1] = c[j][1];
        }
        __syncthreads();
        if (int32_t(threadIdx.x) < 64 * nt) {
            float v = 0.0f;
#pragma unroll
            for (int w2 = 0; w2 < kWarps; ++w2) v += s_part[w2][threadIdx.x];
            if (epi_here) epi(eb, n0 + 8 * ej + er, v, res_v);
        }
        __syncthreads();  // s_part is rewritten for the next group
    }
}

// The tensor-core products in the kernel compiled with MMA (the plan picks it), else the loops above (split
// over K as gemv_splits says). s_part: kWarps x kPartCols floats of shared memory for the partial products.
template <typename T, int MAXB, bool MMA, typename Epi>
__device__ __forceinline__ void gemv_any(const T* __restrict__ W, const T* s_in, int32_t B, int32_t N, int32_t K,
                                         int32_t splitk, const T* __restrict__ next_W, const float* res,
                                         float (*s_part)[kPartCols], Epi epi) {
#if (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800) || defined(IGPT_CUDA_EMU)
    if constexpr (MMA && !std::is_same_v<T, float>) {
        gemv_mma<T>(W, s_in, B, N, K, next_W, res, s_part, epi);
        return;
    }
#endif
    const int32_t S = gemv_splits(N, K, vec_elems<T>(), splitk);
    if (S > 1) gemv_split<T, MAXB>(W, s_in, B, N, K, S, next_W, res, s_part, epi);
    else gemv<T, MAXB>(W, s_in, B, N, K, next_W, res, epi);
}

// Attention of the step's query against keys [0, p] of one layer, split over (b, h, chunk) items.
template <typename T>
__device__ void attention(const FusedDecodeArgs& a, int32_t nsplit, int32_t chunk, const T* q, const T* kc,
                          const T* vc, int32_t p, T* att, float* smem) {
    constexpr int kv = vec_elems<T>();
    const int32_t D = a.D, NH = a.NH, C = a.C, T_ = a.T;
    const int32_t LPK = D / kv, KPW = 32 / LPK, G = kThreads / LPK;  // lanes per key row, keys per warp, PV groups
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const float scale_log2 = a.scale * 1.4426950408889634f;
    float* sq = smem;              // (D) scaled query
    float* sp = sq + D;            // (chunk) scores, then weights
    float* sred = sp + chunk;      // (G, D) partial P·V
    __shared__ float sscr[32];
    __shared__ int s_last;
    const int32_t items = a.B * NH * nsplit;
    for (int32_t it = blockIdx.x; it < items; it += gridDim.x) {
        const int32_t split = it % nsplit, bh = it / nsplit, h = bh % NH, b = bh / NH;
        const int32_t k0 = split * chunk, k1 = min(p + 1, k0 + chunk), cnt = max(0, k1 - k0);
        float mx = -INFINITY, sum = 0.0f, o = 0.0f;  // o: dim tid (tid < D)
        if (cnt > 0) {  // uniform over the block
            for (int32_t d = tid; d < D; d += kThreads) sq[d] = to_f32(__ldcg(q + int64_t(b) * C + int64_t(h) * D + d)) * scale_log2;
            __syncthreads();
            // Key k0 + j: from the shared prompt's sequence below a.shared_len (nsh keys of this chunk), else
            // from b's own cache.
            const int64_t head = (int64_t(b) * NH + h) * T_, head0 = (int64_t(a.shared_src) * NH + h) * T_;
            const int32_t nsh = a.shared_len - k0;
            const T* kb = kc + (head + k0) * D;
            const T* kb0 = kc + (head0 + k0) * D;
            const int sub = lane % LPK, kw = lane / LPK;
            float lmax = -INFINITY;
            for (int32_t j0 = warp * KPW; j0 < cnt; j0 += kWarps * KPW * kAttnUnroll) {  // warp-uniform bounds
                uint4 kr[kAttnUnroll];
#pragma unroll
                for (int u = 0; u < kAttnUnroll; ++u) {
                    const int32_t j = j0 + u * kWarps * KPW + kw;
                    kr[u] = j < cnt ? ldcg4((j < nsh ? kb0 : kb) + int64_t(j) * D + sub * kv) : make_uint4(0, 0, 0, 0);
                }
#pragma unroll
                for (int u = 0; u < kAttnUnroll; ++u) {
                    const int32_t j = j0 + u * kWarps * KPW + kw;
                    float f[kv];
                    unpack<T>(kr[u], f);
                    float s = 0.0f;
#pragma unroll
                    for (int k = 0; k < kv; ++k) s = fmaf(sq[sub * kv + k], f[k], s);
                    for (int o2 = LPK >> 1; o2 > 0; o2 >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o2);
                    if (j < cnt) {
                        if (sub == 0) sp[j] = s;
                        lmax = fmaxf(lmax, s);
                    }
                }
            }
            mx = block_max(lmax, sscr);  // its barriers also publish sp
            float lsum = 0.0f;
            for (int32_t j = tid; j < cnt; j += kThreads) {
                const float e = exp2f(sp[j] - mx);
                sp[j] = e;
                lsum += e;
            }
            sum = block_sum(lsum, sscr);
            // P·V: thread (g, c) sums keys g, g + G, ... of dims [c*kv, c*kv + kv).
            const int32_t c = tid % LPK, g = tid / LPK;
            float acc[kv];
#pragma unroll
            for (int k = 0; k < kv; ++k) acc[k] = 0.0f;
            const T* vb = vc + (head + k0) * D + c * kv;
            const T* vb0 = vc + (head0 + k0) * D + c * kv;
            for (int32_t j0 = g; j0 < cnt; j0 += G * kAttnUnroll) {
                uint4 vr[kAttnUnroll];
#pragma unroll
                for (int u = 0; u < kAttnUnroll; ++u) {
                    const int32_t j = j0 + u * G;
                    vr[u] = j < cnt ? ldcg4((j < nsh ? vb0 : vb) + int64_t(j) * D) : make_uint4(0, 0, 0, 0);
                }
#pragma unroll
                for (int u = 0; u < kAttnUnroll; ++u) {
                    const int32_t j = j0 + u * G;
                    if (j >= cnt) continue;
                    float f[kv];
                    unpack<T>(vr[u], f);
                    const float pj = sp[j];
#pragma unroll
                    for (int k = 0; k < kv; ++k) acc[k] = fmaf(pj, f[k], acc[k]);
                }
            }
#pragma unroll
            for (int k = 0; k < kv; ++k) sred[g * D + c * kv + k] = acc[k];
            __syncthreads();
            // Sum the G groups: kThreads / D parts of G / parts groups each, then the parts.
            const int32_t parts = kThreads / D, dd = tid % D, part = tid / D;
            float op = 0.0f;
            for (int32_t gg = part; gg < G; gg += parts) op += sred[gg * D + dd];
            __syncthreads();
            sred[part * D + dd] = op;
            __syncthreads();
            if (tid < D)
                for (int32_t pp = 0; pp < parts; ++pp) o += sred[pp * D + tid];
        }
        T* out = att + int64_t(b) * C + int64_t(h) * D;
        if (nsplit == 1) {
            if (tid < D) out[tid] = from_f32<T>(o / sum);
        } else {
            float* ml = a.ws;                                   // (items, 2)
            float* po = a.ws + size_t(items) * 2;               // (items, D)
            if (tid < D) po[int64_t(it) * D + tid] = o;
            if (tid == 0) {
                ml[int64_t(it) * 2] = mx;
                ml[int64_t(it) * 2 + 1] = sum;
            }
            __threadfence();
            __syncthreads();
            if (tid == 0) s_last = atomicAdd(a.counters + bh, 1) == nsplit - 1;
            __syncthreads();
            if (s_last) {  // every chunk of (b, h) is in: merge them
                __threadfence();
                const int64_t s0 = int64_t(bh) * nsplit;
                float* sw = sred;  // (nsplit, 2): max and sum of each chunk
                for (int32_t s = tid; s < nsplit; s += kThreads) {
                    sw[2 * s] = __ldcg(ml + (s0 + s) * 2);
                    sw[2 * s + 1] = __ldcg(ml + (s0 + s) * 2 + 1);
                }
                __syncthreads();
                float M = -INFINITY;
                for (int32_t s = 0; s < nsplit; ++s)
                    if (sw[2 * s + 1] > 0.0f) M = fmaxf(M, sw[2 * s]);
                float L = 0.0f;
                for (int32_t s = 0; s < nsplit; ++s)
                    if (sw[2 * s + 1] > 0.0f) L += sw[2 * s + 1] * exp2f(sw[2 * s] - M);
                float* wgt = sw + 2 * nsplit;  // (nsplit) the chunks' weights
                for (int32_t s = tid; s < nsplit; s += kThreads)
                    wgt[s] = sw[2 * s + 1] > 0.0f ? exp2f(sw[2 * s] - M) : 0.0f;
                __syncthreads();
                if (tid < D) {  // empty chunks wrote o = 0 and weigh 0: no branch, the loads pipeline
                    float acc = 0.0f;
#pragma unroll 8
                    for (int32_t s = 0; s < nsplit; ++s) acc += __ldcg(po + (s0 + s) * D + tid) * wgt[s];
                    out[tid] = from_f32<T>(acc / L);
                }
                if (tid == 0) a.counters[bh] = 0;  // reused by the next layer, after a grid barrier
            }
        }
        __syncthreads();  // shared memory is reused by the next item
    }
}

// One-pass attention (IGPT_CUDA_ONEPASS=1; not measured on a GPU yet): the same (sequence, head, chunk) items
// as attention() above, with a shorter chain of dependent steps. A thread loads its slice of q and its keys'
// and values' slices in one go (kUnrollKV keys deep), and keeps an online softmax of its own keys in
// registers: running max m, sum l and P·V o. The lanes of a warp that hold the same dims merge their
// states by shuffles, the warps theirs through shared memory (one block barrier), and the item's state,
// unnormalised, goes to a.ws: no scores in shared memory, no block max and sum, no counters, no last block
// merging the chunks. The next phase's staging (stage_attention) merges a (sequence, head)'s chunks.
// Merging (m1, l1, o1) and (m2, l2, o2): m = max, w_i = 2^(m_i - m) (0 for an empty state, m_i = -inf),
// l = w_1 l1 + w_2 l2, o likewise. Registers are tight (the kernel's 128; ptxas -v showed spills with q
// unpacked once and kept as floats, so it is unpacked per key).
__device__ __forceinline__ float state_weight(float mi, float m) { return mi == -INFINITY ? 0.0f : exp2f(mi - m); }

template <typename T>
__device__ void attention_onepass(const FusedDecodeArgs& a, int32_t nsplit, int32_t chunk, const T* q, const T* kc,
                                  const T* vc, int32_t p, float* smem) {
    constexpr int kv = vec_elems<T>();
    // keys a thread loads at once: 8 (iGPT-S at batch 8: a chunk's 512 keys in one round), 4 in bf16, whose
    // kernels spilled at 8 (ptxas -v)
    constexpr int kUnrollKV = std::is_same_v<T, __nv_bfloat16> ? 4 : kAttnUnroll;
    const int32_t D = a.D, NH = a.NH, C = a.C, T_ = a.T;
    const int32_t LPK = D / kv, KPW = 32 / LPK;  // lanes per key row, keys per warp
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, sub = lane % LPK, kw = lane / LPK;
    const float scale_log2 = a.scale * 1.4426950408889634f;
    float* s_ml = smem;              // (kWarps, 2) each warp's m and l
    float* s_o = smem + 2 * kWarps;  // (kWarps, D) each warp's o
    const int32_t items = a.B * NH * nsplit;
    float* ml = a.ws;                        // (items, 2)
    float* po = a.ws + size_t(items) * 2;    // (items, D)
    for (int32_t it = blockIdx.x; it < items; it += gridDim.x) {
        const int32_t split = it % nsplit, bh = it / nsplit, h = bh % NH, b = bh / NH;
        const int32_t k0 = split * chunk, cnt = max(0, min(p + 1, k0 + chunk) - k0);
        float m = -INFINITY, l = 0.0f, o[kv];
#pragma unroll
        for (int k = 0; k < kv; ++k) o[k] = 0.0f;
        const uint4 qw = ldcg4(q + int64_t(b) * C + int64_t(h) * D + sub * kv);  // unpacked where used: registers
        // Key k0 + j: from the shared prompt's sequence below a.shared_len (nsh keys of this chunk), else
        // from b's own cache.
        const int64_t head = (int64_t(b) * NH + h) * T_, head0 = (int64_t(a.shared_src) * NH + h) * T_;
        const int32_t nsh = a.shared_len - k0;
        const int64_t own = (head + k0) * D + sub * kv, shared = (head0 + k0) * D + sub * kv;  // key j0's slice
        for (int32_t j0 = warp * KPW; j0 < cnt; j0 += kWarps * KPW * kUnrollKV) {  // warp-uniform bounds
            uint4 kr[kUnrollKV], vr[kUnrollKV];
#pragma unroll
            for (int u = 0; u < kUnrollKV; ++u) {
                const int32_t j = j0 + u * kWarps * KPW + kw;
                const int64_t at = (j < nsh ? shared : own) + int64_t(j) * D;  // the same offset in both caches
                kr[u] = j < cnt ? ldcg4(kc + at) : make_uint4(0, 0, 0, 0);
                vr[u] = j < cnt ? ldcg4(vc + at) : make_uint4(0, 0, 0, 0);
            }
            float s[kUnrollKV];
            float mu = -INFINITY;  // the largest score of this thread's keys in the round
#pragma unroll
            for (int u = 0; u < kUnrollKV; ++u) {
                float f[kv], qf[kv];
                unpack<T>(kr[u], f);
                unpack<T>(qw, qf);
                float d = 0.0f;
#pragma unroll
                for (int k = 0; k < kv; ++k) d = fmaf(qf[k], f[k], d);
                for (int o2 = LPK >> 1; o2 > 0; o2 >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o2);
                s[u] = d * scale_log2;
                if (j0 + u * kWarps * KPW + kw < cnt) mu = fmaxf(mu, s[u]);
            }
            if (mu != -INFINITY) {
                const float mn = fmaxf(m, mu), alpha = state_weight(m, mn);
                l *= alpha;
#pragma unroll
                for (int k = 0; k < kv; ++k) o[k] *= alpha;
#pragma unroll
                for (int u = 0; u < kUnrollKV; ++u) {
                    if (j0 + u * kWarps * KPW + kw >= cnt) continue;
                    const float pj = exp2f(s[u] - mn);
                    float f[kv];
                    unpack<T>(vr[u], f);
                    l += pj;
#pragma unroll
                    for (int k = 0; k < kv; ++k) o[k] = fmaf(pj, f[k], o[k]);
                }
                m = mn;
            }
        }
        // The warp's KPW key groups, lanes with the same sub (same dims): merged by shuffles.
        for (int o2 = LPK; o2 < 32; o2 <<= 1) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m, o2), l2 = __shfl_xor_sync(0xffffffffu, l, o2);
            const float mn = fmaxf(m, m2), w1 = state_weight(m, mn), w2 = state_weight(m2, mn);
            l = l * w1 + l2 * w2;
#pragma unroll
            for (int k = 0; k < kv; ++k) o[k] = o[k] * w1 + __shfl_xor_sync(0xffffffffu, o[k], o2) * w2;
            m = mn;
        }
        if (kw == 0) {
#pragma unroll
            for (int k = 0; k < kv; ++k) s_o[warp * D + sub * kv + k] = o[k];
            if (sub == 0) {
                s_ml[2 * warp] = m;
                s_ml[2 * warp + 1] = l;
            }
        }
        __syncthreads();
        if (tid < D) {  // the warps, in order
            float M = -INFINITY, L = 0.0f, O = 0.0f;
            for (int w = 0; w < kWarps; ++w) M = fmaxf(M, s_ml[2 * w]);
            for (int w = 0; w < kWarps; ++w) {
                const float wt = state_weight(s_ml[2 * w], M);
                L += s_ml[2 * w + 1] * wt;
                O += s_o[w * D + tid] * wt;
            }
            po[int64_t(it) * D + tid] = O;
            if (tid == 0) {
                ml[int64_t(it) * 2] = M;
                ml[int64_t(it) * 2 + 1] = L;
            }
        }
        __syncthreads();  // shared memory is reused by the next item
    }
}

__host__ __device__ constexpr int64_t round16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

// Floats of attention_onepass's states for B sequences (m and l of every item, then o), rounded up to whole
// 16-byte words: stage_attention copies them as such.
__host__ __device__ constexpr int64_t onepass_state_floats(int32_t B, int32_t NH, int32_t nsplit, int32_t D) {
    return (int64_t(B) * NH * nsplit * (D + 2) + 3) / 4 * 4;
}

// s_in (B, C) = the attention output from attention_onepass's states in ws: all of them copied to shared
// memory after s_in first (one round trip; ~34 KB for iGPT-S, whatever the batch), then a (sequence,
// head)'s chunks merged in order there, o / l, rounded to T. Ends with a barrier.
template <typename T>
IGPT_NOINLINE void stage_attention(const float* ws, int32_t B, int32_t C, int32_t NH, int32_t D, int32_t nsplit,
                                T* s_in) {
    const int64_t s_in_bytes = round16(int64_t(B) * C * int64_t(sizeof(T)));
    float* s_ws = reinterpret_cast<float*>(reinterpret_cast<char*>(s_in) + s_in_bytes);
    stage_copy<float>(ws, onepass_state_floats(B, NH, nsplit, D), s_ws);
    const float* ml = s_ws;                                       // (items, 2)
    const float* po = s_ws + int64_t(B) * NH * nsplit * 2;        // (items, D)
    for (int32_t e = threadIdx.x; e < B * C; e += kThreads) {
        const int32_t b = e / C, c = e % C, h = c / D, d = c % D;
        const int64_t s0 = (int64_t(b) * NH + h) * nsplit;
        float M = -INFINITY, L = 0.0f, O = 0.0f;
        for (int32_t s = 0; s < nsplit; ++s) {
            const float ms = ml[(s0 + s) * 2], mn = fmaxf(M, ms), w1 = state_weight(M, mn), w2 = state_weight(ms, mn);
            L = L * w1 + ml[(s0 + s) * 2 + 1] * w2;
            O = O * w1 + po[(s0 + s) * D + d] * w2;
            M = mn;
        }
        s_in[e] = from_f32<T>(O / L);
    }
    __syncthreads();
}

template <typename T, int MAXB, bool MMA>
__global__ void __launch_bounds__(kThreads, 1) fused_decode_kernel(FusedDecodeArgs a, int32_t nsplit, int32_t chunk,
                                                                    int32_t splitk, bool onepass) {
    cg::grid_group grid = cg::this_grid();
    IGPT_DYNAMIC_SHARED(uint4, smem_words);  // (16-byte aligned)
    unsigned char* smem_raw = reinterpret_cast<unsigned char*>(smem_words);
    T* s_in = reinterpret_cast<T*>(smem_raw);
    __shared__ float s_part[kWarps][kPartCols];  // gemv_mma's and gemv_split's partial products
    const int32_t p = a.pos_dev ? *a.pos_dev : a.pos;
    const int32_t B = a.B, C = a.C, H = a.H, NH = a.NH, D = a.D, T_ = a.T;
    T* q = static_cast<T*>(a.q);
    T* att = static_cast<T*>(a.att);
    T* fch = static_cast<T*>(a.fch);
    float* x = a.x;
    // x += v (+ bias), x's old value xv loaded by the GEMV before the row's products (its res argument)
    auto add_x = [&](int32_t b, int32_t n, float v, float xv, const float* bias) {
        if (bias) v += bias[n];
        __stcg(x + int64_t(b) * C + n, xv + v);
    };
    // Optional timing (a.prof): each block's time in each phase and its wait at the barrier after it.
    const bool rec = a.prof && threadIdx.x == 0;
    unsigned long long* prof = rec ? a.prof + int64_t(blockIdx.x) * kFusedProfileSlots : nullptr;
    unsigned long long t_mark = rec ? global_ns() : 0;
    auto mark = [&](int slot) {
        if (!rec) return;
        const unsigned long long now = global_ns();
        prof[slot] += now - t_mark;
        t_mark = now;
    };
    auto barrier = [&](int phase) {
        mark(2 * phase);
        grid.sync();
        mark(2 * phase + 1);
    };
    for (int32_t l = 0; l < a.L; ++l) {
        const FusedLayerWeights w = a.layers[l];
        const FusedLayerWeights* nw = l + 1 < a.L ? a.layers + l + 1 : nullptr;
        T* kc = static_cast<T*>(a.k_cache) + int64_t(l) * a.layer_cache_elems;
        T* vc = static_cast<T*>(a.v_cache) + int64_t(l) * a.layer_cache_elems;

        // 1. attn_norm + qkv (+ bias): q to its buffer, k and v into the cache at position p.
        stage_norm<T, MAXB>(x, w.ln1_g, B, C, a.eps, s_in);
        gemv_any<T, MAXB, MMA>(static_cast<const T*>(w.qkv_w), s_in, B, 3 * C, C, splitk,
                               nw ? static_cast<const T*>(nw->qkv_w) : nullptr, nullptr, s_part,
                               [&](int32_t b, int32_t n, float v, float) {
                          if (w.qkv_b) v += w.qkv_b[n];
                          if (n < C) {
                              __stcg(q + int64_t(b) * C + n, from_f32<T>(v));
                          } else {
                              const int32_t c = (n - C) % C, h = c / D, d = c % D;
                              T* cache = n < 2 * C ? kc : vc;
                              __stcg(cache + ((int64_t(b) * NH + h) * T_ + p) * D + d, from_f32<T>(v));
                          }
                      });
        barrier(0);
        // 2. attention (one-pass: its chunks are merged by the staging of 3)
        if (onepass) attention_onepass<T>(a, nsplit, chunk, q, kc, vc, p, reinterpret_cast<float*>(smem_raw));
        else attention<T>(a, nsplit, chunk, q, kc, vc, p, att, reinterpret_cast<float*>(smem_raw));
        barrier(1);
        // 3. x += att · proj^T (+ bias)
        if (onepass) stage_attention<T>(a.ws, B, C, NH, D, nsplit, s_in);
        else stage_copy<T>(att, int64_t(B) * C, s_in);
        gemv_any<T, MAXB, MMA>(static_cast<const T*>(w.proj_w), s_in, B, C, C, splitk,
                               nw ? static_cast<const T*>(nw->proj_w) : nullptr, x, s_part,
                               [&](int32_t b, int32_t n, float v, float xv) { add_x(b, n, v, xv, w.proj_b); });
        barrier(2);
        // 4. mlp_norm + fc (+ bias) + quick-GELU
        stage_norm<T, MAXB>(x, w.ln2_g, B, C, a.eps, s_in);
        gemv_any<T, MAXB, MMA>(static_cast<const T*>(w.fc_w), s_in, B, H, C, splitk,
                               nw ? static_cast<const T*>(nw->fc_w) : nullptr, nullptr, s_part,
                               [&](int32_t b, int32_t n, float v, float) {
                          if (w.fc_b) v += w.fc_b[n];
                          __stcg(fch + int64_t(b) * H + n, from_f32<T>(v / (1.0f + expf(-1.702f * v))));
                      });
        barrier(3);
        // 5. x += h · mproj^T (+ bias)
        stage_copy<T>(fch, int64_t(B) * H, s_in);
        gemv_any<T, MAXB, MMA>(static_cast<const T*>(w.mproj_w), s_in, B, C, H, splitk,
                               nw ? static_cast<const T*>(nw->mproj_w) : nullptr, x, s_part,
                               [&](int32_t b, int32_t n, float v, float xv) { add_x(b, n, v, xv, w.mproj_b); });
        barrier(4);
    }
    // Final norm + head: f32 logits.
    stage_norm<T, MAXB>(x, a.lnf_g, B, C, a.eps, s_in);
    float* logits = a.logits;
    const int32_t V = a.V;
    gemv_any<T, MAXB, MMA>(static_cast<const T*>(a.head_w), s_in, B, V, C, splitk, nullptr, nullptr, s_part,
                           [&](int32_t b, int32_t n, float v, float) { logits[int64_t(b) * V + n] = v; });
    mark(10);
    if (rec) prof[11] += 1;
}

template <typename T, int MAXB, bool MMA> void* kernel_ptr() {
    return reinterpret_cast<void*>(fused_decode_kernel<T, MAXB, MMA && !std::is_same_v<T, float>>);
}

template <typename F> void dispatch_mma(bool mma, F&& f) {
    if (mma) f(std::true_type{});
    else f(std::false_type{});
}

template <typename F> void dispatch_batch(int32_t B, F&& f) {
    if (B <= 1) f(std::integral_constant<int, 1>{});
    else if (B <= 4) f(std::integral_constant<int, 4>{});
    else f(std::integral_constant<int, 8>{});  // kFusedMaxBatch
}

}  // namespace

int32_t fused_splitk_from_env() {
    const char* sk = std::getenv("IGPT_CUDA_SPLITK");
    if (!sk || !*sk) return 1;
    if (std::strcmp(sk, "auto") == 0) return 0;
    std::string allowed;
    for (int32_t s = 1; s <= kWarps; s *= 2) {
        if (std::strcmp(sk, std::to_string(s).c_str()) == 0) return s;
        allowed += std::to_string(s) + (s * 2 <= kWarps ? ", " : "");
    }
    throw Error(std::string("IGPT_CUDA_SPLITK must be auto or one of ") + allowed + ", not '" + sk + "'");
}

FusedDecodePlan plan_fused_decode(DevType t, int32_t B, int32_t C, int32_t H, int32_t NH, int32_t D, int32_t T) {
    FusedDecodePlan plan;
    const int32_t kv = 16 / int32_t(dev_type_size(t));
    if (B < 1 || B > kFusedMaxBatch) {
        plan.why = "batch " + std::to_string(B) + " is over " + std::to_string(kFusedMaxBatch);
        return plan;
    }
    if (D % kv != 0 || 32 % (D / kv) != 0 || C % kv != 0 || H % kv != 0) {
        plan.why = "widths not a multiple of 16 bytes (head dim " + std::to_string(D) + ")";
        return plan;
    }
    int device = 0, sms = 0;
    IGPT_CUDA_CHECK(cudaGetDevice(&device));
    IGPT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    int coop = 0, smem_max = 0;
    IGPT_CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, device));
    IGPT_CUDA_CHECK(cudaDeviceGetAttribute(&smem_max, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    if (!coop) {
        plan.why = "the device has no cooperative launch";
        return plan;
    }
    // Attention split: about one (b, h, chunk) item per block; chunks a multiple of 32 keys.
    const int32_t grid = sms;
    int32_t nsplit = std::max(1, grid / (B * NH));
    int32_t chunk = (T + nsplit - 1) / nsplit;
    chunk = (chunk + 31) / 32 * 32;
    nsplit = (T + chunk - 1) / chunk;
    const size_t es = dev_type_size(t);
    const size_t stage = size_t(B) * size_t(std::max(C, H)) * es;
    // IGPT_CUDA_ONEPASS=1: attention_onepass, and stage_attention's copy of its states after s_in.
    const bool onepass = env_is_one("IGPT_CUDA_ONEPASS");
    const size_t attn = onepass ? size_t(kWarps) * size_t(D + 2) * 4
                                : (size_t(D) + size_t(chunk) + size_t(kThreads) * size_t(kv)) * 4;
    const size_t merge =
        onepass ? size_t(round16(int64_t(B) * C * int64_t(es)) + onepass_state_floats(B, NH, nsplit, D) * 4) : 0;
    // dynamic; checked with the static below
    const size_t smem = size_t(round16(int64_t(std::max({stage, attn, merge}))));
    // IGPT_CUDA_MMA=1: the GEMV phases on tensor cores (gemv_mma; f16/bf16, widths a multiple of 32, sm_80+).
    int major = 0;
    IGPT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    const bool mma = env_is_one("IGPT_CUDA_MMA") && t != DevType::F32 && C % 32 == 0 && H % 32 == 0 && major >= 8;
    const int32_t splitk = fused_splitk_from_env();
    int blocks_per_sm = 0;
    size_t static_smem = 0;
    dispatch_type(t, [&](auto tag) {
        using E = decltype(tag);
        dispatch_batch(B, [&](auto mb) {
            dispatch_mma(mma, [&](auto mm) {
                void* k = kernel_ptr<E, decltype(mb)::value, decltype(mm)::value>();
                cudaFuncAttributes fa{};
                IGPT_CUDA_CHECK(cudaFuncGetAttributes(&fa, k));
                static_smem = fa.sharedSizeBytes;
                if (smem + static_smem > size_t(smem_max)) return;  // (plan.why below)
                IGPT_CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
                IGPT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks_per_sm, k, kThreads, smem));
            });
        });
    });
    if (smem + static_smem > size_t(smem_max)) {
        plan.why = "needs " + std::to_string(smem + static_smem) + " bytes of shared memory (the device has " +
                   std::to_string(smem_max) + ")";
        return plan;
    }
    if (blocks_per_sm < 1) {
        plan.why = "a block of " + std::to_string(kThreads) + " threads does not fit on an SM";
        return plan;
    }
    plan.ok = true;
    plan.mma = mma;
    plan.splitk = splitk;
    plan.onepass = onepass;
    plan.grid = grid;
    plan.max_batch = B;
    plan.nsplit = nsplit;
    plan.chunk = chunk;
    plan.smem = smem;
    plan.ws_floats = size_t(onepass_state_floats(B, NH, nsplit, D));  // (attention()'s partials: the same layout)
    plan.counters = size_t(B) * size_t(NH);
    return plan;
}

void fused_decode(const FusedDecodeArgs& a, const FusedDecodePlan& plan, cudaStream_t stream) {
    if (!plan.ok) throw Error("fused decode: " + plan.why);
    if (a.B < 1 || a.B > plan.max_batch) throw Error("fused decode: batch exceeds the plan's");
    dispatch_type(a.t, [&](auto tag) {
        using E = decltype(tag);
        dispatch_batch(plan.max_batch, [&](auto mb) {
          dispatch_mma(plan.mma, [&](auto mm) {
            cudaLaunchConfig_t cfg = {};
            cfg.gridDim = dim3(unsigned(plan.grid));
            cfg.blockDim = dim3(unsigned(kThreads));
            cfg.dynamicSmemBytes = plan.smem;
            cfg.stream = stream;
            cudaLaunchAttribute attr[1];
            attr[0].id = cudaLaunchAttributeCooperative;
            attr[0].val.cooperative = 1;
            cfg.attrs = attr;
            cfg.numAttrs = 1;
            IGPT_CUDA_CHECK(cudaLaunchKernelEx(
                &cfg, reinterpret_cast<void (*)(FusedDecodeArgs, int32_t, int32_t, int32_t, bool)>(
                          kernel_ptr<E, decltype(mb)::value, decltype(mm)::value>()),
                a, plan.nsplit, plan.chunk, plan.splitk, plan.onepass));
          });
        });
    });
}

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
