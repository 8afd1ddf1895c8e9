// The CUDA trainer's kernel file, compiled by the host compiler for tests/cuda_emu (IGPT_CUDA_EMU).
#include "train/cuda/train_kernels.cu"
