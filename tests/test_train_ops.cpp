// Trainer ops: every hand-written backward against central finite differences, in double precision.
// The objective is f = sum(out * R) for a fixed random R, so d f / d out = R is fed to the backward.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "cpu/ops.h"
#include "grad_ops.h"

using namespace igpt::train;

namespace {

std::vector<double> randn(size_t n, uint32_t seed, double sd = 1.0) {
    std::mt19937 g(seed);
    std::normal_distribution<double> d(0.0, sd);
    std::vector<double> v(n);
    for (double& x : v) x = d(g);
    return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
    return s;
}

// Compares analytic gradient `g` of f with respect to `x` against central differences at the indices in
// `which` (all when empty). Prints the worst entry so a failure explains itself.
void check_grad(const char* what, std::vector<double>& x, const std::vector<double>& g,
                const std::function<double()>& f, std::vector<size_t> which = {}, double eps = 1e-6,
                double tol = 1e-6) {
    if (which.empty())
        for (size_t i = 0; i < x.size(); i++) which.push_back(i);
    double worst = 0;
    size_t worst_i = 0;
    double worst_a = 0, worst_n = 0;
    for (size_t i : which) {
        const double x0 = x[i];
        x[i] = x0 + eps;
        const double fp = f();
        x[i] = x0 - eps;
        const double fm = f();
        x[i] = x0;
        const double num = (fp - fm) / (2 * eps);
        const double err = std::abs(num - g[i]) / std::max(1.0, std::abs(num) + std::abs(g[i]));
        if (err > worst) {
            worst = err;
            worst_i = i;
            worst_a = g[i];
            worst_n = num;
        }
    }
    INFO(what << ": worst at [" << worst_i << "] analytic " << worst_a << " numeric " << worst_n << " rel err "
              << worst);
    CHECK(worst < tol);
}

}  // namespace

TEST_CASE("train op: embedding backward matches finite differences", "[train][ops]") {
    const int64_t T = 6, C = 5, V = 4;
    const std::vector<int32_t> tok = {3, 0, 2, 2, 1, 3};
    auto sos = randn(C, 1), wte = randn(V * C, 2), wpe = randn(T * C, 3), R = randn(T * C, 4);
    std::vector<double> out(T * C);
    auto f = [&] {
        embedding_forward(tok.data(), sos.data(), wte.data(), wpe.data(), T, C, out.data());
        return dot(out, R);
    };
    std::vector<double> dsos(C, 0), dwte(V * C, 0), dwpe(T * C, 0);
    embedding_backward(R.data(), tok.data(), T, C, dsos.data(), dwte.data(), dwpe.data());
    check_grad("sos", sos, dsos, f);
    check_grad("wte", wte, dwte, f);
    check_grad("wpe", wpe, dwpe, f);
    // the last token is never an input: its embedding row gets no gradient unless used earlier
    CHECK(dwte[1 * C] != 0.0);  // token 1 is the input at position 5
}

TEST_CASE("train op: rms norm backward matches finite differences", "[train][ops]") {
    const int64_t M = 4, C = 7;
    auto x = randn(M * C, 5), g = randn(C, 6), R = randn(M * C, 7);
    std::vector<double> out(M * C), rstd(M);
    auto f = [&] {
        rmsnorm_forward(x.data(), g.data(), 1e-5, M, C, out.data(), rstd.data());
        return dot(out, R);
    };
    f();
    std::vector<double> dx(M * C, 0), dg(C, 0);
    rmsnorm_backward(R.data(), x.data(), g.data(), rstd.data(), M, C, dx.data(), dg.data());
    check_grad("x", x, dx, f);
    check_grad("g", g, dg, f);
    // forward against the definition
    const double ms = (x[0] * x[0] + x[1] * x[1] + x[2] * x[2] + x[3] * x[3] + x[4] * x[4] + x[5] * x[5] + x[6] * x[6]) / 7;
    f();
    CHECK(out[2] == Approx(x[2] / std::sqrt(ms + 1e-5) * g[2]).epsilon(1e-12));
}

