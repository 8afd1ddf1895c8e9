// Flash-style causal attention for the CUDA trainer (kernels: flash_attn_kernels.cuh). Instead of the
// batched-GEMM attention of train_kernels.cuh, which keeps B * heads * T * T probabilities a layer, these
// keep one float a query (its log-sum-exp) and recompute the probabilities in the backward pass. q, k, v
// are read from the qkv projection as it is, (B*T, 3C) with C = NH * D; o is written into (B*T, C).
// Tensor-core products in bf16 with f32 accumulation: the trainer uses them with --cuda-math bf16 (tensors
// in f32) or mixed (in bf16).
#pragma once
#include <cstdint>

#include "cuda/common.cuh"

namespace igpt::cuda::train {
IGPT_EMU_NAMESPACE_BEGIN

// Whether the kernels take this head dimension (a multiple of 4, at most 64).
bool flash_supported(int32_t head_dim);

// o (B*T, C) = causal softmax(scale q k^T) v per (image, head); lse2 (B*NH, T): each query's base-2
// log-sum-exp of scale * log2(e) * q k^T, for flash_backward. S, the storage of qkv, o, dout and dqkv: float,
// or uint16_t for bf16.
template <typename S>
void flash_forward(const S* qkv, int32_t B, int32_t T, int32_t NH, int32_t D, float scale, S* o, float* lse2,
                   cudaStream_t s);

// From dout = d(o) (B*T, C): dqkv (B*T, 3C) = d(qkv), overwritten (not accumulated). delta (B*NH, T) is
// scratch. qkv, o and lse2 are the forward's.
template <typename S>
void flash_backward(const S* qkv, const S* o, const S* dout, const float* lse2, int32_t B, int32_t T, int32_t NH,
                    int32_t D, float scale, float* delta, S* dqkv, cudaStream_t s);

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda::train
