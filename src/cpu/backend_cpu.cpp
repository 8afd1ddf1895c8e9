// CPU inference backend: Eigen GEMMs split across a persistent thread pool, KV cache per sequence.
// Every intermediate activation has a name matching the reference (tests/ref/igpt_ref.py).
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend.h"
#include "error.h"
#include "ops.h"
#include "thread_pool.h"

namespace igpt {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;
#ifdef __EMSCRIPTEN__
constexpr bool kAlwaysAttnKernels = true;   // Eigen is not vectorised under wasm
#else
constexpr bool kAlwaysAttnKernels = false;
#endif

class CpuBackend final : public Backend {
public:
    CpuBackend(const Model& model, int32_t threads)
        : m_(model), w_(model.ptrs()), pool_(threads), scores_(size_t(pool_.size())) {}

    std::string name() const override { return "cpu (" + std::to_string(pool_.size()) + " threads)"; }

    void reset(int32_t batch) override {
        if (batch < 1) throw Error("batch must be at least 1");
        const auto& c = m_.cfg;
        const size_t n = size_t(c.layers) * size_t(batch) * size_t(c.n_ctx()) * size_t(c.width);
        if (batch != batch_) {
            k_cache_.assign(n, 0.0f);
            v_cache_.assign(n, 0.0f);
            batch_ = batch;
        }
        pooled_.assign(size_t(c.layers + 1) * size_t(batch) * size_t(c.width), 0.0f);
    }

    void forward(const int32_t* tokens, int32_t batch, int32_t n, int32_t pos, float* logits,
                 bool all_positions) override {
        const auto& c = m_.cfg;
        const int64_t C = c.width, H = c.hidden(), V = c.vocab, T = c.n_ctx(), D = c.head_dim(), NH = c.heads;
        if (batch < 1 || batch > batch_) throw Error("forward: batch exceeds the reset() batch");
        if (n < 1 || pos < 0 || pos + n > T) throw Error("forward: positions out of range for n_ctx " + std::to_string(T));
        const int64_t M = int64_t(batch) * n;
        grow(x_, M * C);
        grow(xn_, M * C);
        grow(qkv_, M * 3 * C);
        grow(att_, M * C);
        grow(tmp_, M * C);
        grow(fch_, M * H);

        // Embedding: x = (sos | wte[token]) + wpe[pos]   (M, C)
        for (int64_t b = 0; b < batch; ++b)
            for (int64_t i = 0; i < n; ++i) {
                const int32_t tok = tokens[b * n + i];
                const int64_t p = pos + i;
                if (tok < -1 || tok >= V) throw Error("forward: token " + std::to_string(tok) + " out of range");
                const float* e = tok < 0 ? w_.sos : w_.wte + int64_t(tok) * C;
                float* xr = &x_[size_t((b * n + i) * C)];
                for (int64_t j = 0; j < C; ++j) xr[j] = e[j] + w_.wpe[p * C + j];
            }

        const float scale = 1.0f / std::sqrt(float(D));
        for (int64_t l = 0; l < c.layers; ++l) {
            const LayerParams& lw = w_.layers[size_t(l)];
            float* kc = layer_cache(k_cache_, l);  // (batch_, NH, T, D)
            float* vc = layer_cache(v_cache_, l);

            rms_norm(x_.data(), lw.ln1_g, c.norm_eps, M, C, xn_.data());             // attn_norm (M, C)
            pool_features(l, batch, n);
            matmul_nt(xn_.data(), M, C, lw.qkv_w, 3 * C, lw.qkv_b, qkv_.data(), &pool_);  // qkv (M, 3C)
            // Cache layout (batch, head, T, D): each head's keys are one contiguous block to stream.
            for (int64_t b = 0; b < batch; ++b)
                for (int64_t i = 0; i < n; ++i) {
                    const float* r = &qkv_[size_t((b * n + i) * 3 * C)];
                    for (int64_t h = 0; h < NH; ++h) {
                        std::memcpy(kc + ((b * NH + h) * T + pos + i) * D, r + C + h * D, size_t(D) * 4);
                        std::memcpy(vc + ((b * NH + h) * T + pos + i) * D, r + 2 * C + h * D, size_t(D) * 4);
                    }
                }
            // Causal attention per (sequence, head): S = Q K^T * scale, masked softmax, O = P V.  att (M, C)
            pool_.parallel_for(int64_t(batch) * NH, 1, [&](int64_t j0, int64_t j1, int32_t t) {
                std::vector<float>& S = scores_[size_t(t)];
                for (int64_t j = j0; j < j1; ++j) {
                    const int64_t b = j / NH, h = j % NH, tk = pos + n;
                    Eigen::Map<const RowMat, 0, Stride> Q(&qkv_[size_t(b * n * 3 * C + h * D)], n, D, Stride(3 * C));
                    Eigen::Map<const RowMat> K(kc + (b * NH + h) * T * D, tk, D);
                    Eigen::Map<const RowMat> Vm(vc + (b * NH + h) * T * D, tk, D);
                    if (S.size() < size_t(n * tk)) S.resize(size_t(n * tk));
                    Eigen::Map<RowMat> Sm(S.data(), n, tk);
                    // Decode steps (few query rows): streaming kernels; prefill: Eigen's blocked GEMM.
                    const bool few = kAlwaysAttnKernels || n <= 4;
                    if (few) attn_scores(Q.data(), 3 * C, K.data(), D, n, tk, D, S.data());
                    else Sm.noalias() = Q * K.transpose();
                    for (int64_t i = 0; i < n; ++i) {
                        float* row = S.data() + i * tk;
                        const int64_t valid = pos + i + 1;  // keys 0..pos+i
                        float mx = -INFINITY;
                        for (int64_t k = 0; k < valid; ++k) mx = std::max(mx, row[k] * scale);
                        float sum = 0;
                        for (int64_t k = 0; k < valid; ++k) sum += (row[k] = std::exp(row[k] * scale - mx));
                        const float inv = 1.0f / sum;
                        for (int64_t k = 0; k < valid; ++k) row[k] *= inv;
                        for (int64_t k = valid; k < tk; ++k) row[k] = 0.0f;
                    }
                    Eigen::Map<RowMat, 0, Stride> O(&att_[size_t(b * n * C + h * D)], n, D, Stride(C));
                    if (few) attn_values(S.data(), n, tk, Vm.data(), D, D, O.data(), C);
                    else O.noalias() = Sm * Vm;
                }
            });
            matmul_nt(att_.data(), M, C, lw.proj_w, C, lw.proj_b, tmp_.data(), &pool_);  // attn_out (M, C)
            add_inplace(x_.data(), tmp_.data(), M * C);                                 // x += attn_out
            rms_norm(x_.data(), lw.ln2_g, c.norm_eps, M, C, xn_.data());                // mlp_norm (M, C)
            matmul_nt(xn_.data(), M, C, lw.fc_w, H, lw.fc_b, fch_.data(), &pool_);      // mlp_fc (M, H)
            pool_.parallel_for(M * H, 4096, [&](int64_t a, int64_t e, int32_t) { quick_gelu(&fch_[size_t(a)], e - a); });
            matmul_nt(fch_.data(), M, H, lw.mproj_w, C, lw.mproj_b, tmp_.data(), &pool_);  // mlp_out (M, C)
            add_inplace(x_.data(), tmp_.data(), M * C);                                    // x += mlp_out
        }

        // Final norm and head, for every position or the last one of each sequence.   logits (rows, V)
        const int64_t rows = all_positions ? M : batch;
        grow(sel_, rows * C);
        if (all_positions) {
            rms_norm(x_.data(), w_.lnf_g, c.norm_eps, M, C, xn_.data());
            pool_features(c.layers, batch, n);
            matmul_nt(xn_.data(), M, C, w_.head_w, V, nullptr, logits, &pool_);
        } else {
            rms_norm(x_.data(), w_.lnf_g, c.norm_eps, M, C, xn_.data());
            pool_features(c.layers, batch, n);
            for (int64_t b = 0; b < batch; ++b)
                std::memcpy(&sel_[size_t(b * C)], &xn_[size_t((b * n + n - 1) * C)], size_t(C) * 4);
            matmul_nt(sel_.data(), batch, C, w_.head_w, V, nullptr, logits, &pool_);
        }
    }

