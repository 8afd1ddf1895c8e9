// Sampler: top-k never leaves the top k, temperature near 0 is argmax, top-p keeps the nucleus, seeds
// reproduce, and the frequencies match the softmax (chi-square-ish bound).
#include <catch2/catch.hpp>
#include <cmath>
#include <set>

#include "sampler.h"

using namespace igpt;

static std::vector<float> random_logits(int V, uint64_t seed) {
    Rng r(seed);
    std::vector<float> l(static_cast<size_t>(V));
    for (auto& x : l) x = 3.0f * r.normal();
    return l;
}

TEST_CASE("top-k never emits a token outside the k most likely", "[sampler]") {
    const int V = 512;
    auto l = random_logits(V, 1);
    std::vector<int> idx(V);
    for (int i = 0; i < V; ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](int a, int b) { return l[a] > l[b]; });
    for (int k : {1, 5, 40}) {
        std::set<int> allowed(idx.begin(), idx.begin() + k);
        Rng rng(9);
        SamplerParams p;
        p.top_k = k;
        p.temperature = 2.0f;  // flatten: makes escaping the top k likely if the filter were wrong
        std::set<int> seen;
        for (int i = 0; i < 3000; ++i) {
            int t = sample_token(l.data(), V, p, rng);
            REQUIRE(allowed.count(t) == 1);
            seen.insert(t);
        }
        CHECK(int(seen.size()) == k);  // and every one of them does come out
    }
}

TEST_CASE("temperature near zero gives the argmax", "[sampler]") {
    for (uint64_t s = 1; s < 20; ++s) {
        auto l = random_logits(100, s);
        const int am = int(std::max_element(l.begin(), l.end()) - l.begin());
        Rng rng(s);
        SamplerParams p;
        p.temperature = 0.0f;
        CHECK(sample_token(l.data(), 100, p, rng) == am);
        p.temperature = 1e-4f;
        CHECK(sample_token(l.data(), 100, p, rng) == am);
    }
}

TEST_CASE("top-p keeps the smallest nucleus reaching p", "[sampler]") {
    std::vector<float> l = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
    Rng rng(3);
    SamplerParams p;
    p.top_p = 0.7f;  // 0.5 + 0.3 reaches it: only tokens 0 and 1
    int counts[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4000; ++i) counts[sample_token(l.data(), 4, p, rng)]++;
    CHECK(counts[2] == 0);
    CHECK(counts[3] == 0);
    CHECK(std::abs(counts[0] / 4000.0 - 0.625) < 0.03);  // renormalised 0.5 / 0.8
}

TEST_CASE("a fixed seed reproduces the same samples; another seed differs", "[sampler]") {
    auto l = random_logits(64, 5);
    SamplerParams p;
    auto draw = [&](uint64_t seed) {
        Rng rng(seed);
        std::vector<int> v;
        for (int i = 0; i < 200; ++i) v.push_back(sample_token(l.data(), 64, p, rng));
        return v;
    };
    CHECK(draw(42) == draw(42));
    CHECK(draw(42) != draw(43));
}

TEST_CASE("sampling frequencies follow the softmax", "[sampler]") {
    std::vector<float> l = {0.0f, 1.0f, 2.0f, -1.0f};
    double z = 0;
    for (float x : l) z += std::exp(double(x));
    Rng rng(11);
    SamplerParams p;
    const int N = 40000;
    int counts[4] = {0, 0, 0, 0};
    for (int i = 0; i < N; ++i) counts[sample_token(l.data(), 4, p, rng)]++;
    for (int i = 0; i < 4; ++i) {
        const double expect = std::exp(double(l[i])) / z;
        CHECK(std::abs(counts[i] / double(N) - expect) < 4 * std::sqrt(expect * (1 - expect) / N) + 1e-3);
    }
}

TEST_CASE("entropy and top choices are reported from the untempered distribution", "[sampler]") {
    std::vector<float> l(8, 0.0f);  // uniform over 8: 3 bits
    Rng rng(1);
    SampleInfo info;
    SamplerParams p;
    p.temperature = 0.1f;
    sample_token(l.data(), 8, p, rng, &info, 3);
    CHECK(info.entropy_bits == Approx(3.0).epsilon(1e-5));
    REQUIRE(info.top.size() == 3);
    CHECK(info.top[0].prob == Approx(0.125).epsilon(1e-5));
    CHECK(log2_prob(l.data(), 8, 5) == Approx(-3.0).epsilon(1e-9));

    // A skewed distribution (one logit far below the rest: a term that underflows) against -sum q log2 q.
    const std::vector<float> s = {2.5f, -1.0f, 0.25f, 7.0f, -3.5f, 1.0f, 0.0f, -800.0f, 3.0f, -0.5f};
    double mx = 7.0, sum = 0, h = 0;
    for (float v : s) sum += std::exp(double(v) - mx);
    for (float v : s) {
        const double q = std::exp(double(v) - mx) / sum;
        if (q > 0) h -= q * std::log2(q);
    }
    sample_token(s.data(), int32_t(s.size()), p, rng, &info, 2);
    CHECK(info.entropy_bits == Approx(h).epsilon(1e-6));
    CHECK(info.top[0].token == 3);
    CHECK(info.top[1].token == 8);
    // A masked (-inf) logit: probability 0, no NaN in the entropy.
    std::vector<float> m = {0.0f, 0.0f, -INFINITY, 0.0f};
    sample_token(m.data(), 4, p, rng, &info, 1);
    CHECK(info.entropy_bits == Approx(std::log2(3.0)).epsilon(1e-6));
}
