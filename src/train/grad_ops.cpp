// Forward and backward of each training op (see grad_ops.h). GEMMs go through Eigen (single-threaded:
// the trainer parallelises over images), except the attention's thin per-head products in float, which run
// on igpt::gemm_strided; elementwise exp/sigmoid through Eigen's vectorised arrays.
#include "grad_ops.h"

#include "cpu/ops.h"  // gemm_strided

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace igpt::train {

namespace {
template <typename F>
using Mat = Eigen::Matrix<F, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename F>
using MapM = Eigen::Map<Mat<F>>;
template <typename F>
using CMapM = Eigen::Map<const Mat<F>>;
template <typename F>
using MapS = Eigen::Map<Mat<F>, 0, Eigen::OuterStride<>>;  // strided view: one head's columns
template <typename F>
using CMapS = Eigen::Map<const Mat<F>, 0, Eigen::OuterStride<>>;
template <typename F>
using ArrV = Eigen::Array<F, Eigen::Dynamic, 1>;

constexpr int64_t kAttBlock = 64;  // rows per causal block: wasted (masked) work ~ kAttBlock / (2T);
                                   // a block of P and of dS (64 x T) stay in L2 together
}  // namespace

// --- embedding ---------------------------------------------------------------------------------------------
template <typename F>
void embedding_forward(const int32_t* tokens, const F* sos, const F* wte, const F* wpe, int64_t T, int64_t C,
                       F* out) {
    for (int64_t p = 0; p < T; p++) {
        const F* e = p == 0 ? sos : wte + int64_t(tokens[p - 1]) * C;
        const F* pe = wpe + p * C;
        F* o = out + p * C;
        for (int64_t c = 0; c < C; c++) o[c] = e[c] + pe[c];
    }
}

template <typename F>
void embedding_backward(const F* dout, const int32_t* tokens, int64_t T, int64_t C, F* dsos, F* dwte, F* dwpe) {
    for (int64_t p = 0; p < T; p++) {
        const F* d = dout + p * C;
        F* de = p == 0 ? dsos : dwte + int64_t(tokens[p - 1]) * C;
        F* dpe = dwpe + p * C;
        for (int64_t c = 0; c < C; c++) {
            de[c] += d[c];
            dpe[c] += d[c];
        }
    }
}

// --- RMS norm ----------------------------------------------------------------------------------------------
template <typename F>
void rmsnorm_forward(const F* x, const F* g, F eps, int64_t M, int64_t C, F* out, F* rstd) {
    for (int64_t i = 0; i < M; i++) {
        const F* xi = x + i * C;
        F ss = 0;
        for (int64_t c = 0; c < C; c++) ss += xi[c] * xi[c];
        F r = F(1) / std::sqrt(ss / F(C) + eps);
        rstd[i] = r;
        F* oi = out + i * C;
        for (int64_t c = 0; c < C; c++) oi[c] = xi[c] * r * g[c];
    }
}

// y_c = x_c r g_c with r = (mean(x^2) + eps)^-1/2, dr/dx_c = -r^3 x_c / C
// => dx_c = r g_c dy_c - x_c r^3 / C * sum_j(dy_j g_j x_j)
template <typename F>
void rmsnorm_backward(const F* dout, const F* x, const F* g, const F* rstd, int64_t M, int64_t C, F* dx, F* dg) {
    for (int64_t i = 0; i < M; i++) {
        const F* di = dout + i * C;
        const F* xi = x + i * C;
        F r = rstd[i];
        F dot = 0;
        for (int64_t c = 0; c < C; c++) dot += di[c] * g[c] * xi[c];
        F k = dot * r * r * r / F(C);
        F* dxi = dx + i * C;
        for (int64_t c = 0; c < C; c++) {
            dxi[c] += r * g[c] * di[c] - xi[c] * k;
            dg[c] += di[c] * xi[c] * r;
        }
    }
}

// --- linear ------------------------------------------------------------------------------------------------
template <typename F>
void linear_forward(const F* X, const F* W, const F* b, int64_t M, int64_t K, int64_t N, F* Y) {
    CMapM<F> x(X, M, K), w(W, N, K);
    MapM<F> y(Y, M, N);
    y.noalias() = x * w.transpose();
    if (b) y.rowwise() += Eigen::Map<const Eigen::Matrix<F, 1, Eigen::Dynamic>>(b, N);
}

template <typename F>
void linear_backward(const F* dY, const F* X, const F* W, int64_t M, int64_t K, int64_t N, F* dX, F* dW, F* db) {
    CMapM<F> dy(dY, M, N), x(X, M, K), w(W, N, K);
    if (dX) {
        MapM<F> dx(dX, M, K);
        dx.noalias() = dy * w;
    }
    MapM<F> dw(dW, N, K);
    dw.noalias() += dy.transpose() * x;
    if (db) Eigen::Map<Eigen::Matrix<F, 1, Eigen::Dynamic>>(db, N) += dy.colwise().sum();
}

// --- quick GELU --------------------------------------------------------------------------------------------
template <typename F>
void gelu_forward(const F* x, int64_t n, F* y) {
    Eigen::Map<const ArrV<F>> a(x, n);
    Eigen::Map<ArrV<F>> o(y, n);
    o = a / (F(1) + (F(-1.702) * a).exp());
}

// d/dx [x s(1.702x)] = s + 1.702 x s (1 - s)
template <typename F>
void gelu_backward(const F* dy, const F* x, int64_t n, F* dx) {
    Eigen::Map<const ArrV<F>> a(x, n), d(dy, n);
    Eigen::Map<ArrV<F>> o(dx, n);
    // in chunks, so the sigmoid temporary stays in cache
    constexpr int64_t kChunk = 4096;
    ArrV<F> s(std::min(n, kChunk));
    for (int64_t i = 0; i < n; i += kChunk) {
        int64_t m = std::min(kChunk, n - i);
        auto ai = a.segment(i, m);
        s.head(m) = F(1) / (F(1) + (F(-1.702) * ai).exp());
        o.segment(i, m) = d.segment(i, m) * (s.head(m) + F(1.702) * ai * s.head(m) * (F(1) - s.head(m)));
    }
}

// --- attention ---------------------------------------------------------------------------------------------
int64_t attention_ld(int64_t T) { return T + 16; }
int64_t attention_probs_size(int64_t T, int64_t NH) { return NH * T * attention_ld(T); }
int64_t attention_scratch(int64_t T, int64_t hd) { return (std::min(T, kAttBlock) + hd) * attention_ld(T); }

namespace {
// C (M, N) = or += A (M, K) · B (K, N): A's element (r, k) at A[r * a_rs + k * a_ks], B and C row-major.
// float: igpt::gemm_strided (AVX2 tiles; Eigen's GEMM packs both sides on every call and ran these thin
// products at half the speed); double (the gradient tests): Eigen on strided maps.
void mm(int64_t M, int64_t N, int64_t K, const float* A, int64_t a_rs, int64_t a_ks, const float* B, int64_t ldb,
        float* C, int64_t ldc, bool accumulate) {
    gemm_strided(M, N, K, A, a_rs, a_ks, B, ldb, C, ldc, accumulate);
}
void mm(int64_t M, int64_t N, int64_t K, const double* A, int64_t a_rs, int64_t a_ks, const double* B, int64_t ldb,
        double* C, int64_t ldc, bool accumulate) {
    using Strided = Eigen::Map<const Mat<double>, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
    const Strided a(A, M, K, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(a_rs, a_ks));
    const CMapS<double> b(B, K, N, Eigen::OuterStride<>(ldb));
    MapS<double> c(C, M, N, Eigen::OuterStride<>(ldc));
    if (accumulate)
        c.noalias() += a * b;
    else
        c.noalias() = a * b;
}

// dst (hd, ld) = scale * src^T for one head's (T, hd) columns of qkv (row stride 3C)
template <typename F>
void transpose_head(const F* src, int64_t T, int64_t hd, int64_t stride, F scale, F* dst, int64_t ld) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t d = 0; d < hd; d++) dst[d * ld + t] = scale * src[t * stride + d];
}
}  // namespace