    void copy_cache(int32_t src, int32_t count, int32_t n) override {
        const auto& c = m_.cfg;
        const int64_t C = c.width, T = c.n_ctx();
        if (src < 0 || src >= batch_ || count > batch_ || n < 0 || n > T) throw Error("copy_cache: out of range");
        for (int64_t l = 0; l < c.layers; ++l)
            for (auto* cache : {&k_cache_, &v_cache_}) {
                float* base = layer_cache(*cache, l);
                const int64_t NH = c.heads, D = c.head_dim();
                for (int64_t b = 0; b < count; ++b)
                    for (int64_t h = 0; b != src && h < NH; ++h)
                        std::memcpy(base + (b * NH + h) * T * D, base + (src * NH + h) * T * D, size_t(n * D) * 4);
            }
    }

    bool pooled_features(int32_t layer, float* out) override {
        const auto& c = m_.cfg;
        if (layer < 0 || layer > c.layers || pooled_batch_ == 0) return false;
        std::memcpy(out, &pooled_[size_t(layer) * size_t(batch_) * size_t(c.width)],
                    size_t(pooled_batch_) * size_t(c.width) * 4);
        return true;
    }

private:
    static void grow(std::vector<float>& v, int64_t n) {
        if (v.size() < size_t(n)) v.resize(size_t(n));
    }
    static void add_inplace(float* x, const float* y, int64_t n) {
        for (int64_t i = 0; i < n; ++i) x[i] += y[i];
    }
    float* layer_cache(std::vector<float>& cache, int64_t l) {
        return cache.data() + size_t(l) * size_t(batch_) * size_t(m_.cfg.n_ctx()) * size_t(m_.cfg.width);
    }
    // Mean over this call's positions of the normalised block input (xn_), per sequence.
    void pool_features(int64_t layer, int32_t batch, int32_t n) {
        const int64_t C = m_.cfg.width;
        pooled_batch_ = batch;
        float* dst = &pooled_[size_t(layer) * size_t(batch_) * size_t(C)];
        for (int64_t b = 0; b < batch; ++b) {
            float* o = dst + b * C;
            std::fill(o, o + C, 0.0f);
            for (int64_t i = 0; i < n; ++i) {
                const float* r = &xn_[size_t((b * n + i) * C)];
                for (int64_t j = 0; j < C; ++j) o[j] += r[j];
            }
            for (int64_t j = 0; j < C; ++j) o[j] /= float(n);
        }
    }

    const Model& m_;
    ParamPtrs w_;
    ThreadPool pool_;
    int32_t batch_ = 0, pooled_batch_ = 0;
    std::vector<float> k_cache_, v_cache_;        // (L, batch, heads, T, head_dim)
    std::vector<float> x_, xn_, qkv_, att_, tmp_, fch_, sel_;
    std::vector<float> pooled_;                   // (L + 1, batch, C)
    std::vector<std::vector<float>> scores_;     // attention scores, one buffer per thread
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const Model& model, int32_t threads) {
    return std::make_unique<CpuBackend>(model, threads);
}

}  // namespace igpt
