// The MLP activation, fused with the fc bias: h = (h + b) * sigmoid(1.702 (h + b)).
// The residual adds need no kernel of their own: x += proj(..) runs inside the GEMM (beta = 1 into the f32
// residual stream) and the projection's bias joins x in the next norm (norm.cuh).
#pragma once
#include <cstdint>

#include "common.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

// h (M, H) of type t, in place; b (H) f32 or null.
void bias_quick_gelu(void* h, DevType t, const float* b, int64_t M, int32_t H, cudaStream_t stream);

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
