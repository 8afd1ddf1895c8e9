// Trainer kernels on the device (see train_kernels.cuh).
#include <algorithm>
#include <cmath>
#include <string>

#include "bf16.cuh"
#include "train_kernels.cuh"

namespace igpt::cuda::train {
IGPT_EMU_NAMESPACE_BEGIN

namespace {

void check(cublasStatus_t st, const char* what) {
    if (st != CUBLAS_STATUS_SUCCESS)
        throw Error(std::string("cuBLAS error: ") + cublasGetStatusString(st) + " (" + what + ")");
}

// Row-major C (M, N) = alpha op(A) op(B) + beta C, batch times: the column-major C^T = op(B)^T op(A)^T (a
// row-major matrix is its transpose in column-major terms, so op(B)^T is B as stored unless tb).
void gemm_ex(cublasHandle_t h, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void* A,
             cudaDataType type_ab, int64_t lda, int64_t sA, const void* B, int64_t ldb, int64_t sB, float beta,
             void* C, cudaDataType type_c, int64_t ldc, int64_t sC, int64_t batch, cublasComputeType_t compute) {
    if (M <= 0 || N <= 0 || batch <= 0) return;
    check(cublasGemmStridedBatchedEx(h, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, int(N), int(M),
                                     int(K), &alpha, B, type_ab, int(ldb), sB, A, type_ab, int(lda), sA, &beta, C,
                                     type_c, int(ldc), sC, int(batch), compute, CUBLAS_GEMM_DEFAULT),
          "cublasGemmStridedBatchedEx");
}

unsigned blocks_for(int64_t n, int threads, int64_t cap = 65535) {
    return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, cap)));
}

// --- embedding -----------------------------------------------------------------------------------------
__global__ void embed_forward_kernel(const int32_t* __restrict__ tok, int32_t T, int32_t C, const float* __restrict__ sos,
                                     const float* __restrict__ wte, const float* __restrict__ wpe, float* __restrict__ x,
                                     int64_t total) {
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
        const int64_t row = e / C;
        const int32_t c = int32_t(e % C), p = int32_t(row % T);
        const float base = p == 0 ? sos[c] : wte[int64_t(tok[row - 1]) * C + c];
        x[e] = base + wpe[int64_t(p) * C + c];
    }
}

// dwte: one atomic per (row, column) whose input was a token (p > 0).
__global__ void embed_backward_wte_kernel(const float* __restrict__ dx, const int32_t* __restrict__ tok, int32_t T,
                                          int32_t C, float* __restrict__ dwte, int64_t total) {
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x) {
        const int64_t row = e / C;
        const int32_t c = int32_t(e % C), p = int32_t(row % T);
        if (p > 0) atomicAdd(dwte + int64_t(tok[row - 1]) * C + c, dx[e]);
    }
}

// dwpe[p, c] += sum_b dx[b, p, c]; dsos[c] += sum_b dx[b, 0, c]. One thread per (p, c): no atomics.
__global__ void embed_backward_pos_kernel(const float* __restrict__ dx, int32_t B, int32_t T, int32_t C,
                                          float* __restrict__ dsos, float* __restrict__ dwpe) {
    const int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (e >= int64_t(T) * C) return;
    const int32_t p = int32_t(e / C), c = int32_t(e % C);
    float s = 0.0f;
    for (int32_t b = 0; b < B; ++b) s += dx[(int64_t(b) * T + p) * C + c];
    dwpe[e] += s;
    if (p == 0) dsos[c] += s;
}

// --- RMS norm: one warp per row ------------------------------------------------------------------------
template <typename OT>
__global__ void rmsnorm_forward_kernel(const float* __restrict__ x, const float* __restrict__ g, float eps, int64_t M,
                                       int32_t C, OT* __restrict__ out, float* __restrict__ rstd) {
    const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= M) return;
    const float* xr = x + row * C;
    float ss = 0.0f;
    for (int32_t c = lane; c < C; c += 32) ss += xr[c] * xr[c];
    const float r = rsqrtf(warp_sum(ss) / float(C) + eps);
    OT* o = out + row * C;
    for (int32_t c = lane; c < C; c += 32) store_f(o + c, xr[c] * r * g[c]);
    if (lane == 0) rstd[row] = r;
}

