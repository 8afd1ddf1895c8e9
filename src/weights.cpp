// The flat parameter layout (see weights.h for names and shapes).
#include "weights.h"

namespace igpt {

std::vector<ParamSpec> param_layout(const ModelConfig& cfg) {
    const int64_t C = cfg.width, V = cfg.vocab, T = cfg.n_ctx(), H = cfg.hidden();
    std::vector<ParamSpec> specs;
    size_t off = 0;
    auto add = [&](std::string name, std::vector<int64_t> shape) {
        size_t n = 1;
        for (int64_t d : shape) n *= size_t(d);
        ParamSpec s;
        s.name = std::move(name);
        s.matrix = shape.size() == 2;
        s.shape = std::move(shape);
        s.offset = off;
        s.numel = n;
        off += n;
        specs.push_back(std::move(s));
    };
    add("sos", {C});
    add("wte", {V, C});
    add("wpe", {T, C});
    for (int i = 0; i < cfg.layers; ++i) {
        const std::string p = "h." + std::to_string(i) + ".";
        add(p + "ln_1.g", {C});
        add(p + "attn.qkv.w", {3 * C, C});
        if (cfg.bias) add(p + "attn.qkv.b", {3 * C});
        add(p + "attn.proj.w", {C, C});
        if (cfg.bias) add(p + "attn.proj.b", {C});
        add(p + "ln_2.g", {C});
        add(p + "mlp.fc.w", {H, C});
        if (cfg.bias) add(p + "mlp.fc.b", {H});
        add(p + "mlp.proj.w", {C, H});
        if (cfg.bias) add(p + "mlp.proj.b", {C});
    }
    add("ln_f.g", {C});
    add("head.w", {V, C});
    return specs;
}

size_t param_count(const std::vector<ParamSpec>& specs) {
    return specs.empty() ? 0 : specs.back().offset + specs.back().numel;
}

ParamPtrs bind_params(const ModelConfig& cfg, float* base) {
    // Walks the same order as param_layout without building names.
    const size_t C = size_t(cfg.width), V = size_t(cfg.vocab), T = size_t(cfg.n_ctx()), H = size_t(cfg.hidden());
    ParamPtrs p;
    float* cur = base;
    auto take = [&](size_t n) { float* r = cur; cur += n; return r; };
    p.sos = take(C);
    p.wte = take(V * C);
    p.wpe = take(T * C);
    p.layers.resize(size_t(cfg.layers));
    for (auto& l : p.layers) {
        l.ln1_g = take(C);
        l.qkv_w = take(3 * C * C);
        if (cfg.bias) l.qkv_b = take(3 * C);
        l.proj_w = take(C * C);
        if (cfg.bias) l.proj_b = take(C);
        l.ln2_g = take(C);
        l.fc_w = take(H * C);
        if (cfg.bias) l.fc_b = take(H);
        l.mproj_w = take(C * H);
        if (cfg.bias) l.mproj_b = take(C);
    }
    p.lnf_g = take(C);
    p.head_w = take(V * C);
    return p;
}

}  // namespace igpt
