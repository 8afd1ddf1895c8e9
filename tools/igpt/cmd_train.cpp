// `igpt train`: pretrain an Image GPT on a folder of images (or CIFAR-10 batches), resumable after a crash;
// `igpt export`: write a run's model as f32, f16 or int8 with its provenance.
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "error.h"
#include "model.h"
#include "progress.h"
#include "optim.h"
#include "sampler.h"
#include "train_model.h"
#include "trainer.h"

namespace fs = std::filesystem;

namespace igpt_cli {

namespace {

struct TrainArgs {
    igpt::train::TrainOptions opt;
    std::string config = "tiny";
    int32_t width = 0, layers = 0, heads = 0, mlp_mult = 0, vocab = 512;
    std::string res;
    bool bias = false, no_flip = false, resume = false;
    std::string export_path, export_dtype = "f32";
    std::string init;
};

// Ctrl-C or SIGTERM (a job scheduler's, `timeout`'s) during training: finish the step, write the
// checkpoint, stop. A second one kills at once (the default action, restored by the first).
volatile std::sig_atomic_t g_stop_requested = 0;

extern "C" void on_stop_signal(int sig) {
    g_stop_requested = 1;
    static const char msg[] = "\nstopping after this step (checkpoint first); again to kill at once\n";
    (void)!write(2, msg, sizeof msg - 1);
    std::signal(sig, SIG_DFL);
}

void parse_res(const std::string& s, int32_t& h, int32_t& w) {
    try {
        const size_t x = s.find('x');
        if (x == std::string::npos) h = w = std::stoi(s);
        else {
            h = std::stoi(s.substr(0, x));
            w = std::stoi(s.substr(x + 1));
        }
    } catch (const std::exception&) {
        throw igpt::Error("--res must be N or HxW, got '" + s + "'");
    }
}

void run_train(TrainArgs& a) {
    igpt::train::TrainOptions& o = a.opt;
    if (!a.init.empty()) {  // the shape and palette are the model's (run_training reads them)
        if (a.width || a.layers || a.heads || a.mlp_mult || a.bias || !a.res.empty())
            throw igpt::Error("--init takes the model's shape: drop --width, --layers, --heads, --mlp-mult, --bias, --res");
        o.init = a.init;
    } else {
        o.cfg = igpt::config_preset(a.config);
        if (a.width) o.cfg.width = a.width;
        if (a.layers) o.cfg.layers = a.layers;
        if (a.heads) o.cfg.heads = a.heads;
        if (a.mlp_mult) o.cfg.mlp_mult = a.mlp_mult;
        if (a.bias) o.cfg.bias = true;
        if (!a.res.empty()) parse_res(a.res, o.cfg.image_h, o.cfg.image_w);
        o.cfg.vocab = a.vocab;
        if (a.width || a.layers || a.heads || a.mlp_mult || a.bias || !a.res.empty()) o.cfg.name = "custom";
    }
    o.flip = !a.no_flip;
    o.command = command_line();
    if (!a.export_path.empty()) igpt::dtype_from_name(a.export_dtype);  // fail early on a bad dtype

    igpt::train::TrainCallbacks cb;
    cb.log = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
    std::unique_ptr<Progress> prep, bar;
    std::string prep_what;
    cb.on_prep = [&](const std::string& what, int64_t done, int64_t total) {
        if (!prep || what != prep_what) {
            prep = std::make_unique<Progress>(what, total, "img");
            prep_what = what;
        }
        prep->update(done);
        if (done == total) prep.reset();
    };
    cb.on_step = [&](int64_t step, int64_t total, double loss, double tok_s) {
        if (!bar) bar = std::make_unique<Progress>("train", total, "step");
        char s[128];
        std::snprintf(s, sizeof s, "loss %.4f (%.3f bpp) %.0f tok/s", loss, loss / std::log(2.0), tok_s);
        bar->update(step, s);
    };
    cb.should_stop = [] { return g_stop_requested != 0; };
    std::signal(SIGINT, on_stop_signal);
    std::signal(SIGTERM, on_stop_signal);
    igpt::train::TrainResult r = igpt::train::run_training(o, a.resume, cb);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    bar.reset();
    const bool tera = r.gflops >= 1000;  // a GPU's
    std::printf("trained %lld steps in %.0f s: %.0f tokens/s, %.1f %s\n", (long long)r.steps, r.wall_seconds,
                r.tokens_per_s, tera ? r.gflops / 1000 : r.gflops, tera ? "TFLOP/s" : "GFLOP/s");
    std::printf("val bits per pixel on %lld images: model %.4f | unigram %.4f | left-neighbour %.4f\n",
                (long long)r.val_images, r.val_bpp, r.baselines.unigram_bpp, r.baselines.left_bpp);
    std::printf("model: %s\n", r.model_path.c_str());
    if (!a.export_path.empty()) {
        igpt::Model m = igpt::load_model(r.model_path);
        igpt::save_model(m, a.export_path, igpt::dtype_from_name(a.export_dtype));
        std::printf("exported %s (%s)\n", a.export_path.c_str(), a.export_dtype.c_str());
    }
}

void run_export(const std::string& run, const std::string& out, const std::string& dtype_name) {
    const igpt::DType dtype = igpt::dtype_from_name(dtype_name);
    igpt::Model m;
    std::string from;  // a model file re-encoded: its dtype, for the message
    if (fs::is_regular_file(run) && fs::path(run).extension() == ".safetensors") {
        m = igpt::load_model(run);
        from = std::string(" from ") + igpt::dtype_name(m.file_dtype);
    } else {
        std::string ckpt = run, model_path;
        if (fs::is_directory(run)) {
            ckpt = (fs::path(run) / "checkpoint.ckpt").string();
            model_path = (fs::path(run) / "model.safetensors").string();
        }
        if (!fs::exists(ckpt)) throw igpt::Error(ckpt + ": no checkpoint (give a run folder or a .ckpt file)");
        // provenance: the finished run's (with its validation numbers) when there is one, else the checkpoint's
        std::string prov;
        if (!model_path.empty() && fs::exists(model_path)) prov = igpt::load_model(model_path).provenance;
        m = igpt::train::model_from_checkpoint(ckpt, "{}");
        if (prov.empty()) {
            nlohmann::json p = {{"trainer", "igpt train (src/train)"}, {"checkpoint", ckpt}, {"note", "exported mid-run"}};
            prov = p.dump();
        }
        m.provenance = prov;
    }
    nlohmann::json pj = nlohmann::json::parse(m.provenance, nullptr, false);
    if (pj.is_object()) {
        pj["export_command"] = command_line();
        pj["export_dtype"] = dtype_name;
        m.provenance = pj.dump();
    }
    igpt::save_model(m, out, dtype);
    std::printf("exported %s (%s%s, %lld parameters, %lld bytes)\n", out.c_str(), dtype_name.c_str(), from.c_str(),
                (long long)m.params.size(), (long long)fs::file_size(out));
}

struct TrainBenchArgs {
    std::string config = "S", device = "cpu", cuda_math = "bf16", cuda_attention = "auto";
    int32_t width = 0, layers = 0, heads = 0, batch = 8, steps = 5, warmup = 2, threads = 0;
};

// Training throughput on random data: forward + backward alone, and whole steps (with gradient clipping
// and AdamW on the host, as `igpt train` runs them). Prints a RESULT line for scripts.
void run_train_bench(const TrainBenchArgs& a) {
    igpt::ModelConfig cfg = igpt::config_preset(a.config);
    if (a.width) cfg.width = a.width;
    if (a.layers) cfg.layers = a.layers;
    if (a.heads) cfg.heads = a.heads;
    if (a.width || a.layers || a.heads) cfg.name = "custom";
    cfg.validate();
    std::vector<uint8_t> rgb(size_t(cfg.vocab) * 3);
    for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = uint8_t(i * 37);
    igpt::Model m = igpt::init_model(cfg, igpt::Palette(rgb), 1);
    igpt::train::TrainOptions o;
    o.cfg = cfg;
    o.device = a.device;
    o.cuda_math = a.cuda_math;
    o.cuda_attention = a.cuda_attention;
    o.threads = a.threads;
    std::string hardware;
    auto compute = igpt::train::make_step_compute(o, &hardware);
    const int32_t T = cfg.n_ctx(), B = a.batch;
    std::vector<int32_t> tok(size_t(B) * size_t(T));
    igpt::Rng rng(7);
    for (int32_t& t : tok) t = int32_t(rng.next() % uint64_t(cfg.vocab));
    const auto specs = igpt::param_layout(cfg);
    const auto mask = igpt::train::decay_mask(specs);
    std::vector<float> g(m.params.size()), mom(m.params.size(), 0.0f), vel(m.params.size(), 0.0f);
    const float scale = 1.0f / float(B * T);
    std::printf("train bench: %s, %lld parameters, batch %d x %d tokens, on %s\n", cfg.to_json().c_str(),
                (long long)m.params.size(), B, T, hardware.c_str());
    using Clock = std::chrono::steady_clock;
    igpt::train::AdamWParams ap;
    // Whole steps as `igpt train` runs them: on the device when it keeps the optimizer (CUDA), else
    // forward + backward with the host's clipping and AdamW.
    const bool device_opt = compute->device_optimizer();
    if (device_opt) compute->set_state(m.params.data(), mom.data(), vel.data(), mask.data());
    double step_best = 1e30, fb_best = 1e30;
    for (int32_t i = 0; i < a.warmup + a.steps; ++i) {
        if (i == a.warmup) compute->profile();  // IGPT_CUDA_PROFILE=1: the timed steps' profile only
        const auto t0 = Clock::now();
        if (device_opt) {
            compute->train_step(tok.data(), B, 1, scale, 1.0f, i + 1, 1e-4f, ap.beta1, ap.beta2, ap.eps, ap.weight_decay);
        } else {
            std::fill(g.begin(), g.end(), 0.0f);
            compute->forward_backward(m.params.data(), tok.data(), B, scale, g.data());
            igpt::train::clip_grad_norm(g.data(), g.size(), 1.0);
            igpt::train::adamw_step(m.params.data(), g.data(), mom.data(), vel.data(), mask.data(), g.size(), i + 1,
                                    1e-4f, ap);
        }
        if (i >= a.warmup) step_best = std::min(step_best, std::chrono::duration<double>(Clock::now() - t0).count());
    }
    const std::string profile = compute->profile();
    if (!profile.empty()) std::printf("%s\n", profile.c_str());
    // forward + backward alone (on a GPU: with the parameters sent and the gradients brought back)
    for (int32_t i = 0; i < std::max(1, a.steps / 2); ++i) {
        std::fill(g.begin(), g.end(), 0.0f);
        const auto t0 = Clock::now();
        compute->forward_backward(m.params.data(), tok.data(), B, scale, g.data());
        fb_best = std::min(fb_best, std::chrono::duration<double>(Clock::now() - t0).count());
    }
    const double tokens = double(B) * T, flops = igpt::train::train_flops_per_image(cfg) * B;
    const bool gpu = a.device == "cuda";
    std::printf("whole step (%s): %.4f s, %.0f tokens/s, %.1f %s\n",
                device_opt ? "optimizer on the device" : "host clip + AdamW", step_best, tokens / step_best,
                flops / step_best / (gpu ? 1e12 : 1e9), gpu ? "TFLOP/s" : "GFLOP/s");
    std::printf("forward + backward%s: %.4f s, %.0f tokens/s\n", device_opt ? " (weights in, gradients out)" : "",
                fb_best, tokens / fb_best);
    const std::string attention = gpu ? igpt::train::cuda_attention_for(a.cuda_math, a.cuda_attention) : "cpu";
    std::printf("RESULT igpt-train device=%s math=%s attention=%s config=%s params=%lld batch=%d tokens_per_s=%.0f "
                "fb_tokens_per_s=%.0f\n",
                a.device.c_str(), gpu ? a.cuda_math.c_str() : "f32", attention.c_str(), cfg.name.c_str(),
                (long long)m.params.size(), B, tokens / step_best, tokens / fb_best);
}

}  // namespace

void register_train(CLI::App& app) {
    {
        auto b = std::make_shared<TrainBenchArgs>();
        CLI::App* c = app.add_subcommand("train-bench", "Training throughput on random data (tokens/s; CPU or CUDA)");
        c->add_option("-c,--config", b->config, "preset: tiny, small, base, S, M, L")->capture_default_str();
        c->add_option("--width", b->width, "override the preset's width");
        c->add_option("--layers", b->layers, "override the preset's layers");
        c->add_option("--heads", b->heads, "override the preset's heads");
        c->add_option("-b,--batch", b->batch, "images per step")->capture_default_str()->check(CLI::Range(1, 4096));
        c->add_option("--steps", b->steps, "timed steps (the best is reported)")->capture_default_str()
            ->check(CLI::Range(1, 100000));
        c->add_option("--warmup", b->warmup, "untimed steps first")->capture_default_str()->check(CLI::Range(0, 1000));
        c->add_option("--device", b->device, "cpu or cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
        c->add_option("--cuda-math", b->cuda_math, "bf16, tf32 or f32 (f32 storage), or mixed (bf16 storage)")
            ->check(CLI::IsMember({"bf16", "tf32", "f32", "mixed"}))
            ->capture_default_str();
        c->add_option("--cuda-attention", b->cuda_attention, "auto, gemm or flash (flash needs bf16 or mixed)")
            ->check(CLI::IsMember({"auto", "gemm", "flash"}))
            ->capture_default_str();
        c->add_option("-j,--threads", b->threads, "CPU threads (0 = all)");
        c->callback([b] { run_train_bench(*b); });
    }

    auto a = std::make_shared<TrainArgs>();
    igpt::train::TrainOptions& o = a->opt;
    CLI::App* t = app.add_subcommand("train", "Pretrain an Image GPT on a folder of images or CIFAR-10 batches");
    t->add_option("--data", o.data, "Training images: folder (flat or one subfolder per class) or CIFAR-10 .bin")
        ->required();
    t->add_option("--val-data", o.val_data, "Validation images (default: a seeded split of --data)");
    t->add_option("--val-fraction", o.val_fraction, "Validation share when splitting --data")->capture_default_str();
    t->add_option("--palette", o.palette, "Palette (or model) file; default: k-means on the training images");
    t->add_option("--vocab", a->vocab, "Palette size when training one")->capture_default_str();
    t->add_option("--cache-dir", o.cache_dir, "Token cache folder (default: <out>/cache)");
    t->add_option("--crop-scale", o.crop_scale, "Store training images at res*scale, train on random res crops")
        ->capture_default_str();
    t->add_flag("--no-flip", a->no_flip, "No random horizontal flips");
    t->add_option("--config", a->config, "Model preset (tiny, small, base, S, M, L)")->capture_default_str();
    t->add_option("--init", a->init, "Start from this model file's weights, with its shape and palette (continue "
                                     "training a shipped or exported model; the optimizer state starts fresh)");
    t->add_option("--width", a->width, "Override: d_model");
    t->add_option("--layers", a->layers, "Override: transformer blocks");
    t->add_option("--heads", a->heads, "Override: attention heads");
    t->add_option("--mlp-mult", a->mlp_mult, "Override: MLP hidden = mult * width");
    t->add_option("--res", a->res, "Override: resolution, N or HxW");
    t->add_flag("--bias", a->bias, "Projections with biases");
    t->add_option("--batch", o.batch, "Images per micro-batch")->capture_default_str();
    t->add_option("--accum", o.accum, "Micro-batches per optimizer step (gradient accumulation)")->capture_default_str();
    t->add_option("--steps", o.steps, "Optimizer steps")->capture_default_str();
    t->add_option("--lr", o.lr, "Peak learning rate")->capture_default_str();
    t->add_option("--min-lr-frac", o.min_lr_frac, "Cosine decays to lr * this")->capture_default_str();
    t->add_option("--warmup", o.warmup, "Linear warmup steps")->capture_default_str();
    t->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay (matrices only)")
        ->capture_default_str();
    t->add_option("--clip", o.clip, "Gradient norm clipping (0 = off)")->capture_default_str();
    t->add_option("--seed", o.seed, "Seed for init, split, data order and augmentation")->capture_default_str();
    t->add_option("--eval-every", o.eval_every, "Steps between validation evaluations")->capture_default_str();
    t->add_option("--eval-images", o.eval_images, "Validation images per evaluation")->capture_default_str();
    t->add_option("--final-eval-images", o.final_eval_images, "Validation images at the end (0 = all)")
        ->capture_default_str();
    t->add_option("--ckpt-every", o.ckpt_every, "Steps between checkpoints")->capture_default_str();
    t->add_option("--out", o.out_dir, "Run folder (checkpoint, metrics.jsonl, model)")->capture_default_str();
    t->add_option("--threads", o.threads, "CPU threads (0 = all)")->capture_default_str();
    t->add_option("--device", o.device, "cpu, or cuda (GPU; this build's CUDA trainer)")
        ->check(CLI::IsMember({"cpu", "cuda"}))
        ->capture_default_str();
    t->add_option("--cuda-math", o.cuda_math,
                  "CUDA GEMMs: bf16, tf32 or f32 on fp32 storage, or mixed (bf16 activations and weight copies as "
                  "GEMM inputs; fp32 master weights, residual stream and AdamW)")
        ->check(CLI::IsMember({"bf16", "tf32", "f32", "mixed"}))
        ->capture_default_str();
    t->add_option("--cuda-attention", o.cuda_attention,
                  "CUDA attention: gemm (batched GEMMs, keeps B x heads x T x T probabilities), flash (tiled on bf16 "
                  "tensor cores, keeps nothing T x T; needs --cuda-math bf16 or mixed, head dim <= 64), or auto "
                  "(flash with mixed, else gemm)")
        ->check(CLI::IsMember({"auto", "gemm", "flash"}))
        ->capture_default_str();
    t->add_flag("--resume", a->resume, "Continue the run in --out from its checkpoint (with its stored options)");
    t->add_option("--export", a->export_path, "Also write the final model here");
    t->add_option("--dtype", a->export_dtype, "dtype of --export: f32, f16, int8")->capture_default_str();
    t->callback([a] { run_train(*a); });

    auto e = std::make_shared<std::array<std::string, 3>>();
    (*e)[2] = "f32";
    CLI::App* x = app.add_subcommand("export", "Write a training run's model (f32, f16 or int8) with provenance");
    x->add_option("run", (*e)[0], "Run folder, checkpoint file, or a model file (.safetensors) to re-encode")->required();
    x->add_option("out", (*e)[1], "Model file to write (.safetensors)")->required();
    x->add_option("--dtype", (*e)[2], "f32, f16 or int8")->capture_default_str();
    x->callback([e] { run_export((*e)[0], (*e)[1], (*e)[2]); });
}

}  // namespace igpt_cli
