// CUDA kernels of the trainer (issue 6): the device versions of grad_ops.h, for a batch of B images at
// once (M = B*T rows), f32 in memory (some also in bf16, as uint16_t, for --cuda-math mixed). The GEMMs go
// through cuBLAS: gemm_rm (exact f32, or f32 storage with bf16 / tf32 tensor-core compute and f32
// accumulation) and gemm_bf16 (bf16 storage). The attention here is written out as batched GEMMs over
// (image, head) on head-major copies of q, k, v (B*NH, T, D), with the probabilities kept for the backward
// pass, as the CPU trainer does; flash_attn.cuh has the flash-style one.
//
// Conventions as in grad_ops.h: row-major, matrices [out, in]; a backward that says "+=" accumulates.
// Every launcher enqueues on `stream` and returns at once.
#pragma once
#ifndef IGPT_CUDA_EMU
#include <cublas_v2.h>
#endif

#include <cstdint>

#include "cuda/common.cuh"

namespace igpt::cuda::train {
IGPT_EMU_NAMESPACE_BEGIN

// Compute of the cuBLAS GEMMs. F32, TF32, BF16: f32 storage (with exact, tf32 or bf16 tensor-core
// products). MIXED: the GEMMs' inputs are stored in bf16 (activations, and a bf16 copy of the weights, as
// uint16_t) and their outputs in f32; the trainer then runs gemm_bf16 and the bf16 kernel variants below.
enum class GemmMath { F32, TF32, BF16, MIXED };
const char* gemm_math_name(GemmMath m);

// Row-major C (M, N) = alpha * op(A) (M, K) · op(B) (K, N) + beta * C, `batch` times with element strides
// sA, sB, sC between the matrices. op(A) = A (M, K; lda) or, with ta, A^T for A (K, M; lda); same for B.
void gemm_rm(cublasHandle_t h, GemmMath math, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
             const float* A, int64_t lda, int64_t sA, const float* B, int64_t ldb, int64_t sB, float beta, float* C,
             int64_t ldc, int64_t sC, int64_t batch = 1);

// Row-major C (M, N) = alpha * op(A) · op(B) + beta * C with A, B in bf16 (uint16_t bits) and C in f32 or
// bf16, f32 accumulation; as gemm_rm otherwise (one matrix).
void gemm_bf16(cublasHandle_t h, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc);
void gemm_bf16(cublasHandle_t h, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C, int64_t ldc);

// y = x rounded to bf16 (n elements).
void to_bf16(const float* x, int64_t n, uint16_t* y, cudaStream_t s);

// x (B*T, C) = [sos | wte[tok[b, p-1]]] + wpe[p]; tok (B, T) are the targets, the input is shifted right.
void embed_forward(const int32_t* tok, int32_t B, int32_t T, int32_t C, const float* sos, const float* wte,
                   const float* wpe, float* x, cudaStream_t s);
// dsos += sum_b dx[b, 0]; dwte[tok[b, p-1]] += dx[b, p] (atomics); dwpe[p] += sum_b dx[b, p].
void embed_backward(const float* dx, const int32_t* tok, int32_t B, int32_t T, int32_t C, float* dsos, float* dwte,
                    float* dwpe, cudaStream_t s);

// out = x * rstd * g, rstd = 1 / sqrt(mean(x^2) + eps), per row.
// out: f32, or bf16 (uint16_t) for the mixed trainer.
void rmsnorm_forward(const float* x, const float* g, float eps, int64_t M, int32_t C, float* out, float* rstd,
                     cudaStream_t s);
void rmsnorm_forward(const float* x, const float* g, float eps, int64_t M, int32_t C, uint16_t* out, float* rstd,
                     cudaStream_t s);
// dx += d(out)/dx · dout; dg += sum over rows of dout * x * rstd.
void rmsnorm_backward(const float* dout, const float* x, const float* g, const float* rstd, int64_t M, int32_t C,
                      float* dx, float* dg, cudaStream_t s);

// The elementwise ops come in f32 and in bf16 (uint16_t, all of an op's tensors); biases stay f32.
void add_bias(float* Y, const float* b, int64_t M, int32_t N, cudaStream_t s);          // Y[m, :] += b
void add_bias(uint16_t* Y, const float* b, int64_t M, int32_t N, cudaStream_t s);
void bias_grad(const float* dY, int64_t M, int32_t N, float* db, cudaStream_t s);        // db += column sums
void bias_grad(const uint16_t* dY, int64_t M, int32_t N, float* db, cudaStream_t s);
void gelu_forward(const float* x, int64_t n, float* y, cudaStream_t s);                  // y = x sigmoid(1.702 x)
void gelu_forward(const uint16_t* x, int64_t n, uint16_t* y, cudaStream_t s);
void gelu_backward(const float* dy, const float* x, int64_t n, float* dx, cudaStream_t s);  // dx may alias dy
void gelu_backward(const uint16_t* dy, const uint16_t* x, int64_t n, uint16_t* dx, cudaStream_t s);

// Head-major copies: dst (B*NH, T, D) <- columns [col0, col0 + NH*D) of src (B*T rows, row stride ld).
void to_heads(const float* src, int64_t ld, int64_t col0, int32_t B, int32_t T, int32_t NH, int32_t D, float* dst,
              cudaStream_t s);
// and back: columns [col0, col0 + NH*D) of dst (B*T rows, stride ld) <- src (B*NH, T, D).
void from_heads(const float* src, int32_t B, int32_t T, int32_t NH, int32_t D, float* dst, int64_t ld, int64_t col0,
                cudaStream_t s);

// S (BH, T, T) raw scores -> causal softmax of scale * S in place (zeros above the diagonal).
void causal_softmax(float* S, int64_t BH, int32_t T, float scale, cudaStream_t s);
// dP (BH, T, T) -> d(raw scores) in place: scale * P * (dP - rowsum(P * dP)), zero above the diagonal.
void softmax_backward(float* dP, const float* P, int64_t BH, int32_t T, float scale, cudaStream_t s);

// Per row m of logits (M, V): row_nll[m] = -ln softmax(logits[m])[tgt[m]]; with grad, logits[m] becomes
// (softmax - onehot) * scale.
void cross_entropy(float* logits, const int32_t* tgt, int64_t M, int32_t V, float scale, bool grad, float* row_nll,
                   cudaStream_t s);

// *acc += sum of x[0, n) (double accumulation, one atomic per block).
void sum_into(const float* x, int64_t n, double* acc, cudaStream_t s);
// *acc += sum of x[i]^2.
void sum_squares_into(const float* x, int64_t n, double* acc, cudaStream_t s);

// optim.h's clip_grad_norm + adamw_step on the device: the clip factor comes from *grad_sq (the sum of
// squared gradients) in device memory, so no host round trip. t: 1-based step.
struct AdamWArgs {
    float lr = 0, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0, clip = 0;
    int64_t t = 1;
};
void adamw(float* params, const float* grads, float* m, float* v, const uint8_t* mask, int64_t n,
           const double* grad_sq, const AdamWArgs& a, cudaStream_t s);

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda::train
