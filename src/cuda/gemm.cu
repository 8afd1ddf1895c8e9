// cuBLAS wrapper (see gemm.cuh). Row-major Y = X W^T is column-major Y^T = W X^T, i.e. cuBLAS's
// C (N, M) = op(A) · op(B) with A = W seen as (K, N) column-major and transposed, B = X seen as (K, M).
#include "gemm.cuh"

#ifndef IGPT_CUDA_EMU  // (the emulator's cuBLAS comes with common.cuh)
#include <cublas_v2.h>
#endif

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;

void check(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) throw Error(std::string("cuBLAS error: ") + cublasGetStatusString(s) + " (" + what + ")");
}

cudaDataType_t blas_type(DevType t) {
    switch (t) {
        case DevType::F32: return CUDA_R_32F;
        case DevType::F16: return CUDA_R_16F;
        case DevType::BF16: return CUDA_R_16BF;
    }
    return CUDA_R_32F;
}

}  // namespace

Gemm::Gemm(cudaStream_t stream) {
    check(cublasCreate(&handle_), "cublasCreate");
    try {
        check(cublasSetStream(handle_, stream), "cublasSetStream");
        // Default math: tensor cores for f16/bf16; f32 stays IEEE fp32 (TF32 would be CUBLAS_TF32_TENSOR_OP_MATH).
        check(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
        // A workspace of our own: cuBLAS then never allocates while a CUDA graph is being captured.
        IGPT_CUDA_CHECK(cudaMalloc(&workspace_, kWorkspaceBytes));
        check(cublasSetWorkspace(handle_, workspace_, kWorkspaceBytes), "cublasSetWorkspace");
    } catch (...) {
        if (workspace_) cudaFree(workspace_);
        cublasDestroy(handle_);
        throw;
    }
}

Gemm::~Gemm() {
    cublasDestroy(handle_);
    if (workspace_) cudaFree(workspace_);
}

void Gemm::nt(int32_t M, int32_t N, int32_t K, const void* X, DevType xt, int64_t ldx, const void* W, DevType wt,
              void* Y, DevType yt, int64_t ldy, float beta) {
    if (xt != wt || (yt != DevType::F32 && yt != xt)) throw Error("gemm: unsupported type combination");
    if (M <= 0 || N <= 0 || K <= 0) return;
    const float alpha = 1.0f;
    check(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, W, blas_type(wt), K, X, blas_type(xt),
                       int(ldx), &beta, Y, blas_type(yt), int(ldy), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "cublasGemmEx");
}

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
