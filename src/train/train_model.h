// The Image GPT network for training: forward with every activation kept (named, llm.c style) and the
// hand-written backward, for one image at a time. TrainCompute runs a batch of images on the CPU, one
// image per thread at a time, each thread with its own activations and gradient buffer; a CUDA trainer
// would implement the same TrainCompute interface.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <Eigen/Core>

#include "config.h"
#include "weights.h"

namespace igpt {
class ThreadPool;
}

namespace igpt::train {

// Pointers into a flat buffer of scalars laid out by igpt::param_layout (found by tensor name, so the
// same layout serves float weights, double test copies, gradients and AdamW moments).
template <typename F>
struct LayerWeights {
    F* ln1_g = nullptr;    // (C)
    F* qkv_w = nullptr;    // (3C, C)
    F* qkv_b = nullptr;    // (3C) or null
    F* proj_w = nullptr;   // (C, C)
    F* proj_b = nullptr;   // (C) or null
    F* ln2_g = nullptr;    // (C)
    F* fc_w = nullptr;     // (H, C)
    F* fc_b = nullptr;     // (H) or null
    F* mproj_w = nullptr;  // (C, H)
    F* mproj_b = nullptr;  // (C) or null
};
template <typename F>
struct Weights {
    F* sos = nullptr;     // (C)
    F* wte = nullptr;     // (V, C)
    F* wpe = nullptr;     // (T, C)
    std::vector<LayerWeights<F>> layers;
    F* lnf_g = nullptr;   // (C)
    F* head_w = nullptr;  // (V, C)
};
template <typename F>
Weights<F> bind_weights(const ModelConfig& cfg, F* base);

// Activation buffers are 32-byte aligned: Eigen's vectorised reductions peel to an aligned start, so the
// rounding of a sum would otherwise depend on where malloc put the buffer (and a resumed run would drift
// from the uninterrupted one).
template <typename F>
using Buf = std::vector<F, Eigen::aligned_allocator<F>>;

// Activations of one image, kept for the backward pass. Shapes with T = n_ctx, C = width, H = hidden,
// NH = heads, V = vocab.
template <typename F>
struct LayerActs {
    Buf<F> ln1;      // (T, C)   norm of the residual entering the block
    Buf<F> rstd1;    // (T)
    Buf<F> qkv;      // (T, 3C)
    Buf<F> att;      // (NH, T, T) softmax probabilities
    Buf<F> atty;     // (T, C)   attention output before the projection
    Buf<F> res_mid;  // (T, C)   residual after the attention branch
    Buf<F> ln2;      // (T, C)
    Buf<F> rstd2;    // (T)
    Buf<F> fc;       // (T, H)   MLP pre-activation
    Buf<F> fc_act;   // (T, H)   quick_gelu(fc)
};
template <typename F>
struct Acts {
    std::vector<Buf<F>> res;  // L+1 of (T, C): res[0] = embeddings, res[l+1] = block l's output
    std::vector<LayerActs<F>> layers;
    Buf<F> lnf;               // (T, C)
    Buf<F> rstdf;             // (T)
    Buf<F> logits;            // (T, V); after backward(): dlogits
};

// One image's forward + backward, with its own activation and scratch memory (not thread-safe: one per
// thread).
template <typename F>
class Net {
public:
    explicit Net(const ModelConfig& cfg);
    // tokens: (T) the image's palette indices (the targets; inputs are shifted right behind sos).
    // Returns the sum over positions of -ln p(token); pixel_nats (optional, (T)) gets each position's.
    double forward(const Weights<F>& w, const int32_t* tokens, float* pixel_nats = nullptr);
    // After forward() on the same tokens: accumulates d(scale * sum nll)/d(params) into g.
    // dpooled (optional, (C)): the gradient of an extra loss with respect to the final norm's output
    // averaged over positions (the classification head of fine-tuning); it flows back with the rest.
    void backward(const Weights<F>& w, const int32_t* tokens, F scale, const Weights<F>& g,
                  const F* dpooled = nullptr);
    // After forward(): the final norm's output averaged over positions, (C).
    void pooled_lnf(F* out) const;

