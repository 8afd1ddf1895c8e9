// OpenAI's own iGPT release (TensorFlow checkpoint + kmeans_centers.npy) -> the project's model.
//
// Variables (openai/image-gpt src/model.py): model/wte [V, C], model/wpe [T, C], model/sos [C],
// model/wtet [V, C] (the output head), model/h{i}/ln_{1,2}/g [C], model/h{i}/attn/{q,k,v}_proj
// [heads, head_dim, C] used as einsum("bsf,hef->bhse"): row (h, e) of the [C_out, C_in] matrix, so a plain
// reshape to [C, C] is already out x in; model/h{i}/attn/c_proj [heads, head_dim, C] used as
// einsum("bhse,hef->bsf"): in x out, so it is transposed; model/h{i}/mlp/{c_fc,c_proj}/w [in, out]
// (transposed); model/ln_f/g [C]. No biases. Other variables (optimizer slots, global_step) are ignored.
#include <nlohmann/json.hpp>

#include "error.h"
#include "formats.h"
#include "import.h"
#include "import_common.h"

namespace igpt {

namespace {

std::vector<int64_t> squeezed_shape(const imp::TensorSource& src, const std::string& name) {
    std::vector<int64_t> s = src.ref(name).shape;
    while (s.size() > 1 && s.front() == 1) s.erase(s.begin());
    return s;
}

// The checkpoint's own shape, from its variables.
ModelConfig infer_config(const imp::TensorSource& src, const std::string& what) {
    const auto wte = squeezed_shape(src, "model/wte"), wpe = squeezed_shape(src, "model/wpe"),
               q = squeezed_shape(src, "model/h0/attn/q_proj"), fc = squeezed_shape(src, "model/h0/mlp/c_fc/w");
    if (wte.size() != 2) throw Error("tensor 'model/wte' of " + what + " has shape " + imp::shape_str(wte) + ", expected [vocab, width]");
    if (wpe.size() != 2) throw Error("tensor 'model/wpe' of " + what + " has shape " + imp::shape_str(wpe) + ", expected [positions, width]");
    if (q.size() != 3) throw Error("tensor 'model/h0/attn/q_proj' of " + what + " has shape " + imp::shape_str(q) + ", expected [heads, head_dim, width]");
    if (fc.size() != 2) throw Error("tensor 'model/h0/mlp/c_fc/w' of " + what + " has shape " + imp::shape_str(fc) + ", expected [width, hidden]");
    ModelConfig c;
    c.vocab = int32_t(wte[0]);
    c.width = int32_t(wte[1]);
    c.heads = int32_t(q[0]);
    if (q[0] * q[1] != wte[1])
        throw Error("tensor 'model/h0/attn/q_proj' of " + what + " has shape " + imp::shape_str(q) + ": heads x head_dim is not the width " + std::to_string(wte[1]));
    c.layers = 0;
    while (src.has("model/h" + std::to_string(c.layers) + "/ln_1/g")) ++c.layers;
    c.image_h = c.image_w = imp::square_side(wpe[0], "tensor 'model/wpe' of " + what);
    if (fc[1] % wte[1] != 0) throw Error("tensor 'model/h0/mlp/c_fc/w' of " + what + " has shape " + imp::shape_str(fc) + ": hidden is not a multiple of the width");
    c.mlp_mult = int32_t(fc[1] / wte[1]);
    c.bias = false;
    c.norm_eps = 1e-5f;
    c.name = imp::preset_name_for(c);
    c.validate();
    return c;
}

}  // namespace

Model import_tf(const std::string& ckpt_prefix, const std::string& clusters_npy, const std::string& config,
                const ImportOptions& opts) {
    std::string prefix = ckpt_prefix;
    if (prefix.size() > 6 && prefix.compare(prefix.size() - 6, 6, ".index") == 0) prefix.resize(prefix.size() - 6);
    const std::string what = prefix + ".index";
    imp::TensorSource src(what);
    imp::add_tf_bundle(src, prefix);

    const ModelConfig cfg = infer_config(src, what);
    if (!config.empty()) {
        const ModelConfig want = config_preset(config);  // throws on an unknown name
        auto check = [&](const char* key, int64_t got, int64_t exp) {
            if (got != exp)
                throw Error(what + " is not iGPT-" + config + ": its " + key + " is " + std::to_string(got) + ", " + config +
                            " has " + std::to_string(exp) + " (leave --config out to import the checkpoint's own shape)");
        };
        check("width", cfg.width, want.width);
        check("number of layers", cfg.layers, want.layers);
        check("number of heads", cfg.heads, want.heads);
        check("number of colours", cfg.vocab, want.vocab);
        check("context length", cfg.n_ctx(), want.n_ctx());
    }

    const imp::NpyArray cl = imp::read_npy(clusters_npy);
    if (cl.shape.size() != 2 || cl.shape[1] != 3)
        throw Error(clusters_npy + " has shape " + imp::shape_str(cl.shape) + ", expected [" + std::to_string(cfg.vocab) + ", 3]");
    Model m = imp::empty_model(cfg, palette_from_clusters(cl.v, cfg.vocab, clusters_npy));

    const int64_t C = cfg.width, V = cfg.vocab, T = cfg.n_ctx(), H = cfg.hidden(), NH = cfg.heads, D = cfg.head_dim();
    std::vector<std::string> needed = {"model/wte", "model/wpe", "model/sos", "model/wtet", "model/ln_f/g"};
    for (int i = 0; i < cfg.layers; ++i) {
        const std::string h = "model/h" + std::to_string(i) + "/";
        for (const char* s : {"ln_1/g", "attn/q_proj", "attn/k_proj", "attn/v_proj", "attn/c_proj", "ln_2/g",
                              "mlp/c_fc/w", "mlp/c_proj/w"})
            needed.push_back(h + s);
    }
    int64_t total = 0;
    for (const auto& n : needed) total += int64_t(src.bytes_of(n));
    if (opts.on_progress) src.set_progress(opts.on_progress, total);

    ParamPtrs p = m.ptrs();
    imp::copy_into(src.read("model/sos", {C}), p.sos);
    imp::copy_into(src.read("model/wte", {V, C}), p.wte);
    imp::copy_into(src.read("model/wpe", {T, C}), p.wpe);
    for (int i = 0; i < cfg.layers; ++i) {
        const std::string h = "model/h" + std::to_string(i) + "/";
        LayerParams& l = p.layers[size_t(i)];
        imp::copy_into(src.read(h + "ln_1/g", {C}), l.ln1_g);
        imp::copy_into(src.read(h + "attn/q_proj", {NH, D, C}), l.qkv_w);          // rows 0..C: q
        imp::copy_into(src.read(h + "attn/k_proj", {NH, D, C}), l.qkv_w + C * C);  // k
        imp::copy_into(src.read(h + "attn/v_proj", {NH, D, C}), l.qkv_w + 2 * C * C);
        imp::transpose_into(src.read(h + "attn/c_proj", {NH, D, C}), C, C, l.proj_w);
        imp::copy_into(src.read(h + "ln_2/g", {C}), l.ln2_g);
        imp::transpose_into(src.read(h + "mlp/c_fc/w", {C, H}), C, H, l.fc_w);
        imp::transpose_into(src.read(h + "mlp/c_proj/w", {H, C}), H, C, l.mproj_w);
    }
    imp::copy_into(src.read("model/ln_f/g", {C}), p.lnf_g);
    imp::copy_into(src.read("model/wtet", {V, C}), p.head_w);

    nlohmann::json prov = {{"source", "openai-tensorflow"}, {"checkpoint", prefix}, {"clusters", clusters_npy}};
    m.provenance = prov.dump();
    return m;
}

}  // namespace igpt
