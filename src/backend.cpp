// Backend selection. The CUDA backend (src/cuda/) registers here when compiled in (IGPT_WITH_CUDA).
#include "backend.h"
#include "error.h"

#include <algorithm>
#ifdef IGPT_WITH_CUDA
#include "cuda/backend_cuda.h"  // defines cuda_available()
#endif

namespace igpt {

#ifndef IGPT_WITH_CUDA
bool cuda_available() { return false; }
#endif

uint64_t sample_seed(uint64_t seed, int32_t s) { return seed + 0x9e3779b97f4a7c15ull * uint64_t(s + 1); }

void take_sample(const GenerateRequest& rq, int32_t n_ctx, int32_t vocab, int32_t s, int32_t pos, const float* logits,
                 Rng& rng, SampleInfo& info) {
    const int32_t tok = sample_token(logits, vocab, rq.sampler, rng, &info, rq.top_n);
    const size_t at = size_t(s) * size_t(n_ctx) + size_t(pos);
    rq.tokens[at] = tok;
    if (rq.entropy) rq.entropy[at] = info.entropy_bits;
    if (rq.choices && rq.top_n > 0) std::copy(info.top.begin(), info.top.end(), rq.choices + at * size_t(rq.top_n));
}

std::unique_ptr<Backend> make_backend(BackendKind kind, const Model& model, int32_t threads) {
    switch (kind) {
        case BackendKind::Cpu: return make_cpu_backend(model, threads);
        case BackendKind::Cuda:
#ifdef IGPT_WITH_CUDA
            return make_cuda_backend(model, cuda_default_precision());
#else
            throw Error("this build of igpt has no CUDA backend (use --device cpu)");
#endif
    }
    throw Error("unknown backend");
}

}  // namespace igpt
