// igpt import hf | tf: convert OpenAI's published iGPT checkpoints into the project's model file.
#include <cstdio>
#include <filesystem>
#include <memory>

#include "commands.h"
#include "error.h"
#include "import.h"
#include "progress.h"

namespace igpt_cli {

namespace {

struct ImportOpts {
    std::string out, dtype = "f32";
};

void add_common(CLI::App* c, ImportOpts& o) {
    c->add_option("-o,--output", o.out, "model file to write (.safetensors)")->required();
    c->add_option("--dtype", o.dtype, "weights in the file: f32, f16 or int8 (per-row scales)")
        ->check(CLI::IsMember({"f32", "f16", "int8"}));
}

// Runs an import with a progress bar over the tensor bytes read, then writes and summarises the file.
template <class F>
void run_import(const ImportOpts& o, F import) {
    const igpt::DType dtype = igpt::dtype_from_name(o.dtype);
    std::unique_ptr<Progress> bar;
    igpt::ImportOptions io;
    io.on_progress = [&bar](int64_t done, int64_t total) {
        if (!bar) bar = std::make_unique<Progress>("reading weights", total / 1000000 + 1, "MB");
        bar->update(done / 1000000);
    };
    igpt::Model m = import(io);
    if (bar) bar->finish();
    igpt::save_model(m, o.out, dtype);
    const auto& c = m.cfg;
    std::printf("wrote %s: %s (width %d, layers %d, heads %d, %dx%d, %d colours), %.2fM parameters, %s, %.1f MB\n",
                o.out.c_str(), c.name.c_str(), c.width, c.layers, c.heads, c.image_h, c.image_w, c.vocab,
                double(c.n_params()) / 1e6, igpt::dtype_name(dtype), double(std::filesystem::file_size(o.out)) / 1e6);
}

}  // namespace

void register_import(CLI::App& app) {
    auto* imp = app.add_subcommand("import", "convert OpenAI's published iGPT checkpoints into a model file");
    imp->require_subcommand(1);

    auto ho = std::make_shared<ImportOpts>();
    auto hin = std::make_shared<std::vector<std::string>>();
    auto* hf = imp->add_subcommand("hf", "from Hugging Face openai/imagegpt-*: model.safetensors + config.json + "
                                         "preprocessor_config.json (a folder or the files)");
    hf->add_option("inputs", *hin, "the downloaded folder, or its files")->required();
    add_common(hf, *ho);
    hf->callback([ho, hin] { run_import(*ho, [&](const igpt::ImportOptions& io) { return igpt::import_hf(*hin, io); }); });

    auto to = std::make_shared<ImportOpts>();
    auto prefix = std::make_shared<std::string>();
    auto clusters = std::make_shared<std::string>();
    auto config = std::make_shared<std::string>();
    auto* tf = imp->add_subcommand("tf", "from OpenAI's TensorFlow checkpoint (model.ckpt-N.index + .data-*) and "
                                         "kmeans_centers.npy");
    tf->add_option("checkpoint", *prefix, "checkpoint prefix, e.g. downloads/model.ckpt-1000000")->required();
    tf->add_option("--clusters", *clusters, "kmeans_centers.npy (512 x 3 colours in [-1, 1])")->required();
    tf->add_option("--config", *config, "check the checkpoint is iGPT-S, -M or -L (default: take its own shape)")
        ->check(CLI::IsMember({"S", "M", "L"}));
    add_common(tf, *to);
    tf->callback([to, prefix, clusters, config] {
        run_import(*to, [&](const igpt::ImportOptions& io) { return igpt::import_tf(*prefix, *clusters, *config, io); });
    });
}

}  // namespace igpt_cli
