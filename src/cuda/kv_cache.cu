// KV cache kernels (see kv_cache.cuh).
#include "kv_cache.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

namespace {

template <typename T>
__global__ void kv_append_kernel(T* __restrict__ qkv, const float* __restrict__ bias, int32_t n, int32_t pos,
                                 const int32_t* pos_dev, int32_t NH, int32_t D, int32_t Tctx, T* __restrict__ kc,
                                 T* __restrict__ vc) {
    const int64_t row = blockIdx.x;  // b * n + i
    const int32_t b = int32_t(row / n), i = int32_t(row % n);
    const int32_t p = (pos_dev ? *pos_dev : pos) + i;
    const int32_t C = NH * D;
    T* r = qkv + row * 3 * C;
    for (int32_t j = (bias ? 0 : C) + int32_t(threadIdx.x); j < 3 * C; j += blockDim.x) {
        float v = to_f32(r[j]);
        if (bias) v += bias[j];
        if (j < C) {
            r[j] = from_f32<T>(v);
        } else {
            const int32_t c = (j - C) % C, h = c / D, d = c % D;
            T* cache = j < 2 * C ? kc : vc;
            cache[((int64_t(b) * NH + h) * Tctx + p) * D + d] = from_f32<T>(v);
        }
    }
}

// One block per (destination sequence and head, layer, k|v); W is the copy word (uint4 when aligned).
template <typename W>
__global__ void kv_fanout_kernel(W* __restrict__ kc, W* __restrict__ vc, int64_t layer_words, int64_t seq_words,
                                 int64_t head_words, int32_t NH, int32_t src, int64_t words) {
    const int32_t b = int32_t(blockIdx.x) / NH, h = int32_t(blockIdx.x) % NH;
    if (b == src) return;
    W* base = (blockIdx.z ? vc : kc) + int64_t(blockIdx.y) * layer_words;
    const W* from = base + src * seq_words + h * head_words;
    W* to = base + b * seq_words + h * head_words;
    for (int64_t e = threadIdx.x; e < words; e += blockDim.x) to[e] = from[e];
}

}  // namespace

void kv_append(void* qkv, DevType t, const float* bias, int32_t B, int32_t n, int32_t pos, const int32_t* pos_dev,
               int32_t NH, int32_t D, int32_t T, void* k_cache, void* v_cache, cudaStream_t stream) {
    if (B <= 0 || n <= 0) return;
    dispatch_type(t, [&](auto tag) {
        using E = decltype(tag);
        IGPT_LAUNCH(kv_append_kernel<E>, unsigned(B) * unsigned(n), 256, 0, stream)(
            static_cast<E*>(qkv), bias, n, pos, pos_dev, NH, D, T, static_cast<E*>(k_cache), static_cast<E*>(v_cache));
    });
    IGPT_CUDA_LAUNCHED();
}

void kv_fanout(void* k_cache, void* v_cache, DevType t, int32_t L, int32_t Bmax, int32_t NH, int32_t T, int32_t D,
               int32_t src, int32_t count, int32_t n, cudaStream_t stream) {
    if (count <= 0 || n <= 0 || L <= 0) return;
    const int64_t es = int64_t(dev_type_size(t));
    const int64_t head = int64_t(T) * D * es, seq = head * NH, layer = seq * Bmax, bytes = int64_t(n) * D * es;
    const dim3 grid(unsigned(count) * unsigned(NH), unsigned(L), 2u);
    if (head % 16 == 0 && bytes % 16 == 0) {  // cudaMalloc bases are 256-byte aligned
        IGPT_LAUNCH(kv_fanout_kernel<uint4>, grid, 256, 0, stream)(
            static_cast<uint4*>(k_cache), static_cast<uint4*>(v_cache), layer / 16, seq / 16, head / 16, NH, src,
            bytes / 16);
    } else {
        IGPT_LAUNCH(kv_fanout_kernel<uint16_t>, grid, 256, 0, stream)(
            static_cast<uint16_t*>(k_cache), static_cast<uint16_t*>(v_cache), layer / 2, seq / 2, head / 2, NH, src,
            bytes / 2);
    }
    IGPT_CUDA_LAUNCHED();
}

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