// Rows in a block-stride loop, one warp per row for dx; dg summed in shared memory over the block's rows,
// then one atomic per column and block.
__global__ void rmsnorm_backward_kernel(const float* __restrict__ dout, const float* __restrict__ x,
                                        const float* __restrict__ g, const float* __restrict__ rstd, int64_t M,
                                        int32_t C, float* __restrict__ dx, float* __restrict__ dg) {
    IGPT_DYNAMIC_SHARED(float, sdg);  // (C)
    for (int32_t c = threadIdx.x; c < C; c += blockDim.x) sdg[c] = 0.0f;
    __syncthreads();
    const int warps = blockDim.x / 32, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int64_t row = int64_t(blockIdx.x) * warps + warp; row < M; row += int64_t(gridDim.x) * warps) {
        const float* di = dout + row * C;
        const float* xi = x + row * C;
        const float r = rstd[row];
        float dot = 0.0f;
        for (int32_t c = lane; c < C; c += 32) dot += di[c] * g[c] * xi[c];
        const float k = warp_sum(dot) * r * r * r / float(C);
        float* dxi = dx + row * C;
        for (int32_t c = lane; c < C; c += 32) {
            dxi[c] += r * g[c] * di[c] - xi[c] * k;
            atomicAdd(sdg + c, di[c] * xi[c] * r);  // shared-memory atomics: cheap, and rows of a warp differ
        }
    }
    __syncthreads();
    for (int32_t c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(dg + c, sdg[c]);
}

// --- bias, GELU --------------------------------------------------------------------------------------------
template <typename T>
__global__ void add_bias_kernel(T* __restrict__ Y, const float* __restrict__ b, int32_t N, int64_t total) {
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x)
        store_f(Y + e, load_f(Y + e) + b[e % N]);
}

// Column sums: block (column tile of 32, row slice); 32 x 8 threads, shared-memory reduction, one atomic
// per column and block.
template <typename IT>
__global__ void bias_grad_kernel(const IT* __restrict__ dY, int64_t M, int32_t N, int64_t rows_per_block,
                                 float* __restrict__ db) {
    __shared__ float s[8][33];
    const int32_t col = blockIdx.x * 32 + threadIdx.x;
    const int64_t r0 = int64_t(blockIdx.y) * rows_per_block, r1 = M < r0 + rows_per_block ? M : r0 + rows_per_block;
    float acc = 0.0f;
    if (col < N)
        for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) acc += load_f(dY + r * N + col);
    s[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && col < N) {
        float t = 0.0f;
        for (int i = 0; i < 8; ++i) t += s[i][threadIdx.x];
        atomicAdd(db + col, t);
    }
}

template <typename T>
__global__ void gelu_forward_kernel(const T* __restrict__ x, int64_t n, T* __restrict__ y) {
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
        const float v = load_f(x + e);
        store_f(y + e, v / (1.0f + expf(-1.702f * v)));
    }
}

// d/dx x s(ax) = s + a x s (1 - s), s = sigmoid(a x), a = 1.702
template <typename T>
__global__ void gelu_backward_kernel(const T* dy, const T* __restrict__ x, int64_t n, T* dx) {
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
        const float v = load_f(x + e);
        const float sg = 1.0f / (1.0f + expf(-1.702f * v));
        store_f(dx + e, load_f(dy + e) * (sg + 1.702f * v * sg * (1.0f - sg)));
    }
}

__global__ void to_bf16_kernel(const float* __restrict__ x, int64_t n, uint16_t* __restrict__ y) {
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x)
        y[e] = bf16_bits(x[e]);
}

