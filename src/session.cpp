// Completion sessions (worker thread or caller-stepped, lock-free progress) and image log-likelihood.
#include "session.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "error.h"

namespace igpt {

namespace {
int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}
}  // namespace

// What one completion keeps between two units of work: made by the first advance(), freed by finish().
struct CompletionSession::Job {
    std::unique_ptr<Backend> backend;
    std::vector<Rng> rngs;             // one generator stream per sample
    std::vector<float> logits;         // (N, V)
    std::vector<int32_t> in;           // prefill inputs (sos, x0..x_{k-1}); then one token per sample
    int32_t next = 0;                  // prefill: next position to feed (0..k); then the position to sample
    SampleInfo info;
};

CompletionSession::CompletionSession(std::shared_ptr<const Model> model, BackendKind kind)
    : model_(std::move(model)), kind_(kind) {
    if (!model_) throw Error("no model");
}

CompletionSession::~CompletionSession() {
    cancel();
    if (worker_.joinable()) worker_.join();
}

void CompletionSession::prepare(const std::vector<int32_t>& tokens, const CompletionParams& params) {
    if (worker_.joinable()) {
        cancel();
        worker_.join();
    }
    job_.reset();
    const auto& c = model_->cfg;
    const int32_t T = c.n_ctx();
    if (int64_t(tokens.size()) != T)
        throw Error("image has " + std::to_string(tokens.size()) + " pixels but the model expects " + std::to_string(T) +
                    " (" + std::to_string(c.image_h) + "x" + std::to_string(c.image_w) + ")");
    if (params.rows_kept < 0 || params.rows_kept > c.image_h)
        throw Error("rows to keep must be between 0 and " + std::to_string(c.image_h) + ", not " +
                    std::to_string(params.rows_kept));
    if (params.n_samples < 1 || params.n_samples > 64) throw Error("number of samples must be between 1 and 64");
    if (params.top_n < 0 || params.top_n > c.vocab) throw Error("top_n out of range");
    if (params.sampler.top_k < 0) throw Error("top-k must be >= 0");
    if (params.prefill_chunk < 1) throw Error("prefill_chunk must be >= 1");
    if (!(params.sampler.top_p > 0.0f && params.sampler.top_p <= 1.0f)) throw Error("top-p must be in (0, 1]");
    if (!(params.sampler.temperature >= 0.0f) || !std::isfinite(params.sampler.temperature))
        throw Error("temperature must be >= 0");
    params_ = params;
    kept_ = params.rows_kept * c.image_w;
    for (int32_t i = 0; i < kept_; ++i)
        if (tokens[size_t(i)] < 0 || tokens[size_t(i)] >= c.vocab) throw Error("token out of the palette's range");
    const size_t N = size_t(params.n_samples);
    tokens_.assign(N * size_t(T), 0);
    for (size_t s = 0; s < N; ++s) std::copy_n(tokens.begin(), kept_, tokens_.begin() + ptrdiff_t(s * size_t(T)));
    entropy_.assign(N * size_t(T), 0.0f);
    choices_.assign(N * size_t(T) * size_t(params.top_n), TokenChoice{});
    filled_.store(kept_, std::memory_order_release);
    cancel_.store(false);
    done_.store(false, std::memory_order_release);
    {
        std::lock_guard<std::mutex> lk(err_mu_);
        error_.clear();
    }
    t_start_ns_.store(now_ns());
    t_end_ns_.store(0);
    t_first_ns_.store(0);
}

void CompletionSession::start(const std::vector<int32_t>& tokens, const CompletionParams& params) {
    if (!kHaveThreads) throw Error("this build has no threads: use start_stepped() and step()");
    prepare(tokens, params);
    stepped_ = false;
    worker_ = std::thread([this] { run(); });
}

void CompletionSession::start_stepped(const std::vector<int32_t>& tokens, const CompletionParams& params) {
    prepare(tokens, params);
    stepped_ = true;
}

