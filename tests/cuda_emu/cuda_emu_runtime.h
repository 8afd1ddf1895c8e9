// The host side of tests/cuda_emu: the part of cuda_runtime_api.h and cublas_v2.h that the CUDA trainer
// and the CUDA inference backend use, on the CPU. "Device" memory is host memory; streams are synchronous;
// the cuBLAS GEMM is the textbook loop, with its inputs rounded as the compute type says (bf16 or tf32) and
// double accumulation. A captured stream records its work into a graph (a list of calls), which
// cudaGraphLaunch replays. The device has IGPT_CUDA_EMU_SMS multiprocessors (default 8): the fused decode
// step launches one block per SM, and splits its attention by their count. Each thread of its 512-thread
// blocks is a fiber with a 256 KiB stack (virtual memory, kept for reuse: 1 GiB at 8 SMs, 16 GiB at 132). Included (by
// src/cuda/common.cuh and src/train/cuda/train_kernels.cuh) instead of the CUDA headers when IGPT_CUDA_EMU
// is defined.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <tuple>
#include <vector>

#include "cuda_emu.h"

// --- runtime -----------------------------------------------------------------------------------------------
enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorStreamCaptureUnsupported = 900,
};
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
struct CUstream_st {};
using cudaStream_t = CUstream_st*;
constexpr unsigned cudaStreamNonBlocking = 1;
namespace cuda_emu {
inline int sm_count() {
    const char* e = std::getenv("IGPT_CUDA_EMU_SMS");
    const int n = e ? std::atoi(e) : 0;
    return n > 0 ? n : 8;
}
}  // namespace cuda_emu
struct cudaDeviceProp {
    char name[256] = "cuda_emu (CPU)";
    size_t totalGlobalMem = size_t(1) << 34;
    int multiProcessorCount = 1;
};

inline const char* cudaGetErrorString(cudaError_t e) {
    switch (e) {
        case cudaSuccess: return "no error";
        case cudaErrorInvalidValue: return "invalid argument";
        case cudaErrorMemoryAllocation: return "out of memory";
        case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    }
    return "unknown error";
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
    *p = cudaDeviceProp{};
    p->multiProcessorCount = cuda_emu::sm_count();
    return cudaSuccess;
}
inline cudaError_t cudaGetDeviceCount(int* n) {
    *n = 1;
    return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
    *d = 0;
    return cudaSuccess;
}
enum cudaDeviceAttr {
    cudaDevAttrMultiProcessorCount,
    cudaDevAttrCooperativeLaunch,
    cudaDevAttrMaxSharedMemoryPerBlockOptin,
    cudaDevAttrComputeCapabilityMajor,
};
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int) {  // an H100's, but for the SM count
    switch (a) {
        case cudaDevAttrMultiProcessorCount: *v = cuda_emu::sm_count(); break;
        case cudaDevAttrCooperativeLaunch: *v = 1; break;
        case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = 227 * 1024; break;
        case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    }
    return cudaSuccess;
}
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
inline cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int) { return cudaSuccess; }
struct cudaFuncAttributes {
    size_t sharedSizeBytes = 0;  // static shared memory: unknown here (function-level statics)
};
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, const void*) {
    *a = cudaFuncAttributes{};
    return cudaSuccess;
}
inline cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* n, const void*, int, size_t) {
    *n = 1;
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
namespace cuda_emu {
// What CUDA answers to a call that would wait for, or run outside, a stream being captured.
inline cudaError_t unless_capturing() { return g_capture ? cudaErrorStreamCaptureUnsupported : cudaSuccess; }
// Work on a stream: done now, or recorded when the stream is being captured.
template <typename F> cudaError_t enqueue(F&& work) {
    if (g_capture) g_capture->push_back(std::forward<F>(work));
    else work();
    return cudaSuccess;
}
}  // namespace cuda_emu
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t = nullptr) {
    return cuda_emu::enqueue([=] {
        if (n) std::memmove(d, s, n);
    });
}
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind k) {
    if (const cudaError_t e = cuda_emu::unless_capturing()) return e;
    return cudaMemcpyAsync(d, s, n, k);
}
inline cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t = nullptr) {
    return cuda_emu::enqueue([=] { std::memset(d, v, n); });
}
inline cudaError_t cudaMemset(void* d, int v, size_t n) {
    if (const cudaError_t e = cuda_emu::unless_capturing()) return e;
    return cudaMemsetAsync(d, v, n);
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
    *s = new CUstream_st;
    return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
// Waiting for a stream that is being captured is an error, as in CUDA (the capture would miss the work).
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cuda_emu::unless_capturing(); }

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
constexpr unsigned cudaEventDisableTiming = 2, cudaEventBlockingSync = 1;
inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) { return cudaEventCreate(e); }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cuda_emu::unless_capturing(); }
inline cudaError_t cudaDeviceSynchronize() { return cuda_emu::unless_capturing(); }