// --- head-major copies ---------------------------------------------------------------------------------------
// Element e = (b, h, t, d) of a head-major (B*NH, T, D) tensor sits at this offset of the row-major
// (B*T, ld) one, in columns [col0, col0 + NH*D).
__device__ __forceinline__ int64_t row_major_offset(int64_t e, int32_t T, int32_t NH, int32_t D, int64_t ld,
                                                    int64_t col0) {
    const int32_t d = int32_t(e % D);
    const int64_t r = e / D;
    const int32_t t = int32_t(r % T);
    const int64_t bh = r / T;
    const int32_t h = int32_t(bh % NH);
    const int64_t b = bh / NH;
    return (b * T + t) * ld + col0 + int64_t(h) * D + d;
}

__global__ void to_heads_kernel(const float* __restrict__ src, int64_t ld, int64_t col0, int32_t T, int32_t NH,
                                int32_t D, float* __restrict__ dst, int64_t total) {
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x)
        dst[e] = src[row_major_offset(e, T, NH, D, ld, col0)];
}

__global__ void from_heads_kernel(const float* __restrict__ src, int32_t T, int32_t NH, int32_t D,
                                  float* __restrict__ dst, int64_t ld, int64_t col0, int64_t total) {
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += int64_t(gridDim.x) * blockDim.x)
        dst[row_major_offset(e, T, NH, D, ld, col0)] = src[e];
}

// --- causal softmax: one warp per row (row i of each (b, h) sees keys [0, i]) ---------------------------------
__global__ void causal_softmax_kernel(float* __restrict__ S, int64_t rows, int32_t T, float scale) {
    const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int32_t i = int32_t(row % T), n = i + 1;
    float* r = S + row * T;
    float m = -INFINITY;
    for (int32_t j = lane; j < n; j += 32) m = fmaxf(m, r[j] * scale);
    m = warp_max(m);
    float sum = 0.0f;
    for (int32_t j = lane; j < n; j += 32) {
        const float e = expf(r[j] * scale - m);
        r[j] = e;
        sum += e;
    }
    const float inv = 1.0f / warp_sum(sum);
    for (int32_t j = lane; j < T; j += 32) r[j] = j < n ? r[j] * inv : 0.0f;
}

__global__ void softmax_backward_kernel(float* __restrict__ dP, const float* __restrict__ P, int64_t rows, int32_t T,
                                        float scale) {
    const int64_t row = int64_t(blockIdx.x) * (blockDim.x / 32) + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int32_t n = int32_t(row % T) + 1;
    float* d = dP + row * T;
    const float* p = P + row * T;
    float dot = 0.0f;
    for (int32_t j = lane; j < n; j += 32) dot += p[j] * d[j];
    dot = warp_sum(dot);
    for (int32_t j = lane; j < T; j += 32) d[j] = j < n ? scale * p[j] * (d[j] - dot) : 0.0f;
}

// --- cross-entropy: one block per row ----------------------------------------------------------------------
__global__ void cross_entropy_kernel(float* __restrict__ logits, const int32_t* __restrict__ tgt, int32_t V,
                                     float scale, bool grad, float* __restrict__ row_nll) {
    __shared__ float scr[32];
    const int64_t row = blockIdx.x;
    float* l = logits + row * V;
    float m = -INFINITY;
    for (int32_t j = threadIdx.x; j < V; j += blockDim.x) m = fmaxf(m, l[j]);
    m = block_max(m, scr);
    float s = 0.0f;
    for (int32_t j = threadIdx.x; j < V; j += blockDim.x) s += expf(l[j] - m);
    s = block_sum(s, scr);
    const int32_t t = tgt[row];
    const float lt = l[t];  // read by every thread before anyone writes the row
    __syncthreads();
    if (threadIdx.x == 0) row_nll[row] = logf(s) - (lt - m);
    if (grad) {
        const float k = scale / s;
        for (int32_t j = threadIdx.x; j < V; j += blockDim.x) l[j] = expf(l[j] - m) * k - (j == t ? scale : 0.0f);
    }
}