bool CompletionSession::step(double budget_ms) {
    if (!stepped_ || done()) return done();
    const int64_t until = now_ns() + int64_t(std::max(0.0, budget_ms) * 1e6);
    try {
        bool more;
        do {
            more = !cancel_.load() && advance();
        } while (more && now_ns() < until);
        if (!more) finish();
    } catch (const std::exception& e) {
        {
            std::lock_guard<std::mutex> lk(err_mu_);
            error_ = e.what();
        }
        finish();
    }
    return done();
}

void CompletionSession::cancel() { cancel_.store(true); }

void CompletionSession::wait() {
    if (worker_.joinable()) worker_.join();
    std::lock_guard<std::mutex> lk(err_mu_);
    if (!error_.empty()) throw Error(error_);
}

double CompletionSession::elapsed_seconds() const {
    const int64_t end = t_end_ns_.load();
    return double((end ? end : now_ns()) - t_start_ns_.load()) * 1e-9;
}

double CompletionSession::tokens_per_second() const {
    const double s = elapsed_seconds();
    return s > 0 ? double(filled() - kept_) * double(params_.n_samples) / s : 0.0;
}

double CompletionSession::prefill_seconds() const {
    const int64_t first = t_first_ns_.load();
    return first ? double(first - t_start_ns_.load()) * 1e-9 : 0.0;
}

double CompletionSession::decode_tokens_per_second() const {
    const int64_t first = t_first_ns_.load(), end = t_end_ns_.load();
    if (!first) return 0.0;
    const double s = double((end ? end : now_ns()) - first) * 1e-9;
    return s > 0 ? double(filled() - kept_ - 1) * double(params_.n_samples) / s : 0.0;
}

// One unit of work: a prefill chunk of the shared prompt, or one decode position of every sample. The
// worker (run) and step() both drive the completion through here, so they produce the same tokens.
bool CompletionSession::advance() {
    const auto& c = model_->cfg;
    const int32_t T = c.n_ctx(), V = c.vocab, N = params_.n_samples, k = kept_;
    if (k >= T) return false;  // every row kept: nothing to generate
    if (!job_) begin_job(make_backend(kind_, *model_, params_.threads));
    Job& j = *job_;
    const GenerateRequest out = request();
    if (j.next <= k) {
        // Prefill the shared prompt (positions 0..k: inputs sos, x0..x_{k-1}) once, in chunks.
        const int32_t n = std::min(params_.prefill_chunk, k + 1 - j.next);
        j.backend->forward(j.in.data() + j.next, 1, n, j.next, j.logits.data(), false);
        j.next += n;
        if (j.next <= k) return true;
        for (int32_t s = 0; s < N; ++s) take_sample(out, T, V, s, k, j.logits.data(), j.rngs[size_t(s)], j.info);
        j.backend->copy_cache(0, N, k + 1);
        t_first_ns_.store(now_ns());
        filled_.store(k + 1, std::memory_order_release);
        return j.next < T;
    }
    // Decode: every sample advances one position per step.
    const int32_t pos = j.next;
    for (int32_t s = 0; s < N; ++s) j.in[size_t(s)] = tokens_[size_t(s) * size_t(T) + size_t(pos - 1)];
    j.backend->forward(j.in.data(), N, 1, pos, j.logits.data(), false);
    for (int32_t s = 0; s < N; ++s)
        take_sample(out, T, V, s, pos, j.logits.data() + size_t(s) * size_t(V), j.rngs[size_t(s)], j.info);
    filled_.store(pos + 1, std::memory_order_release);
    return ++j.next < T;
}

void CompletionSession::begin_job(std::unique_ptr<Backend> backend) {
    const int32_t N = params_.n_samples, k = kept_;
    job_ = std::make_unique<Job>();
    job_->backend = std::move(backend);
    job_->backend->reset(N);
    for (int32_t s = 0; s < N; ++s) job_->rngs.emplace_back(sample_seed(params_.seed, s));
    job_->logits.resize(size_t(N) * size_t(model_->cfg.vocab));
    job_->in.resize(size_t(std::max(k + 1, N)));
    job_->in[0] = -1;
    std::copy_n(tokens_.begin(), k, job_->in.begin() + 1);
}

