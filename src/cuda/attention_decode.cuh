// Attention for one new position per sequence (a decode step), reading each sequence's KV cache once:
// split-K ("flash decoding"). The keys [0, p] are cut into chunks; one block per (chunk, head, sequence)
// scores its chunk, takes the chunk's softmax max and sum, and accumulates its share of P·V; a second
// kernel merges the chunks. The grid covers all T positions, blocks past p return at once, so the launch
// shape does not depend on p and a CUDA graph can replay it for every position (p from device memory).
#pragma once
#include <cstdint>

#include "common.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

// Keys per chunk for B sequences of NH heads: large chunks when the batch alone fills the GPU.
int32_t attention_decode_chunk(int32_t B, int32_t NH, int32_t T, int32_t sm_count);
// Floats of workspace attention_decode needs for this shape and chunk.
size_t attention_decode_workspace(int32_t B, int32_t NH, int32_t D, int32_t T, int32_t chunk);

// q: row b at q + b * q_stride, head h at columns h*D; the query's position is p (= *pos_dev when non-null,
// else pos) and it attends to keys [0, p] of k_cache / v_cache (this layer's (Bmax, NH, T, D) blocks).
// out: row b at out + b * out_stride. scale: 1/sqrt(D). workspace: attention_decode_workspace() floats.
void attention_decode(const void* q, int64_t q_stride, const void* k_cache, const void* v_cache, void* out,
                      int64_t out_stride, DevType t, int32_t B, int32_t pos, const int32_t* pos_dev, int32_t NH,
                      int32_t D, int32_t T, float scale, int32_t chunk, float* workspace, cudaStream_t stream);

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