// --- sums, AdamW ---------------------------------------------------------------------------------------------
template <bool kSquare>
__global__ void sum_kernel(const float* __restrict__ x, int64_t n, double* __restrict__ acc) {
    __shared__ double s[32];
    double t = 0;
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += int64_t(gridDim.x) * blockDim.x) {
        const double v = x[e];
        t += kSquare ? v * v : v;
    }
    for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) s[warp] = t;
    __syncthreads();
    if (threadIdx.x == 0) {
        double b = 0;
        for (int w = 0; w < int(blockDim.x >> 5); ++w) b += s[w];
        atomicAdd(acc, b);
    }
}

// Mirrors adamw_step (optim.cpp) element for element, with clip_grad_norm's scale folded in.
__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g, float* __restrict__ m,
                             float* __restrict__ v, const uint8_t* __restrict__ mask, int64_t n,
                             const double* __restrict__ grad_sq, AdamWArgs a, float bc1, float bc2) {
    const double norm = sqrt(*grad_sq);
    const float cs = (a.clip > 0 && norm > double(a.clip)) ? float(double(a.clip) / (norm + 1e-6)) : 1.0f;
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        const float gi = cs == 1.0f ? g[i] : g[i] * cs;
        const float mi = a.beta1 * m[i] + (1.0f - a.beta1) * gi;
        const float vi = a.beta2 * v[i] + (1.0f - a.beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        const float mhat = mi / bc1, vhat = vi / bc2;
        float x = p[i];
        if (mask[i]) x -= a.lr * a.weight_decay * x;
        p[i] = x - a.lr * mhat / (sqrtf(vhat) + a.eps);
    }
}

}  // namespace

void sum_into(const float* x, int64_t n, double* acc, cudaStream_t s) {
    if (n <= 0) return;
    IGPT_LAUNCH(sum_kernel<false>, blocks_for(n, 256, 1024), 256, 0, s)(x, n, acc);
    IGPT_CUDA_LAUNCHED();
}

void sum_squares_into(const float* x, int64_t n, double* acc, cudaStream_t s) {
    if (n <= 0) return;
    IGPT_LAUNCH(sum_kernel<true>, blocks_for(n, 256, 1024), 256, 0, s)(x, n, acc);
    IGPT_CUDA_LAUNCHED();
}

void adamw(float* params, const float* grads, float* m, float* v, const uint8_t* mask, int64_t n,
           const double* grad_sq, const AdamWArgs& a, cudaStream_t s) {
    if (n <= 0) return;
    const float bc1 = 1.0f - std::pow(a.beta1, float(a.t));
    const float bc2 = 1.0f - std::pow(a.beta2, float(a.t));
    IGPT_LAUNCH(adamw_kernel, blocks_for(n, 256, 4096), 256, 0, s)(params, grads, m, v, mask, n, grad_sq, a, bc1, bc2);
    IGPT_CUDA_LAUNCHED();
}

const char* gemm_math_name(GemmMath m) {
    switch (m) {
        case GemmMath::F32: return "f32";
        case GemmMath::TF32: return "tf32";
        case GemmMath::BF16: return "bf16";
        case GemmMath::MIXED: return "mixed";
    }
    return "?";
}

void gemm_rm(cublasHandle_t h, GemmMath math, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
             const float* A, int64_t lda, int64_t sA, const float* B, int64_t ldb, int64_t sB, float beta, float* C,
             int64_t ldc, int64_t sC, int64_t batch) {
    const cublasComputeType_t ct = math == GemmMath::BF16 || math == GemmMath::MIXED ? CUBLAS_COMPUTE_32F_FAST_16BF
                                   : math == GemmMath::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                            : CUBLAS_COMPUTE_32F;
    gemm_ex(h, ta, tb, M, N, K, alpha, A, CUDA_R_32F, lda, sA, B, ldb, sB, beta, C, CUDA_R_32F, ldc, sC, batch, ct);
}

void gemm_bf16(cublasHandle_t h, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    gemm_ex(h, ta, tb, M, N, K, alpha, A, CUDA_R_16BF, lda, 0, B, ldb, 0, beta, C, CUDA_R_32F, ldc, 0, 1,
            CUBLAS_COMPUTE_32F);
}
void gemm_bf16(cublasHandle_t h, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t* A,
               int64_t lda, const uint16_t* B, int64_t ldb, float beta, uint16_t* C, int64_t ldc) {
    gemm_ex(h, ta, tb, M, N, K, alpha, A, CUDA_R_16BF, lda, 0, B, ldb, 0, beta, C, CUDA_R_16BF, ldc, 0, 1,
            CUBLAS_COMPUTE_32F);
}

