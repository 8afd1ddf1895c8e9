// The inference backend interface. CPU (Eigen + std::thread) implements it in src/cpu/; CUDA will
// implement the same table. A backend owns a KV cache for up to `max_batch` sequences of n_ctx positions.
//
// Positions and inputs: position p predicts token x_p. The input at position 0 is the start-of-sequence
// vector (token id -1); the input at position p > 0 is x_{p-1}. So the logits of the sequence
// [sos, x0, ..., x_{n-2}] at position p are the model's distribution over x_p.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "model.h"

namespace igpt {

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
};

enum class BackendKind { Cpu, Cuda };

// threads <= 0: all hardware threads.
std::unique_ptr<Backend> make_cpu_backend(const Model& model, int32_t threads);
// Throws igpt::Error when CUDA is not compiled in or no GPU is present.
std::unique_ptr<Backend> make_backend(BackendKind kind, const Model& model, int32_t threads);
bool cuda_available();

}  // namespace igpt
