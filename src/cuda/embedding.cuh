// Token + position embedding into the f32 residual stream.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

// x (B*n, C) = (token < 0 ? sos : wte[token]) + wpe[p + i] for sequence b, column i, where p = *pos_dev when
// pos_dev is non-null, else pos. tokens (B, n) on the device, already range-checked (-1 = start of sequence).
// sos (C) f32; wte (V, C) and wpe (T, C) of type wt.
void embed_tokens(const int32_t* tokens, int32_t B, int32_t n, int32_t pos, const int32_t* pos_dev,
                  const float* sos, const void* wte, const void* wpe, DevType wt, int32_t C, float* x,
                  cudaStream_t stream);

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
