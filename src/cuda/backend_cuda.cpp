// CUDA inference backend: weights uploaded once (f16 / bf16, or f32 for checking), cuBLAS GEMMs, fused
// norm / activation / KV-append kernels, flash-style prefill and split-K decode attention; and generate(),
// a whole completion that samples on the device and replays one captured CUDA graph per decode step.
// Activations carry the reference's names (tests/ref/igpt_ref.py): attn_norm, qkv, att, attn_out, mlp_norm,
// mlp_fc, mlp_out, logits.
#include "cuda/backend_cuda.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <unordered_map>

#include "cuda/activation.cuh"
#include "cuda/attention_decode.cuh"
#include "cuda/attention_prefill.cuh"
#include "cuda/common.cuh"
#include "cuda/decode_fused.cuh"
#include "cuda/embedding.cuh"
#include "cuda/gemm.cuh"
#include "cuda/kv_cache.cuh"
#include "cuda/norm.cuh"
#include "cuda/sampling.cuh"
#include "error.h"
#include "half.h"

namespace igpt {
IGPT_EMU_NAMESPACE_BEGIN  // (cuda/common.cuh: tests/cuda_emu compiles a copy of this backend)

namespace {

using cuda::DevType;
using Clock = std::chrono::steady_clock;
double secs(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Device memory that grows on demand; contents are not kept across a grow. Callers make sure no queued
// work still uses the old allocation (they synchronise the stream first).
class DevBuf {
public:
    DevBuf() = default;
    ~DevBuf() { release(); }
    DevBuf(const DevBuf&) = delete;
    DevBuf& operator=(const DevBuf&) = delete;
    bool reserve(size_t bytes) {
        if (bytes <= bytes_) return false;
        release();
        IGPT_CUDA_CHECK(cudaMalloc(&p_, bytes));
        bytes_ = bytes;
        return true;
    }
    void release() {
        if (p_) cudaFree(p_);
        p_ = nullptr;
        bytes_ = 0;
    }
    void* get() const { return p_; }
    template <typename T> T* as() const { return static_cast<T*>(p_); }
    size_t bytes() const { return bytes_; }

private:
    void* p_ = nullptr;
    size_t bytes_ = 0;
};

// Pinned host memory (the device copies generated tokens into it while the next row runs).
class HostBuf {
public:
    HostBuf() = default;
    ~HostBuf() { release(); }
    HostBuf(const HostBuf&) = delete;
    HostBuf& operator=(const HostBuf&) = delete;
    void reserve(size_t bytes) {
        if (bytes <= bytes_) return;
        release();
        IGPT_CUDA_CHECK(cudaMallocHost(&p_, bytes));
        bytes_ = bytes;
    }
    void release() {
        if (p_) cudaFreeHost(p_);
        p_ = nullptr;
        bytes_ = 0;
    }
    template <typename T> T* as() const { return static_cast<T*>(p_); }

private:
    void* p_ = nullptr;
    size_t bytes_ = 0;
};

class GraphExec {
public:
    GraphExec() = default;
    ~GraphExec() {
        if (exec_) cudaGraphExecDestroy(exec_);
    }
    GraphExec(const GraphExec&) = delete;
    GraphExec& operator=(const GraphExec&) = delete;
    cudaGraphExec_t* put() { return &exec_; }
    cudaGraphExec_t get() const { return exec_; }

private:
    cudaGraphExec_t exec_ = nullptr;
};

class Events {
public:
    explicit Events(size_t n) : ev_(n, nullptr) {
        for (auto& e : ev_) IGPT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming | cudaEventBlockingSync));
    }
    ~Events() {
        for (auto e : ev_)
            if (e) cudaEventDestroy(e);
    }
    Events(const Events&) = delete;
    Events& operator=(const Events&) = delete;
    cudaEvent_t operator[](size_t i) const { return ev_[i % ev_.size()]; }

private:
    std::vector<cudaEvent_t> ev_;
};

DevType dev_type(CudaPrecision p) {
    switch (p) {
        case CudaPrecision::F16: return DevType::F16;
        case CudaPrecision::BF16: return DevType::BF16;
        case CudaPrecision::F32: return DevType::F32;
    }
    return DevType::F16;
}

// Device pointers of every parameter, in the roles of ParamPtrs (weights.h). Matrices are of the weight
// type; vectors (sos, gains, biases) stay f32. Null bias = none.
struct DevLayer {
    const void *qkv_w = nullptr, *proj_w = nullptr, *fc_w = nullptr, *mproj_w = nullptr;
    const float *ln1_g = nullptr, *qkv_b = nullptr, *proj_b = nullptr, *ln2_g = nullptr, *fc_b = nullptr,
                *mproj_b = nullptr;
};
struct DevWeights {
    const float* sos = nullptr;
    const void *wte = nullptr, *wpe = nullptr;
    std::vector<DevLayer> layers;
    const float* lnf_g = nullptr;
    const void* head_w = nullptr;
};

constexpr size_t kAlign = 256;  // bytes: every tensor starts on a cuBLAS / vector-load friendly boundary
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

class CudaBackend final : public Backend {
public:
    CudaBackend(const Model& model, CudaPrecision precision)
        : cfg_(model.cfg), prec_(precision), wt_(dev_type(precision)), at_(wt_), fused_enabled_(fused_default()) {
        const auto& c = cfg_;
        if (c.head_dim() > cuda::kMaxHeadDim || c.width % c.heads != 0)
            throw Error("CUDA backend: head dim " + std::to_string(c.head_dim()) + " is not supported (max " +
                        std::to_string(cuda::kMaxHeadDim) + ")");
        cuda::fused_splitk_from_env();  // a bad IGPT_CUDA_SPLITK is refused here, whichever path decodes
        cudaDeviceProp prop{};
        IGPT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
        device_name_ = prop.name;
        sm_count_ = prop.multiProcessorCount;
        IGPT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        try {
            gemm_ = std::make_unique<cuda::Gemm>(stream_);
            upload(model);
        } catch (...) {
            gemm_.reset();
            cudaStreamDestroy(stream_);
            throw;
        }
    }

