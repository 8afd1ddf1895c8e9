// RMS norm kernels (see norm.cuh): one warp per row, four rows per block.
#include "norm.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

namespace {

constexpr int kRowsPerBlock = 4;

template <typename T>
__global__ void rms_norm_kernel(float* __restrict__ x, const float* __restrict__ bias, const float* __restrict__ g,
                                float eps, int32_t M, int32_t C, T* __restrict__ out) {
    const int32_t row = blockIdx.x * kRowsPerBlock + int32_t(threadIdx.x >> 5);
    const int32_t lane = threadIdx.x & 31;
    if (row >= M) return;  // whole warps leave together: no block-wide barrier below
    float* xr = x + int64_t(row) * C;
    float ss = 0.0f;
    for (int32_t j = lane; j < C; j += 32) {
        float v = xr[j];
        if (bias) xr[j] = v = v + bias[j];
        ss += v * v;
    }
    ss = warp_sum(ss);
    const float r = rsqrtf(ss / float(C) + eps);
    T* o = out + int64_t(row) * C;
    for (int32_t j = lane; j < C; j += 32) o[j] = from_f32<T>(xr[j] * r * g[j]);
}

template <typename T>
__global__ void mean_rows_kernel(const T* __restrict__ in, int32_t n, int32_t C, float* __restrict__ out) {
    const int32_t b = blockIdx.y;
    const int32_t j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= C) return;
    const T* src = in + int64_t(b) * n * C + j;
    float s = 0.0f;
    for (int32_t i = 0; i < n; ++i) s += to_f32(src[int64_t(i) * C]);
    out[int64_t(b) * C + j] = s / float(n);
}

}  // namespace

void rms_norm(float* x, const float* bias, const float* g, float eps, int32_t M, int32_t C, void* out, DevType ot,
              cudaStream_t stream) {
    if (M <= 0) return;
    const unsigned blocks = unsigned((M + kRowsPerBlock - 1) / kRowsPerBlock);
    dispatch_type(ot, [&](auto tag) {
        using T = decltype(tag);
        IGPT_LAUNCH(rms_norm_kernel<T>, blocks, 32 * kRowsPerBlock, 0, stream)(x, bias, g, eps, M, C,
                                                                              static_cast<T*>(out));
    });
    IGPT_CUDA_LAUNCHED();
}

void mean_rows(const void* in, DevType t, int32_t B, int32_t n, int32_t C, float* out, cudaStream_t stream) {
    if (B <= 0 || n <= 0) return;
    const dim3 grid(unsigned((C + 127) / 128), unsigned(B));
    dispatch_type(t, [&](auto tag) {
        using T = decltype(tag);
        IGPT_LAUNCH(mean_rows_kernel<T>, grid, 128, 0, stream)(static_cast<const T*>(in), n, C, out);
    });
    IGPT_CUDA_LAUNCHED();
}

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
