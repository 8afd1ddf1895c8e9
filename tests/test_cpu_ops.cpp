// The CPU backend's decode products (ops.h panels): every row count and tail shape against a double sum,
// f16 panels against the rounded weights, and bit-identical results whatever the thread count.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/ops.h"
#include "cpu/thread_pool.h"
#include "half.h"

#if IGPT_HAVE_PANELS
namespace {
// max |y - ref| / sum |x w| over all outputs, the reference summed in double from `w` (N, K)
double worst_error(const std::vector<float>& X, int64_t ldx, int64_t M, int64_t K, const std::vector<float>& w,
                   int64_t N, const float* bias, const std::vector<float>& Y, int64_t ldy) {
    double worst = 0;
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            double ref = bias ? double(bias[n]) : 0.0, mag = std::abs(ref);
            for (int64_t k = 0; k < K; ++k) {
                const double t = double(X[size_t(m * ldx + k)]) * w[size_t(n * K + k)];
                ref += t;
                mag += std::abs(t);
            }
            worst = std::max(worst, std::abs(Y[size_t(m * ldy + n)] - ref) / (mag + 1e-30));
        }
    return worst;
}
}  // namespace

TEST_CASE("matmul_panels: every row count and tail shape against a double-precision product", "[ops][panels]") {
    std::mt19937 g(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    igpt::ThreadPool pool(2);
    double worst = 0, worst16 = 0;
    for (int64_t M : {1, 2, 3, 4, 5, 7, 8, 9, 12, 16})
        for (int64_t N : {1, 7, 8, 9, 24, 33, 40, 200})  // 33: a partial last panel; 40 = 4 panels + 1
            for (int64_t K : {1, 3, 64, 129})
                for (bool with_bias : {false, true}) {
                    // W (N, K) stored as is, or transposed (K, N) (as the attention packs the cached values);
                    // X and Y with row strides beyond K and N (as the attention's queries and scores)
                    const bool transposed = with_bias;
                    const int64_t ldx = K + 3, ldy = N + 5;
                    std::vector<float> W(size_t(N * K)), X(size_t(M * ldx)), bias(static_cast<size_t>(N));
                    for (float& v : W) v = nd(g);
                    for (float& v : X) v = nd(g);
                    for (float& v : bias) v = nd(g);
                    std::vector<float> Wt(W.size());  // W^T, (K, N)
                    for (int64_t n = 0; n < N; ++n)
                        for (int64_t k = 0; k < K; ++k) Wt[size_t(k * N + n)] = W[size_t(n * K + k)];
                    const float* b = with_bias ? bias.data() : nullptr;
                    std::vector<float> P(size_t(igpt::panels_size(N, K)));
                    if (transposed) igpt::pack_panels(Wt.data(), N, K, 1, N, P.data());
                    else igpt::pack_panels(W.data(), N, K, K, 1, P.data());
                    // Y's padding columns and a guard row after it are never written
                    std::vector<float> Y(size_t((M + 1) * ldy), -7.0f), Y1(Y);
                    igpt::matmul_panels(X.data(), ldx, M, K, P.data(), N, b, Y.data(), ldy, &pool);
                    igpt::matmul_panels(X.data(), ldx, M, K, P.data(), N, b, Y1.data(), ldy, nullptr);
                    for (int64_t i = 0; i < (M + 1) * ldy; ++i)
                        if (i >= M * ldy || i % ldy >= N) REQUIRE(Y[size_t(i)] == -7.0f);
                    // the thread count changes nothing, to the bit
                    REQUIRE(std::memcmp(Y.data(), Y1.data(), Y.size() * sizeof(float)) == 0);
                    // nor does the row count: each row alone (the single-row tile) gives the same bits as in
                    // its tile of M rows (AVX-512 builds: the two-panel 16-wide tiles)
                    for (int64_t r = 0; r < M; r += std::max<int64_t>(1, M - 1)) {
                        std::vector<float> Yr(static_cast<size_t>(N));
                        igpt::matmul_panels(X.data() + r * ldx, ldx, 1, K, P.data(), N, b, Yr.data(), N, &pool);
                        REQUIRE(std::memcmp(Yr.data(), Y.data() + r * ldy, size_t(N) * sizeof(float)) == 0);
                    }
                    worst = std::max(worst, worst_error(X, ldx, M, K, W, N, b, Y, ldy));

                    // f16 panels hold the weights rounded to half precision: compare with those
                    std::vector<uint16_t> P16(P.size());
                    igpt::pack_panels(W.data(), N, K, K, 1, P16.data());
                    std::vector<float> Wh(W.size());
                    for (size_t i = 0; i < W.size(); ++i) Wh[i] = igpt::half_to_float(igpt::float_to_half(W[i]));
                    igpt::matmul_panels(X.data(), ldx, M, K, P16.data(), N, b, Y.data(), ldy, &pool);
                    worst16 = std::max(worst16, worst_error(X, ldx, M, K, Wh, N, b, Y, ldy));
                }
    INFO("worst error relative to sum |x w|: f32 " << worst << ", f16 " << worst16);
    CHECK(worst < 1e-6);
    CHECK(worst16 < 1e-6);
}
#else
TEST_CASE("matmul_panels: needs an AVX2 + FMA + F16C build", "[ops][panels]") {
    WARN("SKIPPED: this build has no panel kernels (IGPT_HAVE_PANELS is 0); the backend uses matmul_nt");
    CHECK(!IGPT_HAVE_PANELS);
}
#endif
