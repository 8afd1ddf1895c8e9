// The training run (see trainer.h): prepare data once, then step, evaluate, log and checkpoint.
#include "trainer.h"

#include <sys/stat.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "backend.h"
#include "checkpoint.h"
#include "dataset.h"
#include "error.h"
#include "optim.h"
#include "train_model.h"
#ifdef IGPT_TRAIN_CUDA
#include "cuda/train_cuda.h"
#endif

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace igpt::train {

// --- options <-> JSON --------------------------------------------------------------------------------------
std::string TrainOptions::to_json() const {
    json j = {{"data", data},
              {"val_data", val_data},
              {"val_fraction", val_fraction},
              {"palette", palette},
              {"cache_dir", cache_dir},
              {"crop_scale", crop_scale},
              {"flip", flip},
              {"config", json::parse(cfg.to_json())},
              {"init", init},
              {"batch", batch},
              {"accum", accum},
              {"steps", steps},
              {"lr", lr},
              {"min_lr_frac", min_lr_frac},
              {"warmup", warmup},
              {"weight_decay", weight_decay},
              {"beta1", beta1},
              {"beta2", beta2},
              {"clip", clip},
              {"seed", seed},
              {"eval_every", eval_every},
              {"eval_images", eval_images},
              {"final_eval_images", final_eval_images},
              {"ckpt_every", ckpt_every},
              {"out_dir", out_dir},
              {"threads", threads},
              {"device", device},
              {"cuda_math", cuda_math},
              {"cuda_attention", cuda_attention},
              {"command", command}};
    return j.dump();
}

TrainOptions TrainOptions::from_json(const std::string& s) {
    TrainOptions o;
    try {
        json j = json::parse(s);
        o.data = j.at("data");
        o.val_data = j.at("val_data");
        o.val_fraction = j.at("val_fraction");
        o.palette = j.at("palette");
        o.cache_dir = j.at("cache_dir");
        o.crop_scale = j.at("crop_scale");
        o.flip = j.at("flip");
        o.cfg = ModelConfig::from_json(j.at("config").dump());
        o.init = j.value("init", std::string());  // runs from before --init: random
        o.batch = j.at("batch");
        o.accum = j.at("accum");
        o.steps = j.at("steps");
        o.lr = j.at("lr");
        o.min_lr_frac = j.at("min_lr_frac");
        o.warmup = j.at("warmup");
        o.weight_decay = j.at("weight_decay");
        o.beta1 = j.at("beta1");
        o.beta2 = j.at("beta2");
        o.clip = j.at("clip");
        o.seed = j.at("seed");
        o.eval_every = j.at("eval_every");
        o.eval_images = j.at("eval_images");
        o.final_eval_images = j.at("final_eval_images");
        o.ckpt_every = j.at("ckpt_every");
        o.out_dir = j.at("out_dir");
        o.threads = j.at("threads");
        o.device = j.value("device", std::string("cpu"));  // runs from before CUDA training: cpu
        o.cuda_math = j.value("cuda_math", std::string("bf16"));
        o.cuda_attention = j.value("cuda_attention", std::string("auto"));
        o.command = j.at("command");
    } catch (const json::exception& e) {
        throw Error(std::string("bad training options in checkpoint (") + e.what() + ")");
    }
    return o;
}

std::string cuda_attention_for(const std::string& math, const std::string& attention) {
    if (attention != "auto") return attention;
    return math == "mixed" ? "flash" : "gemm";
}

std::string hardware_description(int32_t threads) {
    std::ifstream f("/proc/cpuinfo");
    std::string line, model = "unknown CPU";
    while (std::getline(f, line))
        if (line.rfind("model name", 0) == 0) {
            auto p = line.find(':');
            if (p != std::string::npos) model = line.substr(p + 2);
            break;
        }
    return model + ", " + std::to_string(threads) + " threads";
}

Model model_from_checkpoint(const std::string& ckpt_path, const std::string& provenance_json) {
    Checkpoint ck = load_checkpoint(ckpt_path);
    Model m;
    m.cfg = ck.cfg;
    m.palette = ck.palette;
    m.specs = param_layout(ck.cfg);
    m.params = std::move(ck.params);
    m.provenance = provenance_json;
    return m;
}

namespace {

// Keeps the metrics lines of steps <= `step` (dropping a torn last line and any "final" line), so that a
// resumed run appends exactly what the uninterrupted run would have written.
void truncate_metrics(const std::string& path, int64_t step) {
    std::ifstream in(path);
    if (!in) return;
    std::string line, kept;
    while (std::getline(in, line)) {
        json j = json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object() || j.contains("final") || !j.contains("step")) continue;
        if (j["step"].get<int64_t>() <= step) kept += line + "\n";
    }
    write_file_atomic(path, reinterpret_cast<const uint8_t*>(kept.data()), kept.size());
}

void append_line(const std::string& path, const json& j) {
    std::FILE* f = std::fopen(path.c_str(), "ab");
    if (!f) throw Error("cannot append to " + path);
    const std::string s = j.dump() + "\n";
    std::fwrite(s.data(), 1, s.size(), f);
    std::fclose(f);
}

// `count` evenly spaced images of the val set (all when count <= 0 or >= size), as (count, T) tokens.
std::vector<int32_t> eval_tokens(const TokenDataset& val, int64_t count, int32_t h, int32_t w, int64_t* used) {
    const int64_t n = val.size();
    if (count <= 0 || count > n) count = n;
    std::vector<int32_t> out(size_t(count) * h * w);
    for (int64_t i = 0; i < count; i++) {
        const int64_t idx = i * n / count;
        std::vector<int32_t> one = centre_tokens(val, idx, 1, h, w);
        std::copy(one.begin(), one.end(), out.begin() + size_t(i) * h * w);
    }
    *used = count;
    return out;
}

double eval_bpp(StepCompute& compute, const std::vector<float>& params, const std::vector<int32_t>& tokens,
                int64_t n_images, int64_t T, int32_t batch) {
    double nats = 0;
    for (int64_t i = 0; i < n_images; i += batch) {
        const int32_t b = int32_t(std::min<int64_t>(batch, n_images - i));
        nats += compute.forward_nll(params.data(), tokens.data() + size_t(i) * T, b);
    }
    return nats / (double(n_images) * T) / std::log(2.0);
}

std::string now_utc() {
    std::time_t t = std::time(nullptr);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
    return buf;
}

}  // namespace