void embed_forward(const int32_t* tok, int32_t B, int32_t T, int32_t C, const float* sos, const float* wte,
                   const float* wpe, float* x, cudaStream_t s) {
    const int64_t total = int64_t(B) * T * C;
    IGPT_LAUNCH(embed_forward_kernel, blocks_for(total, 256, 8192), 256, 0, s)(tok, T, C, sos, wte, wpe, x, total);
    IGPT_CUDA_LAUNCHED();
}

void embed_backward(const float* dx, const int32_t* tok, int32_t B, int32_t T, int32_t C, float* dsos, float* dwte,
                    float* dwpe, cudaStream_t s) {
    const int64_t total = int64_t(B) * T * C;
    IGPT_LAUNCH(embed_backward_wte_kernel, blocks_for(total, 256, 8192), 256, 0, s)(dx, tok, T, C, dwte, total);
    IGPT_CUDA_LAUNCHED();
    IGPT_LAUNCH(embed_backward_pos_kernel, blocks_for(int64_t(T) * C, 256), 256, 0, s)(dx, B, T, C, dsos, dwpe);
    IGPT_CUDA_LAUNCHED();
}

template <typename OT>
void rmsnorm_forward_t(const float* x, const float* g, float eps, int64_t M, int32_t C, OT* out, float* rstd,
                       cudaStream_t s) {
    if (M <= 0) return;
    IGPT_LAUNCH(rmsnorm_forward_kernel<OT>, unsigned((M + 7) / 8), 256, 0, s)(x, g, eps, M, C, out, rstd);
    IGPT_CUDA_LAUNCHED();
}
void rmsnorm_forward(const float* x, const float* g, float eps, int64_t M, int32_t C, float* out, float* rstd,
                     cudaStream_t s) {
    rmsnorm_forward_t(x, g, eps, M, C, out, rstd, s);
}
void rmsnorm_forward(const float* x, const float* g, float eps, int64_t M, int32_t C, uint16_t* out, float* rstd,
                     cudaStream_t s) {
    rmsnorm_forward_t(x, g, eps, M, C, out, rstd, s);
}

void rmsnorm_backward(const float* dout, const float* x, const float* g, const float* rstd, int64_t M, int32_t C,
                      float* dx, float* dg, cudaStream_t s) {
    if (M <= 0) return;
    const unsigned blocks = unsigned(std::min<int64_t>((M + 7) / 8, 1024));
    IGPT_LAUNCH(rmsnorm_backward_kernel, blocks, 256, size_t(C) * 4, s)(dout, x, g, rstd, M, C, dx, dg);
    IGPT_CUDA_LAUNCHED();
}

template <typename T> void add_bias_t(T* Y, const float* b, int64_t M, int32_t N, cudaStream_t s) {
    const int64_t total = M * N;
    IGPT_LAUNCH(add_bias_kernel<T>, blocks_for(total, 256, 8192), 256, 0, s)(Y, b, N, total);
    IGPT_CUDA_LAUNCHED();
}
void add_bias(float* Y, const float* b, int64_t M, int32_t N, cudaStream_t s) { add_bias_t(Y, b, M, N, s); }
void add_bias(uint16_t* Y, const float* b, int64_t M, int32_t N, cudaStream_t s) { add_bias_t(Y, b, M, N, s); }

template <typename IT> void bias_grad_t(const IT* dY, int64_t M, int32_t N, float* db, cudaStream_t s) {
    if (M <= 0) return;
    const int64_t rows_per_block = 256;
    const dim3 grid(unsigned((N + 31) / 32), unsigned((M + rows_per_block - 1) / rows_per_block));
    IGPT_LAUNCH(bias_grad_kernel<IT>, grid, dim3(32, 8), 0, s)(dY, M, N, rows_per_block, db);
    IGPT_CUDA_LAUNCHED();
}
void bias_grad(const float* dY, int64_t M, int32_t N, float* db, cudaStream_t s) { bias_grad_t(dY, M, N, db, s); }
void bias_grad(const uint16_t* dY, int64_t M, int32_t N, float* db, cudaStream_t s) { bias_grad_t(dY, M, N, db, s); }

