// `igpt plot`: the training curves of one or more runs (metrics.jsonl) drawn to a PNG: train bits per
// pixel (smoothed, thin) and validation bits per pixel (thick, with markers) against steps, one colour per
// run. Drawn by hand into an RGB buffer (chart.h).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>

#include "chart.h"
#include "commands.h"
#include "error.h"
#include "image.h"

namespace fs = std::filesystem;

namespace igpt_cli {

namespace {

struct Curve {
    std::string name;
    std::vector<std::pair<double, double>> train, val;  // (step, bpp)
};

Curve read_run(const std::string& path, int32_t index) {
    std::string file = fs::is_directory(path) ? (fs::path(path) / "metrics.jsonl").string() : path;
    std::ifstream in(file);
    if (!in) throw igpt::Error(file + ": cannot open metrics log");
    Curve c;
    c.name = fs::is_directory(path) ? fs::path(path).filename().string() : fs::path(path).parent_path().filename().string();
    if (c.name.empty() || c.name == ".") c.name = "run " + std::to_string(index + 1);
    std::string line;
    while (std::getline(in, line)) {
        nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object() || j.contains("final") || !j.contains("step")) continue;
        const double step = j["step"].get<double>();
        if (j.contains("train_bpp")) c.train.push_back({step, j["train_bpp"].get<double>()});
        if (j.contains("val_bpp")) c.val.push_back({step, j["val_bpp"].get<double>()});
    }
    if (c.train.empty() && c.val.empty()) throw igpt::Error(file + ": no metrics lines");
    // smooth the noisy per-step train loss (exponential moving average, bias-corrected)
    double ema = 0, w = 0;
    for (auto& p : c.train) {
        ema = 0.95 * ema + 0.05 * p.second;
        w = 0.95 * w + 0.05;
        p.second = ema / w;
    }
    return c;
}

void plot(const std::vector<std::string>& runs, const std::string& out, int32_t W, int32_t H, double ymax_opt) {
    std::vector<Curve> curves;
    for (size_t i = 0; i < runs.size(); i++) curves.push_back(read_run(runs[i], int32_t(i)));
    double x1 = 1, y0 = std::numeric_limits<double>::max(), y1 = 0;
    for (const Curve& c : curves) {
        for (const auto* s : {&c.train, &c.val})
            for (size_t i = 0; i < s->size(); i++) {
                x1 = std::max(x1, (*s)[i].first);
                y0 = std::min(y0, (*s)[i].second);
                // the first few percent of training are far above the rest: leave them off the y range
                if ((*s)[i].first >= 0.03 * (s->back().first) || s == &c.val) y1 = std::max(y1, (*s)[i].second);
            }
    }
    if (ymax_opt > 0) y1 = ymax_opt;
    if (y1 <= y0) y1 = y0 + 1;
    const double pad = 0.05 * (y1 - y0);
    y0 = std::max(0.0, y0 - pad);
    y1 += pad;

    Canvas cv(W, H);
    const int32_t L = 90, R = 30, T = 50, B = 70;
    const uint8_t black[3] = {0, 0, 0}, grid[3] = {225, 225, 225}, grey[3] = {90, 90, 90};
    auto X = [&](double s) { return L + (W - L - R) * s / x1; };
    const YAxis ya{W, H, L, R, T, B, y0, y1};
    auto Y = [&](double v) { return ya.Y(v); };
    for (double t : ticks(0, x1, 8)) {
        cv.line(X(t), T, X(t), H - B, grid, 1);
        const std::string s = fmt_tick(t);
        cv.text(X(t) - Canvas::text_width(s) / 2.0, H - B + 10, s, black);
    }
    ya.draw(cv, grid, black);
    cv.text((W - Canvas::text_width("step")) / 2.0, H - 30, "step", black);
    cv.text(10, T - 35, "bits per pixel (train: smoothed, thin; validation: thick with markers)", grey);

    auto clampY = [&](double v) { return std::clamp(Y(v), double(T), double(H - B)); };
    for (size_t r = 0; r < curves.size(); r++) {
        const uint8_t* c = series_colour(r);
        uint8_t light[3];
        for (int k = 0; k < 3; k++) light[k] = uint8_t(c[k] + (255 - c[k]) * 0.45);
        const Curve& cu = curves[r];
        for (size_t i = 1; i < cu.train.size(); i++)
            cv.line(X(cu.train[i - 1].first), clampY(cu.train[i - 1].second), X(cu.train[i].first),
                    clampY(cu.train[i].second), light, 2);
        for (size_t i = 0; i < cu.val.size(); i++) {
            if (i > 0)
                cv.line(X(cu.val[i - 1].first), clampY(cu.val[i - 1].second), X(cu.val[i].first),
                        clampY(cu.val[i].second), c, 3);
            cv.rect(int32_t(X(cu.val[i].first)) - 4, int32_t(clampY(cu.val[i].second)) - 4,
                    int32_t(X(cu.val[i].first)) + 5, int32_t(clampY(cu.val[i].second)) + 5, c);
        }
        // legend, top right
        char label[200];
        if (!cu.val.empty())
            std::snprintf(label, sizeof label, "%s  (val %.3f bpp at step %g)", cu.name.c_str(), cu.val.back().second,
                          cu.val.back().first);
        else
            std::snprintf(label, sizeof label, "%s", cu.name.c_str());
        const int32_t ly = T + 10 + int32_t(r) * 26, lx = W - R - 20 - Canvas::text_width(label) - 40;
        cv.rect(lx, ly + 2, lx + 30, ly + 10, c);
        cv.text(lx + 40, ly - 2, label, black);
    }
    igpt::write_png(out, cv.image(), {{"Software", "igpt plot"}});
}

}  // namespace

void register_plot(CLI::App& app) {
    struct Args {
        std::vector<std::string> runs;
        std::string out = "curves.png";
        int32_t w = 1000, h = 600;
        double ymax = 0;
    };
    auto a = std::make_shared<Args>();
    CLI::App* p = app.add_subcommand("plot", "Draw the loss / bits-per-pixel curves of training runs to a PNG");
    p->add_option("runs", a->runs, "Run folders or metrics.jsonl files")->required();
    p->add_option("-o,--out", a->out, "PNG to write")->capture_default_str();
    p->add_option("--width", a->w, "Image width")->capture_default_str();
    p->add_option("--height", a->h, "Image height")->capture_default_str();
    p->add_option("--ymax", a->ymax, "Top of the y axis (default: automatic)");
    p->callback([a] {
        if (a->w < 300 || a->h < 200 || a->w > 8000 || a->h > 8000) throw igpt::Error("--width/--height out of range");
        plot(a->runs, a->out, a->w, a->h, a->ymax);
        std::printf("wrote %s\n", a->out.c_str());
    });
}

}  // namespace igpt_cli