    ~CudaBackend() override {
        cudaStreamSynchronize(stream_);
        report_profile();
        gemm_.reset();
        cudaStreamDestroy(stream_);
    }

    // The decode path: the one the last decode step took (with the fused step's options), else the one the
    // next will try.
    std::string name() const override {
        const std::string path = !last_decode_.empty() ? last_decode_ : fused_enabled_ ? "fused" : "layer-by-layer";
        return "cuda (" + device_name_ + ", " + cuda_precision_name(prec_) + ", " + path + " decode)";
    }

    void reset(int32_t batch) override {
        if (batch < 1) throw Error("batch must be at least 1");
        const auto& c = cfg_;
        if (batch != batch_) {
            sync();
            const size_t n = size_t(c.layers) * size_t(batch) * size_t(c.n_ctx()) * size_t(c.width) * es();
            kc_.reserve(n);
            vc_.reserve(n);
            batch_ = batch;
        }
        pooled_.reserve(size_t(c.layers + 1) * size_t(batch) * size_t(c.width) * 4);
        pooled_batch_ = 0;
    }

    void forward(const int32_t* tokens, int32_t batch, int32_t n, int32_t pos, float* logits,
                 bool all_positions) override {
        const auto& c = cfg_;
        const int32_t T = c.n_ctx(), V = c.vocab;
        if (batch < 1 || batch > batch_) throw Error("forward: batch exceeds the reset() batch");
        if (n < 1 || pos < 0 || pos + n > T) throw Error("forward: positions out of range for n_ctx " + std::to_string(T));
        const int64_t M = int64_t(batch) * n;
        for (int64_t i = 0; i < M; ++i)
            if (tokens[i] < -1 || tokens[i] >= V)
                throw Error("forward: token " + std::to_string(tokens[i]) + " out of range");
        ensure_rows(M);
        if (n == 1) {
            ensure_decode_workspace(batch);
            plan_fused(batch);
        }
        IGPT_CUDA_CHECK(cudaMemcpyAsync(tok_.get(), tokens, size_t(M) * 4, cudaMemcpyHostToDevice, stream_));
        // A decode step (n = 1) pools nothing: pooled features describe whole images (prefills).
        run_forward(tok_.as<int32_t>(), batch, n, pos, nullptr, all_positions, n > 1);
        const int64_t rows = all_positions ? M : batch;
        IGPT_CUDA_CHECK(cudaMemcpyAsync(logits, logits_.get(), size_t(rows) * size_t(V) * 4, cudaMemcpyDeviceToHost, stream_));
        sync();
    }

    void copy_cache(int32_t src, int32_t count, int32_t n) override {
        const auto& c = cfg_;
        if (src < 0 || src >= batch_ || count > batch_ || n < 0 || n > c.n_ctx()) throw Error("copy_cache: out of range");
        cuda::kv_fanout(kc_.get(), vc_.get(), at_, c.layers, batch_, c.heads, c.n_ctx(), c.head_dim(), src, count, n,
                        stream_);
    }

    bool pooled_features(int32_t layer, float* out) override {
        const auto& c = cfg_;
        if (layer < 0 || layer > c.layers || pooled_batch_ == 0) return false;
        sync();
        IGPT_CUDA_CHECK(cudaMemcpy(out, pooled_.as<float>() + size_t(layer) * size_t(batch_) * size_t(c.width),
                                   size_t(pooled_batch_) * size_t(c.width) * 4, cudaMemcpyDeviceToHost));
        return true;
    }