TEST_CASE("train op: linear backward matches finite differences", "[train][ops]") {
    const int64_t M = 5, K = 6, N = 4;
    auto X = randn(M * K, 8), Wt = randn(N * K, 9), b = randn(N, 10), R = randn(M * N, 11);
    std::vector<double> Y(M * N);
    auto f = [&] {
        linear_forward(X.data(), Wt.data(), b.data(), M, K, N, Y.data());
        return dot(Y, R);
    };
    f();
    CHECK(Y[1 * N + 2] == Approx(b[2] + X[6] * Wt[12] + X[7] * Wt[13] + X[8] * Wt[14] + X[9] * Wt[15] +
                                 X[10] * Wt[16] + X[11] * Wt[17]).epsilon(1e-12));
    std::vector<double> dX(M * K, 0), dW(N * K, 0), db(N, 0);
    linear_backward(R.data(), X.data(), Wt.data(), M, K, N, dX.data(), dW.data(), db.data());
    check_grad("X", X, dX, f);
    check_grad("W", Wt, dW, f);
    check_grad("b", b, db, f);
}

TEST_CASE("train op: quick gelu backward matches finite differences", "[train][ops]") {
    const int64_t n = 5000;  // more than one internal chunk
    auto x = randn(n, 12, 3.0), R = randn(n, 13);
    std::vector<double> y(n);
    auto f = [&] {
        gelu_forward(x.data(), n, y.data());
        return dot(y, R);
    };
    f();
    CHECK(y[7] == Approx(x[7] / (1 + std::exp(-1.702 * x[7]))).epsilon(1e-12));
    std::vector<double> dx(n);
    gelu_backward(R.data(), x.data(), n, dx.data());
    check_grad("x", x, dx, f, {0, 1, 2, 100, 4095, 4096, 4097, 4999});
}

TEST_CASE("train op: causal attention forward and backward", "[train][ops]") {
    // T = 150 spans three causal row blocks (64 rows each), so the block boundaries are exercised.
    for (auto [T, C, NH] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{7, 8, 2}, {150, 6, 2}}) {
        auto qkv = randn(T * 3 * C, 14 + uint32_t(T)), R = randn(T * C, 15);
        std::vector<double> att(attention_probs_size(T, NH)), out(T * C), scratch(attention_scratch(T, C / NH));
        auto f = [&, T = T, C = C, NH = NH] {  // named copies: clang 14 cannot capture structured bindings
            attention_forward(qkv.data(), T, C, NH, att.data(), out.data(), scratch.data());
            return dot(out, R);
        };
        f();
        // forward against a direct evaluation of one output (last head, last position)
        {
            const int64_t hd = C / NH, h = NH - 1, t = T - 1;
            std::vector<double> s(T);
            double m = -1e300, z = 0;
            for (int64_t j = 0; j <= t; j++) {
                double a = 0;
                for (int64_t d = 0; d < hd; d++) a += qkv[t * 3 * C + h * hd + d] * qkv[j * 3 * C + C + h * hd + d];
                s[j] = a / std::sqrt(double(hd));
                m = std::max(m, s[j]);
            }
            for (int64_t j = 0; j <= t; j++) z += std::exp(s[j] - m);
            double o = 0;
            for (int64_t j = 0; j <= t; j++) o += std::exp(s[j] - m) / z * qkv[j * 3 * C + 2 * C + h * hd];
            CHECK(out[t * C + h * hd] == Approx(o).epsilon(1e-10));
            CHECK(att[0 * T * T + 0 * T + 1] == 0.0);  // masked: position 0 never sees position 1
        }
        std::vector<double> dqkv(T * 3 * C);
        attention_backward(R.data(), qkv.data(), att.data(), T, C, NH, dqkv.data(), scratch.data());
        std::vector<size_t> which;
        std::mt19937 g(3);
        for (int i = 0; i < 300; i++) which.push_back(g() % qkv.size());
        which.push_back(0);
        which.push_back(qkv.size() - 1);
        check_grad("qkv", qkv, dqkv, f, which);
    }
}

