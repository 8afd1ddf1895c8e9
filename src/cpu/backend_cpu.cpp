// CPU inference backend: prefill through Eigen's GEMM, decode steps through the panel kernels (ops.h) on a
// copy of the weights packed for streaming, split across a persistent thread pool; KV cache per sequence.
// Every intermediate activation has a name matching the reference (tests/ref/igpt_ref.py).
#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <new>
#if defined(__linux__) && !defined(__EMSCRIPTEN__)
#include <sys/mman.h>
#define IGPT_MADVISE_HUGEPAGE 1
#endif

#include "backend.h"
#include "error.h"
#include "ops.h"
#include "thread_pool.h"

namespace igpt {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;
// Every buffer the products read or write is 32-byte aligned: Eigen's small (coefficient-based) products
// peel unaligned leading elements into a scalar loop without FMA, so with malloc's alignment a result could
// differ in the last bit from one run (or thread) to the next.
using Buffer = std::vector<float, Eigen::aligned_allocator<float>>;
// Large arrays left uninitialised (every element is written before it is read; the KV cache and the weight
// panels are hundreds of MB that need no zero-fill). On Linux they sit on 2 MB pages where the kernel has
// them (transparent huge pages on request): a decode step streams them once, and on 4 KB pages that is a
// TLB miss, and a restart of the hardware prefetcher, every 4 KB.
template <typename T>
class RawBuffer {
public:
    void allocate(size_t n) {
        p_.reset();  // the old buffer goes first: the peak is the new size, not both
        const size_t bytes = n * sizeof(T);
#ifdef IGPT_MADVISE_HUGEPAGE
        const size_t align = bytes >= (size_t(4) << 20) ? size_t(2) << 20 : 64;
#else
        const size_t align = 64;
#endif
        const size_t size = (bytes + align - 1) / align * align;
        p_.reset(static_cast<T*>(std::aligned_alloc(align, std::max(size, align))));
        if (!p_) throw std::bad_alloc();
#ifdef IGPT_MADVISE_HUGEPAGE
        if (align > 64) madvise(p_.get(), size, MADV_HUGEPAGE);  // advice only: 4 KB pages if refused
#endif
    }
    T* data() { return p_.get(); }
    const T* data() const { return p_.get(); }
    explicit operator bool() const { return bool(p_); }

private:
    struct Free {
        void operator()(T* p) const { std::free(p); }
    };
    std::unique_ptr<T, Free> p_;
};
// Bytes of memory the system can still give without swapping (Linux: MemAvailable), or -1 if unknown.
int64_t available_memory() {
#ifdef __linux__
    if (std::FILE* f = std::fopen("/proc/meminfo", "r")) {
        char line[256];
        long long kb = -1;
        while (std::fgets(line, sizeof line, f))
            if (std::sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
        std::fclose(f);
        if (kb > 0) return int64_t(kb) * 1024;
    }
#endif
    return -1;
}

std::string gigabytes(double bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
    return buf;
}

#ifdef __EMSCRIPTEN__
constexpr bool kAlwaysAttnKernels = true;   // Eigen is not vectorised under wasm
// Prefill from the panels too: the broadcast kernel ran 513-row products at 17-23 GFLOP/s under node, the
// dot-product kernel of matmul_nt at 15-19. Natively Eigen's blocked GEMM is twice the panels' speed there.
constexpr bool kAlwaysPanels = true;
#else
constexpr bool kAlwaysAttnKernels = false;
constexpr bool kAlwaysPanels = false;
#endif

class CpuBackend final : public Backend {
public:
    CpuBackend(const Model& model, int32_t threads)
        : m_(model), w_(model.ptrs()), pool_(threads), scores_(size_t(pool_.size())) {
#if IGPT_HAVE_PANELS
        pack_weights(IGPT_HAVE_F16_PANELS && model.file_dtype == DType::F16);
#endif
    }

    std::string name() const override { return "cpu (" + std::to_string(pool_.size()) + " threads)"; }

    void reset(int32_t batch) override {
        if (batch < 1) throw Error("batch must be at least 1");
        const auto& c = m_.cfg;
        const size_t n = size_t(c.layers) * size_t(batch) * size_t(c.n_ctx()) * size_t(c.width);
        if (batch != batch_) {
            // The cache is not zero-filled, so its pages are only taken when first written: a cache larger
            // than the memory left would fail halfway through a completion (the kernel's OOM killer, no
            // message). Say so now instead.
            const double need = 2.0 * double(n) * sizeof(float), per_seq = need / double(batch);
            const int64_t avail = available_memory() + (batch_ > 0 ? int64_t(2.0 * per_seq * batch_) : 0);
            if (avail > 0 && need > double(avail) * 0.9)
                throw Error("the KV cache for " + std::to_string(batch) + " sequences of '" + c.name + "' needs " +
                            gigabytes(need) + " of memory and " + gigabytes(double(avail)) + " is available: use " +
                            (per_seq < double(avail) * 0.9
                                 ? "at most " + std::to_string(int64_t(double(avail) * 0.9 / per_seq)) + " samples"
                                 : "a smaller model"));
            batch_ = 0;
            // Uninitialised: a position is written before any step reads it (sequences that share a prompt
            // never read their own copy of it).
            k_cache_.allocate(n);
            v_cache_.allocate(n);
            batch_ = batch;
        }
        pooled_.assign(size_t(c.layers + 1) * size_t(batch) * size_t(c.width), 0.0f);
        shared_len_ = 0;
    }

    void forward(const int32_t* tokens, int32_t batch, int32_t n, int32_t pos, float* logits,
                 bool all_positions) override {
        const auto& c = m_.cfg;
        const int64_t V = c.vocab, T = c.n_ctx();
        if (batch < 1 || batch > batch_) throw Error("forward: batch exceeds the reset() batch");
        if (n < 1 || pos < 0 || pos + n > T) throw Error("forward: positions out of range for n_ctx " + std::to_string(T));
        if (pos < shared_len_) unshare();  // about to overwrite positions that are shared
        for (int64_t b = 0; b < int64_t(batch) * n; ++b)
            if (tokens[b] < -1 || tokens[b] >= V) throw Error("forward: token " + std::to_string(tokens[b]) + " out of range");
        begin_rows(batch, n);
        embed(tokens, 0, batch, n, pos);
        run_blocks(0, batch, batch, n, pos, all_positions, logits, &pool_, 0);
    }

    // A whole completion, when its samples split across the threads (split_parts): a decode step of a few
    // sequences on a small model is dozens of tiny products, and splitting each of them across the pool
    // costs a hand-over per product (and a wait for the slowest thread). Here every thread runs the whole
    // step, sampling included, for its own samples, for several positions between two hand-overs. Every row
    // goes through the same kernels as in forward(), and each sample draws from its own generator, so the
    // samples are the same to the bit as the session's step-by-step path gives.
    bool generate(const GenerateRequest& rq) override {
        const auto& c = m_.cfg;
        const int32_t T = c.n_ctx(), V = c.vocab, N = rq.n_samples, k = rq.n_kept;
        const int32_t parts = split_parts(N);
        if (parts < 2 || k < 0 || k >= T) return false;
        if (rq.prefill_chunk < 1 || !rq.tokens) throw Error("generate: bad request");
        const auto t0 = std::chrono::steady_clock::now();
        auto cancelled = [&] { return rq.cancelled && rq.cancelled(); };
        reset(N);
        // The prompt (positions 0..k: inputs sos, x0..x_{k-1}) once, in chunks; then position k of every
        // sample from its logits, and the prompt's cache shared by all.
        std::vector<int32_t> in(size_t(k) + 1);
        in[0] = -1;
        std::copy_n(rq.prompt, k, in.begin() + 1);
        std::vector<float> logits(size_t(N) * size_t(V));
        for (int32_t p = 0; p <= k; p += rq.prefill_chunk) {
            if (cancelled()) return true;
            forward(in.data() + p, 1, std::min(rq.prefill_chunk, k + 1 - p), p, logits.data(), false);
        }
        std::vector<Rng> rngs;
        for (int32_t s = 0; s < N; ++s) rngs.emplace_back(sample_seed(rq.seed, s));
        std::vector<SampleInfo> infos(static_cast<size_t>(N));
        for (int32_t s = 0; s < N; ++s) take_sample(rq, T, V, s, k, logits.data(), rngs[size_t(s)], infos[size_t(s)]);
        copy_cache(0, N, k + 1);
        const auto t1 = std::chrono::steady_clock::now();
        if (rq.on_progress) rq.on_progress(k + 1);

        // Decode positions k+1 .. T-1, `every` of them per hand-over.
        begin_rows(N, 1);
        const int32_t every = rq.progress_every > 0 ? rq.progress_every : 8;
        std::vector<int32_t> step_in(static_cast<size_t>(N));
        std::atomic<bool> stop{false};
        int32_t done = k + 1;
        while (done < T && !stop.load()) {
            const int32_t end = std::min(T, done + every);
            pool_.parallel_for(
                parts, 1,
                [&](int64_t q0, int64_t q1, int32_t t) {
                    for (int64_t q = q0; q < q1; ++q) {
                        const int32_t b0 = int32_t(N * q / parts), b1 = int32_t(N * (q + 1) / parts);
                        for (int32_t pos = done; pos < end; ++pos) {
                            if (cancelled()) {
                                stop.store(true);
                                return;
                            }
                            for (int32_t b = b0; b < b1; ++b) step_in[size_t(b)] = rq.tokens[size_t(b) * T + pos - 1];
                            embed(step_in.data(), b0, b1, 1, pos);
                            run_blocks(b0, b1, N, 1, pos, false, logits.data(), nullptr, t);
                            for (int32_t b = b0; b < b1; ++b)
                                take_sample(rq, T, V, b, pos, logits.data() + size_t(b) * V, rngs[size_t(b)],
                                            infos[size_t(b)]);
                        }
                    }
                },
                1);
            if (stop.load()) break;
            done = end;
            if (rq.on_progress) rq.on_progress(done);
        }
        if (rq.stats) {
            const auto t2 = std::chrono::steady_clock::now();
            rq.stats->prefill_s = std::chrono::duration<double>(t1 - t0).count();
            rq.stats->decode_s = std::chrono::duration<double>(t2 - t1).count();
            rq.stats->steps = done - (k + 1);
        }
        return true;
    }

    // Sequences that start from one prompt share its cache: nothing is copied; their attention reads
    // positions [0, n) from `src` (once per step for all of them, from cache) and the rest from their own.
    void copy_cache(int32_t src, int32_t count, int32_t n) override {
        const int32_t T = m_.cfg.n_ctx();
        if (src < 0 || src >= batch_ || count > batch_ || n < 0 || n > T) throw Error("copy_cache: out of range");
        unshare();
        shared_src_ = src;
        shared_count_ = count;
        shared_len_ = n;
#if IGPT_HAVE_PANELS
        if (n > 0) pack_shared_prompt();
#endif
    }

    bool pooled_features(int32_t layer, float* out) override {
        const auto& c = m_.cfg;
        if (layer < 0 || layer > c.layers || pooled_batch_ == 0) return false;
        std::memcpy(out, &pooled_[size_t(layer) * size_t(batch_) * size_t(c.width)],
                    size_t(pooled_batch_) * size_t(c.width) * 4);
        return true;
    }

private:
    // How many parts (one per thread) the samples of a completion split into for generate(): up to
    // kPanelRows of them (so that a part's products take the same panel kernels as the whole batch's), on
    // models whose weights stay in the last-level cache (then each part re-reading them costs little;
    // larger models stream them from memory, better once for all samples). 1: no split.
    int32_t split_parts(int32_t samples) const {
        if (samples < 2 || samples > kPanelRows || pool_.size() < 2 || !kHavePanels) return 1;
        if (weight_bytes_ > kSplitMaxWeightBytes) return 1;
        return std::min(samples, pool_.size());
    }

    // x = (sos | wte[token]) + wpe[pos]   for the rows of sequences [b0, b1) (tokens: (batch, n), checked)
    void embed(const int32_t* tokens, int64_t b0, int64_t b1, int64_t n, int64_t pos) {
        const int64_t C = m_.cfg.width;
        for (int64_t b = b0; b < b1; ++b)
            for (int64_t i = 0; i < n; ++i) {
                const int32_t tok = tokens[b * n + i];
                const float* e = tok < 0 ? w_.sos : w_.wte + int64_t(tok) * C;
                const float* pe = w_.wpe + (pos + i) * C;
                float* xr = &x_[size_t((b * n + i) * C)];
                for (int64_t j = 0; j < C; ++j) xr[j] = e[j] + pe[j];
            }
    }

    // Runs fn(begin, end, thread) over [0, n): across `pool`, or all of it on this thread (t) without one.
    static void run_on(ThreadPool* pool, int32_t t, int64_t n, int64_t grain, int32_t chunks,
                       const std::function<void(int64_t, int64_t, int32_t)>& fn) {
        if (pool) pool->parallel_for(n, grain, fn, chunks);
        else fn(0, n, t);
    }

    // The blocks, the final norm and the head for sequences [b0, b1) of a forward() call of `batch`
    // sequences x n positions whose embeddings are in x_; products split across `pool`, or all on this thread
    // (index t, for its scratch buffers) when pool is null.
    void run_blocks(int64_t b0, int64_t b1, int64_t batch, int64_t n, int64_t pos, bool all_positions, float* logits,
                    ThreadPool* pool, int32_t t) {
        const auto& c = m_.cfg;
        const int64_t C = c.width, H = c.hidden(), V = c.vocab, T = c.n_ctx(), D = c.head_dim(), NH = c.heads;
        const int64_t r0 = b0 * n, M = (b1 - b0) * n, nb = b1 - b0;  // this part's rows of the (batch * n) rows
        float* x = &x_[size_t(r0 * C)];
        float* xn = &xn_[size_t(r0 * C)];
        float* qkv = &qkv_[size_t(r0 * 3 * C)];
        float* att = &att_[size_t(r0 * C)];
        float* tmp = &tmp_[size_t(r0 * C)];
        float* fch = &fch_[size_t(r0 * H)];
        const float scale = 1.0f / std::sqrt(float(D));
        // A decode step of sequences sharing a prompt runs one job per head for all of them (attend_group),
        // so that the prompt's keys and values are read once per step (GEMMs over the group) instead of once
        // each. Those of this part: [g0, g1).
        const int64_t group = n == 1 && shared_len_ > 0 ? std::min<int64_t>(batch, shared_count_) : 0;
        const int64_t g0 = group > 1 ? std::min(b0, group) : 0, g1 = group > 1 ? std::min(b1, group) : 0;
        for (int64_t l = 0; l < c.layers; ++l) {
            const LayerParams& lw = w_.layers[size_t(l)];
            float* kc = layer_cache(k_cache_, l);  // (batch_, NH, T, D)
            float* vc = layer_cache(v_cache_, l);

            rms_norm(x, lw.ln1_g, c.norm_eps, M, C, xn);  // attn_norm (M, C)
            pool_features(l, b0, b1, n);
            mm(xn, M, C, lw.qkv_w, l, 0, 3 * C, lw.qkv_b, qkv, pool);  // qkv (M, 3C)
            // Cache layout (batch, head, T, D): each head's keys are one contiguous block to stream.
            for (int64_t b = b0; b < b1; ++b)
                for (int64_t i = 0; i < n; ++i) {
                    const float* r = &qkv_[size_t((b * n + i) * 3 * C)];
                    for (int64_t h = 0; h < NH; ++h) {
                        std::memcpy(kc + ((b * NH + h) * T + pos + i) * D, r + C + h * D, size_t(D) * 4);
                        std::memcpy(vc + ((b * NH + h) * T + pos + i) * D, r + 2 * C + h * D, size_t(D) * 4);
                    }
                }
            // Causal attention per (sequence, head).   att (M, C)
            if (g1 > g0) {
                run_on(pool, t, NH, 1, kAttendChunks, [&](int64_t h0, int64_t h1, int32_t tt) {
                    for (int64_t h = h0; h < h1; ++h) {
                        attend_group(l, h, g0, g1, pos, scale, scores_[size_t(tt)]);
                        for (int64_t b = g1; b < b1; ++b) attend(l, b, h, n, pos, scale, scores_[size_t(tt)]);
                    }
                });
            } else {
                run_on(pool, t, nb * NH, 1, kAttendChunks, [&](int64_t j0, int64_t j1, int32_t tt) {
                    for (int64_t j = j0; j < j1; ++j)
                        attend(l, b0 + j % nb, j / nb, n, pos, scale, scores_[size_t(tt)]);
                });
            }
            mm(att, M, C, lw.proj_w, l, 1, C, lw.proj_b, tmp, pool);  // attn_out (M, C)
            add_inplace(x, tmp, M * C);                              // x += attn_out
            rms_norm(x, lw.ln2_g, c.norm_eps, M, C, xn);             // mlp_norm (M, C)
            mm(xn, M, C, lw.fc_w, l, 2, H, lw.fc_b, fch, pool);      // mlp_fc (M, H)
            run_on(pool, t, M * H, 4096, 2, [&](int64_t a, int64_t e, int32_t) { quick_gelu(fch + a, e - a); });
            mm(fch, M, H, lw.mproj_w, l, 3, C, lw.mproj_b, tmp, pool);  // mlp_out (M, C)
            add_inplace(x, tmp, M * C);                                 // x += mlp_out
        }

        // Final norm and head, for every position or the last one of each sequence.   logits (rows, V)
        rms_norm(x, w_.lnf_g, c.norm_eps, M, C, xn);
        pool_features(c.layers, b0, b1, n);
        if (all_positions) {
            mm(xn, M, C, w_.head_w, c.layers, 0, V, nullptr, logits + r0 * V, pool);
        } else {
            float* sel = &sel_[size_t(b0 * C)];
            for (int64_t b = b0; b < b1; ++b)
                std::memcpy(&sel_[size_t(b * C)], &xn_[size_t((b * n + n - 1) * C)], size_t(C) * 4);
            mm(sel, nb, C, w_.head_w, c.layers, 0, V, nullptr, logits + b0 * V, pool);
        }
    }

    // Y = X · W^T (+ bias) for matrix `which` (qkv, proj, fc, mproj) of layer l (l == L: the head, which 0):
    // a few rows (decode steps) from the panel copy, more (prefill) through Eigen's GEMM on W (natively).
    void mm(const float* X, int64_t M, int64_t K, const float* W, int64_t l, int which, int64_t N, const float* bias,
            float* Y, ThreadPool* pool) {
#if IGPT_HAVE_PANELS
        if (M <= kPanelRows || kAlwaysPanels) {
            const size_t at = panel_at_[size_t(l * 4 + which)];
#if IGPT_HAVE_F16_PANELS
            if (panels16_) {
                matmul_panels(X, K, M, K, panels16_.data() + at, N, bias, Y, N, pool);
                return;
            }
#endif
            matmul_panels(X, K, M, K, panels_.data() + at, N, bias, Y, N, pool);
            return;
        }
#else
        (void)l, (void)which;
#endif
        matmul_nt(X, M, K, W, N, bias, Y, pool);
    }
#if IGPT_HAVE_PANELS
    // Decode steps stream every weight matrix once per token: keep a copy of each in the panel layout
    // (ops.h), in half precision when the model file stored f16 (exactly the file's values, half the bytes).
    void pack_weights(bool half) {
        const auto& c = m_.cfg;
        const int64_t C = c.width, H = c.hidden(), V = c.vocab;
        struct Mat { const float* w; int64_t n, k; };
        std::vector<Mat> mats;  // 4 per layer, then the head
        for (const LayerParams& lw : w_.layers) {
            mats.push_back({lw.qkv_w, 3 * C, C});
            mats.push_back({lw.proj_w, C, C});
            mats.push_back({lw.fc_w, H, C});
            mats.push_back({lw.mproj_w, C, H});
        }
        mats.push_back({w_.head_w, V, C});
        size_t total = 0;
        for (const Mat& m : mats) {
            panel_at_.push_back(total);
            total += size_t(panels_size(m.n, m.k));
        }
#if IGPT_HAVE_F16_PANELS
        if (half) panels16_.allocate(total);
        else
#endif
            panels_.allocate(total);
        weight_bytes_ = total * (half ? 2 : 4);
        pool_.parallel_for(int64_t(mats.size()), 1, [&](int64_t i0, int64_t i1, int32_t) {
            for (int64_t i = i0; i < i1; ++i) {
                const Mat& m = mats[size_t(i)];
#if IGPT_HAVE_F16_PANELS
                if (half) {
                    pack_panels(m.w, m.n, m.k, m.k, 1, panels16_.data() + panel_at_[size_t(i)]);
                    continue;
                }
#endif
                pack_panels(m.w, m.n, m.k, m.k, 1, panels_.data() + panel_at_[size_t(i)]);
            }
        });
    }
#endif
    static constexpr int64_t kPanelRows = 16;
    static constexpr bool kHavePanels = IGPT_HAVE_PANELS;
    // Decode steps split by sequence (split_parts) up to this many bytes of weight panels.
    static constexpr size_t kSplitMaxWeightBytes = size_t(8) << 20;
    // Attention jobs (a head, or a sequence's head) in up to 8 chunks a thread: they stream the KV cache,
    // and an uneven last chunk would leave a thread waiting.
    static constexpr int32_t kAttendChunks = 8;

    // One (sequence b, head h) of layer l: queries [pos, pos+n) against keys [0, pos+n), in blocks of query
    // rows that each see only the keys up to their last row (causal: the masked half is never computed).
    // Keys below shared_len_ come from the prompt's sequence when b shares it.
    void attend(int64_t l, int64_t b, int64_t h, int64_t n, int64_t pos, float scale, Buffer& S) {
        const auto& c = m_.cfg;
        const int64_t C = c.width, D = c.head_dim();
        const float* kc = head_cache(k_cache_, l, b, h);  // (T, D)
        const float* vc = head_cache(v_cache_, l, b, h);
        const bool share = shared_len_ > 0 && b < shared_count_ && b != shared_src_;
        const int64_t P = share ? shared_len_ : 0;  // keys [0, P) from the shared prompt
        const float* ks = head_cache(k_cache_, l, shared_src_, h);
        const float* vs = head_cache(v_cache_, l, shared_src_, h);
        const float* Q = &qkv_[size_t(b * n * 3 * C + h * D)];  // row stride 3C
        float* O = &att_[size_t(b * n * C + h * D)];           // row stride C
        const int64_t block = n <= 4 ? n : 64;
        for (int64_t i0 = 0; i0 < n; i0 += block) {
            const int64_t nb = std::min(block, n - i0), tk = pos + i0 + nb;  // keys visible to the block
            if (S.size() < size_t(nb * tk)) S.resize(size_t(nb * tk));
            const float* q = Q + i0 * 3 * C;
            float* o = O + i0 * C;
            scores(q, 3 * C, ks, 0, P, nb, D, S.data(), tk);
            scores(q, 3 * C, kc, P, tk, nb, D, S.data(), tk);
            for (int64_t i = 0; i < nb; ++i) softmax_scaled(S.data() + i * tk, pos + i0 + i + 1, tk, scale);
            if (P > 0) values(S.data(), tk, vs, 0, P, nb, D, o, C, false);
            values(S.data(), tk, vc, P, tk, nb, D, o, C, P > 0);
        }
    }
    // One decode position (pos) of sequences [g0, g1), which share keys [0, P) with the prompt's sequence:
    // scores and values over the shared part as (G, D) x (D, P) products, the rest per sequence.
    void attend_group(int64_t l, int64_t h, int64_t g0, int64_t g1, int64_t pos, float scale, Buffer& S) {
        const auto& c = m_.cfg;
        const int64_t C = c.width, D = c.head_dim(), G = g1 - g0;
        // Score rows start on 64-byte boundaries: the native softmax (Eigen) handles a row's unaligned head
        // apart, so a row's result would depend on where in the group its sequence sits (and generate(),
        // which splits the group across threads, would not give forward()'s logits to the bit).
        const int64_t P = shared_len_, tk = pos + 1, ts = (tk + 15) / 16 * 16;
        const float* Q = &qkv_[size_t(g0 * 3 * C + h * D)];  // sequence g0 + b's query at row b, stride 3C
        float* O = &att_[size_t(g0 * C + h * D)];             // row b, stride C
        if (S.size() < size_t(G * ts)) S.resize(size_t(G * ts));
#if IGPT_HAVE_PANELS
        // S[:, 0:P) = Q · K^T, from the prompt's keys in panels: one contiguous stream for the whole group
        matmul_panels(Q, 3 * C, G, D, shared_panels(l, h, 0), P, nullptr, S.data(), ts, nullptr);
#else
        scores(Q, 3 * C, head_cache(k_cache_, l, shared_src_, h), 0, P, G, D, S.data(), ts);
#endif
        for (int64_t b = 0; b < G; ++b) {
            float* row = S.data() + b * ts;
            scores(Q + b * 3 * C, 3 * C, head_cache(k_cache_, l, g0 + b, h), P, tk, 1, D, row, ts);
            softmax_scaled(row, tk, tk, scale);
        }
#if IGPT_HAVE_PANELS
        matmul_panels(S.data(), ts, G, P, shared_panels(l, h, 1), D, nullptr, O, C, nullptr);  // O = S[:, 0:P) · V
#else
        values(S.data(), ts, head_cache(v_cache_, l, shared_src_, h), 0, P, G, D, O, C, false);
#endif
        for (int64_t b = 0; b < G; ++b)
            values(S.data() + b * ts, ts, head_cache(v_cache_, l, g0 + b, h), P, tk, 1, D, O + b * C, C, true);
    }
    // S[:, k0:k1) = Q · K[k0:k1)^T and O (+)= P[:, k0:k1) · V[k0:k1): the streaming kernels for a few query
    // rows (decode) and in the browser build, Eigen's blocked GEMM for prefill blocks.
    static void scores(const float* q, int64_t ldq, const float* K, int64_t k0, int64_t k1, int64_t nb, int64_t D,
                       float* S, int64_t lds) {
        if (k1 <= k0) return;
        if (kAlwaysAttnKernels || nb <= 4) {
            attn_scores(q, ldq, K + k0 * D, D, nb, k1 - k0, D, S + k0, lds);
            return;
        }
        Eigen::Map<const RowMat, 0, Stride> Qm(q, nb, D, Stride(ldq));
        Eigen::Map<const RowMat> Km(K + k0 * D, k1 - k0, D);
        Eigen::Map<RowMat, 0, Stride> Sm(S + k0, nb, k1 - k0, Stride(lds));
        Sm.noalias() = Qm * Km.transpose();
    }
    static void values(const float* S, int64_t lds, const float* V, int64_t k0, int64_t k1, int64_t nb, int64_t D,
                       float* O, int64_t ldo, bool accumulate) {
        if (kAlwaysAttnKernels || nb <= 4) {
            attn_values(S + k0, lds, nb, k1 - k0, V + k0 * D, D, D, O, ldo, accumulate);
            return;
        }
        Eigen::Map<const RowMat, 0, Stride> Pm(S + k0, nb, k1 - k0, Stride(lds));
        Eigen::Map<const RowMat> Vm(V + k0 * D, k1 - k0, D);
        Eigen::Map<RowMat, 0, Stride> Om(O, nb, D, Stride(ldo));
        if (accumulate) Om.noalias() += Pm * Vm;
        else Om.noalias() = Pm * Vm;
    }
#if IGPT_HAVE_PANELS
    // The shared prompt's keys (which 0: K as (P, D), for Q · K^T) and values (which 1: V^T as (D, P), for
    // S · V) of one (layer, head), in panels. They never change while shared, so they are packed once.
    size_t shared_slot() const {
        const int64_t D = m_.cfg.head_dim(), P = shared_len_;
        return size_t(std::max(panels_size(P, D), panels_size(D, P)));
    }
    const float* shared_panels(int64_t l, int64_t h, int which) const {
        return shared_panels_.data() + size_t((l * m_.cfg.heads + h) * 2 + which) * shared_slot();
    }
    void pack_shared_prompt() {
        const auto& c = m_.cfg;
        const int64_t D = c.head_dim(), P = shared_len_;
        const size_t one = shared_slot();
        shared_panels_.allocate(size_t(c.layers * c.heads * 2) * one);
        pool_.parallel_for(c.layers * c.heads, 1, [&](int64_t j0, int64_t j1, int32_t) {
            for (int64_t j = j0; j < j1; ++j) {
                const int64_t l = j / c.heads, h = j % c.heads;
                pack_panels(head_cache(k_cache_, l, shared_src_, h), P, D, D, 1, shared_panels_.data() + size_t(j * 2) * one);
                pack_panels(head_cache(v_cache_, l, shared_src_, h), D, P, 1, D, shared_panels_.data() + size_t(j * 2 + 1) * one);
            }
        });
    }
#endif
    // Gives every sharing sequence its own copy of the shared prompt (before anything overwrites it).
    void unshare() {
        if (shared_len_ == 0) return;
        const auto& c = m_.cfg;
        for (int64_t l = 0; l < c.layers; ++l)
            for (auto* cache : {&k_cache_, &v_cache_})
                for (int64_t b = 0; b < shared_count_; ++b)
                    for (int64_t h = 0; b != shared_src_ && h < c.heads; ++h)
                        std::memcpy(head_cache(*cache, l, b, h), head_cache(*cache, l, shared_src_, h),
                                    size_t(shared_len_) * size_t(c.head_dim()) * 4);
        shared_len_ = 0;
    }
    static void grow(Buffer& v, int64_t n) {
        if (v.size() < size_t(n)) v.resize(size_t(n));
    }
    // Activation buffers for `batch` sequences x n positions of one call (and its pooled features).
    void begin_rows(int64_t batch, int64_t n) {
        const int64_t C = m_.cfg.width, M = batch * n;
        for (Buffer* b : {&x_, &xn_, &att_, &tmp_}) grow(*b, M * C);
        grow(qkv_, M * 3 * C);
        grow(fch_, M * m_.cfg.hidden());
        grow(sel_, batch * C);
        pooled_batch_ = int32_t(batch);
    }
    static void add_inplace(float* x, const float* y, int64_t n) {
        for (int64_t i = 0; i < n; ++i) x[i] += y[i];
    }
    float* layer_cache(RawBuffer<float>& cache, int64_t l) {
        return cache.data() + size_t(l) * size_t(batch_) * size_t(m_.cfg.n_ctx()) * size_t(m_.cfg.width);
    }
    // Sequence b's keys or values for head h of layer l: (T, D), contiguous.
    float* head_cache(RawBuffer<float>& cache, int64_t l, int64_t b, int64_t h) {
        const auto& c = m_.cfg;
        return layer_cache(cache, l) + (b * c.heads + h) * int64_t(c.n_ctx()) * c.head_dim();
    }
    // Mean over this call's positions of the normalised block input (xn_), for sequences [b0, b1).
    void pool_features(int64_t layer, int64_t b0, int64_t b1, int64_t n) {
        const int64_t C = m_.cfg.width;
        float* dst = &pooled_[size_t(layer) * size_t(batch_) * size_t(C)];
        for (int64_t b = b0; b < b1; ++b) {
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
    int32_t shared_src_ = 0, shared_count_ = 0, shared_len_ = 0;  // prompt shared by sequences [0, count)
    RawBuffer<float> k_cache_, v_cache_;          // (L, batch, heads, T, head_dim)
    RawBuffer<float> shared_panels_;              // the shared prompt's keys and values in panels
    Buffer x_, xn_, qkv_, att_, tmp_, fch_, sel_;
    std::vector<float> pooled_;                   // (L + 1, batch, C)
    RawBuffer<float> panels_;                     // decode copies of the weight matrices (ops.h panels),
#if IGPT_HAVE_F16_PANELS
    RawBuffer<uint16_t> panels16_;                // in half precision for an f16 model file
#endif
    std::vector<size_t> panel_at_;                // where matrix (layer, which) starts
    size_t weight_bytes_ = 0;                     // of the panels
    std::vector<Buffer> scores_;                 // attention scores, one buffer per thread
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const Model& model, int32_t threads) {
    return std::make_unique<CpuBackend>(model, threads);
}

}  // namespace igpt