    bool generate(const GenerateRequest& rq) override;

private:
    size_t es() const { return cuda::dev_type_size(at_); }
    void sync() { IGPT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
    void* kcache(int64_t l) const { return static_cast<char*>(kc_.get()) + size_t(l) * layer_cache_bytes(); }
    void* vcache(int64_t l) const { return static_cast<char*>(vc_.get()) + size_t(l) * layer_cache_bytes(); }
    size_t layer_cache_bytes() const {
        return size_t(batch_) * size_t(cfg_.n_ctx()) * size_t(cfg_.width) * es();
    }

    void upload(const Model& model);
    void ensure_rows(int64_t M);
    void ensure_decode_workspace(int32_t B);
    void ensure_generate_buffers(int32_t N, int32_t top_n);
    void plan_fused(int32_t B);
    void report_profile();
    bool fused_ready(int32_t B) const { return fused_enabled_ && fused_batch_ == B && fused_plan_.ok; }
    // The fused step with its options, as name() and `igpt bench` report it:
    // fused[+mma][+split[N]][+onepass][+shared].
    std::string fused_path() const {
        const int32_t sk = fused_plan_.splitk;
        std::string path = "fused";
        if (fused_plan_.mma) path += "+mma";  // (tensor-core GEMVs are never split)
        else if (sk != 1) path += sk == 0 ? std::string("+split") : "+split" + std::to_string(sk);
        if (fused_plan_.onepass) path += "+onepass";
        if (shared_len_ > 0) path += "+shared";
        return path;
    }
    static bool fused_default() {
        const char* env = std::getenv("IGPT_CUDA_FUSED");  // 0: decode layer by layer (for A/B checks)
        return !(env && std::strcmp(env, "0") == 0);
    }
    void run_forward(const int32_t* tok_dev, int32_t B, int32_t n, int32_t pos, const int32_t* pos_dev,
                     bool all_positions, bool pool);
    cuda::SampleArgs sample_args(const GenerateRequest& rq, int32_t top_n) const;
    void copy_out(int32_t p0, int32_t p1, int32_t N, int32_t top_n, bool entropy);
    void publish(const GenerateRequest& rq, int32_t p0, int32_t p1, int32_t top_n);

    ModelConfig cfg_;
    CudaPrecision prec_;
    DevType wt_, at_;  // weights (matrices) and activations / KV cache
    std::string device_name_;
    int32_t sm_count_ = 0;
    cudaStream_t stream_ = nullptr;
    std::unique_ptr<cuda::Gemm> gemm_;

    DevBuf mat_, vec_;  // the parameters: matrices (weight type), vectors (f32)
    DevWeights w_;
    int32_t batch_ = 0, pooled_batch_ = 0;
    DevBuf kc_, vc_;    // KV cache (L, batch_, NH, T, D), activation type
    int64_t rows_ = 0;  // rows the activation buffers hold
    DevBuf x_;          // (M, C) f32 residual stream
    DevBuf xn_;         // (M, C) attn_norm / mlp_norm / final norm output
    DevBuf qkv_;        // (M, 3C) q | k | v (q biased in place by kv_append)
    DevBuf att_;        // (M, C) attention output, heads side by side
    DevBuf fch_;        // (M, H) mlp_fc, activated in place
    DevBuf logits_;     // (M, V) f32
    DevBuf tok_;        // (M) input tokens
    DevBuf attn_ws_;    // split-K decode attention partials
    int32_t ws_batch_ = 0;
    DevBuf pooled_;     // (L + 1, batch_, C) f32
    // The fused decode step (decode_fused.cuh): per-layer pointers on the device, plan for fused_batch_.
    bool fused_enabled_;
    DevBuf fused_layers_, fused_ws_, fused_cnt_;
    DevBuf prof_;  // IGPT_CUDA_PROFILE=1: the fused step's phase timings (decode_fused.cuh)
    cuda::FusedDecodePlan fused_plan_;
    int32_t fused_batch_ = 0;
    std::string last_decode_;  // the path of the last decode step (name())
    // generate(): device-side position, next inputs, outputs by position (T, N[, top_n]) and their pinned mirrors
    DevBuf pos_, next_tok_, prompt_, out_tok_, out_ent_, out_ch_tok_, out_ch_p_;
    HostBuf h_tok_, h_ent_, h_ch_tok_, h_ch_p_;
    int32_t pos_host_ = 0;
    // generate(): the prompt's positions [0, shared_len_) are the same in every sample's cache (fanned out
    // from sequence 0); with IGPT_CUDA_SHARED_KV=1 the fused step reads them from sequence 0 (not measured
    // on a GPU yet, so off by default). 0 outside generate().
    int32_t shared_len_ = 0;
    static bool shared_kv_default() { return cuda::env_is_one("IGPT_CUDA_SHARED_KV"); }
};

void CudaBackend::upload(const Model& model) {
    // Matrices (wte, wpe, projections, head) packed in param_layout() order into one buffer of the weight
    // type, vectors into one f32 buffer, each tensor 256-byte aligned. A trainer can lay gradients and
    // optimizer moments out the same way (same specs, same offsets).
    const size_t wes = cuda::dev_type_size(wt_);
    std::vector<size_t> off(model.specs.size());
    size_t mat_bytes = 0, vec_bytes = 0;
    for (size_t i = 0; i < model.specs.size(); ++i) {
        const ParamSpec& s = model.specs[i];
        size_t& total = s.matrix ? mat_bytes : vec_bytes;
        off[i] = total;
        total += align_up(s.numel * (s.matrix ? wes : 4));
    }
    std::vector<uint8_t> mat_host(mat_bytes, 0), vec_host(vec_bytes, 0);
    for (size_t i = 0; i < model.specs.size(); ++i) {
        const ParamSpec& s = model.specs[i];
        const float* src = model.params.data() + s.offset;
        if (!s.matrix || wt_ == DevType::F32) {
            std::memcpy((s.matrix ? mat_host : vec_host).data() + off[i], src, s.numel * 4);
        } else {
            uint16_t* dst = reinterpret_cast<uint16_t*>(mat_host.data() + off[i]);
            if (wt_ == DevType::F16)
                for (size_t j = 0; j < s.numel; ++j) dst[j] = float_to_half(src[j]);
            else
                for (size_t j = 0; j < s.numel; ++j) dst[j] = float_to_bf16(src[j]);
        }
    }
    mat_.reserve(std::max<size_t>(mat_bytes, 1));
    vec_.reserve(std::max<size_t>(vec_bytes, 1));
    IGPT_CUDA_CHECK(cudaMemcpy(mat_.get(), mat_host.data(), mat_bytes, cudaMemcpyHostToDevice));
    IGPT_CUDA_CHECK(cudaMemcpy(vec_.get(), vec_host.data(), vec_bytes, cudaMemcpyHostToDevice));

    // Host parameter pointer -> device pointer, through the spec that starts there.
    std::unordered_map<size_t, const void*> where;
    for (size_t i = 0; i < model.specs.size(); ++i) {
        const ParamSpec& s = model.specs[i];
        where[s.offset] = static_cast<const char*>(s.matrix ? mat_.get() : vec_.get()) + off[i];
    }
    const float* base = model.params.data();
    auto dev = [&](const float* p) -> const void* { return p ? where.at(size_t(p - base)) : nullptr; };
    auto devf = [&](const float* p) { return static_cast<const float*>(dev(p)); };
    const ParamPtrs hp = model.ptrs();
    w_.sos = devf(hp.sos);
    w_.wte = dev(hp.wte);
    w_.wpe = dev(hp.wpe);
    for (const LayerParams& l : hp.layers) {
        DevLayer d;
        d.ln1_g = devf(l.ln1_g);
        d.qkv_w = dev(l.qkv_w);
        d.qkv_b = devf(l.qkv_b);
        d.proj_w = dev(l.proj_w);
        d.proj_b = devf(l.proj_b);
        d.ln2_g = devf(l.ln2_g);
        d.fc_w = dev(l.fc_w);
        d.fc_b = devf(l.fc_b);
        d.mproj_w = dev(l.mproj_w);
        d.mproj_b = devf(l.mproj_b);
        w_.layers.push_back(d);
    }
    w_.lnf_g = devf(hp.lnf_g);
    w_.head_w = dev(hp.head_w);

    std::vector<cuda::FusedLayerWeights> fl;
    for (const DevLayer& d : w_.layers)
        fl.push_back({d.qkv_w, d.proj_w, d.fc_w, d.mproj_w, d.ln1_g, d.qkv_b, d.proj_b, d.ln2_g, d.fc_b, d.mproj_b});
    fused_layers_.reserve(std::max<size_t>(fl.size() * sizeof(fl[0]), 1));
    IGPT_CUDA_CHECK(cudaMemcpy(fused_layers_.get(), fl.data(), fl.size() * sizeof(fl[0]), cudaMemcpyHostToDevice));
}

// Plans the fused decode step for batch B (not while a graph is being captured: it may allocate).
void CudaBackend::plan_fused(int32_t B) {
    if (!fused_enabled_ || fused_batch_ == B) return;
    const auto& c = cfg_;
    sync();
    fused_plan_ = cuda::plan_fused_decode(at_, B, c.width, c.hidden(), c.heads, c.head_dim(), c.n_ctx());
    fused_batch_ = B;
    if (!fused_plan_.ok) return;
    fused_ws_.reserve(std::max<size_t>(fused_plan_.ws_floats, 1) * 4);
    if (fused_cnt_.reserve(std::max<size_t>(fused_plan_.counters, 1) * 4))
        IGPT_CUDA_CHECK(cudaMemset(fused_cnt_.get(), 0, fused_cnt_.bytes()));
    const char* prof = std::getenv("IGPT_CUDA_PROFILE");
    if (prof && *prof && std::strcmp(prof, "0") != 0 &&
        prof_.reserve(size_t(fused_plan_.grid) * cuda::kFusedProfileSlots * 8))
        IGPT_CUDA_CHECK(cudaMemset(prof_.get(), 0, prof_.bytes()));
}

// IGPT_CUDA_PROFILE=1: the fused step's phase times on stderr (cuda_fused_profile_report).
void CudaBackend::report_profile() {
    if (!prof_.get() || fused_plan_.grid < 1) return;
    std::vector<uint64_t> h(size_t(fused_plan_.grid) * cuda::kFusedProfileSlots);
    if (cudaMemcpy(h.data(), prof_.get(), h.size() * 8, cudaMemcpyDeviceToHost) != cudaSuccess) return;
    std::fputs(cuda_fused_profile_report(h, fused_plan_.grid, fused_batch_).c_str(), stderr);
}

void CudaBackend::ensure_rows(int64_t M) {
    if (M <= rows_) return;
    sync();
    const auto& c = cfg_;
    const size_t m = size_t(M), C = size_t(c.width), H = size_t(c.hidden()), V = size_t(c.vocab);
    x_.reserve(m * C * 4);
    xn_.reserve(m * C * es());
    qkv_.reserve(m * 3 * C * es());
    att_.reserve(m * C * es());
    fch_.reserve(m * H * es());
    logits_.reserve(m * V * 4);
    tok_.reserve(m * 4);
    rows_ = M;
}

void CudaBackend::ensure_decode_workspace(int32_t B) {
    if (B <= ws_batch_) return;
    sync();
    // The smallest chunk has the most splits: enough for any chunk attention_decode_chunk() picks.
    attn_ws_.reserve(cuda::attention_decode_workspace(B, cfg_.heads, cfg_.head_dim(), cfg_.n_ctx(), 64) * 4);
    ws_batch_ = B;
}

void CudaBackend::ensure_generate_buffers(int32_t N, int32_t top_n) {
    sync();
    const size_t TN = size_t(cfg_.n_ctx()) * size_t(N), TNk = TN * size_t(std::max(top_n, 1));
    pos_.reserve(4);
    next_tok_.reserve(size_t(N) * 4);
    prompt_.reserve(size_t(cfg_.n_ctx()) * 4);
    out_tok_.reserve(TN * 4);
    out_ent_.reserve(TN * 4);
    out_ch_tok_.reserve(TNk * 4);
    out_ch_p_.reserve(TNk * 4);
    h_tok_.reserve(TN * 4);
    h_ent_.reserve(TN * 4);
    h_ch_tok_.reserve(TNk * 4);
    h_ch_p_.reserve(TNk * 4);
}

// The model, B sequences of positions [p, p + n): p = pos, or *pos_dev in a captured decode step (n = 1).
// Logits of every position (all_positions) or of the last position of each sequence go to logits_.
void CudaBackend::run_forward(const int32_t* tok_dev, int32_t B, int32_t n, int32_t pos, const int32_t* pos_dev,
                              bool all_positions, bool pool) {
    const auto& c = cfg_;
    const int32_t C = c.width, H = c.hidden(), V = c.vocab, T = c.n_ctx(), NH = c.heads, D = c.head_dim();
    const int32_t M = B * n;
    const float scale = 1.0f / std::sqrt(float(D));
    cudaStream_t s = stream_;
    float* x = x_.as<float>();
    const int32_t chunk = cuda::attention_decode_chunk(B, NH, T, sm_count_);
    pooled_batch_ = pool ? B : 0;
    auto pool_rows = [&](int32_t layer) {
        if (pool) cuda::mean_rows(xn_.get(), at_, B, n, C, pooled_.as<float>() + size_t(layer) * size_t(batch_) * size_t(C), s);
    };

    cuda::embed_tokens(tok_dev, B, n, pos, pos_dev, w_.sos, w_.wte, w_.wpe, wt_, C, x, s);  // x (M, C)
    const bool fused = n == 1 && !pool && fused_ready(B);  // the whole step in one kernel
    if (n == 1) last_decode_ = fused ? fused_path() : "layer-by-layer";
    if (fused) {
        cuda::FusedDecodeArgs a;
        a.t = at_;
        a.B = B;
        a.C = C;
        a.H = H;
        a.NH = NH;
        a.D = D;
        a.T = T;
        a.L = c.layers;
        a.V = V;
        a.eps = c.norm_eps;
        a.scale = scale;
        a.pos = pos;
        a.pos_dev = pos_dev;
        a.shared_len = shared_len_;
        a.shared_src = 0;
        a.layers = fused_layers_.as<const cuda::FusedLayerWeights>();
        a.k_cache = kc_.get();
        a.v_cache = vc_.get();
        a.layer_cache_elems = int64_t(layer_cache_bytes() / es());
        a.x = x;
        a.q = qkv_.get();
        a.att = att_.get();
        a.fch = fch_.get();
        a.lnf_g = w_.lnf_g;
        a.head_w = w_.head_w;
        a.logits = logits_.as<float>();
        a.ws = fused_ws_.as<float>();
        a.counters = fused_cnt_.as<int32_t>();
        a.prof = static_cast<unsigned long long*>(prof_.get());
        cuda::fused_decode(a, fused_plan_, s);
        pooled_batch_ = 0;
        return;
    }
    const float* pending_bias = nullptr;  // the previous projection's bias, added by the next norm
    for (int32_t l = 0; l < c.layers; ++l) {
        const DevLayer& lw = w_.layers[size_t(l)];
        cuda::rms_norm(x, pending_bias, lw.ln1_g, c.norm_eps, M, C, xn_.get(), at_, s);        // attn_norm (M, C)
        pool_rows(l);
        gemm_->nt(M, 3 * C, C, xn_.get(), at_, C, lw.qkv_w, wt_, qkv_.get(), at_, 3 * C);       // qkv (M, 3C)
        cuda::kv_append(qkv_.get(), at_, lw.qkv_b, B, n, pos, pos_dev, NH, D, T, kcache(l), vcache(l), s);
        if (n == 1)                                                                              // att (M, C)
            cuda::attention_decode(qkv_.get(), 3 * C, kcache(l), vcache(l), att_.get(), C, at_, B, pos, pos_dev, NH, D,
                                   T, scale, chunk, attn_ws_.as<float>(), s);
        else
            cuda::attention_prefill(qkv_.get(), 3 * C, kcache(l), vcache(l), att_.get(), C, at_, B, n, pos, NH, D, T,
                                    scale, s);
        gemm_->nt(M, C, C, att_.get(), at_, C, lw.proj_w, wt_, x, DevType::F32, C, 1.0f);      // x += attn_out
        cuda::rms_norm(x, lw.proj_b, lw.ln2_g, c.norm_eps, M, C, xn_.get(), at_, s);           // mlp_norm (M, C)
        gemm_->nt(M, H, C, xn_.get(), at_, C, lw.fc_w, wt_, fch_.get(), at_, H);               // mlp_fc (M, H)
        cuda::bias_quick_gelu(fch_.get(), at_, lw.fc_b, M, H, s);
        gemm_->nt(M, C, H, fch_.get(), at_, H, lw.mproj_w, wt_, x, DevType::F32, C, 1.0f);     // x += mlp_out
        pending_bias = lw.mproj_b;
    }
    cuda::rms_norm(x, pending_bias, w_.lnf_g, c.norm_eps, M, C, xn_.get(), at_, s);            // final norm
    pool_rows(c.layers);
    if (all_positions) {
        gemm_->nt(M, V, C, xn_.get(), at_, C, w_.head_w, wt_, logits_.get(), DevType::F32, V);  // logits (M, V)
    } else {  // the last position of each sequence: rows n-1, 2n-1, ... (row stride n*C)
        const void* last = static_cast<const char*>(xn_.get()) + size_t(n - 1) * size_t(C) * es();
        gemm_->nt(B, V, C, last, at_, int64_t(n) * C, w_.head_w, wt_, logits_.get(), DevType::F32, V);  // (B, V)
    }
}

cuda::SampleArgs CudaBackend::sample_args(const GenerateRequest& rq, int32_t top_n) const {
    cuda::SampleArgs a;
    a.B = rq.n_samples;
    a.V = cfg_.vocab;
    a.temperature = rq.sampler.temperature;
    a.top_k = rq.sampler.top_k;
    a.top_p = rq.sampler.top_p;
    a.seed = rq.seed;
    a.next_tok = next_tok_.as<int32_t>();
    a.out_tok = out_tok_.as<int32_t>();
    a.out_entropy = rq.entropy ? out_ent_.as<float>() : nullptr;
    a.top_n = top_n;
    a.out_choice_tok = out_ch_tok_.as<int32_t>();
    a.out_choice_p = out_ch_p_.as<float>();
    return a;
}

// Enqueues the copy of positions [p0, p1) of the device outputs into the pinned mirrors.
void CudaBackend::copy_out(int32_t p0, int32_t p1, int32_t N, int32_t top_n, bool entropy) {
    const size_t a = size_t(p0) * size_t(N), n = size_t(p1 - p0) * size_t(N);
    IGPT_CUDA_CHECK(cudaMemcpyAsync(h_tok_.as<int32_t>() + a, out_tok_.as<int32_t>() + a, n * 4, cudaMemcpyDeviceToHost, stream_));
    if (entropy)
        IGPT_CUDA_CHECK(cudaMemcpyAsync(h_ent_.as<float>() + a, out_ent_.as<float>() + a, n * 4, cudaMemcpyDeviceToHost, stream_));
    if (top_n > 0) {
        const size_t k = size_t(top_n);
        IGPT_CUDA_CHECK(cudaMemcpyAsync(h_ch_tok_.as<int32_t>() + a * k, out_ch_tok_.as<int32_t>() + a * k, n * k * 4,
                                        cudaMemcpyDeviceToHost, stream_));
        IGPT_CUDA_CHECK(cudaMemcpyAsync(h_ch_p_.as<float>() + a * k, out_ch_p_.as<float>() + a * k, n * k * 4,
                                        cudaMemcpyDeviceToHost, stream_));
    }
}

// Positions [p0, p1) have arrived in the pinned mirrors: into the caller's arrays, then progress.
void CudaBackend::publish(const GenerateRequest& rq, int32_t p0, int32_t p1, int32_t top_n) {
    const int32_t T = cfg_.n_ctx(), N = rq.n_samples;
    for (int32_t p = p0; p < p1; ++p)
        for (int32_t s = 0; s < N; ++s) {
            const size_t src = size_t(p) * size_t(N) + size_t(s), dst = size_t(s) * size_t(T) + size_t(p);
            rq.tokens[dst] = h_tok_.as<int32_t>()[src];
            if (rq.entropy) rq.entropy[dst] = h_ent_.as<float>()[src];
            for (int32_t c = 0; c < top_n; ++c)
                rq.choices[dst * size_t(top_n) + size_t(c)] = {h_ch_tok_.as<int32_t>()[src * size_t(top_n) + size_t(c)],
                                                               h_ch_p_.as<float>()[src * size_t(top_n) + size_t(c)]};
        }
    if (rq.on_progress) rq.on_progress(p1);
}

bool CudaBackend::generate(const GenerateRequest& rq) {
    const auto& c = cfg_;
    const int32_t T = c.n_ctx(), V = c.vocab, N = rq.n_samples, k = rq.n_kept;
    if (V > cuda::kMaxSampleVocab) return false;
    if (N < 1 || k < 0 || k >= T || !rq.tokens || (k > 0 && !rq.prompt) || rq.top_n < 0 || rq.top_n > V)
        throw Error("generate: bad request");
    const int32_t top_n = rq.choices ? rq.top_n : 0;
    auto cancelled = [&] { return rq.cancelled && rq.cancelled(); };
    const auto t0 = Clock::now();

    std::vector<int32_t> in(size_t(k) + 1);  // inputs of positions 0..k: sos, x0 .. x_{k-1}
    in[0] = -1;
    for (int32_t i = 0; i < k; ++i) {
        if (rq.prompt[i] < 0 || rq.prompt[i] >= V) throw Error("generate: prompt token out of the palette's range");
        in[size_t(i) + 1] = rq.prompt[i];
    }
    reset(N);
    // The GPU prefills a whole 1024-position prompt in milliseconds: chunks only as fine as that, since each
    // chunk costs a pass over the weights (cancel is still checked between them).
    const int32_t chunk = std::max(1024, rq.prefill_chunk);
    ensure_rows(std::max<int64_t>(std::min(chunk, k + 1), N));
    ensure_decode_workspace(std::max(N, 1));
    plan_fused(N);
    ensure_generate_buffers(N, top_n);

    // Prefill the shared prompt once (sequence 0), in chunks so that cancel is honoured.
    IGPT_CUDA_CHECK(cudaMemcpyAsync(prompt_.get(), in.data(), in.size() * 4, cudaMemcpyHostToDevice, stream_));
    for (int32_t p0 = 0; p0 <= k; p0 += chunk) {
        if (cancelled()) {
            sync();
            return true;
        }
        const int32_t n = std::min(chunk, k + 1 - p0);
        run_forward(prompt_.as<int32_t>() + p0, 1, n, p0, nullptr, false, false);
    }
    // Position k of every sample from the prompt's logits, then the prompt's cache to every sample.
    cuda::SampleArgs sa = sample_args(rq, top_n);
    sa.logits = logits_.as<float>();
    sa.logits_stride = 0;
    sa.pos = k;
    cuda::sample_tokens(sa, stream_);
    cuda::kv_fanout(kc_.get(), vc_.get(), at_, c.layers, batch_, c.heads, T, c.head_dim(), 0, N, k + 1, stream_);
    struct SharedScope {  // the decode steps below (and their graph) read the prompt from sequence 0
        int32_t& len;
        ~SharedScope() { len = 0; }
    } shared_scope{shared_len_};
    shared_len_ = shared_kv_default() ? k + 1 : 0;
    pos_host_ = k + 1;
    IGPT_CUDA_CHECK(cudaMemcpyAsync(pos_.get(), &pos_host_, 4, cudaMemcpyHostToDevice, stream_));
    copy_out(k, k + 1, N, top_n, rq.entropy != nullptr);
    sync();
    publish(rq, k, k + 1, top_n);
    const auto t1 = Clock::now();
    int32_t pos = k + 1;

    if (pos < T) {
        // One decode step, captured once: inputs next_tok_ at position *pos_, logits, sample, *pos_ += 1.
        GraphExec graph;
        auto capture = [&] {
            cudaGraph_t g = nullptr;
            IGPT_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
            try {
                run_forward(next_tok_.as<int32_t>(), N, 1, 0, pos_.as<int32_t>(), false, false);
                cuda::SampleArgs step = sample_args(rq, top_n);
                step.logits = logits_.as<float>();
                step.logits_stride = V;
                step.pos_dev = pos_.as<int32_t>();
                cuda::sample_tokens(step, stream_);
                cuda::advance_position(pos_.as<int32_t>(), stream_);
            } catch (...) {
                cudaStreamEndCapture(stream_, &g);
                if (g) cudaGraphDestroy(g);
                cudaGetLastError();
                throw;
            }
            IGPT_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
            const cudaError_t e = cudaGraphInstantiate(graph.put(), g, 0);
            cudaGraphDestroy(g);
            IGPT_CUDA_CHECK(e);
        };
        try {
            capture();
        } catch (const Error& e) {
            if (!fused_ready(N)) throw;
            // A driver that cannot capture the cooperative launch: the layer-by-layer step instead.
            std::fprintf(stderr, "igpt: the fused decode step could not be captured (%s); decoding layer by layer\n",
                         e.what());
            fused_enabled_ = false;
            capture();
        }
        // Replay it without waiting; after each row, queue the copy of that row's outputs and an event. At
        // most two rows run ahead of what has been published, so cancel stops within two rows of work.
        const int32_t every = rq.progress_every > 0 ? rq.progress_every : c.image_w;
        struct Pending {
            int32_t p0, p1;
            cudaEvent_t ev;
        };
        Events events(4);
        size_t next_event = 0;
        std::deque<Pending> pending;
        int32_t copied = pos;
        auto queue_row = [&] {
            copy_out(copied, pos, N, top_n, rq.entropy != nullptr);
            const cudaEvent_t ev = events[next_event++];
            IGPT_CUDA_CHECK(cudaEventRecord(ev, stream_));
            pending.push_back({copied, pos, ev});
            copied = pos;
        };
        while (pos < T && !cancelled()) {
            IGPT_CUDA_CHECK(cudaGraphLaunch(graph.get(), stream_));
            ++pos;
            if (pos % every == 0 || pos == T) {
                queue_row();
                while (pending.size() > 2) {
                    IGPT_CUDA_CHECK(cudaEventSynchronize(pending.front().ev));
                    publish(rq, pending.front().p0, pending.front().p1, top_n);
                    pending.pop_front();
                }
            }
        }
        if (copied < pos) queue_row();  // cancelled mid-row: publish what was computed
        sync();
        for (const Pending& p : pending) publish(rq, p.p0, p.p1, top_n);
    }
    if (rq.stats) {
        rq.stats->prefill_s = secs(t0, t1);
        rq.stats->decode_s = secs(t1, Clock::now());
        rq.stats->steps = pos - (k + 1);
    }
    return true;
}

bool gpu_present() {
    // A process-wide fact, asked once: the CUDA runtime reports no device (or no driver) without crashing.
    static const bool present = [] {
        int n = 0;
        const cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) {
            cudaGetLastError();  // clear it
            return false;
        }
        return n > 0;
    }();
    return present;
}

}  // namespace

