// The CUDA inference backend's attention and sampling kernels (src/cuda/attention_decode.cu,
// attention_prefill.cu, sampling.cu), run on the CPU by tests/cuda_emu (this file is compiled with
// IGPT_CUDA_EMU), against the same arithmetic written out in double precision here. test_cuda.cpp checks the
// whole backend against the CPU backend; this checks the kernels alone, cases chosen for their edges (the
// first position, chunk boundaries, several heads and sequences, ties in the logits), and it is small enough
// for `scripts/test_sanitize.sh emu` to run it with every CUDA thread an OS thread under ThreadSanitizer, so a
// missing __syncthreads in these kernels is a reported race.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "compare.h"
#include "cuda/attention_decode.cuh"
#include "cuda/attention_prefill.cuh"
#include "cuda/sampling.cuh"
#include "half.h"

using namespace igpt::cuda;
using igpt_test::normalised_error;

namespace {

// Device-side copies of host data (the emulator's device memory is host memory that starts as NaN).
template <typename E> E* upload(const std::vector<E>& h) {
    void* d = nullptr;
    REQUIRE(cudaMalloc(&d, h.size() * sizeof(E)) == cudaSuccess);
    REQUIRE(cudaMemcpy(d, h.data(), h.size() * sizeof(E), cudaMemcpyHostToDevice) == cudaSuccess);
    return static_cast<E*>(d);
}
template <typename E> std::vector<E> download(const E* d, size_t n) {
    std::vector<E> h(n);
    REQUIRE(cudaMemcpy(h.data(), d, n * sizeof(E), cudaMemcpyDeviceToHost) == cudaSuccess);
    return h;
}

// Values as the device stores them: f32, or f16 bits (and the float each stands for).
struct Stored {
    std::vector<float> f32;      // what the kernel reads, as floats (rounded to f16 when half)
    std::vector<uint16_t> bits;  // f16 bits, when half
    void* dev = nullptr;
};
Stored store(std::vector<float> v, bool half) {
    Stored s;
    if (half) {
        s.bits.resize(v.size());
        for (size_t i = 0; i < v.size(); ++i) {
            s.bits[i] = igpt::float_to_half(v[i]);
            v[i] = igpt::half_to_float(s.bits[i]);
        }
        s.dev = upload(s.bits);
    } else {
        s.dev = upload(v);
    }
    s.f32 = std::move(v);
    return s;
}
std::vector<float> fetch(const void* dev, size_t n, bool half) {
    if (!half) return download(static_cast<const float*>(dev), n);
    const auto bits = download(static_cast<const uint16_t*>(dev), n);
    std::vector<float> out(n);
    for (size_t i = 0; i < n; ++i) out[i] = igpt::half_to_float(bits[i]);
    return out;
}

std::vector<float> randn(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

// Causal attention of query row qi (at position p) of sequence b, head h, over keys [0, p], in double.
void attend(const std::vector<float>& q, int64_t q_row, const std::vector<float>& kc, const std::vector<float>& vc,
            int32_t b, int32_t h, int32_t p, int32_t NH, int32_t D, int32_t T, double scale, double* out) {
    const int64_t head = (int64_t(b) * NH + h) * T * D;
    std::vector<double> s(size_t(p) + 1);
    double mx = -INFINITY;
    for (int32_t j = 0; j <= p; ++j) {
        double t = 0;
        for (int32_t d = 0; d < D; ++d)
            t += double(q[size_t(q_row + int64_t(h) * D + d)]) * kc[size_t(head + int64_t(j) * D + d)];
        s[size_t(j)] = t * scale;
        mx = std::max(mx, s[size_t(j)]);
    }
    double z = 0;
    for (auto& x : s) z += (x = std::exp(x - mx));
    for (int32_t d = 0; d < D; ++d) {
        double o = 0;
        for (int32_t j = 0; j <= p; ++j) o += s[size_t(j)] * vc[size_t(head + int64_t(j) * D + d)];
        out[d] = o / z;
    }
}

struct AttnCase {
    int32_t B, NH, D, T;
};

}  // namespace

TEST_CASE("cuda kernels: decode attention over chunks of keys matches attention in double (f32, f16)",
          "[cuda_kernels]") {
    for (const AttnCase c : {AttnCase{1, 2, 16, 200}, AttnCase{3, 2, 64, 130}, AttnCase{2, 3, 40, 64}}) {
        const int32_t C = c.NH * c.D;
        for (const bool half : {false, true}) {
            const auto q = store(randn(size_t(c.B) * 3 * C, 1), half);  // qkv rows: q is the first C of 3C
            const auto kc = store(randn(size_t(c.B) * c.NH * c.T * c.D, 2), half);
            const auto vc = store(randn(size_t(c.B) * c.NH * c.T * c.D, 3), half);
            void* out = nullptr;
            REQUIRE(cudaMalloc(&out, size_t(c.B) * C * 4) == cudaSuccess);
            const float scale = 1.0f / std::sqrt(float(c.D));
            for (const int32_t chunk : {64, 128}) {
                float* ws = nullptr;
                const size_t ws_floats = attention_decode_workspace(c.B, c.NH, c.D, c.T, chunk);
                REQUIRE(cudaMalloc(reinterpret_cast<void**>(&ws), ws_floats * 4) == cudaSuccess);
                // the first position, the last of a chunk, the first of the next, the last position
                for (const int32_t pos : {0, chunk - 1, chunk, c.T - 1}) {
                    if (pos >= c.T) continue;
                    attention_decode(q.dev, 3 * C, kc.dev, vc.dev, out, C, half ? DevType::F16 : DevType::F32, c.B, pos,
                                     nullptr, c.NH, c.D, c.T, scale, chunk, ws, nullptr);
                    const auto got = fetch(out, size_t(c.B) * C, half);
                    std::vector<double> want(got.size());
                    for (int32_t b = 0; b < c.B; ++b)
                        for (int32_t h = 0; h < c.NH; ++h)
                            attend(q.f32, int64_t(b) * 3 * C, kc.f32, vc.f32, b, h, pos, c.NH, c.D, c.T, scale,
                                   &want[size_t(b) * C + size_t(h) * c.D]);
                    const double err = normalised_error(got.data(), want.data(), got.size());
                    std::printf("attention emu check: decode %s B %d heads %d dim %d T %d chunk %d pos %d: %.2e\n",
                                half ? "f16" : "f32", c.B, c.NH, c.D, c.T, chunk, pos, err);
                    CHECK(err < (half ? 2e-3 : 1e-5));
                }
                cudaFree(ws);
            }
            cudaFree(out);
            cudaFree(q.dev);
            cudaFree(kc.dev);
            cudaFree(vc.dev);
        }
    }
}

TEST_CASE("cuda kernels: flash-style prefill attention matches attention in double (f32, f16)", "[cuda_kernels]") {
    // n query rows from position pos: tiles of 16 queries and 32 keys, a partial last tile, rows past n
    for (const AttnCase c : {AttnCase{2, 2, 16, 96}, AttnCase{1, 3, 72, 64}}) {
        const int32_t C = c.NH * c.D;
        for (const bool half : {false, true})
            for (const int32_t pos : {0, 21}) {
                const int32_t n = c.T - pos - 5;
                const auto q = store(randn(size_t(c.B) * n * 3 * C, 4), half);
                const auto kc = store(randn(size_t(c.B) * c.NH * c.T * c.D, 5), half);
                const auto vc = store(randn(size_t(c.B) * c.NH * c.T * c.D, 6), half);
                void* out = nullptr;
                REQUIRE(cudaMalloc(&out, size_t(c.B) * n * C * 4) == cudaSuccess);
                const float scale = 1.0f / std::sqrt(float(c.D));
                attention_prefill(q.dev, 3 * C, kc.dev, vc.dev, out, C, half ? DevType::F16 : DevType::F32, c.B, n, pos,
                                  c.NH, c.D, c.T, scale, nullptr);
                const auto got = fetch(out, size_t(c.B) * n * C, half);
                std::vector<double> want(got.size());
                for (int32_t b = 0; b < c.B; ++b)
                    for (int32_t i = 0; i < n; ++i)
                        for (int32_t h = 0; h < c.NH; ++h)
                            attend(q.f32, (int64_t(b) * n + i) * 3 * C, kc.f32, vc.f32, b, h, pos + i, c.NH, c.D, c.T,
                                   scale, &want[(size_t(b) * n + size_t(i)) * C + size_t(h) * c.D]);
                const double err = normalised_error(got.data(), want.data(), got.size());
                std::printf("attention emu check: prefill %s B %d heads %d dim %d rows %d from %d: %.2e\n",
                            half ? "f16" : "f32", c.B, c.NH, c.D, n, pos, err);
                CHECK(err < (half ? 2e-3 : 1e-5));
                cudaFree(out);
                cudaFree(q.dev);
                cudaFree(kc.dev);
                cudaFree(vc.dev);
            }
    }
}

TEST_CASE("cuda kernels: the sampler's greedy token, entropy and recorded choices match a sort in double",
          "[cuda_kernels]") {
    const int32_t B = 3, V = 300, top_n = 6;
    std::vector<float> logits = randn(size_t(B) * V, 7);
    for (int32_t b = 0; b < B; ++b) {  // ties: the lower index comes first
        logits[size_t(b) * V + 17] = logits[size_t(b) * V + 250] = 4.5f;
        logits[size_t(b) * V + 3] = 4.0f;
    }
    const float* lg = upload(logits);
    int32_t* tok = nullptr;
    float* ent = nullptr;
    int32_t* ch_tok = nullptr;
    float* ch_p = nullptr;
    REQUIRE(cudaMalloc(reinterpret_cast<void**>(&tok), B * 4) == cudaSuccess);
    REQUIRE(cudaMalloc(reinterpret_cast<void**>(&ent), B * 4) == cudaSuccess);
    REQUIRE(cudaMalloc(reinterpret_cast<void**>(&ch_tok), B * top_n * 4) == cudaSuccess);
    REQUIRE(cudaMalloc(reinterpret_cast<void**>(&ch_p), B * top_n * 4) == cudaSuccess);
    for (const int32_t n : {0, top_n}) {  // greedy by argmax, and by the sorted candidates
        SampleArgs a;
        a.logits = lg;
        a.logits_stride = V;
        a.B = B;
        a.V = V;
        a.temperature = 0.0f;
        a.out_tok = tok;
        a.out_entropy = ent;
        a.top_n = n;
        a.out_choice_tok = ch_tok;
        a.out_choice_p = ch_p;
        sample_tokens(a, nullptr);
        const auto t = download(tok, B);
        const auto e = download(ent, B);
        const auto ct = download(ch_tok, size_t(B) * top_n);
        const auto cp = download(ch_p, size_t(B) * top_n);
        for (int32_t b = 0; b < B; ++b) {
            const float* l = &logits[size_t(b) * V];
            std::vector<int32_t> order(static_cast<size_t>(V));
            std::iota(order.begin(), order.end(), 0);
            std::stable_sort(order.begin(), order.end(), [&](int32_t x, int32_t y) { return l[x] > l[y]; });
            double z = 0, s1 = 0;
            for (int32_t i = 0; i < V; ++i) {
                const double d = double(l[i]) - l[order[0]];
                z += std::exp(d);
                s1 += std::exp(d) * d;
            }
            const double entropy = (std::log(z) - s1 / z) / std::log(2.0);
            INFO("top_n " << n << " row " << b);
            CHECK(t[size_t(b)] == 17);  // the first of the tied maxima
            CHECK(std::fabs(e[size_t(b)] - entropy) < 1e-4);
            for (int32_t i = 0; i < n; ++i) {
                const size_t at = size_t(b) * top_n + size_t(i);
                CHECK(ct[at] == order[size_t(i)]);
                CHECK(std::fabs(cp[at] - std::exp(double(l[order[size_t(i)]]) - l[order[0]]) / z) < 1e-6);
            }
        }
    }
    cudaFree(tok);
    cudaFree(ent);
    cudaFree(ch_tok);
    cudaFree(ch_p);
    cudaFree(const_cast<float*>(lg));
}
