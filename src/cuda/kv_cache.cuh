// The KV cache: (Bmax, NH, T, D) per layer, layers one after another, in the activation type; each head's
// keys of one sequence are one contiguous (T, D) block, so attention streams them and a shared prompt is
// fanned out with plain block copies.
#pragma once
#include <cstdint>

#include "common.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

// qkv (B, n, 3C) of type t (rows q | k | v, head h at columns h*D within each part): adds bias (3C, f32, or
// null) — to q in place — and writes k and v of positions [p, p + n) into k_cache / v_cache (this layer's
// (Bmax, NH, T, D) block), p = *pos_dev when pos_dev is non-null, else pos.
void kv_append(void* qkv, DevType t, const float* bias, int32_t B, int32_t n, int32_t pos, const int32_t* pos_dev,
               int32_t NH, int32_t D, int32_t T, void* k_cache, void* v_cache, cudaStream_t stream);

// Copies positions [0, n) of sequence src into sequences [0, count) other than src, in all L layers of the
// caches (L, Bmax, NH, T, D).
void kv_fanout(void* k_cache, void* v_cache, DevType t, int32_t L, int32_t Bmax, int32_t NH, int32_t T, int32_t D,
               int32_t src, int32_t count, int32_t n, cudaStream_t stream);

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