template <typename F>
void attention_forward(const F* qkv, int64_t T, int64_t C, int64_t NH, F* att, F* out, F* scratch) {
    const int64_t hd = C / NH, ld = attention_ld(T), C3 = 3 * C;
    const F scale = F(1) / std::sqrt(F(hd));
    F* kt = scratch;  // (hd, ld): scale * k^T of the current head
    for (int64_t h = 0; h < NH; h++) {
        const F* q = qkv + h * hd;
        const F* v = qkv + 2 * C + h * hd;
        transpose_head(qkv + C + h * hd, T, hd, C3, scale, kt, ld);
        F* A = att + h * T * ld;
        for (int64_t r0 = 0; r0 < T; r0 += kAttBlock) {
            const int64_t rows = std::min(kAttBlock, T - r0), cols = r0 + rows;  // keys [0, cols) are visible
            F* S = A + r0 * ld;
            mm(rows, cols, hd, q + r0 * C3, C3, 1, kt, ld, S, ld, false);  // S = q k^T * scale (rows, cols)
            // causal softmax row by row (contiguous, vectorised): position r0+i sees keys [0, r0+i+1)
            for (int64_t i = 0; i < rows; i++) {
                const int64_t n = r0 + i + 1;
                Eigen::Map<ArrV<F>> vis(S + i * ld, n);
                const F m = vis.maxCoeff();
                vis = (vis - m).exp();
                vis *= F(1) / vis.sum();
                std::fill(S + i * ld + n, S + i * ld + cols, F(0));
            }
            // A's entries right of the block (keys no row of it sees) are never written: the backward pass
            // reads only blocks (clearing them was ~7% of a training step).
            mm(rows, hd, cols, S, ld, 1, v, C3, out + r0 * C + h * hd, C, false);  // o = P v
        }
    }
}

