// Launchers of the trainer's flash attention (see flash_attn.cuh; the kernels are in flash_attn_kernels.cuh).
#include "flash_attn.cuh"
#include "flash_attn_kernels.cuh"

namespace igpt::cuda::train {
IGPT_EMU_NAMESPACE_BEGIN

namespace fl = igpt::cuda::flash;

bool flash_supported(int32_t head_dim) { return head_dim > 0 && head_dim % 4 == 0 && head_dim <= 64; }

template <typename S>
void flash_forward(const S* qkv, int32_t B, int32_t T, int32_t NH, int32_t D, float scale, S* o, float* lse2,
                   cudaStream_t s) {
    if (!flash_supported(D)) throw Error("flash attention: head dimension " + std::to_string(D) + " is not supported");
    const fl::Shape sh = fl::make_shape(T, NH, D, scale);
    fl::dispatch_dp(D, [&](auto dp) {
        const auto kernel = fl::forward_kernel<decltype(dp)::value, S>;
        IGPT_LAUNCH(kernel, fl::tile_grid(sh, B), fl::kThreads, 0, s)(qkv, o, lse2, sh);
    });
    IGPT_CUDA_LAUNCHED();
}

template <typename S>
void flash_backward(const S* qkv, const S* o, const S* dout, const float* lse2, int32_t B, int32_t T, int32_t NH,
                    int32_t D, float scale, float* delta, S* dqkv, cudaStream_t s) {
    if (!flash_supported(D)) throw Error("flash attention: head dimension " + std::to_string(D) + " is not supported");
    const fl::Shape sh = fl::make_shape(T, NH, D, scale);
    IGPT_LAUNCH(fl::delta_kernel<S>, fl::delta_grid(sh, B), fl::kThreads, 0, s)(dout, o, delta, int64_t(B) * T, sh);
    IGPT_CUDA_LAUNCHED();
    fl::dispatch_dp(D, [&](auto dp) {
        const auto dkdv = fl::dkdv_kernel<decltype(dp)::value, S>;
        const auto dq = fl::dq_kernel<decltype(dp)::value, S>;
        IGPT_LAUNCH(dkdv, fl::tile_grid(sh, B), fl::kThreads, 0, s)(qkv, dout, lse2, delta, dqkv, sh);
        IGPT_CUDA_LAUNCHED();
        IGPT_LAUNCH(dq, fl::tile_grid(sh, B), fl::kThreads, 0, s)(qkv, dout, lse2, delta, dqkv, sh);
        IGPT_CUDA_LAUNCHED();
    });
}

template void flash_forward<float>(const float*, int32_t, int32_t, int32_t, int32_t, float, float*, float*,
                                   cudaStream_t);
template void flash_forward<uint16_t>(const uint16_t*, int32_t, int32_t, int32_t, int32_t, float, uint16_t*, float*,
                                      cudaStream_t);
template void flash_backward<float>(const float*, const float*, const float*, const float*, int32_t, int32_t, int32_t,
                                    int32_t, float, float*, float*, cudaStream_t);
template void flash_backward<uint16_t>(const uint16_t*, const uint16_t*, const uint16_t*, const float*, int32_t,
                                       int32_t, int32_t, int32_t, float, float*, uint16_t*, cudaStream_t);

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda::train