    const ModelConfig& cfg() const { return cfg_; }
    Acts<F> acts;

private:
    ModelConfig cfg_;
    Buf<F> dres, dln, dqkv, datty, dfc;  // backward buffers
    Buf<F> scratch;                      // attention scratch (both directions)
};

// A classification head on pooled features (C): logits = W (K, C) · pooled + b (K). Returns -ln p(label).
// When dW is non-null: accumulates d(scale * nll) into dW and db, and writes d(scale * nll)/d(pooled)
// into dpooled (C). pred (optional): the argmax class.
template <typename F>
double clf_head(const F* pooled, const F* W, const F* b, int32_t K, int64_t C, int32_t label, F scale, F* dW, F* db,
                F* dpooled, int32_t* pred = nullptr);

// FLOPs of one training step per image (forward + backward, multiply-add = 2, causal attention counted
// as the lower triangle only): for reporting achieved GFLOP/s.
double train_flops_per_image(const ModelConfig& cfg);

// What the trainer's loop needs from whatever runs the model: the CPU (TrainCompute below) or a GPU
// (train/cuda/train_cuda.h). Parameters and gradients are flat host arrays in param_layout() order.
class StepCompute {
public:
    virtual ~StepCompute() = default;
    virtual std::string describe() const = 0;  // "cpu, 2 threads", "cuda (NVIDIA H100 ...), bf16 GEMMs"
    // tokens: (B, T). Accumulates d(scale * sum of nll)/dparams into grads (flat layout). Returns the
    // sum of nll (nats) over all B*T positions.
    virtual double forward_backward(const float* params, const int32_t* tokens, int32_t B, float scale,
                                    float* grads) = 0;
    // Forward only: sum of nll over all positions; pixel_nats (optional, (B, T)).
    virtual double forward_nll(const float* params, const int32_t* tokens, int32_t B, float* pixel_nats = nullptr) = 0;

    // Optional: the whole optimizer step where the model runs (a GPU keeps the fp32 weights, gradients and
    // AdamW moments in its memory; the host sees them only through get_state). The trainer uses it when
    // device_optimizer() is true.
    virtual bool device_optimizer() const { return false; }
    // The training state in (at the start, and whenever the host changed it) and out (checkpoints,
    // evaluation). mask: decay_mask(), the same length as params.
    virtual void set_state(const float* params, const float* m, const float* v, const uint8_t* mask) {
        (void)params, (void)m, (void)v, (void)mask;
    }
    virtual void get_state(float* params, float* m, float* v) { (void)params, (void)m, (void)v; }
    struct StepStats {
        double nats = 0;       // sum of nll over all accum * B * T positions
        double grad_norm = 0;  // before clipping
    };
    // accum micro-batches of B images (tokens: (accum, B, T)), gradients scaled by `scale`, clipped to a
    // global norm of `clip` (<= 0: no clipping), then AdamW step t (1-based) at learning rate lr: the
    // device versions of clip_grad_norm and adamw_step (optim.h).
    virtual StepStats train_step(const int32_t* tokens, int32_t B, int32_t accum, float scale, float clip, int64_t t,
                                 float lr, float beta1, float beta2, float eps, float weight_decay) {
        (void)tokens, (void)B, (void)accum, (void)scale, (void)clip, (void)t, (void)lr, (void)beta1, (void)beta2,
            (void)eps, (void)weight_decay;
        return {};
    }
    // Optional: where the time of the steps since the last call went, in one line, and a fresh start; empty
    // when the compute keeps no profile (the CUDA one does with IGPT_CUDA_PROFILE=1).
    virtual std::string profile() { return {}; }
};

// A batch of images on the CPU: data-parallel over images on `threads` threads.
class TrainCompute final : public StepCompute {
public:
    TrainCompute(const ModelConfig& cfg, int32_t threads);
    ~TrainCompute() override;
    int32_t threads() const;
    std::string describe() const override;
    // Deterministic for a given thread count.
    double forward_backward(const float* params, const int32_t* tokens, int32_t B, float scale, float* grads) override;
    double forward_nll(const float* params, const int32_t* tokens, int32_t B, float* pixel_nats = nullptr) override;

    // Fine-tuning: the generative loss plus a classification head on the final norm's output averaged
    // over positions (clf_head; head = [W (K, C) | b (K)], labels (B) in [0, K)). Accumulates
    // d(gen_scale * sum nll + clf_scale * sum clf_nll)/d(params, head) into grads and head_grads.
    struct ClfStats {
        double gen_nll = 0;   // sum over images and positions (nats)
        double clf_nll = 0;   // sum over images (nats)
        int64_t correct = 0;  // argmax == label
    };
    ClfStats forward_backward_clf(const float* params, const float* head, int32_t K, const int32_t* tokens,
                                  const int32_t* labels, int32_t B, float gen_scale, float clf_scale, float* grads,
                                  float* head_grads);

private:
    ModelConfig cfg_;
    size_t n_params_;
    std::unique_ptr<ThreadPool> pool_;
    std::vector<std::unique_ptr<Net<float>>> nets_;
    std::vector<Buf<float>> grads_;  // per lane (a fixed share of each batch)
    std::vector<Buf<float>> head_grads_;  // per lane, fine-tuning only
};

}  // namespace igpt::train
