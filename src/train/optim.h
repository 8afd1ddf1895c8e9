// Optimisation: AdamW with decoupled weight decay (matrices only), linear warmup then cosine decay,
// global-norm gradient clipping.
#pragma once
#include <cstdint>
#include <vector>

#include "weights.h"

namespace igpt::train {

struct AdamWParams {
    float beta1 = 0.9f;
    float beta2 = 0.95f;
    float eps = 1e-8f;
    float weight_decay = 0.1f;  // decoupled: p -= lr * wd * p, only where decay_mask is 1
};

// lr(step) for step = 0, 1, ...: linear warmup from lr/warmup to lr over `warmup` steps, then cosine decay
// to min_lr at `total` steps (and min_lr after).
struct LrSchedule {
    float lr = 1e-3f;
    float min_lr = 1e-4f;
    int64_t warmup = 100;
    int64_t total = 1000;
    float at(int64_t step) const;
};

// 1 for 2-D weight matrices (embeddings, projections, head), 0 for gains, biases and the sos vector.
std::vector<uint8_t> decay_mask(const std::vector<ParamSpec>& specs);

// Scales g so that its L2 norm is at most max_norm (max_norm <= 0: no clipping). Returns the norm before.
double clip_grad_norm(float* g, size_t n, double max_norm);

// One AdamW update; t is the 1-based step count (bias correction).
void adamw_step(float* params, const float* grads, float* m, float* v, const uint8_t* mask, size_t n, int64_t t,
                float lr, const AdamWParams& p);

}  // namespace igpt::train