template <typename T> void gelu_forward_t(const T* x, int64_t n, T* y, cudaStream_t s) {
    IGPT_LAUNCH(gelu_forward_kernel<T>, blocks_for(n, 256, 8192), 256, 0, s)(x, n, y);
    IGPT_CUDA_LAUNCHED();
}
void gelu_forward(const float* x, int64_t n, float* y, cudaStream_t s) { gelu_forward_t(x, n, y, s); }
void gelu_forward(const uint16_t* x, int64_t n, uint16_t* y, cudaStream_t s) { gelu_forward_t(x, n, y, s); }

template <typename T> void gelu_backward_t(const T* dy, const T* x, int64_t n, T* dx, cudaStream_t s) {
    IGPT_LAUNCH(gelu_backward_kernel<T>, blocks_for(n, 256, 8192), 256, 0, s)(dy, x, n, dx);
    IGPT_CUDA_LAUNCHED();
}
void gelu_backward(const float* dy, const float* x, int64_t n, float* dx, cudaStream_t s) {
    gelu_backward_t(dy, x, n, dx, s);
}
void gelu_backward(const uint16_t* dy, const uint16_t* x, int64_t n, uint16_t* dx, cudaStream_t s) {
    gelu_backward_t(dy, x, n, dx, s);
}

void to_bf16(const float* x, int64_t n, uint16_t* y, cudaStream_t s) {
    if (n <= 0) return;
    IGPT_LAUNCH(to_bf16_kernel, blocks_for(n, 256, 8192), 256, 0, s)(x, n, y);
    IGPT_CUDA_LAUNCHED();
}

void to_heads(const float* src, int64_t ld, int64_t col0, int32_t B, int32_t T, int32_t NH, int32_t D, float* dst,
              cudaStream_t s) {
    const int64_t total = int64_t(B) * NH * T * D;
    IGPT_LAUNCH(to_heads_kernel, blocks_for(total, 256, 8192), 256, 0, s)(src, ld, col0, T, NH, D, dst, total);
    IGPT_CUDA_LAUNCHED();
}

void from_heads(const float* src, int32_t B, int32_t T, int32_t NH, int32_t D, float* dst, int64_t ld, int64_t col0,
                cudaStream_t s) {
    const int64_t total = int64_t(B) * NH * T * D;
    IGPT_LAUNCH(from_heads_kernel, blocks_for(total, 256, 8192), 256, 0, s)(src, T, NH, D, dst, ld, col0, total);
    IGPT_CUDA_LAUNCHED();
}

void causal_softmax(float* S, int64_t BH, int32_t T, float scale, cudaStream_t s) {
    const int64_t rows = BH * T;
    IGPT_LAUNCH(causal_softmax_kernel, unsigned((rows + 7) / 8), 256, 0, s)(S, rows, T, scale);
    IGPT_CUDA_LAUNCHED();
}

void softmax_backward(float* dP, const float* P, int64_t BH, int32_t T, float scale, cudaStream_t s) {
    const int64_t rows = BH * T;
    IGPT_LAUNCH(softmax_backward_kernel, unsigned((rows + 7) / 8), 256, 0, s)(dP, P, rows, T, scale);
    IGPT_CUDA_LAUNCHED();
}

void cross_entropy(float* logits, const int32_t* tgt, int64_t M, int32_t V, float scale, bool grad, float* row_nll,
                   cudaStream_t s) {
    if (M <= 0) return;
    IGPT_LAUNCH(cross_entropy_kernel, unsigned(M), 128, 0, s)(logits, tgt, V, scale, grad, row_nll);
    IGPT_CUDA_LAUNCHED();
}

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda::train
