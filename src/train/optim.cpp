// AdamW, the learning-rate schedule and gradient clipping (see optim.h).
#include "optim.h"

#include <cmath>

namespace igpt::train {

float LrSchedule::at(int64_t step) const {
    if (warmup > 0 && step < warmup) return lr * float(step + 1) / float(warmup);
    if (step >= total) return min_lr;
    const double span = double(total - warmup);
    const double progress = span > 0 ? double(step - warmup) / span : 1.0;
    const double coeff = 0.5 * (1.0 + std::cos(M_PI * progress));  // 1 -> 0
    return float(min_lr + coeff * (lr - min_lr));
}

std::vector<uint8_t> decay_mask(const std::vector<ParamSpec>& specs) {
    size_t n = param_count(specs);
    std::vector<uint8_t> mask(n, 0);
    for (const ParamSpec& s : specs)
        if (s.shape.size() == 2)
            for (size_t i = 0; i < s.numel; i++) mask[s.offset + i] = 1;
    return mask;
}

double clip_grad_norm(float* g, size_t n, double max_norm) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += double(g[i]) * double(g[i]);
    const double norm = std::sqrt(ss);
    if (max_norm > 0 && norm > max_norm) {
        const float s = float(max_norm / (norm + 1e-6));
        for (size_t i = 0; i < n; i++) g[i] *= s;
    }
    return norm;
}

void adamw_step(float* params, const float* grads, float* m, float* v, const uint8_t* mask, size_t n, int64_t t,
                float lr, const AdamWParams& p) {
    const float bc1 = 1.0f - std::pow(p.beta1, float(t));
    const float bc2 = 1.0f - std::pow(p.beta2, float(t));
    for (size_t i = 0; i < n; i++) {
        const float g = grads[i];
        m[i] = p.beta1 * m[i] + (1.0f - p.beta1) * g;
        v[i] = p.beta2 * v[i] + (1.0f - p.beta2) * g * g;
        const float mhat = m[i] / bc1, vhat = v[i] / bc2;
        float x = params[i];
        if (mask[i]) x -= lr * p.weight_decay * x;
        params[i] = x - lr * mhat / (std::sqrt(vhat) + p.eps);
    }
}

}  // namespace igpt::train
