// The trainer on an NVIDIA GPU (issue 6): a StepCompute that runs a batch's forward and backward on the
// device (cuBLAS GEMMs, the kernels of train_kernels.cuh), so `igpt train --device cuda` keeps the
// trainer's loop, checkpoints, resume, logs and progress unchanged.
//
// This first version keeps the fp32 master weights and AdamW on the host, as the CPU trainer does: each
// call uploads the parameters and brings the gradients back (about 0.6 GB of copies a step for iGPT-S).
// Gradient sums use atomics in three places (token embedding, norm gains, biases), so a step is not
// bit-for-bit repeatable on the GPU, unlike on the CPU.
#pragma once
#include <memory>
#include <string>

#include "config.h"
#include "train_model.h"

namespace igpt::train {

// Whether this build has the CUDA trainer and a GPU is visible.
bool cuda_train_available();

// math: the GEMMs' compute — "f32" (IEEE fp32, for checking), "tf32" or "bf16" (tensor cores, fp32
// accumulation; the default). Throws igpt::Error without a GPU or CUDA build.
std::unique_ptr<StepCompute> make_cuda_step_compute(const ModelConfig& cfg, const std::string& math = "bf16");

}  // namespace igpt::train
