// The training run behind `igpt train`: data -> palette -> cached tokens -> baselines -> AdamW steps with
// evaluation, metrics log and checkpoints -> exported model. A run lives in one folder:
//   checkpoint.ckpt   model + optimizer + data position (atomic; --resume continues from it)
//   metrics.jsonl     one JSON object per step: step, train_loss (nats/pixel), train_bpp, lr, grad_norm,
//                     tokens_per_s, elapsed_s, and val_bpp on evaluation steps; a last line {"final":true,..}
//   palette.safetensors the run's palette
//   baselines.json    unigram and left-neighbour bits per pixel on the evaluation images
//   model.safetensors the final model (f32), with provenance in its metadata
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "baselines.h"
#include "config.h"
#include "model.h"
#include "palette.h"

namespace igpt::train {

struct TrainOptions {
    // data
    std::string data;             // training images: folder (flat or ImageFolder) or CIFAR-10 .bin batches
    std::string val_data;         // validation images; empty: a seeded split of `data`
    double val_fraction = 0.05;   // used when val_data is empty
    std::string palette;          // palette or model file; empty: k-means on the training images (k = cfg.vocab)
    std::string cache_dir;        // token caches; empty: <out_dir>/cache
    double crop_scale = 1.125;    // training images are stored at res*crop_scale; random res crops of them
    bool flip = true;             // random horizontal flips
    // model
    ModelConfig cfg;              // vocab is set from the palette; with `init`, the model's
    std::string init;             // model file to start from (its weights, config and palette); empty: random
    // optimisation
    int32_t batch = 8;            // images per micro-batch
    int32_t accum = 1;            // micro-batches per optimizer step
    int64_t steps = 1000;
    float lr = 2e-3f;
    float min_lr_frac = 0.1f;     // cosine decays to lr * min_lr_frac
    int64_t warmup = 100;
    float weight_decay = 0.1f;
    float beta1 = 0.9f, beta2 = 0.95f;
    float clip = 1.0f;            // global gradient norm; <= 0 disables
    uint64_t seed = 1;            // init, split, data order, augmentation
    // side work
    int64_t eval_every = 100;     // steps between validation evaluations
    int32_t eval_images = 128;    // validation images per evaluation (evenly spaced over the val set)
    int32_t final_eval_images = 0;// at the end; 0 = all validation images
    int64_t ckpt_every = 100;     // steps between checkpoints (and one at the end)
    std::string out_dir = "run";
    int32_t threads = 0;          // 0 = all hardware threads
    std::string device = "cpu";   // cpu | cuda (train/cuda/train_cuda.h; needs a CUDA build and a GPU)
    std::string cuda_math = "bf16";  // the CUDA GEMMs: bf16 | tf32 | f32 (on f32 storage) | mixed (bf16 storage)
    std::string cuda_attention = "auto";  // CUDA attention: gemm (batched GEMMs, T x T kept) | flash | auto
                                          // (flash with mixed, else gemm)
    std::string command;          // the command line, for provenance

    std::string to_json() const;
    static TrainOptions from_json(const std::string& s);
};

class StepCompute;
// The CPU trainer (opt.threads), or the CUDA one for opt.device == "cuda"; *hardware: what runs it, for
// the model card. Throws igpt::Error for an unknown device or a build without the CUDA trainer.
std::unique_ptr<StepCompute> make_step_compute(const TrainOptions& opt, std::string* hardware);

struct TrainCallbacks {
    std::function<void(const std::string&)> log;                                // user-facing lines
    std::function<void(int64_t step, int64_t total, double loss, double tok_s)> on_step;  // progress
    std::function<void(const std::string& what, int64_t done, int64_t total)> on_prep;     // data preparation
    // Asked after every step: true stops the run there (a checkpoint is written first, so --resume
    // continues it exactly); run_training then throws an Error that says so.
    std::function<bool()> should_stop;
};

struct TrainResult {
    int64_t steps = 0;
    double val_bpp = 0;            // final, on final_eval_images
    int64_t val_images = 0;
    BaselineBits baselines;        // on the same images
    double wall_seconds = 0;       // training time over all sessions
    double tokens_per_s = 0;       // this session's mean training throughput
    double gflops = 0;             // this session's achieved GFLOP/s in training steps
    std::string model_path;
};

// resume: continue from <out_dir>/checkpoint.ckpt with the options stored there (threads, out_dir and
// command from `opt`); if there is no checkpoint yet, starts afresh. Without resume, an existing
// checkpoint in out_dir is an error (never overwrite a run by accident).
TrainResult run_training(TrainOptions opt, bool resume, const TrainCallbacks& cb = {});

// The checkpoint's model with provenance, for export.
Model model_from_checkpoint(const std::string& ckpt_path, const std::string& provenance_json);

// "AMD EPYC ..., 2 threads" from /proc/cpuinfo.
std::string hardware_description(int32_t threads);

// The attention the CUDA trainer runs for --cuda-attention `attention` with --cuda-math `math`: "auto" is
// flash with mixed (which needs it) and gemm otherwise; "gemm" and "flash" are themselves.
std::string cuda_attention_for(const std::string& math, const std::string& attention);

}  // namespace igpt::train
