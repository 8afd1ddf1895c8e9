// igpt complete | sample | nll | info: inference from the command line.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "cli_util.h"
#include "commands.h"
#include "error.h"
#include "progress.h"
#include "session.h"

namespace igpt_cli {

namespace {

struct SampleOpts {
    int32_t n_samples = 4;
    float temperature = 1.0f;
    int32_t top_k = 0;
    float top_p = 1.0f;
    uint64_t seed = 1;
    int32_t threads = 0;
    int32_t scale = 4;
    std::string device = "auto";  // CUDA when a GPU is present
    std::string out;
};

void add_sample_opts(CLI::App* c, SampleOpts& o) {
    c->add_option("-n,--samples", o.n_samples, "samples per image (1-64)")->check(CLI::Range(1, 64));
    c->add_option("-t,--temperature", o.temperature, "sampling temperature (0 = greedy)")->check(CLI::Range(0.0, 100.0));
    c->add_option("--top-k", o.top_k, "sample only from the k most likely colours (0 = all)")->check(CLI::NonNegativeNumber);
    c->add_option("--top-p", o.top_p, "nucleus sampling mass (1 = off)")->check(CLI::Range(1e-6, 1.0));
    c->add_option("-s,--seed", o.seed, "random seed (same seed, same samples)");
    c->add_option("-j,--threads", o.threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
    c->add_option("--scale", o.scale, "enlargement of each tile in the output PNG")->check(CLI::Range(1, 32));
    c->add_option("--device", o.device, "cpu, cuda or auto (CUDA when a GPU is present)")
        ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
}

// Runs one session to the end, drawing a progress bar; returns n_samples * n_ctx tokens.
std::vector<int32_t> run_session(std::shared_ptr<const igpt::Model> model, const SampleOpts& o,
                                 const std::vector<int32_t>& tokens, int32_t rows, Progress& bar, int64_t base) {
    igpt::CompletionSession s(model, parse_device(o.device));
    igpt::CompletionParams p;
    p.n_samples = o.n_samples;
    p.rows_kept = rows;
    p.sampler.temperature = o.temperature;
    p.sampler.top_k = o.top_k;
    p.sampler.top_p = o.top_p;
    p.seed = o.seed;
    p.threads = o.threads;
    p.top_n = 0;
    s.start(tokens, p);
    char status[64];
    while (!s.done()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        std::snprintf(status, sizeof status, "%.0f tok/s", s.tokens_per_second());
        bar.update(base + s.filled() - s.kept(), status);
    }
    s.wait();
    std::vector<int32_t> out;
    for (int32_t i = 0; i < o.n_samples; ++i) out.insert(out.end(), s.tokens(i), s.tokens(i) + s.n_ctx());
    return out;
}

std::string settings_text(const std::string& model, int32_t rows, const SampleOpts& o) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "model=%s rows_kept=%d samples=%d temperature=%g top_k=%d top_p=%g seed=%llu",
                  std::filesystem::path(model).filename().string().c_str(), rows, o.n_samples, o.temperature, o.top_k,
                  o.top_p, (unsigned long long)o.seed);
    return buf;
}

void register_complete(CLI::App& app) {
    struct Opts : SampleOpts {
        std::string model;
        std::vector<std::string> images;
        int32_t rows = -1;
    };
    auto o = std::make_shared<Opts>();
    o->out = "completion.png";
    auto* c = app.add_subcommand("complete", "keep the top rows of images and let the model paint the rest");
    c->add_option("model", o->model, "model file (.safetensors)")->required();
    c->add_option("images", o->images, "images or folders of images")->required();
    c->add_option("-r,--rows", o->rows, "rows to keep from the top (default: half the model's height)");
    c->add_option("-o,--output", o->out, "output PNG: kept | samples | original, one row per image");
    add_sample_opts(c, *o);
    c->callback([o] {
        auto model = load_model_shared(o->model);
        const auto& cfg = model->cfg;
        const int32_t rows = o->rows < 0 ? cfg.image_h / 2 : o->rows;
        if (rows > cfg.image_h)
            throw igpt::Error("--rows " + std::to_string(rows) + " is more than the model's " + std::to_string(cfg.image_h) +
                              " rows");
        const auto files = expand_image_args(o->images);
        const int32_t per_image = (cfg.n_ctx() - rows * cfg.image_w);
        Progress bar("complete", int64_t(per_image) * int64_t(files.size()), "px");
        std::vector<std::vector<igpt::Image>> grid;
        for (size_t f = 0; f < files.size(); ++f) {
            const igpt::Image img = igpt::prepare_image(igpt::load_image(files[f]), cfg.image_h, cfg.image_w);
            const std::vector<int32_t> tokens = model->palette.quantize(img.rgb);
            const auto out = run_session(model, *o, tokens, rows, bar, int64_t(per_image) * int64_t(f));
            std::vector<igpt::Image> row;
            row.push_back(tokens_to_image(*model, tokens.data(), rows * cfg.image_w));
            for (int32_t i = 0; i < o->n_samples; ++i)
                row.push_back(tokens_to_image(*model, &out[size_t(i) * cfg.n_ctx()], cfg.n_ctx()));
            row.push_back(tokens_to_image(*model, tokens.data(), cfg.n_ctx()));
            grid.push_back(std::move(row));
        }
        bar.finish();
        igpt::write_png(o->out, make_grid(grid, o->scale), {{"igpt", settings_text(o->model, rows, *o)}});
        std::printf("wrote %s (%zu image%s x %d samples)\n", o->out.c_str(), files.size(), files.size() == 1 ? "" : "s",
                    o->n_samples);
    });
}

void register_sample(CLI::App& app) {
    struct Opts : SampleOpts {
        std::string model;
        int32_t cols = 0;
    };
    auto o = std::make_shared<Opts>();
    o->out = "samples.png";
    o->n_samples = 8;
    auto* c = app.add_subcommand("sample", "draw unconditional samples from a model");
    c->add_option("model", o->model, "model file (.safetensors)")->required();
    c->add_option("-o,--output", o->out, "output PNG grid");
    c->add_option("--cols", o->cols, "tiles per row (default: all in one row up to 8)");
    add_sample_opts(c, *o);
    c->callback([o] {
        auto model = load_model_shared(o->model);
        const int32_t T = model->cfg.n_ctx();
        Progress bar("sample", T, "px");
        const auto out = run_session(model, *o, std::vector<int32_t>(size_t(T), 0), 0, bar, 0);
        bar.finish();
        const int32_t cols = o->cols > 0 ? o->cols : std::min(8, o->n_samples);
        std::vector<std::vector<igpt::Image>> grid;
        for (int32_t i = 0; i < o->n_samples; ++i) {
            if (i % cols == 0) grid.emplace_back();
            grid.back().push_back(tokens_to_image(*model, &out[size_t(i) * T], T));
        }
        igpt::write_png(o->out, make_grid(grid, o->scale), {{"igpt", settings_text(o->model, 0, *o)}});
        std::printf("wrote %s (%d samples)\n", o->out.c_str(), o->n_samples);
    });
}

void register_nll(CLI::App& app) {
    struct Opts {
        std::string model, heatmap, device = "auto";
        std::vector<std::string> images;
        int32_t threads = 0, batch = 8, scale = 4;
        bool quiet = false;
    };
    auto o = std::make_shared<Opts>();
    auto* c = app.add_subcommand("nll", "bits per pixel of images under the model, and a per-pixel surprise map");
    c->add_option("model", o->model, "model file (.safetensors)")->required();
    c->add_option("images", o->images, "images or folders of images")->required();
    c->add_option("--heatmap", o->heatmap, "write a PNG: quantised image | per-pixel surprise (bits), one row per image");
    c->add_option("-b,--batch", o->batch, "images per forward pass")->check(CLI::Range(1, 256));
    c->add_option("-j,--threads", o->threads, "CPU threads (0 = all cores)")->check(CLI::NonNegativeNumber);
    c->add_option("--scale", o->scale, "enlargement of the heat-map tiles")->check(CLI::Range(1, 32));
    c->add_option("--device", o->device, "cpu, cuda or auto (CUDA when a GPU is present)")
        ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
    c->add_flag("-q,--quiet", o->quiet, "print only the mean");
    c->callback([o] {
        auto model = load_model_shared(o->model);
        const auto& cfg = model->cfg;
        const auto files = expand_image_args(o->images);
        auto backend = igpt::make_backend(parse_device(o->device), *model, o->threads);
        const int32_t T = cfg.n_ctx();
        double total = 0;
        std::vector<std::vector<igpt::Image>> grid;
        Progress bar("nll", int64_t(files.size()), "img");
        for (size_t f0 = 0; f0 < files.size(); f0 += size_t(o->batch)) {
            const size_t nb = std::min(files.size() - f0, size_t(o->batch));
            std::vector<int32_t> tokens;
            for (size_t f = f0; f < f0 + nb; ++f) {
                const auto img = igpt::prepare_image(igpt::load_image(files[f]), cfg.image_h, cfg.image_w);
                const auto t = model->palette.quantize(img.rgb);
                tokens.insert(tokens.end(), t.begin(), t.end());
            }
            const auto r = igpt::image_nll(*model, *backend, tokens, int32_t(nb), o->batch);
            for (size_t j = 0; j < nb; ++j) {
                double bits = 0;
                for (int32_t p = 0; p < T; ++p) bits += r.pixel_bits[j * size_t(T) + size_t(p)];
                total += bits;
                if (!o->quiet) std::printf("%s\t%.4f bits/pixel\n", files[f0 + j].c_str(), bits / T);
                if (!o->heatmap.empty() && grid.size() < 64) {
                    igpt::Image heat;
                    heat.w = cfg.image_w;
                    heat.h = cfg.image_h;
                    heat.rgb.resize(size_t(T) * 3);
                    for (int32_t p = 0; p < T; ++p)
                        heat_colour(r.pixel_bits[j * size_t(T) + size_t(p)] / std::log2(float(cfg.vocab)), &heat.rgb[size_t(p) * 3]);
                    grid.push_back({tokens_to_image(*model, &tokens[j * size_t(T)], T), heat});
                }
            }
            bar.update(int64_t(f0 + nb));
        }
        bar.finish();
        std::printf("mean\t%.4f bits/pixel over %zu image%s\n", total / (double(T) * double(files.size())), files.size(),
                    files.size() == 1 ? "" : "s");
        if (!o->heatmap.empty()) {
            igpt::write_png(o->heatmap, make_grid(grid, o->scale),
                            {{"igpt", "surprise in bits, 0 (dark) to log2(vocab) (bright)"}});
            std::printf("wrote %s\n", o->heatmap.c_str());
        }
    });
}

void register_info(CLI::App& app) {
    auto path = std::make_shared<std::string>();
    auto* c = app.add_subcommand("info", "what a model file holds");
    c->add_option("model", *path, "model file (.safetensors)")->required();
    c->callback([path] {
        const igpt::Model m = igpt::load_model(*path);
        const auto& c = m.cfg;
        std::printf("file:        %s (%.2f MB, weights %s)\n", path->c_str(),
                    double(std::filesystem::file_size(*path)) / 1e6, igpt::dtype_name(m.file_dtype));
        std::printf("config:      %s — width %d, layers %d, heads %d (head dim %d), MLP %d\n", c.name.c_str(), c.width,
                    c.layers, c.heads, c.head_dim(), c.hidden());
        std::printf("image:       %dx%d = %d tokens, palette of %d colours\n", c.image_h, c.image_w, c.n_ctx(), c.vocab);
        std::printf("parameters:  %lld (%.2fM)%s\n", (long long)c.n_params(), double(c.n_params()) / 1e6,
                    c.bias ? ", with biases" : "");
        if (m.has_head()) {
            std::string names;
            for (const auto& n : m.classes) names += (names.empty() ? "" : ", ") + n;
            std::printf("classifier:  %zu classes (%s)\n", m.classes.size(), names.c_str());
        }
        std::printf("provenance:  %s\n", m.provenance.c_str());
    });
}

}  // namespace

void register_inference(CLI::App& app) {
    register_complete(app);
    register_sample(app);
    register_nll(app);
    register_info(app);
}

}  // namespace igpt_cli
