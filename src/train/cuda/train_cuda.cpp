// CUDA StepCompute (see train_cuda.h): the CPU trainer's Net::forward / Net::backward, for a whole batch at
// once, on the device. Activations of every layer are kept for the backward pass; with the batched-GEMM
// attention that includes its probabilities, B * heads * T * T floats a layer, while flash attention
// (flash_attn.cuh) keeps one float per query and head instead.
#include "train_cuda.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backend.h"
#include "cuda/common.cuh"
#include "error.h"
#include "flash_attn.cuh"
#include "train_kernels.cuh"
#include "trainer.h"

namespace igpt::train {
IGPT_EMU_NAMESPACE_BEGIN

namespace {

namespace ct = igpt::cuda::train;

ct::GemmMath math_from_name(const std::string& s) {
    if (s == "f32" || s == "fp32") return ct::GemmMath::F32;
    if (s == "tf32") return ct::GemmMath::TF32;
    if (s == "bf16") return ct::GemmMath::BF16;
    if (s == "mixed") return ct::GemmMath::MIXED;
    throw Error("unknown CUDA training precision '" + s + "' (use mixed, bf16, tf32 or f32)");
}

// Device buffers of one size class, freed together.
class Arena {
public:
    Arena() = default;
    ~Arena() { release(); }
    Arena(const Arena&) = delete;
    Arena& operator=(const Arena&) = delete;
    template <typename T> T* get(size_t n) {
        void* p = nullptr;
        const cudaError_t e = cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T));
        if (e != cudaSuccess) {
            cudaGetLastError();
            throw Error("CUDA trainer: out of GPU memory allocating " + std::to_string(n * sizeof(T) >> 20) +
                        " MB (" + std::to_string(total_ >> 20) + " MB already held); use a smaller --batch");
        }
        ptrs_.push_back(p);
        total_ += n * sizeof(T);
        return static_cast<T*>(p);
    }
    void release() {
        for (void* p : ptrs_) cudaFree(p);
        ptrs_.clear();
        total_ = 0;
    }
    size_t bytes() const { return total_; }

private:
    std::vector<void*> ptrs_;
    size_t total_ = 0;
};

// IGPT_CUDA_PROFILE=1: the time the steps spend in the GEMMs, the attention and the optimizer, from CUDA
// events around them (they do not synchronise), and the FLOPs the GEMMs and attention did; the rest of a step
// (norms, GELU, biases, embedding, loss, copies) is its total minus these.
class StepProfile {
public:
    enum Part { kGemm, kAttention, kOptimizer, kStep, kParts };

    StepProfile() : on_(cuda::env_is_one("IGPT_CUDA_PROFILE")) {}
    ~StepProfile() {
        for (cudaEvent_t e : pool_) cudaEventDestroy(e);
    }
    StepProfile(const StepProfile&) = delete;
    StepProfile& operator=(const StepProfile&) = delete;

    void begin(Part p, cudaStream_t s) {
        if (on_) open_[p] = record(s);
    }
    void end(Part p, cudaStream_t s, double flops = 0) {
        if (!on_) return;
        spans_.push_back({p, open_[p], record(s), flops});
    }
    // After the stream has finished (the step's own synchronisation): the spans into the sums, or (keep
    // false: work that is not a training step, such as an evaluation) dropped.
    void collect(bool keep = true) {
        if (!on_) return;
        for (const Span& sp : spans_) {
            if (!keep) continue;
            float ms = 0;
            IGPT_CUDA_CHECK(cudaEventElapsedTime(&ms, sp.a, sp.b));
            ms_[sp.part] += ms;
            flops_[sp.part] += sp.flops;
            if (sp.part == kStep) ++steps_;
        }
        spans_.clear();
        used_ = 0;
    }
    std::string report() {
        if (!on_ || steps_ == 0) return {};
        collect();
        const double n = double(steps_), step = ms_[kStep] / n;
        auto part = [&](const char* name, Part p) {
            char b[160];
            const double ms = ms_[p] / n;
            std::snprintf(b, sizeof b, "%s %.2f ms (%.0f%%", name, ms, 100.0 * ms / step);
            std::string r = b;
            if (flops_[p] > 0) {
                std::snprintf(b, sizeof b, ", %.0f TFLOP/s", flops_[p] / n / (ms * 1e9));
                r += b;
            }
            return r + ")";
        };
        const double other = step - (ms_[kGemm] + ms_[kAttention] + ms_[kOptimizer]) / n;
        char tail[160];
        std::snprintf(tail, sizeof tail, ", other %.2f ms (%.0f%%); per step of %.2f ms, over %d", other,
                      100.0 * other / step, step, steps_);
        std::string r = "profile: " + part("GEMMs", kGemm) + ", " + part("attention", kAttention) + ", " +
                        part("optimizer", kOptimizer) + tail;
        for (int i = 0; i < kParts; ++i) ms_[i] = flops_[i] = 0;  // a fresh start
        steps_ = 0;
        return r;
    }

private:
    struct Span {
        Part part;
        cudaEvent_t a, b;
        double flops;
    };
    cudaEvent_t record(cudaStream_t s) {
        if (used_ == pool_.size()) {
            cudaEvent_t e;
            IGPT_CUDA_CHECK(cudaEventCreate(&e));
            pool_.push_back(e);
        }
        cudaEvent_t e = pool_[used_++];
        IGPT_CUDA_CHECK(cudaEventRecord(e, s));
        return e;
    }
    bool on_ = false;
    std::vector<cudaEvent_t> pool_;
    size_t used_ = 0;
    std::vector<Span> spans_;
    cudaEvent_t open_[kParts] = {};
    double ms_[kParts] = {}, flops_[kParts] = {};
    int steps_ = 0;
};

