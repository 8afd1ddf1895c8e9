// The trainer on an NVIDIA GPU (issue 6): a StepCompute that runs a batch's forward and backward on the
// device (cuBLAS GEMMs, the kernels of train_kernels.cuh), so `igpt train --device cuda` keeps the
// trainer's loop, checkpoints, resume, logs and progress unchanged.
//
// The trainer runs it with the optimizer on the device (StepCompute::train_step): fp32 weights, gradients
// and AdamW moments stay in GPU memory, gradient clipping reads the norm on the device, and each step
// makes one host round trip (its loss and gradient norm); checkpoints and evaluations copy the state out.
// forward_backward (gradients back to the host) remains for tests and tools.
// Gradient sums use atomics in three places (token embedding, norm gains, biases), so a step is not
// bit-for-bit repeatable on the GPU, unlike on the CPU.
#pragma once
#include <memory>
#include <string>

#include "config.h"
#include "cuda/emu_namespace.h"
#include "train_model.h"


namespace igpt::train {
IGPT_EMU_NAMESPACE_BEGIN

// math: the GEMMs — "f32" (IEEE fp32, for checking), "tf32" or "bf16" (tensor cores, fp32 accumulation; the
// default), all on f32 storage; or "mixed": bf16 activations where they are GEMM inputs and bf16 copies of
// the weights, f32 GEMM outputs, residual stream, master weights and AdamW. attention: "gemm" (batched
// GEMMs with the B * heads * T * T probabilities kept), "flash" (flash_attn.cuh: bf16 tensor cores, nothing
// T x T kept; needs math "bf16" or "mixed" and a head dimension that is a multiple of 4, at most 64), or
// "auto" (flash with mixed, which needs it; gemm otherwise). Throws igpt::Error without a GPU
// (igpt::cuda_available(), backend.h) or for a combination it does not run.
std::unique_ptr<StepCompute> make_cuda_step_compute(const ModelConfig& cfg, const std::string& math = "bf16",
                                                    const std::string& attention = "auto");

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::train
