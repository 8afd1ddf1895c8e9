// The pre-norm of every block and the final norm: RMS norm with a gain only, x * rsqrt(mean(x^2) + eps) * g,
// fused with the bias add that the preceding projection left out (its residual add ran inside the GEMM).
#pragma once
#include <cstdint>

#include "common.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

// x (M, C) f32, updated in place when bias (C) is non-null: x += bias. Then out (M, C) of type ot =
// x * rsqrt(mean(x^2) + eps) * g, g (C) f32.
void rms_norm(float* x, const float* bias, const float* g, float eps, int32_t M, int32_t C, void* out, DevType ot,
              cudaStream_t stream);

// Mean over positions: in (B, n, C) of type t -> out (B, C) f32 (pooled features for linear probes).
void mean_rows(const void* in, DevType t, int32_t B, int32_t n, int32_t C, float* out, cudaStream_t stream);

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
