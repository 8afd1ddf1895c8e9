// Fine-tuning (Chen et al. 2020, section 3.3): a linear classification head on the final norm's output
// averaged over positions, trained jointly with the generative loss,
//     loss = L_gen + alpha * L_clf   (L_gen: mean nats per pixel, L_clf: mean nats per image),
// starting from a pretrained model; the head is stored in the model file (model.h: clf.w, clf.b).
// The steps run through train::TrainCompute (the CPU trainer; a CUDA trainer implements the same
// interface), the evaluation through a Backend (pooled_features of the last layer).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend.h"
#include "image_features.h"
#include "model.h"

namespace igpt::probe {

struct FinetuneOptions {
    float alpha = 1.0f;            // weight of the classification loss
    int32_t batch = 8;             // images per step
    int64_t steps = 200;
    float lr = 3e-4f;              // peak learning rate of the network; cosine to lr * min_lr_frac
    float head_lr_mult = 10.0f;    // the head's learning rate = lr * this
    float min_lr_frac = 0.1f;
    int64_t warmup = 20;
    float weight_decay = 0.01f;    // AdamW, matrices (and clf.w) only
    float clip = 1.0f;             // global gradient norm (network and head together); <= 0: off
    bool flip = true;              // random horizontal flips of the training images
    std::string head_init = "probe";  // "probe": start from a linear probe on the pooled ln_f features of
                                      // (up to head_init_images of) the training images; "zero": zeros
    int64_t head_init_images = 2000;
    double time_limit_s = 0;       // stop after this much training time (0 = no limit)
    uint64_t seed = 1;
    int32_t threads = 0;
    std::string log_path;          // optional JSON-lines log, one line per step
};

struct FinetuneCallbacks {
    std::function<void(const std::string&)> log;
    std::function<void(int64_t step, int64_t total, double gen_loss, double clf_loss)> on_step;
    ProgressFn on_head_init;       // feature extraction for the head's initialisation
};

struct FinetuneResult {
    int64_t steps = 0;
    double wall_seconds = 0;
    double head_init_train_acc = 0;   // the initial head (probe) on its training features
    double first_clf_loss = 0, last_clf_loss = 0;  // mean over the first / last 10% of steps
    double first_gen_loss = 0, last_gen_loss = 0;  // nats per pixel, same windows
    double images_per_s = 0;
};

// Trains `model` in place (its weights, and classes / clf_w / clf_b). tokens (n, T), labels (n) in
// [0, classes.size()).
FinetuneResult finetune(Model& model, const std::vector<int32_t>& tokens, const std::vector<int32_t>& labels,
                        const std::vector<std::string>& classes, const FinetuneOptions& o,
                        const FinetuneCallbacks& cb = {});

// The head's logits (n, K) for tokens (n, T) of a model with a head: pooled features of layer L from the
// backend, through clf.w / clf.b.
std::vector<float> classify_logits(Backend& backend, const Model& model, const int32_t* tokens, int64_t n,
                                   int32_t batch, const ProgressFn& progress = {});
std::vector<int32_t> argmax_rows(const std::vector<float>& logits, int32_t K);

}  // namespace igpt::probe
