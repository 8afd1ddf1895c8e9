// Image completion and unconditional sampling on a worker thread. The caller keeps drawing while the
// worker fills tokens; progress is published after every token through an atomic counter, so a UI
// thread can read tokens [0, filled()) of every sample without locks. cancel() stops within one token.
//
//   auto s = igpt::CompletionSession(model, igpt::BackendKind::Cpu);
//   s.start(tokens, params);           // tokens: the image's n_ctx palette indices (only kept rows used)
//   while (!s.done()) draw(s.tokens(i), s.filled());
//   s.wait();                          // rethrows a worker error as igpt::Error
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend.h"
#include "model.h"
#include "sampler.h"

namespace igpt {

struct CompletionParams {
    int32_t n_samples = 4;       // 1..64
    int32_t rows_kept = 16;      // 0..image_h; 0 = unconditional sample
    SamplerParams sampler;
    uint64_t seed = 1;           // sample i uses an Rng seeded from (seed, i)
    int32_t threads = 0;         // CPU threads; 0 = all
    int32_t top_n = 5;           // choices recorded per generated pixel (for "what did it consider")
};

class CompletionSession {
public:
    CompletionSession(std::shared_ptr<const Model> model, BackendKind kind = BackendKind::Cpu);
    // Cancels and joins. In the browser, never destroy (join) a running session on the main thread:
    // pthreads are started through the main thread, so the join can deadlock; wait for done() first.
    ~CompletionSession();
    CompletionSession(const CompletionSession&) = delete;
    CompletionSession& operator=(const CompletionSession&) = delete;

    // Starts the worker. Throws igpt::Error for bad parameters (rows out of range, wrong token count).
    void start(const std::vector<int32_t>& tokens, const CompletionParams& params);
    void cancel();
    void wait();                       // joins; rethrows the worker's error, if any
    bool done() const { return done_.load(std::memory_order_acquire); }
    bool cancelled() const { return cancel_.load(std::memory_order_relaxed); }

    int32_t n_samples() const { return params_.n_samples; }
    int32_t n_ctx() const { return model_->cfg.n_ctx(); }
    int32_t kept() const { return kept_; }       // tokens given (rows_kept * image_w)
    int32_t filled() const { return filled_.load(std::memory_order_acquire); }  // valid tokens per sample
    const int32_t* tokens(int32_t sample) const { return &tokens_[size_t(sample) * n_ctx()]; }
    const float* entropy(int32_t sample) const { return &entropy_[size_t(sample) * n_ctx()]; }  // bits
    // top_n choices at position p of sample s (valid for kept() <= p < filled()).
    const TokenChoice* choices(int32_t sample, int32_t pos) const {
        return &choices_[(size_t(sample) * n_ctx() + pos) * params_.top_n];
    }
    double tokens_per_second() const;  // generated tokens (all samples) per second so far
    double elapsed_seconds() const;

private:
    void run();

    std::shared_ptr<const Model> model_;
    BackendKind kind_;
    CompletionParams params_;
    int32_t kept_ = 0;
    std::vector<int32_t> tokens_;
    std::vector<float> entropy_;
    std::vector<TokenChoice> choices_;
    std::atomic<int32_t> filled_{0};
    std::atomic<bool> done_{true};
    std::atomic<bool> cancel_{false};
    std::atomic<int64_t> t_start_ns_{0}, t_end_ns_{0};
    std::thread worker_;
    std::mutex err_mu_;
    std::string error_;
};

// Bits per pixel and a per-pixel surprise map (bits) of one image's tokens, batched over images.
struct NllResult {
    double bits_per_pixel = 0;        // mean over all pixels of all images
    std::vector<float> pixel_bits;    // (n_images, n_ctx): -log2 p(x_p | x_<p)
};
NllResult image_nll(const Model& model, Backend& backend, const std::vector<int32_t>& tokens,
                    int32_t n_images, int32_t batch = 8);

}  // namespace igpt
