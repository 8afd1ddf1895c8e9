// Device sampler (see sampling.cuh). One block per sample. The logits go to shared memory; when top-k,
// top-p or recorded choices need the candidates in order, a bitonic sort orders them (logit descending,
// index ascending). Weights exp((l - max) / temperature) of the first n candidates are prefix-summed and
// a Philox uniform picks the first candidate whose running sum exceeds u * total.
#include "sampling.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint2 k) {
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        const uint32_t hi0 = __umulhi(0xD2511F53u, c.x), lo0 = 0xD2511F53u * c.x;
        const uint32_t hi1 = __umulhi(0xCD9E8D57u, c.z), lo1 = 0xCD9E8D57u * c.z;
        c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
        k.x += 0x9E3779B9u;
        k.y += 0xBB67AE85u;
    }
    return c;
}

// Uniform in [0, 1) for (seed, sample, position): 24 random bits.
__device__ __forceinline__ float uniform01(uint64_t seed, int32_t sample, int32_t pos) {
    const uint4 r = philox4x32_10(make_uint4(uint32_t(sample), uint32_t(pos), 0x1D6A1u, 0u),
                                  make_uint2(uint32_t(seed), uint32_t(seed >> 32)));
    return float(r.x >> 8) * (1.0f / 16777216.0f);
}

// a comes before b: higher logit, then lower index.
__device__ __forceinline__ bool before(float ka, int32_t ia, float kb, int32_t ib) {
    return ka > kb || (ka == kb && ia < ib);
}

// Sorts (key, idx)[0, P) into `before` order; P a power of two. Ends with a barrier.
__device__ void bitonic_sort(float* key, int32_t* idx, int32_t P) {
    for (int32_t k = 2; k <= P; k <<= 1)
        for (int32_t j = k >> 1; j > 0; j >>= 1) {
            for (int32_t i = threadIdx.x; i < P; i += blockDim.x) {
                const int32_t ixj = i ^ j;
                if (ixj <= i) continue;
                const bool up = (i & k) == 0;
                const bool ordered = before(key[i], idx[i], key[ixj], idx[ixj]);
                if (up != ordered) {
                    const float tk = key[i];
                    key[i] = key[ixj];
                    key[ixj] = tk;
                    const int32_t ti = idx[i];
                    idx[i] = idx[ixj];
                    idx[ixj] = ti;
                }
            }
            __syncthreads();
        }
}

// Thread t owns the contiguous segment [t*seg, (t+1)*seg) of [0, n).
struct Segment {
    int32_t begin, end;
};
__device__ __forceinline__ Segment my_segment(int32_t n) {
    const int32_t seg = (n + int32_t(blockDim.x) - 1) / int32_t(blockDim.x);
    const int32_t b = min(n, int32_t(threadIdx.x) * seg);
    return {b, min(n, b + seg)};
}

// In-place inclusive prefix sum of a[0, n). Starts and ends with a barrier.
__device__ void block_inclusive_scan(float* a, int32_t n, float* scratch) {
    __syncthreads();
    const Segment s = my_segment(n);
    float local = 0.0f;
    for (int32_t i = s.begin; i < s.end; ++i) local += a[i];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float incl = local;
    for (int o = 1; o < 32; o <<= 1) {
        const float y = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += y;
    }
    if (lane == 31) scratch[warp] = incl;
    __syncthreads();
    float run = incl - local;
    for (int w = 0; w < warp; ++w) run += scratch[w];
    for (int32_t i = s.begin; i < s.end; ++i) a[i] = (run += a[i]);
    __syncthreads();
}

__device__ __forceinline__ int32_t block_min_int(int32_t v, int32_t* scratch) {
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();
    if ((threadIdx.x & 31) == 0) scratch[threadIdx.x >> 5] = v;
    __syncthreads();
    int32_t r = v;
    for (int w = 0; w < int(blockDim.x >> 5); ++w) r = min(r, scratch[w]);
    return r;
}

// First i in [0, n) with cum[i] > u (ge: >= u); n - 1 when there is none. cum is non-decreasing.
__device__ int32_t first_above(const float* cum, int32_t n, float u, bool ge, int32_t* scratch) {
    const Segment s = my_segment(n);
    int32_t found = n - 1;
    for (int32_t i = s.begin; i < s.end; ++i)
        if (ge ? cum[i] >= u : cum[i] > u) {
            found = i;
            break;
        }
    return block_min_int(found, scratch);
}

