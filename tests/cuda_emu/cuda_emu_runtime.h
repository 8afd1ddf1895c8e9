// The host side of tests/cuda_emu: the part of cuda_runtime_api.h and cublas_v2.h that the CUDA trainer
// uses, on the CPU. "Device" memory is host memory; streams are synchronous; the cuBLAS GEMM is the
// textbook loop, with its inputs rounded as the compute type says (bf16 or tf32) and double accumulation.
// Included (by src/cuda/common.cuh and src/train/cuda/train_kernels.cuh) instead of the CUDA headers when
// IGPT_CUDA_EMU is defined.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "cuda_emu.h"

// --- runtime -----------------------------------------------------------------------------------------------
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
struct CUstream_st {};
using cudaStream_t = CUstream_st*;
constexpr unsigned cudaStreamNonBlocking = 1;
struct cudaDeviceProp {
    char name[256] = "cuda_emu (CPU)";
    size_t totalGlobalMem = size_t(1) << 34;
    int multiProcessorCount = 1;
};

inline const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "out of memory"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
    *p = cudaDeviceProp{};
    return cudaSuccess;
}
inline cudaError_t cudaMalloc(void** p, size_t n) {
    *p = std::aligned_alloc(256, (n + 255) / 256 * 256);
    if (!*p) return cudaErrorMemoryAllocation;
    std::memset(*p, 0xff, n);  // garbage, as device memory is: NaNs in f32, so unset reads show
    return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
    std::free(p);
    return cudaSuccess;
}
inline cudaError_t cudaMallocHost(void** p, size_t n) { return cudaMalloc(p, n); }
inline cudaError_t cudaFreeHost(void* p) { return cudaFree(p); }
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t = nullptr) {
    if (n) std::memmove(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind k) { return cudaMemcpyAsync(d, s, n, k); }
inline cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t = nullptr) {
    std::memset(d, v, n);
    return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
    *s = new CUstream_st;
    return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }

// Events: the host's clock when recorded (the "stream" has finished everything before by then).
struct CUevent_st {
    double ms = 0;
};
using cudaEvent_t = CUevent_st*;
inline cudaError_t cudaEventCreate(cudaEvent_t* e) {
    *e = new CUevent_st;
    return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = nullptr) {
    e->ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
    return cudaSuccess;
}
inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = float(b->ms - a->ms);
    return cudaSuccess;
}
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

// --- cuBLAS ------------------------------------------------------------------------------------------------
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_16BF = 14 };
enum cublasComputeType_t { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_16BF = 75, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 };
enum cublasGemmAlgo_t { CUBLAS_GEMM_DEFAULT = -1 };
struct cublasContext {};
using cublasHandle_t = cublasContext*;

inline cublasStatus_t cublasCreate(cublasHandle_t* h) {
    *h = new cublasContext;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
inline const char* cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_NOT_SUPPORTED (cuda_emu)";
}

namespace cuda_emu {

// An input element as the compute type sees it.
inline double gemm_input(const void* base, cudaDataType t, int64_t i, cublasComputeType_t ct) {
    if (t == CUDA_R_16BF) return bf16_to_float(static_cast<const uint16_t*>(base)[i]);
    float x = static_cast<const float*>(base)[i];
    if (ct == CUBLAS_COMPUTE_32F_FAST_16BF) return bf16_to_float(float_to_bf16(x));
    if (ct == CUBLAS_COMPUTE_32F_FAST_TF32) {  // 10 mantissa bits: drop 13, rounding to nearest even
        uint32_t u;
        std::memcpy(&u, &x, 4);
        if ((u & 0x7fffffffu) <= 0x7f800000u) {  // not NaN
            u += 0xfffu + ((u >> 13) & 1u);
            u &= ~0x1fffu;
        }
        std::memcpy(&x, &u, 4);
    }
    return x;
}

}  // namespace cuda_emu

// Column-major C = alpha op(A) op(B) + beta C, batch times; C (f32 or bf16) is not read when beta is 0.
inline cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                 int n, int k, const void* alpha, const void* A, cudaDataType at,
                                                 int lda, long long sA, const void* B, cudaDataType bt, int ldb,
                                                 long long sB, const void* beta, void* C, cudaDataType ctype, int ldc,
                                                 long long sC, int batch, cublasComputeType_t ct, cublasGemmAlgo_t) {
    const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
    for (int b = 0; b < batch; ++b) {
        const int64_t oa = int64_t(b) * sA, ob = int64_t(b) * sB, oc = int64_t(b) * sC;
        for (int j = 0; j < n; ++j)
            for (int i = 0; i < m; ++i) {
                double s = 0;
                for (int l = 0; l < k; ++l) {
                    const int64_t ia = oa + (ta == CUBLAS_OP_N ? i + int64_t(l) * lda : l + int64_t(i) * lda);
                    const int64_t ib = ob + (tb == CUBLAS_OP_N ? l + int64_t(j) * ldb : j + int64_t(l) * ldb);
                    s += cuda_emu::gemm_input(A, at, ia, ct) * cuda_emu::gemm_input(B, bt, ib, ct);
                }
                const int64_t ic = oc + i + int64_t(j) * ldc;
                const double prior = be == 0.0f ? 0.0 : double(be) * cuda_emu::gemm_input(C, ctype, ic, CUBLAS_COMPUTE_32F);
                const float out = float(al * s + prior);
                if (ctype == CUDA_R_16BF) static_cast<uint16_t*>(C)[ic] = cuda_emu::float_to_bf16(out);
                else static_cast<float*>(C)[ic] = out;
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}
