// Sampling one token from logits: temperature, top-k, top-p (nucleus), and a seeded generator, so a
// fixed seed reproduces the same samples on every platform.
#pragma once
#include <cstdint>
#include <vector>

namespace igpt {

// SplitMix64-seeded xoshiro256**: small, fast, identical on every platform.
class Rng {
public:
    explicit Rng(uint64_t seed = 1);
    uint64_t next();
    double uniform();        // [0, 1)
    float normal();          // standard normal (Box-Muller)
private:
    uint64_t s_[4];
    float spare_ = 0;
    bool has_spare_ = false;
};

struct SamplerParams {
    float temperature = 1.0f;  // <= 1e-6 means greedy (argmax)
    int32_t top_k = 0;         // 0 = off
    float top_p = 1.0f;        // 1 = off
};

struct TokenChoice {
    int32_t token = 0;
    float prob = 0;  // under the model's untempered distribution
};

struct SampleInfo {
    float entropy_bits = 0;           // entropy of the model's (untempered) distribution, in bits
    std::vector<TokenChoice> top;     // the most likely tokens, best first (size = requested top_n)
};

// Samples from logits[0..V). `info` (optional) receives the entropy and the top_n choices.
int32_t sample_token(const float* logits, int32_t V, const SamplerParams& p, Rng& rng,
                     SampleInfo* info = nullptr, int32_t top_n = 0);

// log2-softmax probability of `token`; used for bits per pixel.
double log2_prob(const float* logits, int32_t V, int32_t token);

}  // namespace igpt
