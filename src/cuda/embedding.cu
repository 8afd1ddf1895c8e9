// Embedding kernel (see embedding.cuh): one block per row of x.
#include "embedding.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

namespace {

template <typename T>
__global__ void embed_kernel(const int32_t* __restrict__ tokens, int32_t n, int32_t pos, const int32_t* pos_dev,
                             const float* __restrict__ sos, const T* __restrict__ wte, const T* __restrict__ wpe,
                             int32_t C, float* __restrict__ x) {
    const int64_t row = blockIdx.x;  // b * n + i
    const int32_t i = int32_t(row % n);
    const int32_t p = (pos_dev ? *pos_dev : pos) + i;
    const int32_t tok = tokens[row];
    const T* pe = wpe + int64_t(p) * C;
    float* xr = x + row * C;
    if (tok < 0) {
        for (int32_t j = threadIdx.x; j < C; j += blockDim.x) xr[j] = sos[j] + to_f32(pe[j]);
    } else {
        const T* te = wte + int64_t(tok) * C;
        for (int32_t j = threadIdx.x; j < C; j += blockDim.x) xr[j] = to_f32(te[j]) + to_f32(pe[j]);
    }
}

}  // namespace

void embed_tokens(const int32_t* tokens, int32_t B, int32_t n, int32_t pos, const int32_t* pos_dev,
                  const float* sos, const void* wte, const void* wpe, DevType wt, int32_t C, float* x,
                  cudaStream_t stream) {
    if (B <= 0 || n <= 0) return;
    dispatch_type(wt, [&](auto tag) {
        using T = decltype(tag);
        IGPT_LAUNCH(embed_kernel<T>, unsigned(B) * unsigned(n), 128, 0, stream)(
            tokens, n, pos, pos_dev, sos, static_cast<const T*>(wte), static_cast<const T*>(wpe), C, x);
    });
    IGPT_CUDA_LAUNCHED();
}

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
