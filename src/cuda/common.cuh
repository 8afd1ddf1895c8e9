// Shared by the CUDA op files: the element types tensors live in on the device, error checks, and (for
// nvcc and the emulator) conversions and warp/block reductions. The op headers (*.cuh) declare plain host launchers,
// so backend_cuda.cpp is ordinary C++; the kernels themselves stay in the .cu files.
//
// Conventions of every launcher: row-major tensors, shapes in comments as (rows, cols); `void*` tensors
// carry their element type as a DevType next to them; float* tensors are always f32 (the residual stream,
// norm gains, biases, logits). Launchers enqueue on the given stream and never synchronise, so a whole
// decode step can be captured into a CUDA graph. Position arguments come as `pos` (host value) or, when
// `pos_dev` is non-null, from device memory (the graph replays one step for every position).
//
// Under IGPT_CUDA_EMU (tests/cuda_emu: the CUDA kernels, the trainer and the inference backend run on the
// CPU, for their tests without a GPU) the runtime API and the device intrinsics come from the emulator.
#pragma once
#ifdef IGPT_CUDA_EMU
#include "cuda_emu_runtime.h"
#else
#include <cuda_runtime_api.h>
#endif

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cuda/emu_namespace.h"
#include "error.h"

namespace igpt::cuda {

enum class DevType { F32, F16, BF16 };

inline size_t dev_type_size(DevType t) { return t == DevType::F32 ? 4 : 2; }
inline const char* dev_type_name(DevType t) { return t == DevType::F32 ? "f32" : t == DevType::F16 ? "f16" : "bf16"; }

// An on/off switch from the environment (IGPT_CUDA_MMA, IGPT_CUDA_ONEPASS, ...): on when set to exactly "1".
inline bool env_is_one(const char* name) {
    const char* v = std::getenv(name);
    return v && std::strcmp(v, "1") == 0;
}

[[noreturn]] inline void throw_cuda_error(cudaError_t e, const char* what, const char* file, int line) {
    throw Error(std::string("CUDA error: ") + cudaGetErrorString(e) + " (" + what + " at " + file + ":" +
                std::to_string(line) + ")");
}

}  // namespace igpt::cuda

#define IGPT_CUDA_CHECK(call)                                                               \
    do {                                                                                    \
        const cudaError_t igpt_e_ = (call);                                                 \
        if (igpt_e_ != cudaSuccess) ::igpt::cuda::throw_cuda_error(igpt_e_, #call, __FILE__, __LINE__); \
    } while (0)
// After a kernel launch: reports bad launch configurations at once (does not synchronise).
#define IGPT_CUDA_LAUNCHED() IGPT_CUDA_CHECK(cudaGetLastError())

// kernel<<<grid, block, smem, stream>>>(args...), written IGPT_LAUNCH(kernel, grid, block, smem, stream)(args...)
// in the sources the emulator also compiles; and a kernel's dynamic shared memory, as `T name[]`.
#ifdef IGPT_CUDA_EMU
#define IGPT_LAUNCH(kernel, grid, block, smem, stream) ::cuda_emu::make_launcher(dim3(grid), dim3(block), smem, kernel)
#define IGPT_DYNAMIC_SHARED(T, name) T* name = static_cast<T*>(::cuda_emu::dynamic_smem())
#define IGPT_NOINLINE __attribute__((noinline))
#else
#define IGPT_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#define IGPT_DYNAMIC_SHARED(T, name) extern __shared__ T name[]
#define IGPT_NOINLINE __device__ __noinline__  // a device function that stays a call
#endif

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif
#if defined(__CUDACC__) || defined(IGPT_CUDA_EMU)
#include <cmath>

namespace igpt::cuda {

// The device element types (the emulator's __half and __nv_bfloat16 are their bits: cuda_emu.h).
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Calls f(T{}) with the C++ type of t: dispatch_type(t, [&](auto tag) { using T = decltype(tag); ... }).
template <typename F> void dispatch_type(DevType t, F&& f) {
    switch (t) {
        case DevType::F32: f(float{}); break;
        case DevType::F16: f(__half{}); break;
        case DevType::BF16: f(__nv_bfloat16{}); break;
    }
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide reductions; every thread of the block must call them (they synchronise). `scratch` holds at
// least 32 floats of shared memory, reused after the call.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous reduction
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = 0.0f;
    for (int i = 0; i < nw; ++i) r += scratch[i];
    return r;
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float r = -INFINITY;
    for (int i = 0; i < nw; ++i) r = fmaxf(r, scratch[i]);
    return r;
}

}  // namespace igpt::cuda
#endif  // __CUDACC__ || IGPT_CUDA_EMU
