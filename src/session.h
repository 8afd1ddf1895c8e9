// Image completion and unconditional sampling, run either on a worker thread or stepped by the caller.
// Threaded (start): the caller keeps drawing while the worker fills tokens; progress is published after
// every token through an atomic counter, so a UI thread can read tokens [0, filled()) of every sample
// without locks. cancel() stops within one token. (On the CUDA backend the device samples too: progress
// comes once per image row, and cancel() stops within two rows of queued work.)
//
//   auto s = igpt::CompletionSession(model, igpt::BackendKind::Cpu);
//   s.start(tokens, params);           // tokens: the image's n_ctx palette indices (only kept rows used)
//   while (!s.done()) draw(s.tokens(i), s.filled());
//   s.wait();                          // rethrows a worker error as igpt::Error
//
// Stepped (start_stepped): no thread is started; the caller advances the completion by a time budget, e.g.
// once per frame in a browser without WebAssembly threads. The same units of work run in the same order as
// on the worker (one prefill chunk, or one decode position of every sample), so the samples are identical.
//
//   s.start_stepped(tokens, params);
//   while (!s.step(10.0)) draw(s.tokens(i), s.filled());   // step() returns done()
//   s.wait();                          // rethrows an error, if any (does not block)
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
    int32_t prefill_chunk = 128; // kept positions per prefill call: the longest unit of work between two
                                 // cancel checks (and between two step() budget checks)
};

// False in a build without threads (WebAssembly without -pthread): only start_stepped() can run there, and
// the CPU backend runs on the calling thread alone.
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
inline constexpr bool kHaveThreads = false;
#else
inline constexpr bool kHaveThreads = true;
#endif

class CompletionSession {
public:
    CompletionSession(std::shared_ptr<const Model> model, BackendKind kind = BackendKind::Cpu);
    // Cancels and joins. In the browser, never destroy (join) a running session on the main thread:
    // pthreads are started through the main thread, so the join can deadlock; wait for done() first.
    ~CompletionSession();
    CompletionSession(const CompletionSession&) = delete;
    CompletionSession& operator=(const CompletionSession&) = delete;

    // Starts the worker. Throws igpt::Error for bad parameters (rows out of range, wrong token count), and
    // in a build without threads (kHaveThreads false).
    void start(const std::vector<int32_t>& tokens, const CompletionParams& params);
    // Prepares the same completion without a thread; step() runs it. Throws like start().
    void start_stepped(const std::vector<int32_t>& tokens, const CompletionParams& params);
    // Stepped sessions: runs units of work (one prefill chunk, or one position of every sample) until
    // budget_ms have passed -- at least one unit -- or the completion is done or cancelled. Returns done().
    // An error ends the session (done) and is rethrown by wait(). Ignored by threaded sessions.
    bool step(double budget_ms);
    void cancel();                     // threaded: honoured within one token; stepped: by the next step()
    void wait();                       // joins; rethrows the worker's error, if any
    bool done() const { return done_.load(std::memory_order_acquire); }
    bool cancelled() const { return cancel_.load(std::memory_order_relaxed); }
    bool stepped() const { return stepped_; }

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
    double tokens_per_second() const;  // generated tokens (all samples) per second so far, prefill included
    double elapsed_seconds() const;
    double prefill_seconds() const;    // until the first sampled position (0 while still prefilling)
    double decode_tokens_per_second() const;  // sampled tokens (all samples) per second after the prefill

private:
    struct Job;                        // the backend and sampling state between two units of work
    void prepare(const std::vector<int32_t>& tokens, const CompletionParams& params);
    bool advance();                    // one unit of work; false when nothing is left
    void finish();                     // frees the job, stops the clock, publishes done()
    void begin_job(std::unique_ptr<Backend> backend);  // the state advance() keeps, on this backend
    void run();                        // the worker: Backend::generate, or advance() until done or cancelled
    GenerateRequest request();         // this completion's prompt, parameters and outputs

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
    std::atomic<int64_t> t_start_ns_{0}, t_end_ns_{0}, t_first_ns_{0};
    std::unique_ptr<Job> job_;         // owned by the worker (threaded) or the caller of step() (stepped)
    bool stepped_ = false;
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