void CompletionSession::finish() {
    job_.reset();
    t_end_ns_.store(now_ns());
    done_.store(true, std::memory_order_release);
}

// The worker: backends that run a whole completion by themselves (Backend::generate: CUDA, which samples on
// the GPU; the CPU when it splits the samples across its threads) do, in one call -- the prompt's prefill,
// the fan-out and every decode step -- publishing progress as they go; for the others the worker steps
// through advance() on the same backend.
void CompletionSession::run() {
    try {
        if (kept_ < model_->cfg.n_ctx()) {
            auto backend = make_backend(kind_, *model_, params_.threads);
            GenerateRequest rq = request();
            rq.on_progress = [this](int32_t filled) {
                int64_t unset = 0;
                t_first_ns_.compare_exchange_strong(unset, now_ns());
                filled_.store(filled, std::memory_order_release);
            };
            rq.cancelled = [this] { return cancel_.load(); };
            if (!backend->generate(rq)) {
                begin_job(std::move(backend));
                while (!cancel_.load() && advance()) {
                }
            }
        }
    } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lk(err_mu_);
        error_ = e.what();
    }
    finish();  // frees the backend (and joins its pool) before done() is published
}

// This completion as a request: its prompt, parameters and output arrays.
GenerateRequest CompletionSession::request() {
    GenerateRequest rq;
    rq.prompt = tokens_.data();
    rq.n_kept = kept_;
    rq.n_samples = params_.n_samples;
    rq.sampler = params_.sampler;
    rq.seed = params_.seed;
    rq.top_n = params_.top_n;
    rq.prefill_chunk = params_.prefill_chunk;
    rq.tokens = tokens_.data();
    rq.entropy = entropy_.data();
    rq.choices = choices_.data();
    return rq;
}

NllResult image_nll(const Model& model, Backend& backend, const std::vector<int32_t>& tokens, int32_t n_images,
                    int32_t batch) {
    const auto& c = model.cfg;
    const int32_t T = c.n_ctx(), V = c.vocab;
    if (n_images < 0 || int64_t(tokens.size()) != int64_t(n_images) * T)
        throw Error("image_nll: expected " + std::to_string(n_images) + " x " + std::to_string(T) + " tokens");
    for (int32_t t : tokens)
        if (t < 0 || t >= V) throw Error("image_nll: token out of the palette's range");
    batch = std::max(1, std::min(batch, std::max(1, n_images)));
    NllResult r;
    r.pixel_bits.resize(tokens.size());
    std::vector<float> logits(size_t(batch) * size_t(T) * size_t(V));
    std::vector<int32_t> in(size_t(batch) * size_t(T));
    backend.reset(batch);
    double total = 0;
    for (int32_t i0 = 0; i0 < n_images; i0 += batch) {
        const int32_t b = std::min(batch, n_images - i0);
        for (int32_t j = 0; j < b; ++j) {
            const int32_t* x = &tokens[size_t(i0 + j) * size_t(T)];
            in[size_t(j) * T] = -1;
            std::copy_n(x, T - 1, in.begin() + ptrdiff_t(size_t(j) * T + 1));
        }
        backend.forward(in.data(), b, T, 0, logits.data(), true);
        for (int32_t j = 0; j < b; ++j)
            for (int32_t p = 0; p < T; ++p) {
                const size_t at = size_t(i0 + j) * size_t(T) + size_t(p);
                const float bits = float(-log2_prob(&logits[(size_t(j) * T + size_t(p)) * size_t(V)], V, tokens[at]));
                r.pixel_bits[at] = bits;
                total += bits;
            }
    }
    r.bits_per_pixel = n_images ? total / (double(n_images) * T) : 0.0;
    return r;
}

}  // namespace igpt
