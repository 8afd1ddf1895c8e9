// Activation kernel (see activation.cuh): grid-stride over the elements.
#include "activation.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

namespace {

template <typename T>
__global__ void bias_quick_gelu_kernel(T* __restrict__ h, const float* __restrict__ b, int64_t total, int32_t H) {
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
        float v = to_f32(h[e]);
        if (b) v += b[e % H];
        h[e] = from_f32<T>(v / (1.0f + expf(-1.702f * v)));
    }
}

}  // namespace

void bias_quick_gelu(void* h, DevType t, const float* b, int64_t M, int32_t H, cudaStream_t stream) {
    const int64_t total = M * H;
    if (total <= 0) return;
    const int64_t want = (total + 255) / 256;
    const unsigned blocks = unsigned(want < 8192 ? want : 8192);
    dispatch_type(t, [&](auto tag) {
        using T = decltype(tag);
        IGPT_LAUNCH(bias_quick_gelu_kernel<T>, blocks, 256, 0, stream)(static_cast<T*>(h), b, total, H);
    });
    IGPT_CUDA_LAUNCHED();
}

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