// First maximum of key[0, n): the greedy choice without sorting.
__device__ int32_t block_argmax(const float* key, int32_t n, float* fscratch, int32_t* iscratch) {
    float best = -INFINITY;
    int32_t bi = n;
    for (int32_t i = threadIdx.x; i < n; i += blockDim.x)
        if (key[i] > best) {  // strided ascending: the first maximum of this thread's elements
            best = key[i];
            bi = i;
        }
    for (int o = 16; o > 0; o >>= 1) {
        const float ob = __shfl_xor_sync(0xffffffffu, best, o);
        const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (ob > best || (ob == best && oi < bi)) {
            best = ob;
            bi = oi;
        }
    }
    __syncthreads();
    if ((threadIdx.x & 31) == 0) {
        fscratch[threadIdx.x >> 5] = best;
        iscratch[threadIdx.x >> 5] = bi;
    }
    __syncthreads();
    best = fscratch[0];
    bi = iscratch[0];
    for (int w = 1; w < int(blockDim.x >> 5); ++w)
        if (fscratch[w] > best || (fscratch[w] == best && iscratch[w] < bi)) {
            best = fscratch[w];
            bi = iscratch[w];
        }
    return bi < n ? bi : 0;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(SampleArgs a, int32_t P, bool sorted) {
    IGPT_DYNAMIC_SHARED(float, smem);
    float* key = smem;                                      // (P) logits, then in candidate order
    int32_t* idx = reinterpret_cast<int32_t*>(key + P);     // (P) token of each candidate
    float* cum = reinterpret_cast<float*>(idx + P);         // (P) running sum of the weights
    __shared__ float fscratch[32];
    __shared__ int32_t iscratch[32];

    const int32_t b = blockIdx.x, V = a.V, tid = threadIdx.x;
    const int32_t p = a.pos_dev ? *a.pos_dev : a.pos;
    const float* lg = a.logits + b * a.logits_stride;
    for (int32_t i = tid; i < P; i += blockDim.x) {
        key[i] = i < V ? lg[i] : -INFINITY;
        idx[i] = i;
    }
    __syncthreads();
    if (sorted) bitonic_sort(key, idx, P);

    float mx = -INFINITY;
    for (int32_t i = tid; i < V; i += blockDim.x) mx = fmaxf(mx, key[i]);
    mx = block_max(mx, fscratch);
    // The untempered distribution: entropy (bits) and the recorded choices.
    float z = 0.0f, s1 = 0.0f;
    for (int32_t i = tid; i < V; i += blockDim.x) {
        const float d = key[i] - mx, e = expf(d);
        z += e;
        s1 += e * d;
    }
    z = block_sum(z, fscratch);
    s1 = block_sum(s1, fscratch);
    const int64_t at = int64_t(p) * a.B + b;
    if (tid == 0 && a.out_entropy) a.out_entropy[at] = fmaxf(0.0f, (logf(z) - s1 / z) * 1.4426950408889634f);
    if (sorted)
        for (int32_t i = tid; i < a.top_n; i += blockDim.x) {
            a.out_choice_tok[at * a.top_n + i] = idx[i];
            a.out_choice_p[at * a.top_n + i] = expf(key[i] - mx) / z;
        }

    int32_t tok;
    if (a.temperature <= 1e-6f) {
        tok = sorted ? idx[0] : block_argmax(key, V, fscratch, iscratch);
    } else {
        const int32_t n = sorted && a.top_k > 0 && a.top_k < V ? a.top_k : V;
        const float inv_t = 1.0f / a.temperature;
        for (int32_t i = tid; i < P; i += blockDim.x) cum[i] = i < n ? expf((key[i] - mx) * inv_t) : 0.0f;
        block_inclusive_scan(cum, P, fscratch);
        int32_t keep = n;
        if (sorted && a.top_p < 1.0f) keep = first_above(cum, n, a.top_p * cum[n - 1], true, iscratch) + 1;
        const float u = uniform01(a.seed, b, p) * cum[keep - 1];
        tok = idx[first_above(cum, keep, u, false, iscratch)];
    }
    if (tid == 0) {
        a.out_tok[at] = tok;
        if (a.next_tok) a.next_tok[b] = tok;
    }
}

__global__ void advance_position_kernel(int32_t* pos) { *pos += 1; }

}  // namespace

void sample_tokens(const SampleArgs& a, cudaStream_t stream) {
    if (a.B <= 0) return;
    if (a.V < 1 || a.V > kMaxSampleVocab) throw Error("device sampler: vocabulary of " + std::to_string(a.V) + " is too large");
    int32_t P = 1;
    while (P < a.V) P <<= 1;
    const bool sorted = (a.top_k > 0 && a.top_k < a.V) || a.top_p < 1.0f || a.top_n > 0;
    const size_t smem = size_t(P) * (2 * sizeof(float) + sizeof(int32_t));
    IGPT_LAUNCH(sample_kernel, unsigned(a.B), kThreads, smem, stream)(a, P, sorted);
    IGPT_CUDA_LAUNCHED();
}

void advance_position(int32_t* pos_dev, cudaStream_t stream) {
    IGPT_LAUNCH(advance_position_kernel, 1, 1, 0, stream)(pos_dev);
    IGPT_CUDA_LAUNCHED();
}

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
