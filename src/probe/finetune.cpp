// Joint generative + classification fine-tuning (see finetune.h).
#include "finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "dataset.h"  // mix_seed
#include "error.h"
#include "logreg.h"
#include "optim.h"
#include "sampler.h"
#include "train_model.h"

namespace igpt::probe {

std::vector<int32_t> argmax_rows(const std::vector<float>& logits, int32_t K) {
    std::vector<int32_t> out(logits.size() / size_t(K));
    for (size_t i = 0; i < out.size(); i++) {
        const float* z = &logits[i * size_t(K)];
        out[i] = int32_t(std::max_element(z, z + K) - z);
    }
    return out;
}

std::vector<float> classify_logits(Backend& backend, const Model& model, const int32_t* tokens, int64_t n,
                                   int32_t batch, const ProgressFn& progress) {
    if (!model.has_head())
        throw Error("the model has no classification head (fine-tune it first: igpt finetune)");
    const int64_t C = model.cfg.width, K = int64_t(model.classes.size());
    const std::vector<float> f = extract_features(backend, model.cfg, tokens, n, {model.cfg.layers}, batch, progress);
    std::vector<float> logits(static_cast<size_t>(n * K));
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < K; k++) {
            double s = model.clf_b[size_t(k)];
            for (int64_t c = 0; c < C; c++) s += double(model.clf_w[size_t(k * C + c)]) * f[size_t(i * C + c)];
            logits[size_t(i * K + k)] = float(s);
        }
    return logits;
}

