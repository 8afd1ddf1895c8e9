// Token sampling on the device: temperature, top-k, top-p and greedy, with a counter-based generator
// (Philox4x32-10 keyed by the seed, counter (sample, position)), so the same seed gives the same samples
// whatever the batch or the order of work. It does not reproduce the CPU sampler's random stream (the
// CPU uses xoshiro256**); it draws from the same distribution, with the same tie-breaking for greedy and
// for the candidate order of top-k / top-p (higher logit first, lower index first on ties).
#pragma once
#include <cstdint>

#include "common.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

constexpr int32_t kMaxSampleVocab = 2048;  // the sorted candidates live in shared memory

struct SampleArgs {
    const float* logits = nullptr;   // (B, V) f32, row b at logits + b * logits_stride
    int64_t logits_stride = 0;       // 0: every sample draws from the same row (right after a shared prefill)
    int32_t B = 1, V = 0;
    float temperature = 1.0f;        // <= 1e-6: greedy
    int32_t top_k = 0;               // 0 = off
    float top_p = 1.0f;              // 1 = off
    uint64_t seed = 1;
    int32_t pos = 0;                 // the position sampled (= *pos_dev when pos_dev is non-null)
    const int32_t* pos_dev = nullptr;
    int32_t* next_tok = nullptr;     // (B) the next step's input tokens, or null
    int32_t* out_tok = nullptr;      // (T, B): [p * B + b]
    float* out_entropy = nullptr;    // (T, B) bits of the untempered distribution, or null
    int32_t top_n = 0;               // choices recorded per position (untempered probabilities)
    int32_t* out_choice_tok = nullptr;  // (T, B, top_n)
    float* out_choice_p = nullptr;      // (T, B, top_n)
};

void sample_tokens(const SampleArgs& a, cudaStream_t stream);

// *pos_dev += 1 (the last node of a captured decode step).
void advance_position(int32_t* pos_dev, cudaStream_t stream);

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