CudaPrecision cuda_precision_from_name(const std::string& name) {
    if (name == "f16" || name == "fp16") return CudaPrecision::F16;
    if (name == "bf16") return CudaPrecision::BF16;
    if (name == "f32" || name == "fp32") return CudaPrecision::F32;
    throw Error("unknown CUDA precision '" + name + "' (use f16, bf16 or f32)");
}

const char* cuda_precision_name(CudaPrecision p) { return cuda::dev_type_name(dev_type(p)); }

CudaPrecision cuda_default_precision() {
    const char* env = std::getenv("IGPT_CUDA_PRECISION");
    return env && *env ? cuda_precision_from_name(env) : CudaPrecision::F16;
}

std::unique_ptr<Backend> make_cuda_backend(const Model& model, CudaPrecision precision) {
    if (!gpu_present()) throw Error("no CUDA GPU is available (use --device cpu)");
    return std::make_unique<CudaBackend>(model, precision);
}

std::string cuda_fused_profile_report(const std::vector<uint64_t>& slots, int32_t blocks, int32_t batch) {
    constexpr int S = cuda::kFusedProfileSlots;
    if (blocks < 1 || slots.size() < size_t(blocks) * S || slots[11] == 0) return "";
    const double per = 1e3 * double(slots[11]);  // ns -> microseconds per step
    auto at = [&](int32_t block, int slot) { return double(slots[size_t(block) * S + size_t(slot)]) / per; };
    static const char* names[] = {"qkv", "attention", "proj", "fc", "mproj"};
    char buf[160];
    std::snprintf(buf, sizeof buf, "fused decode profile, batch %d, %llu steps, microseconds per step (block 0; + its "
                  "wait at the barrier):", batch, static_cast<unsigned long long>(slots[11]));
    std::string r = buf, all;
    double total = 0;
    for (int i = 0; i < 5; ++i) {
        std::snprintf(buf, sizeof buf, " %s %.1f + %.1f;", names[i], at(0, 2 * i), at(0, 2 * i + 1));
        r += buf;
        total += at(0, 2 * i) + at(0, 2 * i + 1);
        // Across the blocks: the mean and the slowest block's time in the phase, and the shortest wait after
        // it (the last block to arrive waits only for the barrier itself).
        double mean = 0, slowest = 0, least_wait = at(0, 2 * i + 1);
        for (int32_t b = 0; b < blocks; ++b) {
            mean += at(b, 2 * i) / blocks;
            slowest = std::max(slowest, at(b, 2 * i));
            least_wait = std::min(least_wait, at(b, 2 * i + 1));
        }
        std::snprintf(buf, sizeof buf, " %s %.1f mean, %.1f slowest, %.1f barrier;", names[i], mean, slowest,
                      least_wait);
        all += buf;
    }
    total += at(0, 10);
    std::snprintf(buf, sizeof buf, " head %.1f; total %.1f\n", at(0, 10), total);
    r += buf;
    std::snprintf(buf, sizeof buf, "fused decode profile, batch %d, across %d blocks, microseconds per step (time in "
                  "the phase; the least any block waited after it):", batch, blocks);
    return r + buf + all + "\n";
}

