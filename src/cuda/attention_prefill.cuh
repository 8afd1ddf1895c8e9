// Causal self-attention for a run of query positions (prefill, nll, training's forward), flash-style: key
// and value tiles stream through shared memory with an online softmax, so the (n, pos + n) score matrix is
// never stored. fp32 arithmetic on CUDA cores; inputs and output in the activation type.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

constexpr int32_t kMaxHeadDim = 128;

// Queries of positions [pos, pos + n) of sequences 0..B-1 attend to keys [0, pos + n) of their cache.
//   q:   row (b, i) at q + (b*n + i) * q_stride, head h at columns h*D (the qkv buffer, q_stride = 3C)
//   k_cache, v_cache: this layer's (Bmax, NH, T, D) blocks (positions [0, pos + n) already written)
//   out: row (b, i) at out + (b*n + i) * out_stride, head h at columns h*D
//   scale: 1/sqrt(D). D <= kMaxHeadDim.
void attention_prefill(const void* q, int64_t q_stride, const void* k_cache, const void* v_cache, void* out,
                       int64_t out_stride, DevType t, int32_t B, int32_t n, int32_t pos, int32_t NH, int32_t D,
                       int32_t T, float scale, cudaStream_t stream);

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
