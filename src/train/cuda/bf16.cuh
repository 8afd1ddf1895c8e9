// bf16 for the CUDA trainer's kernels, on the device and in tests/cuda_emu: tensors in bf16 are `uint16_t`
// (the bits) in memory, so host code needs no CUDA header; load/store convert element by element (round to
// nearest even on the way in), pack_bf16 builds an mma operand register.
#pragma once
#include <cstdint>

#include "cuda/common.cuh"
#ifndef IGPT_CUDA_EMU
#include <cuda_bf16.h>
#endif

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN

#ifdef IGPT_CUDA_EMU
inline uint16_t bf16_bits(float x) { return igpt::float_to_bf16(x); }  // (src/half.h)
inline float bf16_float(uint16_t h) { return igpt::bf16_to_float(h); }
#else
__device__ __forceinline__ uint16_t bf16_bits(float x) { return __bfloat16_as_ushort(__float2bfloat16_rn(x)); }
__device__ __forceinline__ float bf16_float(uint16_t h) { return __bfloat162float(__ushort_as_bfloat16(h)); }
#endif
__device__ __forceinline__ float bf16_round(float x) { return bf16_float(bf16_bits(x)); }
// Two values as one register: lo in the low half (the lower-numbered element of an mma fragment pair).
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    return uint32_t(bf16_bits(lo)) | (uint32_t(bf16_bits(hi)) << 16);
}

// Element access for kernels templated on the storage type (float, or uint16_t for bf16).
__device__ __forceinline__ float load_f(const float* p) { return *p; }
__device__ __forceinline__ float load_f(const uint16_t* p) { return bf16_float(*p); }
__device__ __forceinline__ void store_f(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_f(uint16_t* p, float v) { *p = bf16_bits(v); }
// Two adjacent elements (8- or 4-byte aligned).
__device__ __forceinline__ void store2_f(float* p, float a, float b) { *reinterpret_cast<float2*>(p) = float2{a, b}; }
__device__ __forceinline__ void store2_f(uint16_t* p, float a, float b) { *reinterpret_cast<uint32_t*>(p) = pack_bf16(a, b); }

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