int32_t cuda_fused_max_batch() { return cuda::kFusedMaxBatch; }

CudaDeviceInfo cuda_device_info(bool measure_copy) {
    CudaDeviceInfo info;
    if (!gpu_present()) return info;
    cudaDeviceProp prop{};
    IGPT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    info.name = prop.name;
    info.sm_count = prop.multiProcessorCount;
    info.memory_gb = double(prop.totalGlobalMem) / 1e9;
    if (measure_copy) {
        const size_t bytes = size_t(1) << 30;
        DevBuf a, b;
        a.reserve(bytes);
        b.reserve(bytes);
        IGPT_CUDA_CHECK(cudaMemset(a.get(), 1, bytes));
        cudaEvent_t e0, e1;
        IGPT_CUDA_CHECK(cudaEventCreate(&e0));
        IGPT_CUDA_CHECK(cudaEventCreate(&e1));
        float best_ms = 1e30f;
        for (int r = 0; r < 5; ++r) {
            IGPT_CUDA_CHECK(cudaEventRecord(e0));
            IGPT_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice));
            IGPT_CUDA_CHECK(cudaEventRecord(e1));
            IGPT_CUDA_CHECK(cudaEventSynchronize(e1));
            float ms = 0;
            IGPT_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
            best_ms = std::min(best_ms, ms);
        }
        cudaEventDestroy(e0);
        cudaEventDestroy(e1);
        info.copy_gbs = 2.0 * double(bytes) / (double(best_ms) * 1e-3) / 1e9;
    }
    return info;
}

