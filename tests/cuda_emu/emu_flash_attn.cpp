// The CUDA trainer's flash attention launchers, compiled by the host compiler for tests/cuda_emu.
#include "train/cuda/flash_attn.cu"
