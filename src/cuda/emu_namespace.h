// IGPT_EMU_NAMESPACE_BEGIN / _END wrap the declarations and definitions of the CUDA trainer and the CUDA
// inference backend. Under IGPT_CUDA_EMU (tests/cuda_emu: their kernels compiled by the host compiler and
// run on the CPU) they open an
// inline namespace, so that the emulated copy links next to the real one without either being taken for
// the other; otherwise they are empty.
#pragma once
#ifdef IGPT_CUDA_EMU
#define IGPT_EMU_NAMESPACE_BEGIN inline namespace emu {
#define IGPT_EMU_NAMESPACE_END }
#else
#define IGPT_EMU_NAMESPACE_BEGIN
#define IGPT_EMU_NAMESPACE_END
#endif