// The CPU trainer, or the CUDA one for --device cuda; *hardware: what ran it, for the model card.
std::unique_ptr<StepCompute> make_step_compute(const TrainOptions& opt, std::string* hardware) {
    if (opt.device == "cpu") {
        auto c = std::make_unique<TrainCompute>(opt.cfg, opt.threads);
        *hardware = hardware_description(c->threads());
        return c;
    }
    if (opt.device == "cuda") {
#ifdef IGPT_TRAIN_CUDA
        auto c = make_cuda_step_compute(opt.cfg, opt.cuda_math, opt.cuda_attention);
        *hardware = c->describe();
        return c;
#else
        throw Error("this build has no CUDA trainer (build where nvcc is found, with IGPT_WITH_CUDA on)");
#endif
    }
    throw Error("unknown training device '" + opt.device + "' (use cpu or cuda)");
}

TrainResult run_training(TrainOptions opt, bool resume, const TrainCallbacks& cb) {
    auto log = [&](const std::string& s) {
        if (cb.log) cb.log(s);
    };
    using clock = std::chrono::steady_clock;
    // A missing GPU is reported before minutes of data preparation, not after.
    if (opt.device == "cuda") {
#ifndef IGPT_TRAIN_CUDA
        throw Error("this build has no CUDA trainer (build where nvcc is found, with IGPT_WITH_CUDA on)");
#endif
        if (!cuda_available()) throw Error("no CUDA GPU is available for training (use --device cpu)");
    }
    const std::string out_dir = opt.out_dir;
    const std::string ckpt_path = (fs::path(out_dir) / "checkpoint.ckpt").string();
    const std::string metrics_path = (fs::path(out_dir) / "metrics.jsonl").string();
    // --init: the run takes the model's shape (and below its palette and weights), unless it resumes. Read
    // before the run folder is made, so that a bad file leaves nothing behind.
    Model init;
    if (!opt.init.empty() && !(resume && fs::exists(ckpt_path))) {
        init = load_model(opt.init);
        opt.cfg = init.cfg;
    }
    fs::create_directories(out_dir);

    // --- the run's state: fresh or from the checkpoint ---
    Checkpoint ck;
    bool have_ck = false;
    if (fs::exists(ckpt_path)) {
        if (!resume)
            throw Error(out_dir + " already holds a training run (checkpoint.ckpt); add --resume to continue it, "
                                  "or choose another --out");
        ck = load_checkpoint(ckpt_path);
        have_ck = true;
        TrainOptions stored = TrainOptions::from_json(ck.options_json);
        stored.threads = opt.threads;
        stored.device = opt.device;  // a run may move between the CPU and a GPU
        stored.cuda_math = opt.cuda_math;
        stored.cuda_attention = opt.cuda_attention;
        stored.out_dir = opt.out_dir;
        stored.command = stored.command + " ; resumed: " + opt.command;
        opt = stored;
        opt.cfg = ck.cfg;
        log("resuming " + out_dir + " at step " + std::to_string(ck.step) + " of " + std::to_string(opt.steps));
    } else if (resume) {
        log("no checkpoint in " + out_dir + " yet; starting from step 0");
    }
    if (opt.data.empty()) throw Error("no training data given (--data)");
    if (opt.batch < 1 || opt.accum < 1 || opt.steps < 1) throw Error("--batch, --accum and --steps must be >= 1");
    if (opt.crop_scale < 1.0) throw Error("--crop-scale must be >= 1");
    const int32_t H = opt.cfg.image_h, W = opt.cfg.image_w;
    const int64_t T = int64_t(H) * W;
    const std::string cache_dir = opt.cache_dir.empty() ? (fs::path(out_dir) / "cache").string() : opt.cache_dir;

    // --- data ---
    ImageSource src = scan_source(opt.data);
    std::vector<int64_t> train_idx, val_idx;
    ImageSource val_src;
    if (opt.val_data.empty()) {
        Split s = split_indices(int64_t(src.items.size()), opt.val_fraction, opt.seed);
        train_idx = s.train;
        val_idx = s.val;
        val_src = src;
    } else {
        train_idx.resize(src.items.size());
        for (size_t i = 0; i < train_idx.size(); i++) train_idx[i] = int64_t(i);
        val_src = scan_source(opt.val_data);
        val_idx.resize(val_src.items.size());
        for (size_t i = 0; i < val_idx.size(); i++) val_idx[i] = int64_t(i);
    }
    if (train_idx.empty() || val_idx.empty())
        throw Error("need at least one training and one validation image (have " + std::to_string(train_idx.size()) +
                    " and " + std::to_string(val_idx.size()) + "); adjust --val-fraction or give --val-data");
    log("data: " + std::to_string(train_idx.size()) + " training and " + std::to_string(val_idx.size()) +
        " validation images" + (src.classes.empty() ? "" : " in " + std::to_string(src.classes.size()) + " classes"));

    // --- palette (and the starting weights of --init) ---
    Palette palette;
    if (!have_ck && !opt.init.empty()) {
        if (!opt.palette.empty() && load_palette_file(opt.palette).rgb() != init.palette.rgb())
            throw Error("--init " + opt.init + " and --palette " + opt.palette + " have different palettes; "
                        "a model continues with its own (drop --palette)");
        log("starting from the weights of " + opt.init + " (" + std::to_string(init.params.size()) + " parameters)");
    }
    if (have_ck) {
        palette = ck.palette;
    } else if (!opt.init.empty()) {
        palette = init.palette;
    } else if (!opt.palette.empty()) {
        palette = load_palette_file(opt.palette);
    } else {
        log("training a " + std::to_string(opt.cfg.vocab) + "-colour palette on the training images");
        std::vector<uint8_t> px = sample_pixels(src, train_idx, H, W, 1 << 20, opt.seed, opt.threads);
        PaletteTrainParams pp;
        pp.k = opt.cfg.vocab;
        pp.seed = opt.seed;
        palette = train_palette(px, pp);
    }
    if (!have_ck) save_palette_file(palette, (fs::path(out_dir) / "palette.safetensors").string(),
                                    json{{"data", opt.data}}.dump());
    opt.cfg.vocab = palette.k();
    opt.cfg.validate();

    // --- token datasets (cached) ---
    TokenBuildParams tp;
    tp.cache_dir = cache_dir;
    tp.threads = opt.threads;
    tp.h = int32_t(std::lround(H * opt.crop_scale));
    tp.w = int32_t(std::lround(W * opt.crop_scale));
    tp.progress = [&](int64_t d, int64_t t) {
        if (cb.on_prep) cb.on_prep("tokenising training images", d, t);
    };
    TokenBuildInfo ti, vi;
    TokenDataset train_data = load_token_dataset(src, train_idx, palette, tp, &ti);
    tp.h = H;
    tp.w = W;
    tp.progress = [&](int64_t d, int64_t t) {
        if (cb.on_prep) cb.on_prep("tokenising validation images", d, t);
    };
    TokenDataset val_data = load_token_dataset(val_src, val_idx, palette, tp, &vi);
    log("tokens: " + ti.cache_path + (ti.from_cache ? " (cached)" : "") + ", " + std::to_string(train_data.size()) +
        " images at " + std::to_string(train_data.h()) + "x" + std::to_string(train_data.w()) +
        (ti.skipped ? ", " + std::to_string(ti.skipped) + " unreadable skipped" : ""));
    log("tokens: " + vi.cache_path + (vi.from_cache ? " (cached)" : "") + ", " + std::to_string(val_data.size()) +
        " images at " + std::to_string(H) + "x" + std::to_string(W) +
        (vi.skipped ? ", " + std::to_string(vi.skipped) + " unreadable skipped" : ""));
    if (train_data.size() == 0 || val_data.size() == 0) throw Error("no readable training or validation images");

    // --- evaluation sets and baselines (same images, same code path for all three numbers) ---
    int64_t n_eval = 0, n_final = 0;
    std::vector<int32_t> eval_set = eval_tokens(val_data, opt.eval_images, H, W, &n_eval);
    std::vector<int32_t> final_set = eval_tokens(val_data, opt.final_eval_images, H, W, &n_final);
    std::vector<int32_t> train_centre = centre_tokens(train_data, 0, train_data.size(), H, W);
    BaselineBits base = compute_baselines(train_centre, final_set, H, W, palette.k());
    train_centre.clear();
    train_centre.shrink_to_fit();
    {
        json b = {{"val_images", n_final}, {"unigram_bpp", base.unigram_bpp}, {"left_neighbour_bpp", base.left_bpp}};
        const std::string s = b.dump(2);
        write_file_atomic((fs::path(out_dir) / "baselines.json").string(), reinterpret_cast<const uint8_t*>(s.data()),
                          s.size());
    }
    char buf[256];
    std::snprintf(buf, sizeof buf, "baselines on %lld validation images: unigram %.4f bpp, left-neighbour %.4f bpp",
                  (long long)n_final, base.unigram_bpp, base.left_bpp);
    log(buf);

    // --- model and optimizer ---
    if (!have_ck) {
        Model m = opt.init.empty() ? init_model(opt.cfg, palette, opt.seed) : std::move(init);
        ck.cfg = opt.cfg;
        ck.palette = palette;
        ck.params = std::move(m.params);
        ck.adam_m.assign(ck.params.size(), 0.0f);
        ck.adam_v.assign(ck.params.size(), 0.0f);
        ck.step = 0;
        ck.cursor = {};
        ck.wall_seconds = 0;
    }
    ck.options_json = opt.to_json();
    const std::vector<ParamSpec> specs = param_layout(opt.cfg);
    const std::vector<uint8_t> mask = decay_mask(specs);
    const size_t n_params = ck.params.size();
    std::vector<float> grads(n_params);
    std::string hardware;
    std::unique_ptr<StepCompute> compute_ptr = make_step_compute(opt, &hardware);
    StepCompute& compute = *compute_ptr;
    BatchSampler sampler(train_data, opt.seed, H, W, opt.flip);
    LrSchedule sched;
    sched.lr = opt.lr;
    sched.min_lr = opt.lr * opt.min_lr_frac;
    sched.warmup = opt.warmup;
    sched.total = opt.steps;
    AdamWParams ap;
    ap.beta1 = opt.beta1;
    ap.beta2 = opt.beta2;
    ap.weight_decay = opt.weight_decay;
    std::snprintf(buf, sizeof buf, "model: %s, %lld parameters, %s; %d images x %d accum per step",
                  opt.cfg.to_json().c_str(), (long long)n_params, compute.describe().c_str(), opt.batch, opt.accum);
    log(buf);

    if (have_ck) truncate_metrics(metrics_path, ck.step);
    else std::ofstream(metrics_path, std::ios::trunc);

    // --- the loop ---
    // A device that runs the optimizer itself (the CUDA trainer) holds the state between steps; the host
    // copy (ck) is brought up to date before evaluations and checkpoints.
    const bool device_opt = compute.device_optimizer();
    if (device_opt) compute.set_state(ck.params.data(), ck.adam_m.data(), ck.adam_v.data(), mask.data());
    std::vector<int32_t> tokens(size_t(opt.batch) * size_t(device_opt ? opt.accum : 1) * T);
    const double flops_per_image = train_flops_per_image(opt.cfg);
    const auto session_start = clock::now();
    const double wall_before = ck.wall_seconds;
    double step_seconds = 0;
    int64_t step_images = 0;
    const int64_t first_step = ck.step;
    while (ck.step < opt.steps) {
        const auto t0 = clock::now();
        const int64_t step = ck.step;
        const float lr = sched.at(step);
        const float scale = 1.0f / float(double(opt.batch) * opt.accum * T);
        double nats = 0, gnorm = 0;
        if (device_opt) {
            for (int32_t a = 0; a < opt.accum; a++)
                sampler.next(ck.cursor, opt.batch, tokens.data() + size_t(a) * size_t(opt.batch) * T);
            const StepCompute::StepStats st = compute.train_step(tokens.data(), opt.batch, opt.accum, scale, opt.clip,
                                                                 step + 1, lr, ap.beta1, ap.beta2, ap.eps,
                                                                 ap.weight_decay);
            nats = st.nats;
            gnorm = st.grad_norm;
        } else {
            std::fill(grads.begin(), grads.end(), 0.0f);
            for (int32_t a = 0; a < opt.accum; a++) {
                sampler.next(ck.cursor, opt.batch, tokens.data());
                nats += compute.forward_backward(ck.params.data(), tokens.data(), opt.batch, scale, grads.data());
            }
        }
        const double loss = nats / (double(opt.batch) * opt.accum * T);
        if (!std::isfinite(loss)) throw Error("training diverged at step " + std::to_string(step) + " (loss is " +
                                              std::to_string(loss) + "); try a lower --lr");
        if (!device_opt) {
            gnorm = clip_grad_norm(grads.data(), n_params, opt.clip);
            adamw_step(ck.params.data(), grads.data(), ck.adam_m.data(), ck.adam_v.data(), mask.data(), n_params,
                       step + 1, lr, ap);
        }
        ck.step = step + 1;
        const bool eval_now = ck.step % opt.eval_every == 0 || ck.step == opt.steps;
        const bool ckpt_now = ck.step % opt.ckpt_every == 0 || ck.step == opt.steps;
        const bool stop = cb.should_stop && cb.should_stop() && ck.step < opt.steps;  // checkpoint here, then stop
        if (device_opt && (eval_now || ckpt_now || stop))
            compute.get_state(ck.params.data(), ck.adam_m.data(), ck.adam_v.data());
        const double dt = std::chrono::duration<double>(clock::now() - t0).count();
        step_seconds += dt;
        step_images += int64_t(opt.batch) * opt.accum;
        const double tok_s = double(opt.batch) * opt.accum * T / dt;

        json line = {{"step", ck.step},
                     {"train_loss", loss},
                     {"train_bpp", loss / std::log(2.0)},
                     {"lr", lr},
                     {"grad_norm", gnorm},
                     {"tokens_per_s", tok_s},
                     {"elapsed_s", wall_before + std::chrono::duration<double>(clock::now() - session_start).count()}};
        if (eval_now) {
            line["val_bpp"] = eval_bpp(compute, ck.params, eval_set, n_eval, T, opt.batch);
            line["val_images"] = n_eval;
        }
        append_line(metrics_path, line);
        if (cb.on_step) cb.on_step(ck.step, opt.steps, loss, tok_s);
        if (ckpt_now || stop) {
            ck.wall_seconds = wall_before + std::chrono::duration<double>(clock::now() - session_start).count();
            save_checkpoint(ckpt_path, ck);
        }
        if (stop)
            throw Error("stopped at step " + std::to_string(ck.step) + " of " + std::to_string(opt.steps) +
                        "; checkpoint saved: continue with --resume --out " + out_dir + ", or igpt export it");
    }
    ck.wall_seconds = wall_before + std::chrono::duration<double>(clock::now() - session_start).count();
    if (ck.step == first_step) save_checkpoint(ckpt_path, ck);  // nothing to do: keep the file current

    // --- final evaluation and export ---
    TrainResult r;
    r.steps = ck.step;
    r.baselines = base;
    r.val_images = n_final;
    r.wall_seconds = ck.wall_seconds;
    r.tokens_per_s = step_seconds > 0 ? double(step_images) * T / step_seconds : 0;
    r.gflops = step_seconds > 0 ? double(step_images) * flops_per_image / step_seconds * 1e-9 : 0;
    log("final evaluation on " + std::to_string(n_final) + " validation images");
    r.val_bpp = eval_bpp(compute, ck.params, final_set, n_final, T, opt.batch);
    append_line(metrics_path, json{{"final", true},
                                   {"step", ck.step},
                                   {"val_bpp", r.val_bpp},
                                   {"val_images", n_final},
                                   {"unigram_bpp", base.unigram_bpp},
                                   {"left_neighbour_bpp", base.left_bpp},
                                   {"wall_s", r.wall_seconds}});
    json prov = {{"trainer", "igpt train (src/train)"},
                 {"data", opt.data},
                 {"val_data", opt.val_data.empty() ? "split of data" : opt.val_data},
                 {"train_images", train_data.size()},
                 {"command", opt.command},
                 {"init", opt.init.empty() ? json(nullptr) : json(opt.init)},
                 {"steps", ck.step},
                 {"images_seen", ck.step * opt.batch * opt.accum},
                 {"batch", opt.batch * opt.accum},
                 {"wall_seconds", r.wall_seconds},
                 {"hardware", hardware},
                 {"val_bpp", r.val_bpp},
                 {"val_images", n_final},
                 {"baseline_unigram_bpp", base.unigram_bpp},
                 {"baseline_left_neighbour_bpp", base.left_bpp},
                 {"date", now_utc()}};
    Model m;
    m.cfg = ck.cfg;
    m.palette = ck.palette;
    m.specs = specs;
    m.params = ck.params;
    m.provenance = prov.dump();
    r.model_path = (fs::path(out_dir) / "model.safetensors").string();
    save_model(m, r.model_path, DType::F32);
    return r;
}

}  // namespace igpt::train
