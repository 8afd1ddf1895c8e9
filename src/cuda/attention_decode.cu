// Split-K decode attention (see attention_decode.cuh).
#include "attention_decode.cuh"
#include "attention_prefill.cuh"  // kMaxHeadDim

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

namespace {

constexpr int kThreads = 128;

// q · k for one cached key row (D elements): 16-byte loads when the row allows them.
template <typename T>
__device__ __forceinline__ float dot_row(const float* __restrict__ sq, const T* __restrict__ row, int32_t D) {
    constexpr int kVec = 16 / int(sizeof(T));
    float s = 0.0f;
    if (D % kVec == 0) {
        const uint4* r4 = reinterpret_cast<const uint4*>(row);
        for (int32_t c = 0; c < D / kVec; ++c) {
            const uint4 u = r4[c];
            const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
            for (int k = 0; k < kVec; ++k) s += sq[c * kVec + k] * to_f32(e[k]);
        }
    } else {
        for (int32_t d = 0; d < D; ++d) s += sq[d] * to_f32(row[d]);
    }
    return s;
}

// One block per (chunk, head, sequence). Writes (max, sum) of its chunk's base-2 scores to ml and the
// unnormalised P·V (relative to that max) to po; an empty chunk writes sum 0 and is skipped by the merge.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    attn_decode_chunk_kernel(const T* __restrict__ q, int64_t q_stride, const T* __restrict__ kc,
                             const T* __restrict__ vc, int32_t pos, const int32_t* pos_dev, int32_t NH, int32_t D,
                             int32_t Tctx, int32_t chunk, float scale_log2, float* __restrict__ ml,
                             float* __restrict__ po) {
    const int32_t split = blockIdx.x, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const int32_t p = pos_dev ? *pos_dev : pos;
    const int32_t k0 = split * chunk, k1 = min(p + 1, k0 + chunk);
    const int64_t slot = (int64_t(b) * NH + h) * gridDim.x + split;
    if (k0 >= k1) {  // whole block: before any barrier
        if (tid == 0) {
            ml[slot * 2] = -INFINITY;
            ml[slot * 2 + 1] = 0.0f;
        }
        return;
    }
    IGPT_DYNAMIC_SHARED(float, smem);
    float* sq = smem;            // (D)       scaled query
    float* sp = sq + D;          // (chunk)   scores, then weights
    float* sacc = sp + chunk;    // (kThreads) partial P·V per (group, dim)
    __shared__ float sred[32];

    for (int32_t d = tid; d < D; d += kThreads)
        sq[d] = to_f32(q[int64_t(b) * q_stride + int64_t(h) * D + d]) * scale_log2;
    __syncthreads();

    const int64_t head = (int64_t(b) * NH + h) * Tctx * D;
    const T* kb = kc + head + int64_t(k0) * D;
    const int32_t cnt = k1 - k0;
    float mx = -INFINITY;
    for (int32_t j = tid; j < cnt; j += kThreads) {
        const float s = dot_row(sq, kb + int64_t(j) * D, D);
        sp[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max(mx, sred);
    float sum = 0.0f;
    for (int32_t j = tid; j < cnt; j += kThreads) {
        const float e = exp2f(sp[j] - mx);
        sp[j] = e;
        sum += e;
    }
    sum = block_sum(sum, sred);  // its barriers also publish sp

    // P·V: thread (g, d) sums keys g, g+G, ... of dim d; consecutive threads read consecutive dims.
    const int32_t G = kThreads / D, g = tid / D, d = tid - g * D;
    float acc = 0.0f;
    if (g < G) {
        const T* vb = vc + head + int64_t(k0) * D + d;
        for (int32_t j = g; j < cnt; j += G) acc += sp[j] * to_f32(vb[int64_t(j) * D]);
    }
    sacc[tid] = acc;
    __syncthreads();
    if (tid < D) {
        float o = 0.0f;
        for (int32_t gg = 0; gg < G; ++gg) o += sacc[gg * D + tid];
        po[slot * D + tid] = o;
    }
    if (tid == 0) {
        ml[slot * 2] = mx;
        ml[slot * 2 + 1] = sum;
    }
}

// One block per (head, sequence): merges the chunks with their max-rescaled sums.
template <typename T>
__global__ void attn_decode_merge_kernel(const float* __restrict__ ml, const float* __restrict__ po, int32_t nsplit,
                                         int32_t NH, int32_t D, T* __restrict__ out, int64_t out_stride) {
    const int32_t h = blockIdx.x, b = blockIdx.y;
    const int64_t slot0 = (int64_t(b) * NH + h) * nsplit;
    float M = -INFINITY;
    for (int32_t s = 0; s < nsplit; ++s)
        if (ml[(slot0 + s) * 2 + 1] > 0.0f) M = fmaxf(M, ml[(slot0 + s) * 2]);
    float L = 0.0f;
    for (int32_t s = 0; s < nsplit; ++s) {
        const float l = ml[(slot0 + s) * 2 + 1];
        if (l > 0.0f) L += l * exp2f(ml[(slot0 + s) * 2] - M);
    }
    const float inv = 1.0f / L;
    for (int32_t d = threadIdx.x; d < D; d += blockDim.x) {
        float o = 0.0f;
        for (int32_t s = 0; s < nsplit; ++s) {
            const float l = ml[(slot0 + s) * 2 + 1];
            if (l > 0.0f) o += po[(slot0 + s) * D + d] * exp2f(ml[(slot0 + s) * 2] - M);
        }
        out[int64_t(b) * out_stride + int64_t(h) * D + d] = from_f32<T>(o * inv);
    }
}

int32_t n_splits(int32_t T, int32_t chunk) { return (T + chunk - 1) / chunk; }

}  // namespace

int32_t attention_decode_chunk(int32_t B, int32_t NH, int32_t T, int32_t sm_count) {
    const int64_t want = 2 * int64_t(sm_count > 0 ? sm_count : 1);
    for (int32_t chunk : {256, 128})
        if (int64_t(B) * NH * n_splits(T, chunk) >= want) return chunk;
    return 64;
}

size_t attention_decode_workspace(int32_t B, int32_t NH, int32_t D, int32_t T, int32_t chunk) {
    return size_t(B) * size_t(NH) * size_t(n_splits(T, chunk)) * size_t(D + 2);
}

void attention_decode(const void* q, int64_t q_stride, const void* k_cache, const void* v_cache, void* out,
                      int64_t out_stride, DevType t, int32_t B, int32_t pos, const int32_t* pos_dev, int32_t NH,
                      int32_t D, int32_t T, float scale, int32_t chunk, float* workspace, cudaStream_t stream) {
    if (B <= 0) return;
    if (D < 1 || D > kMaxHeadDim) throw Error("attention: head dim " + std::to_string(D) + " is not supported (max 128)");
    const int32_t nsplit = n_splits(T, chunk);
    float* ml = workspace;                                      // (B, NH, nsplit, 2)
    float* po = workspace + size_t(B) * size_t(NH) * size_t(nsplit) * 2;  // (B, NH, nsplit, D)
    const float scale_log2 = scale * 1.4426950408889634f;
    const size_t smem = size_t(D + chunk + kThreads) * sizeof(float);
    dispatch_type(t, [&](auto tag) {
        using E = decltype(tag);
        const dim3 grid{unsigned(nsplit), unsigned(NH), unsigned(B)};
        IGPT_LAUNCH(attn_decode_chunk_kernel<E>, grid, kThreads, smem, stream)(
            static_cast<const E*>(q), q_stride, static_cast<const E*>(k_cache), static_cast<const E*>(v_cache), pos,
            pos_dev, NH, D, T, chunk, scale_log2, ml, po);
        IGPT_CUDA_LAUNCHED();
        IGPT_LAUNCH(attn_decode_merge_kernel<E>, dim3(unsigned(NH), unsigned(B)), 128, 0, stream)(
            ml, po, nsplit, NH, D, static_cast<E*>(out), out_stride);
    });
    IGPT_CUDA_LAUNCHED();
}

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