// One layer's activations, kept for the backward pass. The void* ones are f32, or bf16 (uint16_t) with
// --cuda-math mixed (the forward and backward take their type as a template argument); the residual stream
// and the norms' statistics are always f32.
struct LayerBufs {
    void *ln1, *qkv, *atty, *ln2, *fc, *fc_act;
    float *rstd1, *res_mid, *rstd2;
    float* att;   // batched-GEMM attention: its probabilities (B*NH, T, T)
    float* lse2;  // flash attention, instead: (B*NH, T) log-sum-exps
};

template <typename A> A* as(void* p) { return static_cast<A*>(p); }

class CudaTrainCompute final : public StepCompute {
public:
    CudaTrainCompute(const ModelConfig& cfg, ct::GemmMath math, bool flash)
        : cfg_(cfg), math_(math), flash_(flash), mixed_(math == ct::GemmMath::MIXED) {
        n_params_ = 0;
        for (const ParamSpec& s : param_layout(cfg)) n_params_ = std::max(n_params_, s.offset + s.numel);
        cudaDeviceProp prop{};
        IGPT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
        device_ = prop.name;
        IGPT_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
        if (cublasCreate(&blas_) != CUBLAS_STATUS_SUCCESS) {
            cudaStreamDestroy(s_);
            throw Error("cuBLAS: cublasCreate failed");
        }
        cublasSetStream(blas_, s_);
        try {
            params_ = fixed_.get<float>(n_params_);
            grads_ = fixed_.get<float>(n_params_);
            if (mixed_) params_h_ = fixed_.get<uint16_t>(n_params_);
            IGPT_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_grads_), n_params_ * sizeof(float)));
        } catch (...) {
            cublasDestroy(blas_);
            cudaStreamDestroy(s_);
            throw;
        }
        w_ = bind_weights<float>(cfg_, params_);
        g_ = bind_weights<float>(cfg_, grads_);
    }

    ~CudaTrainCompute() override {
        cudaStreamSynchronize(s_);
        if (host_grads_) cudaFreeHost(host_grads_);
        if (host_tok_) cudaFreeHost(host_tok_);
        cublasDestroy(blas_);
        cudaStreamDestroy(s_);
    }

    std::string describe() const override {
        return "cuda (" + device_ + "), " +
               (mixed_ ? std::string("bf16 GEMMs on bf16 activations and weight copies")
                       : ct::gemm_math_name(math_) + std::string(" GEMMs on f32")) +
               ", " + (flash_ ? "flash attention" : "attention as batched GEMMs") + ", fp32 weights and AdamW on the GPU";
    }

    bool device_optimizer() const override { return true; }

    void set_state(const float* params, const float* m, const float* v, const uint8_t* mask) override {
        if (!m_) {
            m_ = fixed_.get<float>(n_params_);
            v_ = fixed_.get<float>(n_params_);
            mask_ = fixed_.get<uint8_t>(n_params_);
            stats_ = fixed_.get<double>(2);
        }
        IGPT_CUDA_CHECK(cudaMemcpyAsync(params_, params, n_params_ * 4, cudaMemcpyHostToDevice, s_));
        IGPT_CUDA_CHECK(cudaMemcpyAsync(m_, m, n_params_ * 4, cudaMemcpyHostToDevice, s_));
        IGPT_CUDA_CHECK(cudaMemcpyAsync(v_, v, n_params_ * 4, cudaMemcpyHostToDevice, s_));
        IGPT_CUDA_CHECK(cudaMemcpyAsync(mask_, mask, n_params_, cudaMemcpyHostToDevice, s_));
        IGPT_CUDA_CHECK(cudaStreamSynchronize(s_));
        weights_changed_ = true;
    }

    void get_state(float* params, float* m, float* v) override {
        if (!m_) throw Error("CUDA trainer: get_state before set_state");
        IGPT_CUDA_CHECK(cudaMemcpyAsync(params, params_, n_params_ * 4, cudaMemcpyDeviceToHost, s_));
        IGPT_CUDA_CHECK(cudaMemcpyAsync(m, m_, n_params_ * 4, cudaMemcpyDeviceToHost, s_));
        IGPT_CUDA_CHECK(cudaMemcpyAsync(v, v_, n_params_ * 4, cudaMemcpyDeviceToHost, s_));
        IGPT_CUDA_CHECK(cudaStreamSynchronize(s_));
    }

    // One optimizer step with one host round trip (the two statistics at the end).
    StepStats train_step(const int32_t* tokens, int32_t B, int32_t accum, float scale, float clip, int64_t t, float lr,
                         float beta1, float beta2, float eps, float weight_decay) override {
        if (!m_) throw Error("CUDA trainer: train_step before set_state");
        const size_t n_tok = size_t(accum) * size_t(B) * size_t(cfg_.n_ctx());
        check_tokens(tokens, n_tok);
        if (B > batch_) allocate(B);
        if (n_tok > step_tok_n_) {
            IGPT_CUDA_CHECK(cudaStreamSynchronize(s_));
            step_tok_ = fixed_.get<int32_t>(n_tok);  // the old one stays allocated until destruction: rare
            if (host_tok_) cudaFreeHost(host_tok_);
            host_tok_ = nullptr;
            IGPT_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&host_tok_), n_tok * 4));
            step_tok_n_ = n_tok;
        }
        std::memcpy(host_tok_, tokens, n_tok * 4);  // pinned: the copy below is asynchronous
        prof_.begin(StepProfile::kStep, s_);
        IGPT_CUDA_CHECK(cudaMemcpyAsync(step_tok_, host_tok_, n_tok * 4, cudaMemcpyHostToDevice, s_));
        IGPT_CUDA_CHECK(cudaMemsetAsync(grads_, 0, n_params_ * 4, s_));
        IGPT_CUDA_CHECK(cudaMemsetAsync(stats_, 0, 2 * sizeof(double), s_));
        const int64_t M = int64_t(B) * cfg_.n_ctx();
        for (int32_t a = 0; a < accum; ++a) {
            cur_tok_ = step_tok_ + size_t(a) * size_t(M);
            forward(B, true, scale);
            backward(B);
            ct::sum_into(row_nll_, M, stats_, s_);
        }
        cur_tok_ = tok_;
        prof_.begin(StepProfile::kOptimizer, s_);
        ct::sum_squares_into(grads_, int64_t(n_params_), stats_ + 1, s_);
        ct::AdamWArgs aw;
        aw.lr = lr;
        aw.beta1 = beta1;
        aw.beta2 = beta2;
        aw.eps = eps;
        aw.weight_decay = weight_decay;
        aw.clip = clip;
        aw.t = t;
        ct::adamw(params_, grads_, m_, v_, mask_, int64_t(n_params_), stats_ + 1, aw, s_);
        weights_changed_ = true;
        prof_.end(StepProfile::kOptimizer, s_);
        prof_.end(StepProfile::kStep, s_);
        double h[2] = {0, 0};
        IGPT_CUDA_CHECK(cudaMemcpyAsync(h, stats_, sizeof h, cudaMemcpyDeviceToHost, s_));
        IGPT_CUDA_CHECK(cudaStreamSynchronize(s_));
        prof_.collect();
        return {h[0], std::sqrt(h[1])};
    }

    double forward_backward(const float* params, const int32_t* tokens, int32_t B, float scale,
                            float* grads) override {
        prepare(params, tokens, B);
        prof_.begin(StepProfile::kStep, s_);
        IGPT_CUDA_CHECK(cudaMemsetAsync(grads_, 0, n_params_ * sizeof(float), s_));
        forward(B, true, scale);
        backward(B);
        prof_.end(StepProfile::kStep, s_);
        IGPT_CUDA_CHECK(cudaMemcpyAsync(host_grads_, grads_, n_params_ * sizeof(float), cudaMemcpyDeviceToHost, s_));
        const double nats = sum_nll(B, nullptr);  // synchronises
        prof_.collect();
        for (size_t i = 0; i < n_params_; ++i) grads[i] += host_grads_[i];
        return nats;
    }

    std::string profile() override { return prof_.report(); }

    double forward_nll(const float* params, const int32_t* tokens, int32_t B, float* pixel_nats) override {
        prepare(params, tokens, B);
        forward(B, false, 0.0f);
        const double nats = sum_nll(B, pixel_nats);  // synchronises
        prof_.collect(false);
        return nats;
    }

