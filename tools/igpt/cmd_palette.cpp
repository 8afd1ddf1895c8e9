// igpt palette | init: train a colour palette on a folder of images; create a randomly initialised model.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "commands.h"
#include "error.h"
#include "progress.h"
#include "sampler.h"

namespace igpt_cli {

namespace {

void register_palette_cmd(CLI::App& app) {
    struct Opts {
        std::vector<std::string> inputs;
        std::string out = "palette.safetensors", preview;
        int32_t k = 512, iterations = 30, size = 32;
        int64_t samples = 200000;
        uint64_t seed = 1;
    };
    auto o = std::make_shared<Opts>();
    auto* c = app.add_subcommand("palette", "train a k-means colour palette on pixels sampled from images");
    c->add_option("inputs", o->inputs, "images or folders of images")->required();
    c->add_option("-k,--colours", o->k, "palette size (up to 65536)")->check(CLI::Range(1, 65536));
    c->add_option("-o,--output", o->out, "palette file to write (.safetensors)");
    c->add_option("--samples", o->samples, "pixels sampled for k-means")->check(CLI::Range(int64_t(1), int64_t(1) << 30));
    c->add_option("--size", o->size, "images are prepared at this resolution first (what the model sees)")
        ->check(CLI::Range(1, 4096));
    c->add_option("--iterations", o->iterations, "Lloyd iterations")->check(CLI::Range(1, 1000));
    c->add_option("--seed", o->seed, "random seed (same seed, same palette)");
    c->add_option("--preview", o->preview, "also write a PNG of the colours");
    c->callback([o] {
        auto files = expand_image_args(o->inputs);
        igpt::Rng rng(o->seed);
        // Visit images in a seeded random order until enough pixels are sampled; skip unreadable files.
        for (size_t i = files.size(); i > 1; --i) std::swap(files[i - 1], files[rng.next() % i]);
        const int64_t per_image = std::max<int64_t>(1, std::min<int64_t>(int64_t(o->size) * o->size,
                                                                          o->samples / int64_t(files.size()) + 1));
        std::vector<uint8_t> px;
        int64_t skipped = 0;
        Progress bar("sampling pixels", o->samples, "px");
        for (const auto& f : files) {
            if (int64_t(px.size() / 3) >= o->samples) break;
            igpt::Image img;
            try {
                img = igpt::prepare_image(igpt::load_image(f), o->size, o->size);
            } catch (const igpt::Error& e) {
                std::fprintf(stderr, "\nwarning: skipping %s\n", e.what());
                ++skipped;
                continue;
            }
            const int64_t n = int64_t(img.w) * img.h;
            for (int64_t j = 0; j < per_image && int64_t(px.size() / 3) < o->samples; ++j) {
                const size_t p = size_t(rng.next() % uint64_t(n));
                px.insert(px.end(), &img.rgb[p * 3], &img.rgb[p * 3] + 3);
            }
            bar.update(int64_t(px.size() / 3));
        }
        bar.finish();
        if (px.empty()) throw igpt::Error("no readable images among the inputs");
        igpt::PaletteTrainParams p;
        p.k = o->k;
        p.seed = o->seed;
        p.iterations = o->iterations;
        Progress kbar("k-means", o->iterations, "iter");
        p.on_iter = [&](int32_t it, int32_t, double inertia) {
            char s[64];
            std::snprintf(s, sizeof s, "mean sq. error %.2f", inertia);
            kbar.update(it, s);
        };
        const igpt::Palette pal = igpt::train_palette(px, p);
        kbar.finish();
        nlohmann::json prov = {{"images", files.size()}, {"skipped", skipped}, {"pixels", px.size() / 3},
                               {"k", o->k}, {"seed", o->seed}, {"size", o->size}};
        igpt::save_palette_file(pal, o->out, prov.dump());
        std::printf("wrote %s (%d colours from %zu pixels)\n", o->out.c_str(), pal.k(), px.size() / 3);
        if (!o->preview.empty()) {
            // Swatches in rows of 32.
            const int32_t cols = 32, rows = (pal.k() + cols - 1) / cols;
            igpt::Image img;
            img.w = cols;
            img.h = rows;
            img.rgb.assign(size_t(cols) * rows * 3, 255);
            std::copy(pal.rgb().begin(), pal.rgb().end(), img.rgb.begin());
            igpt::write_png(o->preview, igpt::upscale_nearest(img, 12));
            std::printf("wrote %s\n", o->preview.c_str());
        }
    });
}

void register_init(CLI::App& app) {
    struct Opts {
        std::string config = "tiny", palette, out;
        int32_t width = 0, layers = 0, heads = 0, size = 0;
        bool bias = false;
        uint64_t seed = 1;
        std::string dtype = "f32";
    };
    auto o = std::make_shared<Opts>();
    auto* c = app.add_subcommand("init", "create a model with random (OpenAI-style) initial weights");
    c->add_option("-c,--config", o->config, "named config: " + [] {
        std::string s;
        for (const auto& n : igpt::config_preset_names()) s += (s.empty() ? "" : ", ") + n;
        return s;
    }());
    c->add_option("--palette", o->palette, "palette or model file to take the colours from")->required();
    c->add_option("-o,--output", o->out, "model file to write")->required();
    c->add_option("--width", o->width, "override the config's width");
    c->add_option("--layers", o->layers, "override the number of layers");
    c->add_option("--heads", o->heads, "override the number of heads");
    c->add_option("--size", o->size, "image size (square)");
    c->add_flag("--bias", o->bias, "projections with biases (Hugging Face layout)");
    c->add_option("--seed", o->seed, "initialisation seed");
    c->add_option("--dtype", o->dtype, "f32, f16 or int8")->check(CLI::IsMember({"f32", "f16", "int8"}));
    c->callback([o] {
        igpt::ModelConfig cfg = igpt::config_preset(o->config);
        if (o->width) cfg.width = o->width;
        if (o->layers) cfg.layers = o->layers;
        if (o->heads) cfg.heads = o->heads;
        if (o->size) cfg.image_h = cfg.image_w = o->size;
        cfg.bias = o->bias;
        if (o->width || o->layers || o->heads || o->size) cfg.name = "custom";
        const igpt::Palette pal = igpt::load_palette_file(o->palette);
        cfg.vocab = pal.k();
        cfg.validate();
        igpt::Model m = igpt::init_model(cfg, pal, o->seed);
        m.provenance = nlohmann::json({{"init", "random"}, {"seed", o->seed}}).dump();
        igpt::save_model(m, o->out, igpt::dtype_from_name(o->dtype));
        std::printf("wrote %s (%s, %.2fM parameters)\n", o->out.c_str(), cfg.name.c_str(), double(cfg.n_params()) / 1e6);
    });
}

}  // namespace

void register_palette(CLI::App& app) {
    register_palette_cmd(app);
    register_init(app);
}

}  // namespace igpt_cli
