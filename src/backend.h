// The inference backend interface. CPU (Eigen + std::thread) implements it in src/cpu/, CUDA in src/cuda/
// (IGPT_WITH_CUDA). A backend owns a KV cache for up to `max_batch` sequences of n_ctx positions.
//
// Positions and inputs: position p predicts token x_p. The input at position 0 is the start-of-sequence
// vector (token id -1); the input at position p > 0 is x_{p-1}. So the logits of the sequence
// [sos, x0, ..., x_{n-2}] at position p are the model's distribution over x_p.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "model.h"
#include "sampler.h"

namespace igpt {

struct GenerateStats {
    double prefill_s = 0;  // prompt prefill and the first sampled position
    double decode_s = 0;   // the decode steps after it
    int32_t steps = 0;     // decode steps run
};

// A whole completion for backends that sample on their own device (Backend::generate): prefill the kept
// tokens once, fan the cache out to n_samples sequences, then sample positions [n_kept, n_ctx) of every
// sample. Only positions >= n_kept of the outputs are written.
struct GenerateRequest {
    const int32_t* prompt = nullptr;  // the n_kept given tokens
    int32_t n_kept = 0;               // 0 .. n_ctx - 1
    int32_t n_samples = 1;
    SamplerParams sampler;
    uint64_t seed = 1;                // the same seed gives the same samples (on the same backend)
    int32_t top_n = 0;                // choices recorded per generated position
    int32_t prefill_chunk = 128;      // prompt positions per prefill call (cancel is checked between them)
    int32_t progress_every = 0;       // positions between progress reports; 0 = the backend's choice
                                      // (CUDA: one image row; CPU: 8 positions)
    int32_t* tokens = nullptr;        // (n_samples, n_ctx)
    float* entropy = nullptr;         // (n_samples, n_ctx) bits, or null
    TokenChoice* choices = nullptr;   // (n_samples, n_ctx, top_n), or null
    // Called on the calling thread once positions [0, filled) of every sample are written.
    std::function<void(int32_t filled)> on_progress;
    std::function<bool()> cancelled;  // polled between steps; true ends generation early (no error)
    GenerateStats* stats = nullptr;   // optional timings
};

// Sampling on the host, shared by the session's step-by-step path and CpuBackend::generate so that both
// give the same samples: sample s of a completion seeded `seed` draws from Rng(sample_seed(seed, s)), and
// take_sample draws position `pos` of sample s from its logits (V of them) into rq's outputs.
uint64_t sample_seed(uint64_t seed, int32_t s);
void take_sample(const GenerateRequest& rq, int32_t n_ctx, int32_t vocab, int32_t s, int32_t pos, const float* logits,
                 Rng& rng, SampleInfo& info);

class Backend {
public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;

    // Allocate (or reuse) the KV cache for `batch` sequences; forgets all cached positions.
    virtual void reset(int32_t batch) = 0;

    // Runs positions [pos, pos+n) for sequences 0..batch-1 (batch <= the reset() batch), reading and
    // extending their KV caches, which must hold positions [0, pos) already.
    //   tokens: (batch, n) input token ids, -1 = start-of-sequence (valid at position 0 only)
    //   logits: all_positions ? (batch, n, V) : (batch, V) for the last position of each sequence
    virtual void forward(const int32_t* tokens, int32_t batch, int32_t n, int32_t pos, float* logits,
                         bool all_positions) = 0;

    // Copies positions [0, n) of sequence `src`'s cache into sequences [0, count) (a shared prompt is
    // prefilled once, then fanned out to every sample).
    virtual void copy_cache(int32_t src, int32_t count, int32_t n) = 0;

    // Optional: the normalised input of block `layer` (ln_1 output; layer == L gives ln_f output),
    // averaged over positions, for the last forward() call's positions; (batch, C). Returns false when
    // the backend does not support it.
    virtual bool pooled_features(int32_t layer, float* out) { (void)layer; (void)out; return false; }

    // Optional: runs a whole completion by itself, sampling included: CUDA on the GPU (no host round trip
    // per token); the CPU when the samples split across its threads (each thread then runs whole decode
    // steps for its own samples). Returns false, having done nothing, when the backend does not do this
    // request; then the caller samples on the host around forward(). Forgets the KV cache like reset().
    virtual bool generate(const GenerateRequest& req) { (void)req; return false; }
};

enum class BackendKind { Cpu, Cuda };

// threads <= 0: all hardware threads.
std::unique_ptr<Backend> make_cpu_backend(const Model& model, int32_t threads);
// Throws igpt::Error when CUDA is not compiled in or no GPU is present.
std::unique_ptr<Backend> make_backend(BackendKind kind, const Model& model, int32_t threads);
bool cuda_available();

}  // namespace igpt