// o = P v, P = softmax(S), S = q k^T * scale:
//   dv = P^T do; dP = do v^T; dS = P * (dP - rowsum(dP * P)); dq = dS k * scale; dk = dS^T q * scale
template <typename F>
void attention_backward(const F* dout, const F* qkv, const F* att, int64_t T, int64_t C, int64_t NH, F* dqkv,
                        F* scratch) {
    const int64_t hd = C / NH, ld = attention_ld(T), C3 = 3 * C;
    const F scale = F(1) / std::sqrt(F(hd));
    std::memset(dqkv, 0, sizeof(F) * size_t(T * C3));
    F* vt = scratch;            // (hd, ld): v^T of the current head
    F* dS = scratch + hd * ld;  // (rows, ld)
    for (int64_t h = 0; h < NH; h++) {
        const F* q = qkv + h * hd;
        const F* k = qkv + C + h * hd;
        F* dq = dqkv + h * hd;
        F* dk = dqkv + C + h * hd;
        F* dv = dqkv + 2 * C + h * hd;
        transpose_head(qkv + 2 * C + h * hd, T, hd, C3, F(1), vt, ld);
        const F* A = att + h * T * ld;
        for (int64_t r0 = 0; r0 < T; r0 += kAttBlock) {
            const int64_t rows = std::min(kAttBlock, T - r0), cols = r0 + rows;
            const F* P = A + r0 * ld;
            const F* dO = dout + r0 * C + h * hd;
            mm(rows, cols, hd, dO, C, 1, vt, ld, dS, ld, false);  // dP = dO v^T (rows, cols)
            // dS = scale * P * (dP - rowsum(dP * P)), row by row; masked entries have P = 0, so dS = 0 there.
            // This pass brings the block of P in from memory row by row; the column walk of P^T dO below then
            // finds it in L2 (the other order made that product twice as slow).
            for (int64_t i = 0; i < rows; i++) {
                Eigen::Map<ArrV<F>> dp(dS + i * ld, cols);
                const Eigen::Map<const ArrV<F>> p(P + i * ld, cols);
                const F dot = (dp * p).sum();
                dp = scale * p * (dp - dot);
            }
            mm(cols, hd, rows, P, 1, ld, dO, C, dv, C3, true);  // dv[0, cols) += P^T dO
            mm(rows, hd, cols, dS, ld, 1, k, C3, dq + r0 * C3, C3, true);  // dq[r0, r0+rows) += dS k
            mm(cols, hd, rows, dS, 1, ld, q + r0 * C3, C3, dk, C3, true);  // dk[0, cols) += dS^T q
        }
    }
}

// --- cross-entropy -----------------------------------------------------------------------------------------
template <typename F>
double cross_entropy(F* logits, const int32_t* targets, int64_t M, int64_t V, F scale, F* dlogits,
                     float* pixel_nats) {
    double total = 0;
    ArrV<F> e(V);
    for (int64_t i = 0; i < M; i++) {
        Eigen::Map<ArrV<F>> l(logits + i * V, V);
        const int32_t t = targets[i];
        F m = l.maxCoeff();
        e = (l - m).exp();
        F s = e.sum();
        double nll = double(std::log(s)) - double(l[t] - m);
        total += nll;
        if (pixel_nats) pixel_nats[i] = float(nll);
        if (dlogits) {
            Eigen::Map<ArrV<F>> d(dlogits + i * V, V);
            d = e * (scale / s);
            d[t] -= scale;
        }
    }
    return total;
}

// --- instantiations ----------------------------------------------------------------------------------------
#define IGPT_TRAIN_OPS(F)                                                                                        \
    template void embedding_forward<F>(const int32_t*, const F*, const F*, const F*, int64_t, int64_t, F*);       \
    template void embedding_backward<F>(const F*, const int32_t*, int64_t, int64_t, F*, F*, F*);                  \
    template void rmsnorm_forward<F>(const F*, const F*, F, int64_t, int64_t, F*, F*);                            \
    template void rmsnorm_backward<F>(const F*, const F*, const F*, const F*, int64_t, int64_t, F*, F*);          \
    template void linear_forward<F>(const F*, const F*, const F*, int64_t, int64_t, int64_t, F*);                 \
    template void linear_backward<F>(const F*, const F*, const F*, int64_t, int64_t, int64_t, F*, F*, F*);        \
    template void gelu_forward<F>(const F*, int64_t, F*);                                                         \
    template void gelu_backward<F>(const F*, const F*, int64_t, F*);                                              \
    template void attention_forward<F>(const F*, int64_t, int64_t, int64_t, F*, F*, F*);                         \
    template void attention_backward<F>(const F*, const F*, const F*, int64_t, int64_t, int64_t, F*, F*);         \
    template double cross_entropy<F>(F*, const int32_t*, int64_t, int64_t, F, F*, float*);
IGPT_TRAIN_OPS(float)
IGPT_TRAIN_OPS(double)
#undef IGPT_TRAIN_OPS

}  // namespace igpt::train
