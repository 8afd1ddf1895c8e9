// GEMMs through cuBLAS with fp32 accumulation: Y = X · W^T (+ beta · Y), the nn.Linear product of every
// projection. Weights stay [out, in] row-major as in the model file, so no transposed copies are kept.
// f16/bf16 inputs run on the tensor cores; f32 inputs run true fp32 (no TF32: the checking mode).
// beta = 1 with an f32 Y folds the residual add into the GEMM (x += attn_out, x += mlp_out).
#pragma once
#include <cstdint>

#include "common.cuh"

struct cublasContext;  // cublasHandle_t without including cuBLAS here (cuBLAS stays inside gemm.cu)

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

class Gemm {
public:
    explicit Gemm(cudaStream_t stream);  // a handle bound to `stream`, with its own workspace (graph capture)
    ~Gemm();
    Gemm(const Gemm&) = delete;
    Gemm& operator=(const Gemm&) = delete;

    // Y (M, N) = X (M, K) · W (N, K)^T + beta · Y. Row strides in elements: ldx >= K, ldy >= N; W is dense.
    // Supported types: X, W both f16, both bf16 or both f32; Y f32 or the same type as X.
    void nt(int32_t M, int32_t N, int32_t K, const void* X, DevType xt, int64_t ldx, const void* W, DevType wt,
            void* Y, DevType yt, int64_t ldy, float beta = 0.0f);

private:
    cublasContext* handle_ = nullptr;
    void* workspace_ = nullptr;
};

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
