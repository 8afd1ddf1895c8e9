// Forward and backward of each training op (see grad_ops.h). GEMMs go through Eigen (single-threaded:
// the trainer parallelises over images), elementwise exp/sigmoid through Eigen's vectorised arrays.
#include "grad_ops.h"

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

constexpr int64_t kAttBlock = 128;  // rows per causal block: wasted (masked) work ~ kAttBlock / (2T)
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
int64_t attention_scratch(int64_t T) { return std::min(T, kAttBlock) * T; }

template <typename F>
void attention_forward(const F* qkv, int64_t T, int64_t C, int64_t NH, F* att, F* out) {
    const int64_t hd = C / NH;
    const F scale = F(1) / std::sqrt(F(hd));
    for (int64_t h = 0; h < NH; h++) {
        CMapS<F> q(qkv + h * hd, T, hd, Eigen::OuterStride<>(3 * C));          // (T, hd)
        CMapS<F> k(qkv + C + h * hd, T, hd, Eigen::OuterStride<>(3 * C));      // (T, hd)
        CMapS<F> v(qkv + 2 * C + h * hd, T, hd, Eigen::OuterStride<>(3 * C));  // (T, hd)
        MapS<F> o(out + h * hd, T, hd, Eigen::OuterStride<>(C));               // (T, hd)
        MapM<F> A(att + h * T * T, T, T);                                      // (T, T)
        for (int64_t r0 = 0; r0 < T; r0 += kAttBlock) {
            const int64_t rows = std::min(kAttBlock, T - r0), cols = r0 + rows;  // keys [0, cols) are visible
            auto S = A.block(r0, 0, rows, cols);
            S.noalias() = (scale * q.middleRows(r0, rows)) * k.topRows(cols).transpose();  // (rows, cols)
            // causal softmax row by row (contiguous, vectorised; Eigen's colwise broadcasts over a
            // row-major block measured 4x slower): position r0+i sees keys [0, r0+i+1)
            for (int64_t i = 0; i < rows; i++) {
                const int64_t n = r0 + i + 1;
                auto row = S.row(i);
                auto vis = row.head(n).array();
                const F m = vis.maxCoeff();
                vis = (vis - m).exp();
                vis *= F(1) / vis.sum();
                if (n < cols) row.tail(cols - n).setZero();
            }
            // A's entries right of the block (keys no row of it sees) are never written: they keep the zeros
            // of the buffer's allocation, and the backward pass reads only blocks, so they are not cleared
            // here (that memset was ~7% of a training step).
            o.middleRows(r0, rows).noalias() = S * v.topRows(cols);
        }
    }
}

// o = P v, P = softmax(S), S = q k^T * scale:
//   dv = P^T do; dP = do v^T; dS = P * (dP - rowsum(dP * P)); dq = dS k * scale; dk = dS^T q * scale
template <typename F>
void attention_backward(const F* dout, const F* qkv, const F* att, int64_t T, int64_t C, int64_t NH, F* dqkv,
                        F* scratch) {
    const int64_t hd = C / NH;
    const F scale = F(1) / std::sqrt(F(hd));
    std::memset(dqkv, 0, sizeof(F) * size_t(T * 3 * C));
    for (int64_t h = 0; h < NH; h++) {
        CMapS<F> q(qkv + h * hd, T, hd, Eigen::OuterStride<>(3 * C));
        CMapS<F> k(qkv + C + h * hd, T, hd, Eigen::OuterStride<>(3 * C));
        CMapS<F> v(qkv + 2 * C + h * hd, T, hd, Eigen::OuterStride<>(3 * C));
        MapS<F> dq(dqkv + h * hd, T, hd, Eigen::OuterStride<>(3 * C));
        MapS<F> dk(dqkv + C + h * hd, T, hd, Eigen::OuterStride<>(3 * C));
        MapS<F> dv(dqkv + 2 * C + h * hd, T, hd, Eigen::OuterStride<>(3 * C));
        CMapS<F> dout_h(dout + h * hd, T, hd, Eigen::OuterStride<>(C));
        CMapM<F> A(att + h * T * T, T, T);
        for (int64_t r0 = 0; r0 < T; r0 += kAttBlock) {
            const int64_t rows = std::min(kAttBlock, T - r0), cols = r0 + rows;
            auto P = A.block(r0, 0, rows, cols);
            auto dO = dout_h.middleRows(r0, rows);
            MapM<F> dS(scratch, rows, cols);
            dS.noalias() = dO * v.topRows(cols).transpose();  // dP (rows, cols)
            dv.topRows(cols).noalias() += P.transpose() * dO;
            // dS = P * (dP - rowsum(dP * P)), row by row; masked entries have P = 0, so dS = 0 there
            for (int64_t i = 0; i < rows; i++) {
                auto dp = dS.row(i).array();
                auto p = P.row(i).array();
                const F dot = (dp * p).sum();
                dp = p * (dp - dot);
            }
            dq.middleRows(r0, rows).noalias() += (scale * dS) * k.topRows(cols);
            dk.topRows(cols).noalias() += (scale * dS.transpose()) * q.middleRows(r0, rows);
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
    template void attention_forward<F>(const F*, int64_t, int64_t, int64_t, F*, F*);                              \
    template void attention_backward<F>(const F*, const F*, const F*, int64_t, int64_t, int64_t, F*, F*);         \
    template double cross_entropy<F>(F*, const int32_t*, int64_t, int64_t, F, F*, float*);
IGPT_TRAIN_OPS(float)
IGPT_TRAIN_OPS(double)
#undef IGPT_TRAIN_OPS

}  // namespace igpt::train