private:
    // The check Net::forward makes on the CPU, before anything reaches the device.
    void check_tokens(const int32_t* tokens, size_t n) const {
        for (size_t i = 0; i < n; ++i)
            if (tokens[i] < 0 || tokens[i] >= cfg_.vocab) throw Error("trainer: token out of range of the palette");
    }

    // Uploads the parameters and tokens; (re)allocates the activations for batch B.
    void prepare(const float* params, const int32_t* tokens, int32_t B) {
        const int32_t T = cfg_.n_ctx();
        if (B < 1) throw Error("CUDA trainer: batch must be at least 1");
        check_tokens(tokens, size_t(B) * size_t(T));
        if (B > batch_) allocate(B);
        IGPT_CUDA_CHECK(cudaMemcpyAsync(params_, params, n_params_ * sizeof(float), cudaMemcpyHostToDevice, s_));
        weights_changed_ = true;
        IGPT_CUDA_CHECK(cudaMemcpyAsync(tok_, tokens, size_t(B) * size_t(T) * 4, cudaMemcpyHostToDevice, s_));
        cur_tok_ = tok_;
    }

    void allocate(int32_t B) {
        IGPT_CUDA_CHECK(cudaStreamSynchronize(s_));
        act_.release();
        batch_ = 0;
        const size_t T = size_t(cfg_.n_ctx()), C = size_t(cfg_.width), H = size_t(cfg_.hidden()),
                     V = size_t(cfg_.vocab), NH = size_t(cfg_.heads), M = size_t(B) * T;
        tok_ = act_.get<int32_t>(M);
        res_.clear();
        for (int32_t l = 0; l <= cfg_.layers; ++l) res_.push_back(act_.get<float>(M * C));
        layers_.clear();
        // f32, or bf16 with mixed
        auto typed = [&](size_t n) -> void* {
            return mixed_ ? static_cast<void*>(act_.get<uint16_t>(n)) : static_cast<void*>(act_.get<float>(n));
        };
        for (int32_t l = 0; l < cfg_.layers; ++l) {
            LayerBufs b;
            b.ln1 = typed(M * C);
            b.rstd1 = act_.get<float>(M);
            b.qkv = typed(M * 3 * C);
            b.att = flash_ ? nullptr : act_.get<float>(size_t(B) * NH * T * T);
            b.lse2 = flash_ ? act_.get<float>(size_t(B) * NH * T) : nullptr;
            b.atty = typed(M * C);
            b.res_mid = act_.get<float>(M * C);
            b.ln2 = typed(M * C);
            b.rstd2 = act_.get<float>(M);
            b.fc = typed(M * H);
            b.fc_act = typed(M * H);
            layers_.push_back(b);
        }
        lnf_ = typed(M * C);
        rstdf_ = act_.get<float>(M);
        logits_ = act_.get<float>(M * V);
        row_nll_ = act_.get<float>(M);
        if (flash_) {
            delta_ = act_.get<float>(size_t(B) * NH * T);
        } else {
            for (float*& h : heads_) h = act_.get<float>(M * C);  // q k v o dq dk dv do, each (B*NH, T, D)
            dP_ = act_.get<float>(size_t(B) * NH * T * T);
        }
        dres_ = act_.get<float>(M * C);
        dln_ = act_.get<float>(M * C);
        datty_ = typed(M * C);  // the gradients that feed GEMMs and attention
        dfc_ = typed(M * H);
        dqkv_ = typed(M * 3 * C);
        if (mixed_) {  // bf16 copies of f32 gradients, as GEMM inputs
            dres_h_ = act_.get<uint16_t>(M * C);
            dlogits_h_ = act_.get<uint16_t>(M * V);
        }
        host_nll_.resize(M);
        batch_ = B;
    }

    // The bf16 copy of weight W (a pointer into params_), for mixed.
    const uint16_t* wh(const float* W) const { return params_h_ + (W - params_); }

    // Row-major Y (M, N) = X (M, K) · W (N, K)^T, into Y (f32) with beta. X: f32, or bf16 (with W's copy).
    void linear(const float* X, const float* W, float* Y, int64_t M, int64_t K, int64_t N, float beta = 0.0f) {
        prof_.begin(StepProfile::kGemm, s_);
        ct::gemm_rm(blas_, math_, false, true, M, N, K, 1.0f, X, K, 0, W, K, 0, beta, Y, N, 0);
        prof_.end(StepProfile::kGemm, s_, 2.0 * double(M) * double(N) * double(K));
    }
    template <typename Y_>  // f32 (beta may add into it) or bf16 (beta 0) output
    void linear(const uint16_t* X, const float* W, Y_* Y, int64_t M, int64_t K, int64_t N, float beta = 0.0f) {
        prof_.begin(StepProfile::kGemm, s_);
        ct::gemm_bf16(blas_, false, true, M, N, K, 1.0f, X, K, wh(W), K, beta, Y, N);
        prof_.end(StepProfile::kGemm, s_, 2.0 * double(M) * double(N) * double(K));
    }
    // dX = dY W (skipped when dX is null), dW += dY^T X, db += column sums of dY.
    void linear_back(const float* dY, const float* X, const float* W, int64_t M, int64_t K, int64_t N, float* dX,
                     float* dW, float* db) {
        prof_.begin(StepProfile::kGemm, s_);
        if (dX) ct::gemm_rm(blas_, math_, false, false, M, K, N, 1.0f, dY, N, 0, W, K, 0, 0.0f, dX, K, 0);
        ct::gemm_rm(blas_, math_, true, false, N, K, M, 1.0f, dY, N, 0, X, K, 0, 1.0f, dW, K, 0);
        prof_.end(StepProfile::kGemm, s_, (dX ? 4.0 : 2.0) * double(M) * double(N) * double(K));
        if (db) ct::bias_grad(dY, M, int32_t(N), db, s_);
    }
    template <typename DX>  // f32 or bf16
    void linear_back(const uint16_t* dY, const uint16_t* X, const float* W, int64_t M, int64_t K, int64_t N, DX* dX,
                     float* dW, float* db) {
        prof_.begin(StepProfile::kGemm, s_);
        if (dX) ct::gemm_bf16(blas_, false, false, M, K, N, 1.0f, dY, N, wh(W), K, 0.0f, dX, K);
        ct::gemm_bf16(blas_, true, false, N, K, M, 1.0f, dY, N, X, K, 1.0f, dW, K);
        prof_.end(StepProfile::kGemm, s_, (dX ? 4.0 : 2.0) * double(M) * double(N) * double(K));
        if (db) ct::bias_grad(dY, M, int32_t(N), db, s_);
    }

    // An f32 gradient as a GEMM input of type A: itself, or its bf16 copy in `h` (mixed).
    template <typename A> const A* gemm_input(float* g, int64_t n, uint16_t* h) {
        if constexpr (std::is_same_v<A, float>) {
            return g;
        } else {
            ct::to_bf16(g, n, h, s_);
            return h;
        }
    }

    // Causal self-attention of one layer, per (image, head): a.atty (B*T, C) from a.qkv (B*T, 3C).
    template <typename A> void attention_forward(const LayerBufs& a, int32_t B) {
        const int32_t T = cfg_.n_ctx(), C = cfg_.width, NH = cfg_.heads, D = cfg_.head_dim();
        const float att_scale = 1.0f / std::sqrt(float(D));
        prof_.begin(StepProfile::kAttention, s_);
        if (flash_) ct::flash_forward(as<A>(a.qkv), B, T, NH, D, att_scale, as<A>(a.atty), a.lse2, s_);
        else if constexpr (std::is_same_v<A, float>) attention_forward_gemm(a, B, T, C, NH, D, att_scale);
        prof_.end(StepProfile::kAttention, s_, attention_flops(B));
    }
    // The causal attention's useful FLOPs, forward (q k^T and P v over the keys each query sees); the
    // backward is counted as 2.5 times that, as FlashAttention's papers do.
    double attention_flops(int32_t B) const {
        const double T = cfg_.n_ctx();
        return 4.0 * double(B) * cfg_.heads * cfg_.head_dim() * T * (T + 1) / 2;
    }
    void attention_forward_gemm(const LayerBufs& a, int32_t B, int32_t T, int32_t C, int32_t NH, int32_t D,
                                float att_scale) {
        const int64_t BH = int64_t(B) * NH, TT = int64_t(T) * T, TD = int64_t(T) * D;
        float *q = heads_[0], *k = heads_[1], *v = heads_[2], *o = heads_[3];
        const float* qkv = as<float>(a.qkv);
        ct::to_heads(qkv, 3 * C, 0, B, T, NH, D, q, s_);
        ct::to_heads(qkv, 3 * C, C, B, T, NH, D, k, s_);
        ct::to_heads(qkv, 3 * C, 2 * C, B, T, NH, D, v, s_);
        // S = q k^T (raw), P = causal softmax(scale S), o = P v; per (image, head).
        ct::gemm_rm(blas_, math_, false, true, T, T, D, 1.0f, q, D, TD, k, D, TD, 0.0f, a.att, T, TT, BH);
        ct::causal_softmax(a.att, BH, T, att_scale, s_);
        ct::gemm_rm(blas_, math_, false, false, T, D, T, 1.0f, a.att, T, TT, v, D, TD, 0.0f, o, D, TD, BH);
        ct::from_heads(o, B, T, NH, D, as<float>(a.atty), C, 0, s_);
    }

    // Its backward: dqkv (B*T, 3C, overwritten) from datty (B*T, C).
    template <typename A> void attention_backward(const LayerBufs& a, int32_t B, const A* datty, A* dqkv) {
        const int32_t T = cfg_.n_ctx(), C = cfg_.width, NH = cfg_.heads, D = cfg_.head_dim();
        const float att_scale = 1.0f / std::sqrt(float(D));
        prof_.begin(StepProfile::kAttention, s_);
        if (flash_)
            ct::flash_backward(as<A>(a.qkv), as<A>(a.atty), datty, a.lse2, B, T, NH, D, att_scale, delta_, dqkv, s_);
        else if constexpr (std::is_same_v<A, float>) attention_backward_gemm(a, B, T, C, NH, D, att_scale);
        prof_.end(StepProfile::kAttention, s_, 2.5 * attention_flops(B));
    }
    void attention_backward_gemm(const LayerBufs& a, int32_t B, int32_t T, int32_t C, int32_t NH, int32_t D,
                                 float att_scale) {
        const int64_t BH = int64_t(B) * NH, TT = int64_t(T) * T, TD = int64_t(T) * D;
        float *q = heads_[0], *k = heads_[1], *v = heads_[2], *dq = heads_[4], *dk = heads_[5], *dv = heads_[6],
              *dO = heads_[7];
        ct::to_heads(as<float>(datty_), C, 0, B, T, NH, D, dO, s_);
        const float* qkv = as<float>(a.qkv);
        ct::to_heads(qkv, 3 * C, 0, B, T, NH, D, q, s_);
        ct::to_heads(qkv, 3 * C, C, B, T, NH, D, k, s_);
        ct::to_heads(qkv, 3 * C, 2 * C, B, T, NH, D, v, s_);
        // dV = P^T dO; dP = dO V^T; dS = scale P (dP - rowsum(P dP)); dQ = dS K; dK = dS^T Q
        ct::gemm_rm(blas_, math_, true, false, T, D, T, 1.0f, a.att, T, TT, dO, D, TD, 0.0f, dv, D, TD, BH);
        ct::gemm_rm(blas_, math_, false, true, T, T, D, 1.0f, dO, D, TD, v, D, TD, 0.0f, dP_, T, TT, BH);
        ct::softmax_backward(dP_, a.att, BH, T, att_scale, s_);
        ct::gemm_rm(blas_, math_, false, false, T, D, T, 1.0f, dP_, T, TT, k, D, TD, 0.0f, dq, D, TD, BH);
        ct::gemm_rm(blas_, math_, true, false, T, D, T, 1.0f, dP_, T, TT, q, D, TD, 0.0f, dk, D, TD, BH);
        float* dqkv = as<float>(dqkv_);  // (f32 only: mixed runs flash attention)
        ct::from_heads(dq, B, T, NH, D, dqkv, 3 * C, 0, s_);
        ct::from_heads(dk, B, T, NH, D, dqkv, 3 * C, C, s_);
        ct::from_heads(dv, B, T, NH, D, dqkv, 3 * C, 2 * C, s_);
    }

    void forward(int32_t B, bool grad, float scale) {
        if (!mixed_) return forward_t<float>(B, grad, scale);
        if (weights_changed_) {  // the GEMMs' copy, once an optimizer step
            prof_.begin(StepProfile::kOptimizer, s_);
            ct::to_bf16(params_, int64_t(n_params_), params_h_, s_);
            prof_.end(StepProfile::kOptimizer, s_);
        }
        weights_changed_ = false;
        forward_t<uint16_t>(B, grad, scale);
    }
    void backward(int32_t B) { mixed_ ? backward_t<uint16_t>(B) : backward_t<float>(B); }

    // A: the GEMM inputs' storage, float or uint16_t (bf16).
    template <typename A> void forward_t(int32_t B, bool grad, float scale) {
        const int32_t T = cfg_.n_ctx(), C = cfg_.width, H = cfg_.hidden(), V = cfg_.vocab;
        const int64_t M = int64_t(B) * T;
        const float eps = cfg_.norm_eps;
        ct::embed_forward(cur_tok_, B, T, C, w_.sos, w_.wte, w_.wpe, res_[0], s_);
        for (int32_t l = 0; l < cfg_.layers; ++l) {
            const LayerWeights<float>& lw = w_.layers[size_t(l)];
            const LayerBufs& a = layers_[size_t(l)];
            const float* x = res_[size_t(l)];
            ct::rmsnorm_forward(x, lw.ln1_g, eps, M, C, as<A>(a.ln1), a.rstd1, s_);
            linear(as<A>(a.ln1), lw.qkv_w, as<A>(a.qkv), M, C, 3 * C);
            if (lw.qkv_b) ct::add_bias(as<A>(a.qkv), lw.qkv_b, M, 3 * C, s_);
            attention_forward<A>(a, B);  // a.qkv -> a.atty
            // res_mid = x + atty proj^T + b
            IGPT_CUDA_CHECK(cudaMemcpyAsync(a.res_mid, x, size_t(M) * C * 4, cudaMemcpyDeviceToDevice, s_));
            linear(as<A>(a.atty), lw.proj_w, a.res_mid, M, C, C, 1.0f);
            if (lw.proj_b) ct::add_bias(a.res_mid, lw.proj_b, M, C, s_);
            ct::rmsnorm_forward(a.res_mid, lw.ln2_g, eps, M, C, as<A>(a.ln2), a.rstd2, s_);
            linear(as<A>(a.ln2), lw.fc_w, as<A>(a.fc), M, C, H);
            if (lw.fc_b) ct::add_bias(as<A>(a.fc), lw.fc_b, M, H, s_);
            ct::gelu_forward(as<A>(a.fc), M * H, as<A>(a.fc_act), s_);
            float* out = res_[size_t(l) + 1];
            IGPT_CUDA_CHECK(cudaMemcpyAsync(out, a.res_mid, size_t(M) * C * 4, cudaMemcpyDeviceToDevice, s_));
            linear(as<A>(a.fc_act), lw.mproj_w, out, M, H, C, 1.0f);
            if (lw.mproj_b) ct::add_bias(out, lw.mproj_b, M, C, s_);
        }
        ct::rmsnorm_forward(res_[size_t(cfg_.layers)], w_.lnf_g, eps, M, C, as<A>(lnf_), rstdf_, s_);
        linear(as<A>(lnf_), w_.head_w, logits_, M, C, V);
        ct::cross_entropy(logits_, cur_tok_, M, V, scale, grad, row_nll_, s_);  // logits_ -> dlogits with grad
    }

    template <typename A> void backward_t(int32_t B) {
        const int32_t T = cfg_.n_ctx(), C = cfg_.width, H = cfg_.hidden(), V = cfg_.vocab;
        const int64_t M = int64_t(B) * T;
        IGPT_CUDA_CHECK(cudaMemsetAsync(dres_, 0, size_t(M) * C * 4, s_));
        const A* dlogits = gemm_input<A>(logits_, M * V, dlogits_h_);  // cross_entropy left d(logits) there
        linear_back(dlogits, as<A>(lnf_), w_.head_w, M, C, V, dln_, g_.head_w, nullptr);
        ct::rmsnorm_backward(dln_, res_[size_t(cfg_.layers)], w_.lnf_g, rstdf_, M, C, dres_, g_.lnf_g, s_);
        A *dfc = as<A>(dfc_), *datty = as<A>(datty_), *dqkv = as<A>(dqkv_);
        for (int32_t l = cfg_.layers - 1; l >= 0; --l) {
            const LayerWeights<float>& lw = w_.layers[size_t(l)];
            const LayerWeights<float>& lg = g_.layers[size_t(l)];
            const LayerBufs& a = layers_[size_t(l)];
            // MLP branch: res[l+1] = res_mid + mproj(gelu(fc(norm(res_mid)))); biases' gradients from f32 dres_
            linear_back(gemm_input<A>(dres_, M * C, dres_h_), as<A>(a.fc_act), lw.mproj_w, M, H, C, dfc, lg.mproj_w,
                        nullptr);
            if (lg.mproj_b) ct::bias_grad(dres_, M, C, lg.mproj_b, s_);
            ct::gelu_backward(dfc, as<A>(a.fc), M * H, dfc, s_);  // in place
            linear_back(dfc, as<A>(a.ln2), lw.fc_w, M, C, H, dln_, lg.fc_w, lg.fc_b);
            ct::rmsnorm_backward(dln_, a.res_mid, lw.ln2_g, a.rstd2, M, C, dres_, lg.ln2_g, s_);
            // attention branch: res_mid = res[l] + proj(attn(qkv(norm(res[l]))))
            linear_back(gemm_input<A>(dres_, M * C, dres_h_), as<A>(a.atty), lw.proj_w, M, C, C, datty, lg.proj_w,
                        nullptr);
            if (lg.proj_b) ct::bias_grad(dres_, M, C, lg.proj_b, s_);
            attention_backward<A>(a, B, datty, dqkv);
            linear_back(dqkv, as<A>(a.ln1), lw.qkv_w, M, C, 3 * C, dln_, lg.qkv_w, lg.qkv_b);
            ct::rmsnorm_backward(dln_, res_[size_t(l)], lw.ln1_g, a.rstd1, M, C, dres_, lg.ln1_g, s_);
        }
        ct::embed_backward(dres_, cur_tok_, B, T, C, g_.sos, g_.wte, g_.wpe, s_);
    }

    // Waits for the stream; the sum of the rows' nll (and each row's, into pixel_nats when non-null).
    double sum_nll(int32_t B, float* pixel_nats) {
        const size_t M = size_t(B) * size_t(cfg_.n_ctx());
        IGPT_CUDA_CHECK(cudaMemcpyAsync(host_nll_.data(), row_nll_, M * 4, cudaMemcpyDeviceToHost, s_));
        IGPT_CUDA_CHECK(cudaStreamSynchronize(s_));
        double total = 0;
        for (size_t i = 0; i < M; ++i) total += double(host_nll_[i]);
        if (pixel_nats) std::memcpy(pixel_nats, host_nll_.data(), M * 4);
        return total;
    }

    ModelConfig cfg_;
    ct::GemmMath math_;
    bool flash_ = false;  // flash attention (flash_attn.cuh) instead of batched GEMMs
    bool mixed_ = false;  // GEMM inputs in bf16 (math_ MIXED; always with flash_)
    bool weights_changed_ = true;  // params_ moved since params_h_ was made
    StepProfile prof_;
    std::string device_;
    size_t n_params_ = 0;
    cudaStream_t s_ = nullptr;
    cublasHandle_t blas_ = nullptr;
    Arena fixed_, act_;
    float *params_ = nullptr, *grads_ = nullptr, *host_grads_ = nullptr;
    uint16_t* params_h_ = nullptr;  // mixed: the weights in bf16, for the GEMMs
    Weights<float> w_, g_;  // device pointers in the flat layout
    int32_t batch_ = 0;
    int32_t* tok_ = nullptr;       // the batch of forward_backward / forward_nll
    int32_t* cur_tok_ = nullptr;   // the micro-batch the kernels read
    int32_t* step_tok_ = nullptr;  // train_step's (accum, B, T) tokens, and their pinned staging
    int32_t* host_tok_ = nullptr;
    size_t step_tok_n_ = 0;
    float *m_ = nullptr, *v_ = nullptr;  // AdamW moments (device optimizer)
    uint8_t* mask_ = nullptr;
    double* stats_ = nullptr;            // [sum of nll, sum of squared gradients] of a train_step
    std::vector<float*> res_;
    std::vector<LayerBufs> layers_;
    void* lnf_ = nullptr;  // a GEMM input, as LayerBufs' (f32 or bf16)
    float *rstdf_ = nullptr, *logits_ = nullptr, *row_nll_ = nullptr;
    float* heads_[8] = {};
    float* delta_ = nullptr;  // flash attention's backward scratch (B*NH, T)
    float *dP_ = nullptr, *dres_ = nullptr, *dln_ = nullptr;
    void *datty_ = nullptr, *dfc_ = nullptr, *dqkv_ = nullptr;  // as LayerBufs' (f32 or bf16)
    uint16_t *dres_h_ = nullptr, *dlogits_h_ = nullptr;          // mixed: bf16 copies of dres_ and d(logits)
    std::vector<float> host_nll_;
};

}  // namespace