// The float attention runs on igpt::gemm_strided (AVX2 register tiles, tails masked); the double path above
// runs the same blocking on Eigen. First the kernel itself against a double sum over every tile shape.
TEST_CASE("gemm_strided: every tile and tail shape against a double-precision product", "[train][ops]") {
    std::mt19937 g(21);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    double worst = 0;
    for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 13})
        for (int64_t N : {1, 7, 8, 9, 15, 16, 17, 33})
            for (int64_t K : {0, 1, 5, 300})  // 300: two slices of the 256-deep K blocking
                for (bool transposed : {false, true})
                    for (bool accumulate : {false, true}) {
                        // A (M, K) stored as is (row stride K + 3) or transposed (K, M) (row stride M + 2)
                        const int64_t a_rs = transposed ? 1 : K + 3, a_ks = transposed ? M + 2 : 1;
                        const int64_t ldb = N + 5, ldc = N + 4;
                        std::vector<float> A(size_t((transposed ? K * (M + 2) : M * (K + 3)) + 1)),
                            B(size_t(std::max<int64_t>(K, 1) * ldb)), C(size_t(M * ldc));
                        for (float& x : A) x = nd(g);
                        for (float& x : B) x = nd(g);
                        for (float& x : C) x = nd(g);
                        const std::vector<float> C0 = C;
                        igpt::gemm_strided(M, N, K, A.data(), a_rs, a_ks, B.data(), ldb, C.data(), ldc, accumulate);
                        for (int64_t i = 0; i < M; i++)
                            for (int64_t j = 0; j < ldc; j++) {
                                const size_t c = size_t(i * ldc + j);
                                if (j >= N) {  // padding beyond N is never written
                                    REQUIRE(C[c] == C0[c]);
                                    continue;
                                }
                                double ref = accumulate ? double(C0[c]) : 0.0, mag = std::abs(ref);
                                for (int64_t k = 0; k < K; k++) {
                                    const double t = double(A[size_t(i * a_rs + k * a_ks)]) * B[size_t(k * ldb + j)];
                                    ref += t;
                                    mag += std::abs(t);
                                }
                                worst = std::max(worst, std::abs(C[c] - ref) / (mag + 1e-30));
                            }
                    }
    INFO("worst error relative to sum |a b|: " << worst);
    CHECK(worst < 1e-6);
}

TEST_CASE("train op: float attention (gemm_strided) agrees with the double one", "[train][ops]") {
    // hd = 32 (the shipped configs) and hd = 24 (a masked 8-wide tail); T = 150: three row blocks, the
    // last one partial
    for (auto [T, C, NH] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{150, 64, 2}, {150, 48, 2}, {9, 16, 2}}) {
        const auto qkv = randn(T * 3 * C, 31 + uint32_t(C)), dout = randn(T * C, 32);
        std::vector<double> att(attention_probs_size(T, NH)), out(T * C), dqkv(T * 3 * C),
            scratch(attention_scratch(T, C / NH));
        attention_forward(qkv.data(), T, C, NH, att.data(), out.data(), scratch.data());
        attention_backward(dout.data(), qkv.data(), att.data(), T, C, NH, dqkv.data(), scratch.data());

        auto to_f = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
        const auto qkv_f = to_f(qkv), dout_f = to_f(dout);
        std::vector<float> att_f(att.size()), out_f(out.size()), dqkv_f(dqkv.size()), scratch_f(scratch.size());
        attention_forward(qkv_f.data(), T, C, NH, att_f.data(), out_f.data(), scratch_f.data());
        attention_backward(dout_f.data(), qkv_f.data(), att_f.data(), T, C, NH, dqkv_f.data(), scratch_f.data());

        auto rel_err = [](const std::vector<float>& a, const std::vector<double>& ref) {
            double diff = 0, mag = 0;
            for (size_t i = 0; i < ref.size(); i++) {
                diff = std::max(diff, std::abs(a[i] - ref[i]));
                mag = std::max(mag, std::abs(ref[i]));
            }
            return diff / mag;
        };
        INFO("T " << T << " C " << C << " heads " << NH);
        CHECK(rel_err(out_f, out) < 1e-5);
        CHECK(rel_err(dqkv_f, dqkv) < 1e-5);
    }
}

TEST_CASE("train op: cross-entropy backward matches finite differences", "[train][ops]") {
    const int64_t M = 5, V = 9;
    auto logits = randn(M * V, 16, 2.0);
    const std::vector<int32_t> tgt = {0, 8, 3, 3, 5};
    std::vector<double> work(M * V);
    auto f = [&] {
        work = logits;
        return cross_entropy(work.data(), tgt.data(), M, V, 0.0, (double*)nullptr);
    };
    // forward against log-sum-exp directly
    double ref = 0;
    for (int64_t i = 0; i < M; i++) {
        double z = 0;
        for (int64_t v = 0; v < V; v++) z += std::exp(logits[i * V + v]);
        ref += std::log(z) - logits[i * V + tgt[i]];
    }
    CHECK(f() == Approx(ref).epsilon(1e-12));
    std::vector<double> d(M * V);
    work = logits;
    cross_entropy(work.data(), tgt.data(), M, V, 1.0, d.data());
    check_grad("logits", logits, d, f);
}
