// Token sampling: temperature, top-k, top-p, and the seeded generator.
#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace igpt {

namespace {
uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
    for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

double Rng::uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }

float Rng::normal() {
    // Box-Muller yields two normals per pair of uniforms: hand out the cached second one next time.
    if (has_spare_) {
        has_spare_ = false;
        return spare_;
    }
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double r = std::sqrt(-2.0 * std::log(u1)), a = 6.283185307179586 * u2;
    spare_ = float(r * std::sin(a));
    has_spare_ = true;
    return float(r * std::cos(a));
}

double log2_prob(const float* logits, int32_t V, int32_t token) {
    float mx = *std::max_element(logits, logits + V);
    double sum = 0;
    for (int32_t i = 0; i < V; ++i) sum += std::exp(double(logits[i]) - mx);
    return (double(logits[token]) - mx - std::log(sum)) / std::log(2.0);
}

int32_t sample_token(const float* logits, int32_t V, const SamplerParams& p, Rng& rng, SampleInfo* info,
                     int32_t top_n) {
    const float mx = *std::max_element(logits, logits + V);
    // Untempered distribution: entropy and top choices for the caller.
    std::vector<double> e;  // exp(logit - max), when info asks for it (reused below at temperature 1)
    if (info) {
        e.resize(static_cast<size_t>(V));
        double sum = 0, qz = 0;
        for (int32_t i = 0; i < V; ++i) {
            const double z = double(logits[i]) - mx;
            sum += (e[size_t(i)] = std::exp(z));
            if (e[size_t(i)] > 0) qz += e[size_t(i)] * z;  // a -inf logit adds nothing (not 0 * -inf)
        }
        // H = -sum q log2 q with q = e^z / sum, log q = z - ln sum: (ln sum - sum q z) / ln 2, no log per term
        info->entropy_bits = float((std::log(sum) - qz / sum) / std::log(2.0));
        const int32_t n = std::min(top_n, V);
        std::vector<int32_t> idx(static_cast<size_t>(V));
        std::iota(idx.begin(), idx.end(), 0);
        std::partial_sort(idx.begin(), idx.begin() + n, idx.end(),
                          [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
        info->top.resize(size_t(n));
        for (int32_t i = 0; i < n; ++i) info->top[size_t(i)] = {idx[size_t(i)], float(e[size_t(idx[size_t(i)])] / sum)};
    }
    if (p.temperature <= 1e-6f) {
        return int32_t(std::max_element(logits, logits + V) - logits);  // first maximum
    }
    // Candidates sorted by logit (descending, index ascending on ties) when top-k or top-p is on.
    std::vector<int32_t> cand(static_cast<size_t>(V));
    std::iota(cand.begin(), cand.end(), 0);
    int32_t n = V;
    const bool truncate = (p.top_k > 0 && p.top_k < V) || p.top_p < 1.0f;
    if (truncate) {
        auto cmp = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
        if (p.top_k > 0 && p.top_k < V) {
            n = p.top_k;
            std::partial_sort(cand.begin(), cand.begin() + n, cand.end(), cmp);
        } else {
            std::sort(cand.begin(), cand.end(), cmp);
        }
    }
    std::vector<double> w(static_cast<size_t>(n));
    double sum = 0;
    const double inv_t = 1.0 / double(p.temperature);
    for (int32_t i = 0; i < n; ++i) {
        const int32_t c = cand[size_t(i)];
        sum += (w[size_t(i)] = inv_t == 1.0 && !e.empty() ? e[size_t(c)] : std::exp((double(logits[c]) - mx) * inv_t));
    }
    if (p.top_p < 1.0f) {
        // Smallest prefix whose probability mass reaches top_p (at least one token).
        double acc = 0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; ++i) {
            acc += w[size_t(i)] / sum;
            if (acc >= double(p.top_p)) { keep = i + 1; break; }
        }
        n = keep;
        sum = 0;
        for (int32_t i = 0; i < n; ++i) sum += w[size_t(i)];
    }
    double u = rng.uniform() * sum, acc = 0;
    for (int32_t i = 0; i < n; ++i) {
        acc += w[size_t(i)];
        if (u < acc) return cand[size_t(i)];
    }
    return cand[size_t(n - 1)];
}

}  // namespace igpt