std::vector<int32_t> cuda_sample_rows(const std::vector<float>& logits, int32_t rows, int32_t V,
                                      const SamplerParams& params, uint64_t seed, int32_t pos) {
    if (!gpu_present()) throw Error("no CUDA GPU is available");
    if (rows < 1 || V < 1 || pos < 0 || logits.size() != size_t(rows) * size_t(V)) throw Error("cuda_sample_rows: bad shape");
    DevBuf lg, out;
    lg.reserve(logits.size() * 4);
    out.reserve(size_t(pos + 1) * size_t(rows) * 4);
    IGPT_CUDA_CHECK(cudaMemcpy(lg.get(), logits.data(), logits.size() * 4, cudaMemcpyHostToDevice));
    cuda::SampleArgs a;
    a.logits = lg.as<float>();
    a.logits_stride = V;
    a.B = rows;
    a.V = V;
    a.temperature = params.temperature;
    a.top_k = params.top_k;
    a.top_p = params.top_p;
    a.seed = seed;
    a.pos = pos;
    a.out_tok = out.as<int32_t>();
    cuda::sample_tokens(a, nullptr);
    std::vector<int32_t> tok(static_cast<size_t>(rows));
    IGPT_CUDA_CHECK(cudaMemcpy(tok.data(), out.as<int32_t>() + size_t(pos) * size_t(rows), size_t(rows) * 4,
                               cudaMemcpyDeviceToHost));
    return tok;
}

IGPT_EMU_NAMESPACE_END

#ifndef IGPT_CUDA_EMU  // (declared in backend.h; the emulated copy answers through gpu_present)
bool cuda_available() { return gpu_present(); }
#endif

}  // namespace igpt
