// Representation learning from the command line (Chen et al. 2020, section 3.3):
//   igpt features  pooled features of any layer (or all) -> .npy (float32) + labels .npy (int32)
//   igpt probe     linear probes per layer (logistic regression, L-BFGS), the best layer, a PNG like the
//                  paper's accuracy-versus-layer figure; --raw: the raw-pixel baseline
//   igpt finetune  a classification head trained jointly with the generative loss -> a new model file
//   igpt classify  a fine-tuned model's predictions / accuracy
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <thread>
#include <nlohmann/json.hpp>

#include "chart.h"
#include "dataset.h"
#include "cli_util.h"
#include "commands.h"
#include "error.h"
#include "image_features.h"
#include "finetune.h"
#include "logreg.h"
#include "npy.h"
#include "progress.h"
#include "train_model.h"
#include "trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace igpt_cli {

namespace {

using igpt::Error;
namespace pr = igpt::probe;

// --- shared pieces ------------------------------------------------------------------------------------

std::string hardware(int32_t threads) {
    return igpt::train::hardware_description(threads > 0 ? threads : int32_t(std::thread::hardware_concurrency()));
}

pr::ProgressFn bar_fn(std::unique_ptr<Progress>& bar, const std::string& label, const std::string& unit = "img") {
    return [&bar, label, unit](int64_t done, int64_t total) {
        if (!bar) bar = std::make_unique<Progress>(label, total, unit);
        bar->update(done);
        if (done >= total) bar.reset();
    };
}

pr::LabelledImages load_split(const std::string& path, int64_t limit, uint64_t seed, int32_t h, int32_t w,
                              int32_t threads, const std::string& what) {
    std::unique_ptr<Progress> bar;
    return pr::load_labelled_images(path, limit, seed, h, w, threads, bar_fn(bar, "reading " + what + " images"));
}

// The layers a --layer option names: "all" = 0..L, else one integer in [0, L].
std::vector<int32_t> parse_layers(const std::string& s, int32_t L) {
    if (s == "all") {
        std::vector<int32_t> v;
        for (int32_t l = 0; l <= L; l++) v.push_back(l);
        return v;
    }
    size_t used = 0;
    int32_t l = -1;
    try {
        l = std::stoi(s, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used != s.size() || s.empty()) throw Error("--layer must be a number or 'all', not '" + s + "'");
    if (l < 0 || l > L)
        throw Error("--layer " + s + " is out of range: the model has layers 0.." + std::to_string(L) + " (" +
                    std::to_string(L) + " = the final norm's output)");
    return {l};
}

// Features (layers, n, C) of images through the model, timed.
std::vector<float> model_features(const igpt::Model& model, const pr::LabelledImages& imgs,
                                  const std::vector<int32_t>& layers, int32_t batch, int32_t threads,
                                  const std::string& device, double* images_per_s) {
    const std::vector<int32_t> tokens = pr::quantize_images(imgs, model.palette, threads);
    auto backend = igpt::make_backend(parse_device(device), model, threads);
    std::unique_ptr<Progress> bar;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<float> f =
        pr::extract_features(*backend, model.cfg, tokens.data(), imgs.n, layers, batch, bar_fn(bar, "features"));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (images_per_s) *images_per_s = s > 0 ? double(imgs.n) / s : 0;
    return f;
}

std::string labels_path_for(const std::string& features_path) {
    const fs::path p(features_path);
    return (p.parent_path() / (p.stem().string() + ".labels.npy")).string();
}

void require_labels(const std::vector<int32_t>& labels, const std::string& what) {
    for (int32_t y : labels)
        if (y < 0)
            throw Error(what + " has no class labels (a flat folder?); give class subfolders (ImageFolder) or "
                               "CIFAR-10 batches");
}

// Train and test classes must agree name by name (they index the same head / probe).
void check_same_classes(const std::vector<std::string>& a, const std::vector<std::string>& b, const std::string& an,
                        const std::string& bn) {
    if (a.empty() || b.empty() || a == b) return;
    throw Error("the classes of " + an + " (" + std::to_string(a.size()) + ") and " + bn + " (" +
                std::to_string(b.size()) + ") differ; both need the same class subfolders");
}

// Splits images into train/test (seeded, test_fraction of them) when no test set is given.
void split_images(pr::LabelledImages& all, pr::LabelledImages& test, double test_fraction, uint64_t seed) {
    const igpt::train::Split s = igpt::train::split_indices(all.n, test_fraction, igpt::train::mix_seed(seed, 7));
    if (s.train.empty() || s.val.empty())
        throw Error(all.root + ": too few images (" + std::to_string(all.n) + ") to split into train and test");
    const size_t px = size_t(all.h) * size_t(all.w) * 3;
    auto take = [&](const std::vector<int64_t>& idx) {
        pr::LabelledImages o;
        o.root = all.root;
        o.classes = all.classes;
        o.h = all.h;
        o.w = all.w;
        o.n = int64_t(idx.size());
        for (int64_t i : idx) {
            o.labels.push_back(all.labels[size_t(i)]);
            o.rgb.insert(o.rgb.end(), all.rgb.begin() + ptrdiff_t(size_t(i) * px),
                         all.rgb.begin() + ptrdiff_t(size_t(i + 1) * px));
        }
        return o;
    };
    test = take(s.val);
    all = take(s.train);
}

// --- the probe's figure: accuracy against layer ---------------------------------------------------------

struct LayerScore {
    int32_t layer;
    pr::ProbeResult r;
};

void plot_probe(const std::string& out, const std::vector<LayerScore>& rows, const pr::ProbeResult* raw,
                const std::string& title) {
    const int32_t W = 900, H = 600, L = 90, R = 40, T = 150, B = 70;
    Canvas cv(W, H);
    const uint8_t black[3] = {0, 0, 0}, grid[3] = {225, 225, 225}, grey[3] = {90, 90, 90};
    double y0 = 1e9, y1 = 0;
    for (const auto& s : rows) {
        y0 = std::min({y0, 100 * s.r.test_acc, 100 * s.r.val_acc});
        y1 = std::max({y1, 100 * s.r.test_acc, 100 * s.r.val_acc});
    }
    if (raw) {
        y0 = std::min(y0, 100 * raw->test_acc);
        y1 = std::max(y1, 100 * raw->test_acc);
    }
    const double pad = std::max(2.0, 0.1 * (y1 - y0));
    y0 = std::max(0.0, y0 - pad);
    y1 = std::min(100.0, y1 + pad);
    const double x0 = rows.front().layer - 0.3, x1 = rows.back().layer + 0.3;
    auto X = [&](double l) { return L + (W - L - R) * (l - x0) / std::max(1e-9, x1 - x0); };
    const YAxis ya{W, H, L, R, T, B, y0, y1};
    auto Y = [&](double v) { return ya.Y(v); };
    for (const auto& s : rows) {
        const std::string t = std::to_string(s.layer);
        cv.line(X(s.layer), T, X(s.layer), H - B, grid, 1);
        cv.text(X(s.layer) - Canvas::text_width(t) / 2.0, H - B + 10, t, black);
    }
    ya.draw(cv, grid, black);
    const std::string xl = "layer (" + std::to_string(rows.back().layer) + " = final norm)";
    cv.text((W - Canvas::text_width(xl)) / 2.0, H - 35, xl, black);
    cv.text(10, 12, title, black);
    cv.text(10, 40, "linear probe accuracy (%) on pooled features", grey);

    const uint8_t* test_c = series_colour(0);
    uint8_t val_c[3];
    for (int k = 0; k < 3; k++) val_c[k] = uint8_t(test_c[k] + (255 - test_c[k]) * 0.5);
    for (size_t i = 0; i < rows.size(); i++) {
        const auto& s = rows[i];
        if (i > 0) {
            cv.line(X(rows[i - 1].layer), Y(100 * rows[i - 1].r.val_acc), X(s.layer), Y(100 * s.r.val_acc), val_c, 2);
            cv.line(X(rows[i - 1].layer), Y(100 * rows[i - 1].r.test_acc), X(s.layer), Y(100 * s.r.test_acc), test_c, 3);
        }
        const int32_t px = int32_t(X(s.layer)), py = int32_t(Y(100 * s.r.test_acc));
        cv.rect(px - 5, py - 5, px + 6, py + 6, test_c);
        char b[32];
        std::snprintf(b, sizeof b, "%.1f", 100 * s.r.test_acc);
        cv.text(px - Canvas::text_width(b) / 2.0, py - 24, b, black);
    }
    int32_t ly = 72;
    const int32_t lx = L;
    auto legend = [&](const uint8_t* c, const std::string& s, bool dashed) {
        if (dashed)
            for (int32_t x = lx; x < lx + 30; x += 10) cv.rect(x, ly + 4, x + 6, ly + 8, c);
        else cv.rect(lx, ly + 3, lx + 30, ly + 9, c);
        cv.text(lx + 40, ly - 2, s, black);
        ly += 24;
    };
    legend(test_c, "test accuracy (probe refit on all train)", false);
    legend(val_c, "validation accuracy (chooses L2)", false);
    if (raw) {
        const uint8_t* rc = series_colour(3);
        for (double x = L; x < W - R; x += 14) cv.rect(int32_t(x), int32_t(Y(100 * raw->test_acc)) - 1, int32_t(x) + 8,
                                                      int32_t(Y(100 * raw->test_acc)) + 2, rc);
        char b[64];
        std::snprintf(b, sizeof b, "raw pixels: %.1f%%", 100 * raw->test_acc);
        legend(rc, b, true);
    }
    igpt::write_png(out, cv.image(), {{"Software", "igpt probe"}, {"Title", title}});
}

// Runs the probe on (layers, n, D) features, prints the table, and returns the rows.
std::vector<LayerScore> probe_layers(const std::vector<float>& ftr, const std::vector<int32_t>& ytr,
                                     const std::vector<float>& fte, const std::vector<int32_t>& yte,
                                     const std::vector<int32_t>& layers, int64_t D, int32_t K,
                                     const pr::ProbeOptions& po, const char* what) {
    const int64_t ntr = int64_t(ytr.size()), nte = int64_t(yte.size());
    std::vector<LayerScore> rows;
    for (size_t k = 0; k < layers.size(); k++) {
        const auto t0 = std::chrono::steady_clock::now();
        LayerScore s{layers[k], pr::linear_probe(&ftr[k * size_t(ntr * D)], ytr.data(), ntr, &fte[k * size_t(nte * D)],
                                                 yte.data(), nte, D, K, po)};
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("%-8s %5s  test %6.2f%%  val %6.2f%%  train %6.2f%%  l2 %-7g (%d iterations, %.1f s)\n", what,
                    layers.size() == 1 && layers[0] < 0 ? "-" : std::to_string(s.layer).c_str(), 100 * s.r.test_acc,
                    100 * s.r.val_acc, 100 * s.r.train_acc, s.r.l2, s.r.iterations, sec);
        std::fflush(stdout);
        rows.push_back(std::move(s));
    }
    return rows;
}

int32_t n_classes(const std::vector<std::string>& classes, const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
    int32_t k = int32_t(classes.size());
    for (int32_t y : a) k = std::max(k, y + 1);
    for (int32_t y : b) k = std::max(k, y + 1);
    return k;
}

json probe_json(const pr::ProbeResult& r) {
    json g = json::array();
    for (const auto& [l2, acc] : r.grid) g.push_back({{"l2", l2}, {"val_acc", acc}});
    return {{"test_acc", r.test_acc}, {"val_acc", r.val_acc}, {"train_acc", r.train_acc}, {"l2", r.l2},
            {"iterations", r.iterations}, {"grid", g}};
}

void write_text(const std::string& path, const std::string& s) {
    igpt::write_file_atomic(path, reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

// --- igpt features --------------------------------------------------------------------------------------

struct FeatureArgs {
    std::vector<std::string> inputs;  // MODEL DATA, or DATA with --raw
    std::string out = "features.npy", labels_out, layer = "all", device = "cpu";
    bool raw = false;
    int64_t limit = 0;
    uint64_t seed = 1;
    int32_t batch = 8, threads = 0, res = 32;
};

void run_features(const FeatureArgs& a) {
    if (a.raw ? a.inputs.size() != 1 : a.inputs.size() != 2)
        throw Error(a.raw ? "features --raw takes one DATA argument (no model)"
                          : "features takes MODEL DATA (or --raw DATA for raw pixels)");
    const std::string data = a.inputs.back();
    const std::string labels_out = a.labels_out.empty() ? labels_path_for(a.out) : a.labels_out;
    pr::LabelledImages imgs;
    std::vector<float> f;
    std::vector<int64_t> shape;
    if (a.raw) {
        imgs = load_split(data, a.limit, a.seed, a.res, a.res, a.threads, "");
        f = pr::raw_pixel_features(imgs);
        shape = {imgs.n, int64_t(imgs.h) * imgs.w * 3};
    } else {
        const igpt::Model model = igpt::load_model(a.inputs[0]);
        const std::vector<int32_t> layers = parse_layers(a.layer, model.cfg.layers);
        imgs = load_split(data, a.limit, a.seed, model.cfg.image_h, model.cfg.image_w, a.threads, "");
        double ips = 0;
        f = model_features(model, imgs, layers, a.batch, a.threads, a.device, &ips);
        shape = a.layer == "all" ? std::vector<int64_t>{int64_t(layers.size()), imgs.n, model.cfg.width}
                                 : std::vector<int64_t>{imgs.n, model.cfg.width};
        std::printf("features: %lld images at %.1f images/s (batch %d)\n", (long long)imgs.n, ips, a.batch);
    }
    pr::write_npy_f32(a.out, f.data(), shape);
    pr::write_npy_i32(labels_out, imgs.labels.data(), {imgs.n});
    std::string sh;
    for (int64_t d : shape) sh += (sh.empty() ? "" : ", ") + std::to_string(d);
    std::printf("wrote %s (float32, shape (%s)) and %s (int32 labels)\n", a.out.c_str(), sh.c_str(), labels_out.c_str());
    if (!imgs.classes.empty()) {
        std::string c;
        for (size_t i = 0; i < imgs.classes.size(); i++) c += (i ? ", " : "") + std::to_string(i) + "=" + imgs.classes[i];
        std::printf("classes: %s\n", c.c_str());
    } else {
        std::printf("no class labels (flat folder): labels are -1\n");
    }
}

// --- igpt probe -----------------------------------------------------------------------------------------

struct ProbeArgs {
    std::vector<std::string> inputs;  // [MODEL] [DATA]
    std::string train, test, train_features, test_features, train_labels, test_labels;
    std::string layer = "all", out_png, out_json, device = "cpu", replot;
    bool raw = false, with_raw = false;
    int64_t limit = 0, test_limit = 0;
    double test_fraction = 0.2, val_fraction = 0.2;
    std::vector<double> l2_grid = {1e-5, 1e-4, 1e-3, 1e-2, 1e-1};
    int32_t max_iter = 500;
    uint64_t seed = 1;
    int32_t batch = 8, threads = 0, res = 32;
};

// Features and labels from .npy files: (n, D) or (layers, n, D) floats and (n) int32 labels.
void read_feature_files(const std::string& fpath, std::string lpath, std::vector<float>& f, std::vector<int32_t>& y,
                        int64_t& layers, int64_t& D) {
    if (lpath.empty()) lpath = labels_path_for(fpath);
    pr::NpyData<float> a = pr::read_npy_f32(fpath, 2, 3);
    pr::NpyData<int32_t> l = pr::read_npy_i32(lpath, 1, 1);
    const int64_t n = a.shape[a.shape.size() - 2];
    if (l.shape[0] != n)
        throw Error(fpath + " holds " + std::to_string(n) + " feature rows but " + lpath + " holds " +
                    std::to_string(l.shape[0]) + " labels");
    require_labels(l.v, lpath);
    layers = a.shape.size() == 3 ? a.shape[0] : 1;
    D = a.shape.back();
    if (n < 1 || D < 1) throw Error(fpath + ": empty feature array");
    f = std::move(a.v);
    y = std::move(l.v);
}

// Redraws the figure from a --json file written by an earlier run.
void replot(const std::string& json_path, const std::string& png) {
    std::ifstream in(json_path);
    if (!in) throw Error("cannot open " + json_path);
    const json j = json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("layers") || !j["layers"].is_array() || j["layers"].size() < 2)
        throw Error(json_path + ": not the --json of an igpt probe over several layers");
    std::vector<LayerScore> rows;
    try {
        for (const auto& e : j["layers"]) {
            LayerScore s{e.at("layer").get<int32_t>(), {}};
            s.r.test_acc = e.at("test_acc").get<double>();
            s.r.val_acc = e.at("val_acc").get<double>();
            rows.push_back(s);
        }
        pr::ProbeResult raw;
        if (j.contains("raw")) raw.test_acc = j["raw"].at("test_acc").get<double>();
        const std::string title = j.value("title", fs::path(j.value("model", std::string("features"))).filename().string() +
                                                      ": " + std::to_string(j.value("n_train", 0)) + " train / " +
                                                      std::to_string(j.value("n_test", 0)) + " test images");
        plot_probe(png, rows, j.contains("raw") ? &raw : nullptr, title);
    } catch (const json::exception& e) {
        throw Error(json_path + ": " + e.what());
    }
}

void run_probe(ProbeArgs a) {
    if (!a.replot.empty()) {
        if (a.out_png.empty()) throw Error("--replot needs -o PNG");
        replot(a.replot, a.out_png);
        std::printf("wrote %s\n", a.out_png.c_str());
        return;
    }
    pr::ProbeOptions po;
    po.l2_grid = a.l2_grid;
    po.val_fraction = a.val_fraction;
    po.seed = a.seed;
    po.threads = a.threads;
    po.max_iterations = a.max_iter;
    if (a.val_fraction <= 0 || a.val_fraction >= 1) throw Error("--val-fraction must be between 0 and 1");
    for (double l2 : a.l2_grid)
        if (!(l2 >= 0)) throw Error("--l2 values must be >= 0");

    std::vector<float> ftr, fte;
    std::vector<int32_t> ytr, yte;
    std::vector<int32_t> layers;
    std::vector<std::string> classes;
    int64_t D = 0;
    std::string title;
    json j;
    std::unique_ptr<pr::ProbeResult> raw_result;
    int32_t K = 0;

    if (!a.train_features.empty()) {
        // --- from .npy files ---
        if (!a.inputs.empty() || !a.train.empty() || a.raw || a.with_raw)
            throw Error("give either --train-features (and --test-features) or a model and data, not both");
        if (a.test_features.empty()) throw Error("--train-features needs --test-features");
        int64_t Ltr = 0, Lte = 0, Dte = 0;
        read_feature_files(a.train_features, a.train_labels, ftr, ytr, Ltr, D);
        read_feature_files(a.test_features, a.test_labels, fte, yte, Lte, Dte);
        if (Ltr != Lte || D != Dte)
            throw Error("train features (" + std::to_string(Ltr) + " layers of width " + std::to_string(D) +
                        ") and test features (" + std::to_string(Lte) + " layers of width " + std::to_string(Dte) +
                        ") do not match");
        for (int32_t l = 0; l < int32_t(Ltr); l++) layers.push_back(Ltr == 1 ? -1 : l);
        title = fs::path(a.train_features).filename().string();
        j["train_features"] = a.train_features;
        j["test_features"] = a.test_features;
    } else {
        // --- from images, through the model (or raw pixels) ---
        std::string model_path;
        if (a.raw) {
            if (a.inputs.size() > 1) throw Error("probe --raw takes DATA only (no model)");
            if (a.inputs.size() == 1) {
                if (!a.train.empty()) throw Error("give the training data once (DATA or --train)");
                a.train = a.inputs[0];
            }
        } else {
            if (a.inputs.empty()) throw Error("probe needs a MODEL (or --raw, or --train-features)");
            model_path = a.inputs[0];
            if (a.inputs.size() == 2) {
                if (!a.train.empty()) throw Error("give the training data once (DATA or --train)");
                a.train = a.inputs[1];
            }
            if (a.inputs.size() > 2) throw Error("probe takes MODEL [DATA]");
        }
        if (a.train.empty()) throw Error("probe needs training images (--train DATA)");
        std::unique_ptr<igpt::Model> model;
        if (!a.raw) model = std::make_unique<igpt::Model>(igpt::load_model(model_path));
        const int32_t h = model ? model->cfg.image_h : a.res, w = model ? model->cfg.image_w : a.res;
        pr::LabelledImages tr = load_split(a.train, a.limit, a.seed, h, w, a.threads, "training");
        require_labels(tr.labels, a.train);
        pr::LabelledImages te;
        if (a.test.empty()) {
            split_images(tr, te, a.test_fraction, a.seed);
            std::printf("no --test: %lld training images, %lld held out for testing (seeded split)\n", (long long)tr.n,
                        (long long)te.n);
        } else {
            te = load_split(a.test, a.test_limit, a.seed, h, w, a.threads, "test");
        }
        require_labels(te.labels, a.test.empty() ? a.train : a.test);
        check_same_classes(tr.classes, te.classes, a.train, a.test);
        classes = tr.classes;
        ytr = tr.labels;
        yte = te.labels;
        j["train"] = a.train;
        j["test"] = a.test.empty() ? "seeded split of train" : a.test;
        if (model) {
            layers = parse_layers(a.layer, model->cfg.layers);
            double ips_tr = 0, ips_te = 0;
            ftr = model_features(*model, tr, layers, a.batch, a.threads, a.device, &ips_tr);
            fte = model_features(*model, te, layers, a.batch, a.threads, a.device, &ips_te);
            D = model->cfg.width;
            const double ips = double(tr.n + te.n) / (double(tr.n) / ips_tr + double(te.n) / ips_te);
            std::printf("features: %lld + %lld images at %.1f images/s (batch %d, %s)\n", (long long)tr.n,
                        (long long)te.n, ips, a.batch, hardware(a.threads).c_str());
            j["model"] = model_path;
            j["features_images_per_s"] = ips;
            title = fs::path(model_path).filename().string() + ": " + std::to_string(tr.n) + " train / " +
                    std::to_string(te.n) + " test images";
        } else {
            title = "raw pixels: " + std::to_string(tr.n) + " train / " + std::to_string(te.n) + " test images";
        }
        if (a.raw || a.with_raw) {
            const std::vector<float> rtr = pr::raw_pixel_features(tr), rte = pr::raw_pixel_features(te);
            K = n_classes(classes, ytr, yte);
            auto rows = probe_layers(rtr, ytr, rte, yte, {-1}, int64_t(tr.h) * tr.w * 3, K, po, "raw");
            raw_result = std::make_unique<pr::ProbeResult>(rows[0].r);
            j["raw"] = probe_json(rows[0].r);
        }
    }
    j["title"] = title;
    j["n_train"] = ytr.size();
    j["n_test"] = yte.size();
    j["classes"] = classes;
    K = n_classes(classes, ytr, yte);
    if (K < 2) throw Error("the probe needs at least 2 classes (found " + std::to_string(K) + ")");
    if (layers.empty()) {  // --raw alone
        if (!a.out_json.empty()) write_text(a.out_json, j.dump(2) + "\n");
        return;
    }
    std::vector<LayerScore> rows = probe_layers(ftr, ytr, fte, yte, layers, D, K, po, "layer");
    json lj = json::array();
    const LayerScore* best = &rows[0];
    for (const auto& s : rows) {
        json e = probe_json(s.r);
        e["layer"] = s.layer;
        lj.push_back(e);
        if (s.r.val_acc > best->r.val_acc) best = &s;
    }
    j["layers"] = lj;
    if (rows.size() > 1) {
        // the best layer is chosen on validation accuracy (never on the test set)
        std::printf("best layer (by validation accuracy): %d, test accuracy %.2f%%\n", best->layer,
                    100 * best->r.test_acc);
        j["best_layer"] = best->layer;
        j["best_test_acc"] = best->r.test_acc;
    }
    if (!a.out_png.empty()) {
        if (rows.size() < 2 || rows[0].layer < 0) throw Error("-o needs probes of several layers (--layer all)");
        plot_probe(a.out_png, rows, raw_result.get(), title);
        std::printf("wrote %s\n", a.out_png.c_str());
    }
    if (!a.out_json.empty()) {
        write_text(a.out_json, j.dump(2) + "\n");
        std::printf("wrote %s\n", a.out_json.c_str());
    }
}

// --- igpt finetune / classify ---------------------------------------------------------------------------

struct FinetuneArgs {
    std::string model, train, test, out;
    pr::FinetuneOptions o;
    int64_t limit = 0, test_limit = 0;
    int32_t eval_batch = 8;
};

double head_accuracy(const igpt::Model& m, const pr::LabelledImages& imgs, int32_t batch, int32_t threads) {
    const std::vector<int32_t> tokens = pr::quantize_images(imgs, m.palette, threads);
    auto backend = igpt::make_cpu_backend(m, threads);
    std::unique_ptr<Progress> bar;
    const std::vector<float> logits =
        pr::classify_logits(*backend, m, tokens.data(), imgs.n, batch, bar_fn(bar, "classifying"));
    return pr::accuracy(pr::argmax_rows(logits, int32_t(m.classes.size())), imgs.labels.data());
}

void run_finetune(FinetuneArgs& a) {
    igpt::Model model = igpt::load_model(a.model);
    const auto& cfg = model.cfg;
    pr::LabelledImages tr = load_split(a.train, a.limit, a.o.seed, cfg.image_h, cfg.image_w, a.o.threads, "training");
    require_labels(tr.labels, a.train);
    pr::LabelledImages te;
    if (!a.test.empty()) {
        te = load_split(a.test, a.test_limit, a.o.seed, cfg.image_h, cfg.image_w, a.o.threads, "test");
        require_labels(te.labels, a.test);
        check_same_classes(tr.classes, te.classes, a.train, a.test);
    }
    const std::vector<int32_t> tokens = pr::quantize_images(tr, model.palette, a.o.threads);
    std::unique_ptr<Progress> init_bar, bar;
    pr::FinetuneCallbacks cb;
    cb.log = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
    cb.on_head_init = bar_fn(init_bar, "head init features");
    cb.on_step = [&](int64_t step, int64_t total, double gen, double clf) {
        if (!bar) bar = std::make_unique<Progress>("finetune", total, "step");
        char s[96];
        std::snprintf(s, sizeof s, "gen %.3f bpp, clf %.3f nats", gen / std::log(2.0), clf);
        bar->update(step, s);
    };
    const pr::FinetuneResult r = pr::finetune(model, tokens, tr.labels, tr.classes, a.o, cb);
    bar.reset();
    std::printf("fine-tuned %lld steps of %d images in %.0f s (%.2f images/s)\n", (long long)r.steps, a.o.batch,
                r.wall_seconds, r.images_per_s);
    std::printf("classification loss %.4f -> %.4f nats, generative %.4f -> %.4f bits/pixel (first / last 10%% of steps)\n",
                r.first_clf_loss, r.last_clf_loss, r.first_gen_loss / std::log(2.0), r.last_gen_loss / std::log(2.0));
    json prov = json::parse(model.provenance, nullptr, false);
    if (!prov.is_object()) prov = json::object();
    json ft = {{"command", command_line()},
               {"base_model", a.model},
               {"train", a.train},
               {"train_images", tr.n},
               {"steps", r.steps},
               {"batch", a.o.batch},
               {"alpha", a.o.alpha},
               {"lr", a.o.lr},
               {"head_init", a.o.head_init},
               {"wall_seconds", r.wall_seconds},
               {"hardware", hardware(a.o.threads)},
               {"clf_loss_first", r.first_clf_loss},
               {"clf_loss_last", r.last_clf_loss}};
    if (!a.test.empty()) {
        const double acc = head_accuracy(model, te, a.eval_batch, a.o.threads);
        std::printf("test accuracy of the head: %.2f%% on %lld images\n", 100 * acc, (long long)te.n);
        ft["test"] = a.test;
        ft["test_images"] = te.n;
        ft["test_acc"] = acc;
    }
    prov["finetune"] = ft;
    model.provenance = prov.dump();
    igpt::save_model(model, a.out, igpt::DType::F32);
    std::printf("wrote %s (%zu classes)\n", a.out.c_str(), model.classes.size());
}

struct ClassifyArgs {
    std::string model;
    std::vector<std::string> data;
    int64_t limit = 0;
    uint64_t seed = 1;
    int32_t batch = 8, threads = 0;
};

void run_classify(const ClassifyArgs& a) {
    const igpt::Model model = igpt::load_model(a.model);
    if (!model.has_head())
        throw Error(a.model + " has no classification head (make one with igpt finetune, or use igpt probe)");
    const auto& cfg = model.cfg;
    const int32_t K = int32_t(model.classes.size());
    // One labelled dataset (ImageFolder / CIFAR-10): accuracy. Otherwise: a prediction per image.
    std::error_code ec;
    const bool dataset = a.data.size() == 1 && (fs::is_directory(a.data[0], ec) || fs::path(a.data[0]).extension() == ".bin");
    if (dataset) {
        pr::LabelledImages imgs = load_split(a.data[0], a.limit, a.seed, cfg.image_h, cfg.image_w, a.threads, "");
        bool labelled = !imgs.classes.empty();
        if (labelled) {
            check_same_classes(model.classes, imgs.classes, a.model, a.data[0]);
            const double acc = head_accuracy(model, imgs, a.batch, a.threads);
            std::printf("accuracy %.2f%% on %lld images of %d classes\n", 100 * acc, (long long)imgs.n, K);
            return;
        }
    }
    const std::vector<std::string> files = expand_image_args(a.data);
    pr::LabelledImages imgs;
    imgs.h = cfg.image_h;
    imgs.w = cfg.image_w;
    for (const auto& f : files) {
        const igpt::Image im = igpt::prepare_image(igpt::load_image(f), cfg.image_h, cfg.image_w);
        imgs.rgb.insert(imgs.rgb.end(), im.rgb.begin(), im.rgb.end());
        imgs.labels.push_back(-1);
        imgs.n++;
    }
    const std::vector<int32_t> tokens = pr::quantize_images(imgs, model.palette, a.threads);
    auto backend = igpt::make_cpu_backend(model, a.threads);
    const std::vector<float> logits = pr::classify_logits(*backend, model, tokens.data(), imgs.n, a.batch);
    for (int64_t i = 0; i < imgs.n; i++) {
        const float* z = &logits[size_t(i * K)];
        const int32_t k = int32_t(std::max_element(z, z + K) - z);
        double s = 0;
        for (int32_t c = 0; c < K; c++) s += std::exp(double(z[c] - z[k]));
        std::printf("%s\t%s\t%.1f%%\n", files[size_t(i)].c_str(), model.classes[size_t(k)].c_str(), 100.0 / s);
    }
}

}  // namespace

void register_probe(CLI::App& app) {
    {
        auto a = std::make_shared<FeatureArgs>();
        auto* c = app.add_subcommand("features", "pooled features of a layer (or all) for labelled images -> .npy");
        c->add_option("inputs", a->inputs, "MODEL DATA (DATA: class subfolders, a flat folder, or CIFAR-10 .bin)")
            ->required();
        c->add_option("-o,--out", a->out, "features .npy (float32: (n, width), or (layers, n, width) for all)")
            ->capture_default_str();
        c->add_option("--labels-out", a->labels_out, "labels .npy (int32; default: OUT's stem + .labels.npy)");
        c->add_option("--layer", a->layer, "block whose ln_1 output is pooled (L = the final norm), or 'all'")
            ->capture_default_str();
        c->add_flag("--raw", a->raw, "raw pixels instead (RGB scaled to [0, 1], (n, res*res*3)); no model");
        c->add_option("--res", a->res, "resolution of --raw")->capture_default_str()->check(CLI::Range(1, 1024));
        c->add_option("--limit", a->limit, "at most N images, balanced over classes, seeded (0 = all)")
            ->check(CLI::NonNegativeNumber);
        c->add_option("--seed", a->seed, "seed of --limit")->capture_default_str();
        c->add_option("-b,--batch", a->batch, "images per forward pass")->capture_default_str()->check(CLI::Range(1, 256));
        c->add_option("-j,--threads", a->threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
        c->add_option("--device", a->device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}));
        c->callback([a] { run_features(*a); });
    }
    {
        auto a = std::make_shared<ProbeArgs>();
        auto* c = app.add_subcommand(
            "probe", "linear probes (logistic regression) on every layer's pooled features, or on raw pixels (--raw)");
        c->add_option("inputs", a->inputs, "MODEL [DATA]; with --raw: [DATA]");
        c->add_option("--train", a->train, "training images (class subfolders or CIFAR-10 .bin)");
        c->add_option("--test", a->test, "test images (default: a seeded --test-fraction of --train)");
        c->add_option("--test-fraction", a->test_fraction, "held-out share when there is no --test")
            ->capture_default_str();
        c->add_option("--limit", a->limit, "at most N training images, balanced over classes, seeded (0 = all)")
            ->check(CLI::NonNegativeNumber);
        c->add_option("--test-limit", a->test_limit, "at most N test images, balanced, seeded (0 = all)")
            ->check(CLI::NonNegativeNumber);
        c->add_option("--layer", a->layer, "one layer or 'all'")->capture_default_str();
        c->add_flag("--raw", a->raw, "probe raw pixels (the baseline; no model)");
        c->add_flag("--with-raw", a->with_raw, "also probe raw pixels on the same images (drawn in the figure)");
        c->add_option("--res", a->res, "resolution of --raw")->capture_default_str()->check(CLI::Range(1, 1024));
        c->add_option("--train-features", a->train_features, "probe saved features (.npy from igpt features)");
        c->add_option("--test-features", a->test_features, "their test features");
        c->add_option("--train-labels", a->train_labels, "labels of --train-features (default: STEM.labels.npy)");
        c->add_option("--test-labels", a->test_labels, "labels of --test-features (default: STEM.labels.npy)");
        c->add_option("--l2", a->l2_grid, "L2 strengths to choose from on the validation split")->capture_default_str();
        c->add_option("--val-fraction", a->val_fraction, "validation share of the training features")
            ->capture_default_str();
        c->add_option("--max-iter", a->max_iter, "L-BFGS iterations per fit")->capture_default_str()
            ->check(CLI::Range(1, 100000));
        c->add_option("-o,--out", a->out_png, "PNG of accuracy against layer");
        c->add_option("--json", a->out_json, "write the results as JSON");
        c->add_option("--replot", a->replot, "only redraw -o PNG from an earlier run's --json");
        c->add_option("--seed", a->seed, "seed of --limit and the splits")->capture_default_str();
        c->add_option("-b,--batch", a->batch, "images per forward pass")->capture_default_str()->check(CLI::Range(1, 256));
        c->add_option("-j,--threads", a->threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
        c->add_option("--device", a->device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}));
        c->callback([a] { run_probe(*a); });
    }
    {
        auto a = std::make_shared<FinetuneArgs>();
        pr::FinetuneOptions& o = a->o;
        auto* c = app.add_subcommand("finetune",
                                     "train a classification head jointly with the generative loss -> a new model file");
        c->add_option("model", a->model, "pretrained model file")->required();
        c->add_option("--train", a->train, "training images with classes (class subfolders or CIFAR-10 .bin)")
            ->required();
        c->add_option("--test", a->test, "test images: the head's accuracy is reported at the end");
        c->add_option("-o,--out", a->out, "model file to write (with clf.w, clf.b)")->required();
        c->add_option("--limit", a->limit, "at most N training images, balanced, seeded (0 = all)")
            ->check(CLI::NonNegativeNumber);
        c->add_option("--test-limit", a->test_limit, "at most N test images, balanced, seeded (0 = all)")
            ->check(CLI::NonNegativeNumber);
        c->add_option("--alpha", o.alpha, "loss = L_gen + alpha * L_clf")->capture_default_str();
        c->add_option("--steps", o.steps, "optimizer steps")->capture_default_str()->check(CLI::PositiveNumber);
        c->add_option("--batch", o.batch, "images per step")->capture_default_str()->check(CLI::Range(1, 1024));
        c->add_option("--lr", o.lr, "peak learning rate (cosine decay)")->capture_default_str();
        c->add_option("--head-lr-mult", o.head_lr_mult, "the head's learning rate = lr * this")->capture_default_str();
        c->add_option("--warmup", o.warmup, "linear warmup steps")->capture_default_str();
        c->add_option("--weight-decay", o.weight_decay, "AdamW weight decay (matrices)")->capture_default_str();
        c->add_option("--clip", o.clip, "gradient norm clipping (0 = off)")->capture_default_str();
        c->add_option("--head-init", o.head_init, "probe (a linear probe on the pretrained features) or zero")
            ->capture_default_str()->check(CLI::IsMember({"probe", "zero"}));
        c->add_option("--head-init-images", o.head_init_images, "training images for --head-init probe")
            ->capture_default_str();
        c->add_flag("!--no-flip", o.flip, "no random horizontal flips");
        c->add_option("--time-limit", o.time_limit_s, "stop after this many seconds of training (0 = none)");
        c->add_option("--log", o.log_path, "JSON-lines log of every step");
        c->add_option("--seed", o.seed, "seed of data order, flips and --limit")->capture_default_str();
        c->add_option("-j,--threads", o.threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
        c->callback([a] { run_finetune(*a); });
    }
    {
        auto a = std::make_shared<ClassifyArgs>();
        auto* c = app.add_subcommand("classify", "a fine-tuned model's class predictions, or its accuracy on a dataset");
        c->add_option("model", a->model, "model file with a classification head (igpt finetune)")->required();
        c->add_option("data", a->data, "a labelled dataset (accuracy), or images / a flat folder (predictions)")
            ->required();
        c->add_option("--limit", a->limit, "at most N images of a dataset, balanced, seeded")
            ->check(CLI::NonNegativeNumber);
        c->add_option("--seed", a->seed, "seed of --limit")->capture_default_str();
        c->add_option("-b,--batch", a->batch, "images per forward pass")->capture_default_str()->check(CLI::Range(1, 256));
        c->add_option("-j,--threads", a->threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
        c->callback([a] { run_classify(*a); });
    }
}

}  // namespace igpt_cli