std::unique_ptr<StepCompute> make_cuda_step_compute(const ModelConfig& cfg, const std::string& math,
                                                    const std::string& attention) {
    const ct::GemmMath m = math_from_name(math);
    if (attention != "auto" && attention != "gemm" && attention != "flash")
        throw Error("unknown CUDA attention '" + attention + "' (use auto, gemm or flash)");
    const bool mixed = m == ct::GemmMath::MIXED;
    const bool flash = cuda_attention_for(math, attention) == "flash";
    if (mixed && !flash)
        throw Error("--cuda-math mixed runs with flash attention (its activations are bf16): drop --cuda-attention "
                    "gemm, or use --cuda-math bf16");
    if (flash && m != ct::GemmMath::BF16 && !mixed)
        throw Error("flash attention runs on bf16 tensor cores: use it with --cuda-math bf16 or mixed (not " + math +
                    ")");
    if (flash && !ct::flash_supported(cfg.head_dim()))
        throw Error("flash attention takes head dimensions that are multiples of 4, up to 64; this model's is " +
                    std::to_string(cfg.head_dim()) + " (use --cuda-math bf16 --cuda-attention gemm)");
#ifndef IGPT_CUDA_EMU  // tests/cuda_emu runs this trainer on the CPU
    if (!cuda_available()) throw Error("no CUDA GPU is available for training (use --device cpu)");
#endif
    return std::make_unique<CudaTrainCompute>(cfg, m, flash);
}

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::train
