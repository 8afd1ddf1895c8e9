// The CUDA backend's own entry points (compiled when IGPT_WITH_CUDA; the Backend interface is in backend.h,
// and make_backend(BackendKind::Cuda, ...) reaches it with the default precision). Plain C++: no CUDA
// header is needed to include it.
//
//   auto be = igpt::make_cuda_backend(model, igpt::CudaPrecision::F32);   // the checking mode
//   be->reset(1); be->forward(tokens, 1, n, 0, logits, true);
//
// Precision: weights and activations (and the KV cache) in f16 (default) or bf16, with fp32 accumulation,
// an fp32 residual stream, f32 norm gains and biases; or everything in f32 (IEEE, no TF32) for checking.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "cuda/emu_namespace.h"
#include "model.h"
#include "sampler.h"

namespace igpt {
IGPT_EMU_NAMESPACE_BEGIN  // (tests/cuda_emu: the emulated backend, beside the real one)

enum class CudaPrecision { F16, BF16, F32 };
CudaPrecision cuda_precision_from_name(const std::string& name);  // "f16" | "bf16" | "f32"; throws igpt::Error
const char* cuda_precision_name(CudaPrecision p);
// IGPT_CUDA_PRECISION from the environment (f16, bf16 or f32), else f16.
CudaPrecision cuda_default_precision();

// Throws igpt::Error when there is no usable GPU or the model's shape is unsupported (head dim > 128).
std::unique_ptr<Backend> make_cuda_backend(const Model& model, CudaPrecision precision);

struct CudaDeviceInfo {
    std::string name;
    int32_t sm_count = 0;
    double memory_gb = 0;
    double copy_gbs = 0;  // measured device-to-device copy, bytes read + written per second / 1e9 (if asked)
};
CudaDeviceInfo cuda_device_info(bool measure_copy);

// The largest batch the one-kernel decode step takes; larger batches decode layer by layer.
int32_t cuda_fused_max_batch();

// IGPT_CUDA_PROFILE=1: what the backend prints on stderr when it is destroyed, from the fused decode step's
// counters (12 a block, `blocks` blocks: nanoseconds in each of the 5 phases of a layer and waiting at the
// barrier after it, in the head, and the number of steps). Two lines: block 0's times, then each phase's mean
// and slowest block and the least any block waited after it (at most what the grid barrier itself costs).
// Empty before the first step.
std::string cuda_fused_profile_report(const std::vector<uint64_t>& slots, int32_t blocks, int32_t batch);

// The device sampler on its own (tests): one token per row of logits (rows, V), drawn at position `pos`
// with `seed` for sample indices 0..rows-1.
std::vector<int32_t> cuda_sample_rows(const std::vector<float>& logits, int32_t rows, int32_t V,
                                      const SamplerParams& params, uint64_t seed, int32_t pos);

IGPT_EMU_NAMESPACE_END
}  // namespace igpt