// Kernel launches with attributes: cooperative (every block resident, grid-wide barriers) or not.
enum cudaLaunchAttributeID { cudaLaunchAttributeCooperative = 2 };
union cudaLaunchAttributeValue {
    int cooperative;
};
struct cudaLaunchAttribute {
    cudaLaunchAttributeID id;
    cudaLaunchAttributeValue val;
};
struct cudaLaunchConfig_t {
    dim3 gridDim, blockDim;
    size_t dynamicSmemBytes = 0;
    cudaStream_t stream = nullptr;
    cudaLaunchAttribute* attrs = nullptr;
    unsigned numAttrs = 0;
};
template <typename... P, typename... A>
cudaError_t cudaLaunchKernelEx(const cudaLaunchConfig_t* cfg, void (*kernel)(P...), A&&... args) {
    bool coop = false;
    for (unsigned i = 0; i < cfg->numAttrs; ++i)
        if (cfg->attrs[i].id == cudaLaunchAttributeCooperative) coop = cfg->attrs[i].val.cooperative != 0;
    const dim3 grid = cfg->gridDim, block = cfg->blockDim;
    const size_t smem = cfg->dynamicSmemBytes;
    return cuda_emu::enqueue([=, saved = std::make_tuple(P(args)...)] {
        auto call = [&] { std::apply(kernel, saved); };
        if (coop) cuda_emu::launch_cooperative(grid, block, smem, call);
        else cuda_emu::launch(grid, block, smem, call, reinterpret_cast<const void*>(kernel));
    });
}

// Graphs: what a captured stream recorded, replayed in order.
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal,
    cudaStreamCaptureModeThreadLocal,
    cudaStreamCaptureModeRelaxed,
};
struct CUgraph_st {
    std::vector<std::function<void()>> work;
};
using cudaGraph_t = CUgraph_st*;
struct CUgraphExec_st {
    std::vector<std::function<void()>> work;
};
using cudaGraphExec_t = CUgraphExec_st*;
inline cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
    if (const cudaError_t e = cuda_emu::unless_capturing()) return e;
    cuda_emu::g_capture = new std::vector<std::function<void()>>;
    return cudaSuccess;
}
inline cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t* g) {
    if (!cuda_emu::g_capture) return cudaErrorInvalidValue;
    *g = new CUgraph_st{std::move(*cuda_emu::g_capture)};
    delete cuda_emu::g_capture;
    cuda_emu::g_capture = nullptr;
    return cudaSuccess;
}
inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long) {
    *e = new CUgraphExec_st{g->work};
    return cudaSuccess;
}
inline cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
    if (const cudaError_t err = cuda_emu::unless_capturing()) return err;
    for (const auto& w : e->work) w();
    return cudaSuccess;
}
inline cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    delete e;
    return cudaSuccess;
}

// --- cuBLAS ------------------------------------------------------------------------------------------------
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7, CUBLAS_STATUS_NOT_SUPPORTED = 15 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cudaDataType { CUDA_R_32F = 0, CUDA_R_16F = 2, CUDA_R_16BF = 14 };
using cudaDataType_t = cudaDataType;
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0 };
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
inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetWorkspace(cublasHandle_t, void*, size_t) { return CUBLAS_STATUS_SUCCESS; }
inline const char* cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_NOT_SUPPORTED (cuda_emu)";
}

namespace cuda_emu {

// An input element as the compute type sees it.
inline double gemm_input(const void* base, cudaDataType t, int64_t i, cublasComputeType_t ct) {
    if (t == CUDA_R_16BF) return bf16_to_float(static_cast<const uint16_t*>(base)[i]);
    if (t == CUDA_R_16F) return igpt::half_to_float(static_cast<const uint16_t*>(base)[i]);
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

// Column-major C = alpha op(A) op(B) + beta C, batch times; C (f32, f16 or bf16) is not read when beta is 0.
// alpha and beta are read at the call (a captured GEMM keeps their values).
inline cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m,
                                                 int n, int k, const void* alpha, const void* A, cudaDataType at,
                                                 int lda, long long sA, const void* B, cudaDataType bt, int ldb,
                                                 long long sB, const void* beta, void* C, cudaDataType ctype, int ldc,
                                                 long long sC, int batch, cublasComputeType_t ct, cublasGemmAlgo_t) {
    const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
    cuda_emu::enqueue([=] {
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
                    const double prior =
                        be == 0.0f ? 0.0 : double(be) * cuda_emu::gemm_input(C, ctype, ic, CUBLAS_COMPUTE_32F);
                    const float out = float(al * s + prior);
                    if (ctype == CUDA_R_16BF) static_cast<uint16_t*>(C)[ic] = cuda_emu::float_to_bf16(out);
                    else if (ctype == CUDA_R_16F) static_cast<uint16_t*>(C)[ic] = igpt::float_to_half(out);
                    else static_cast<float*>(C)[ic] = out;
                }
        }
    });
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                   const void* alpha, const void* A, cudaDataType at, int lda, const void* B,
                                   cudaDataType bt, int ldb, const void* beta, void* C, cudaDataType ctype, int ldc,
                                   cublasComputeType_t ct, cublasGemmAlgo_t algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0, beta, C, ctype, ldc, 0,
                                      1, ct, algo);
}