FinetuneResult finetune(Model& model, const std::vector<int32_t>& tokens, const std::vector<int32_t>& labels,
                        const std::vector<std::string>& classes, const FinetuneOptions& o,
                        const FinetuneCallbacks& cb) {
    using clock = std::chrono::steady_clock;
    auto log = [&](const std::string& s) {
        if (cb.log) cb.log(s);
    };
    const ModelConfig& cfg = model.cfg;
    const int64_t T = cfg.n_ctx(), C = cfg.width, n = int64_t(labels.size());
    const int32_t K = int32_t(classes.size());
    if (K < 2) throw Error("fine-tuning needs at least 2 classes (have " + std::to_string(K) + ")");
    if (n < 1 || tokens.size() != size_t(n * T))
        throw Error("fine-tuning: " + std::to_string(tokens.size()) + " tokens do not make " + std::to_string(n) +
                    " images of " + std::to_string(T) + " pixels");
    for (int32_t y : labels)
        if (y < 0 || y >= K) throw Error("fine-tuning: label " + std::to_string(y) + " out of range");
    if (o.batch < 1 || o.steps < 1) throw Error("--batch and --steps must be >= 1");
    if (!(o.alpha >= 0)) throw Error("--alpha must be >= 0");
    if (o.head_init != "probe" && o.head_init != "zero")
        throw Error("--head-init must be probe or zero, not '" + o.head_init + "'");

    FinetuneResult r;
    // --- the head: (K, C) weights and (K) biases, one buffer [w | b] ---
    const size_t n_head = size_t(K) * size_t(C) + size_t(K);
    std::vector<float> head(n_head, 0.0f);
    if (o.head_init == "probe") {
        // a linear probe on the pooled final-norm features of (a balanced subset of) the training images,
        // folded back from standardised to raw features: W_raw = W / std, b_raw = b - W_raw · mean
        const std::vector<int64_t> pick = balanced_subset(labels, o.head_init_images, o.seed);
        std::vector<int32_t> t(pick.size() * size_t(T)), y(pick.size());
        for (size_t i = 0; i < pick.size(); i++) {
            std::copy_n(tokens.begin() + ptrdiff_t(size_t(pick[i]) * T), T, t.begin() + ptrdiff_t(i * T));
            y[i] = labels[size_t(pick[i])];
        }
        std::unique_ptr<Backend> be = make_cpu_backend(model, o.threads);
        const std::vector<float> f =
            extract_features(*be, cfg, t.data(), int64_t(pick.size()), {cfg.layers}, 8, cb.on_head_init);
        ProbeOptions po;
        po.seed = o.seed;
        po.threads = o.threads;
        const ProbeResult pr = linear_probe(f.data(), y.data(), int64_t(pick.size()), nullptr, nullptr, 0, C, K, po);
        for (int32_t k = 0; k < K; k++) {
            double b = pr.fit.theta[size_t(K) * C + k];
            for (int64_t c = 0; c < C; c++) {
                const double w = pr.fit.theta[size_t(k * C + c)] * pr.standardizer.inv_std[size_t(c)];
                head[size_t(k * C + c)] = float(w);
                b -= w * pr.standardizer.mean[size_t(c)];
            }
            head[size_t(K) * C + k] = float(b);
        }
        r.head_init_train_acc = pr.train_acc;
        char buf[160];
        std::snprintf(buf, sizeof buf, "head initialised by a linear probe on %zu images (l2 %g): train accuracy %.1f%%",
                      pick.size(), pr.l2, 100 * pr.train_acc);
        log(buf);
    }

    // --- optimiser state ---
    const size_t n_params = model.params.size();
    std::vector<float> grads(n_params), m(n_params, 0.0f), v(n_params, 0.0f);
    std::vector<float> hgrads(n_head), hm(n_head, 0.0f), hv(n_head, 0.0f);
    const std::vector<uint8_t> mask = train::decay_mask(model.specs);
    std::vector<uint8_t> hmask(n_head, 0);
    std::fill(hmask.begin(), hmask.begin() + ptrdiff_t(size_t(K) * C), uint8_t(1));
    train::LrSchedule sched;
    sched.lr = o.lr;
    sched.min_lr = o.lr * o.min_lr_frac;
    sched.warmup = o.warmup;
    sched.total = o.steps;
    train::AdamWParams ap;
    ap.weight_decay = o.weight_decay;
    train::TrainCompute compute(cfg, o.threads);
    std::ofstream logf;
    if (!o.log_path.empty()) {
        logf.open(o.log_path, std::ios::trunc);
        if (!logf) throw Error("cannot write " + o.log_path);
    }

    // --- the loop: seeded epoch permutations, seeded flips ---
    std::vector<int64_t> perm(static_cast<size_t>(n));
    int64_t epoch = -1, pos = n;
    std::vector<int32_t> bt(size_t(o.batch) * T), by(static_cast<size_t>(o.batch));
    std::vector<double> gen_hist, clf_hist;
    const auto start = clock::now();
    double elapsed = 0;
    int64_t step = 0;
    for (; step < o.steps; step++) {
        for (int32_t b = 0; b < o.batch; b++) {
            if (pos >= n) {
                epoch++;
                pos = 0;
                for (int64_t i = 0; i < n; i++) perm[size_t(i)] = i;
                Rng rng(train::mix_seed(o.seed, 0xF17E0000ull + uint64_t(epoch)));
                for (int64_t i = n - 1; i > 0; i--) std::swap(perm[size_t(i)], perm[size_t(rng.next() % uint64_t(i + 1))]);
            }
            const int64_t img = perm[size_t(pos)];
            Rng rng(train::mix_seed(o.seed, uint64_t(epoch * n + pos)));
            const bool flip = o.flip && (rng.next() & 1);
            const int32_t* src = &tokens[size_t(img * T)];
            int32_t* dst = &bt[size_t(b) * T];
            for (int32_t yy = 0; yy < cfg.image_h; yy++)
                for (int32_t xx = 0; xx < cfg.image_w; xx++)
                    dst[yy * cfg.image_w + xx] = src[yy * cfg.image_w + (flip ? cfg.image_w - 1 - xx : xx)];
            by[size_t(b)] = labels[size_t(img)];
            pos++;
        }
        std::fill(grads.begin(), grads.end(), 0.0f);
        std::fill(hgrads.begin(), hgrads.end(), 0.0f);
        const train::TrainCompute::ClfStats st =
            compute.forward_backward_clf(model.params.data(), head.data(), K, bt.data(), by.data(), o.batch,
                                         1.0f / float(double(o.batch) * T), o.alpha / float(o.batch), grads.data(),
                                         hgrads.data());
        const double gen = st.gen_nll / (double(o.batch) * T), clf = st.clf_nll / o.batch;
        if (!std::isfinite(gen) || !std::isfinite(clf))
            throw Error("fine-tuning diverged at step " + std::to_string(step) + "; try a lower --lr");
        // one global norm over network and head
        const double n1 = train::clip_grad_norm(grads.data(), n_params, 0), n2 = train::clip_grad_norm(hgrads.data(), n_head, 0);
        const double gnorm = std::sqrt(n1 * n1 + n2 * n2);
        if (o.clip > 0 && gnorm > o.clip) {
            const float s = float(o.clip / gnorm);
            for (float& g : grads) g *= s;
            for (float& g : hgrads) g *= s;
        }
        const float lr = sched.at(step);
        train::adamw_step(model.params.data(), grads.data(), m.data(), v.data(), mask.data(), n_params, step + 1, lr, ap);
        train::adamw_step(head.data(), hgrads.data(), hm.data(), hv.data(), hmask.data(), n_head, step + 1,
                          lr * o.head_lr_mult, ap);
        gen_hist.push_back(gen);
        clf_hist.push_back(clf);
        elapsed = std::chrono::duration<double>(clock::now() - start).count();
        if (logf)
            logf << nlohmann::json{{"step", step + 1}, {"gen_loss", gen}, {"gen_bpp", gen / std::log(2.0)},
                                   {"clf_loss", clf}, {"batch_acc", double(st.correct) / o.batch}, {"lr", lr},
                                   {"grad_norm", gnorm}, {"elapsed_s", elapsed}}.dump()
                 << "\n" << std::flush;
        if (cb.on_step) cb.on_step(step + 1, o.steps, gen, clf);
        if (o.time_limit_s > 0 && elapsed >= o.time_limit_s) {
            step++;
            log("stopping at step " + std::to_string(step) + ": --time-limit reached");
            break;
        }
    }
    r.steps = step;
    r.wall_seconds = elapsed;
    r.images_per_s = elapsed > 0 ? double(step) * o.batch / elapsed : 0;
    const size_t win = std::max<size_t>(1, gen_hist.size() / 10);
    for (size_t i = 0; i < win; i++) {
        r.first_gen_loss += gen_hist[i] / double(win);
        r.first_clf_loss += clf_hist[i] / double(win);
        r.last_gen_loss += gen_hist[gen_hist.size() - win + i] / double(win);
        r.last_clf_loss += clf_hist[clf_hist.size() - win + i] / double(win);
    }
    model.classes = classes;
    model.clf_w.assign(head.begin(), head.begin() + ptrdiff_t(size_t(K) * C));
    model.clf_b.assign(head.begin() + ptrdiff_t(size_t(K) * C), head.end());
    return r;
}

}  // namespace igpt::probe
