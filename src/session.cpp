// Completion sessions (worker thread, lock-free progress) and image log-likelihood.
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
constexpr int32_t kPrefillChunk = 128;  // positions per prefill call, so cancel() is honoured quickly
}  // namespace

CompletionSession::CompletionSession(std::shared_ptr<const Model> model, BackendKind kind)
    : model_(std::move(model)), kind_(kind) {
    if (!model_) throw Error("no model");
}

CompletionSession::~CompletionSession() {
    cancel();
    if (worker_.joinable()) worker_.join();
}

void CompletionSession::start(const std::vector<int32_t>& tokens, const CompletionParams& params) {
    if (worker_.joinable()) {
        cancel();
        worker_.join();
    }
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
    worker_ = std::thread([this] { run(); });
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

void CompletionSession::run() {
    try {
        const auto& c = model_->cfg;
        const int32_t T = c.n_ctx(), V = c.vocab, N = params_.n_samples, k = kept_;
        if (k < T) {
            auto backend = make_backend(kind_, *model_, params_.threads);
            backend->reset(N);
            std::vector<Rng> rngs;
            for (int32_t s = 0; s < N; ++s) rngs.emplace_back(params_.seed + 0x9e3779b97f4a7c15ull * uint64_t(s + 1));
            std::vector<float> logits(size_t(N) * size_t(V));
            SampleInfo info;
            auto take = [&](int32_t s, int32_t pos, const float* lg) {
                const int32_t tok = sample_token(lg, V, params_.sampler, rngs[size_t(s)], &info, params_.top_n);
                const size_t at = size_t(s) * size_t(T) + size_t(pos);
                tokens_[at] = tok;
                entropy_[at] = info.entropy_bits;
                std::copy(info.top.begin(), info.top.end(), choices_.begin() + ptrdiff_t(at * size_t(params_.top_n)));
            };
            // Prefill the shared prompt (positions 0..k: inputs sos, x0..x_{k-1}) once, in chunks.
            std::vector<int32_t> in(size_t(k) + 1);
            in[0] = -1;
            std::copy_n(tokens_.begin(), k, in.begin() + 1);
            for (int32_t p0 = 0; p0 <= k && !cancel_.load(); p0 += kPrefillChunk) {
                const int32_t n = std::min(kPrefillChunk, k + 1 - p0);
                backend->forward(in.data() + p0, 1, n, p0, logits.data(), false);
            }
            if (!cancel_.load()) {
                for (int32_t s = 0; s < N; ++s) take(s, k, logits.data());
                backend->copy_cache(0, N, k + 1);
                filled_.store(k + 1, std::memory_order_release);
            }
            // Decode: every sample advances one position per step.
            std::vector<int32_t> step(static_cast<size_t>(N));
            for (int32_t pos = k + 1; pos < T && !cancel_.load(); ++pos) {
                for (int32_t s = 0; s < N; ++s) step[size_t(s)] = tokens_[size_t(s) * size_t(T) + size_t(pos - 1)];
                backend->forward(step.data(), N, 1, pos, logits.data(), false);
                for (int32_t s = 0; s < N; ++s) take(s, pos, logits.data() + size_t(s) * size_t(V));
                filled_.store(pos + 1, std::memory_order_release);
            }
        }
    } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lk(err_mu_);
        error_ = e.what();
    }
    t_end_ns_.store(now_ns());
    done_.store(true, std::memory_order_release);
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
