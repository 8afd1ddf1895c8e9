// Helpers shared by the Hugging Face and TensorFlow importers.
#include "import_common.h"

#include <cmath>
#include <cstring>

#include "error.h"
#include "import.h"

namespace igpt {

Palette palette_from_clusters(const std::vector<double>& clusters, int32_t k, const std::string& what) {
    if (clusters.size() != size_t(k) * 3)
        throw Error(what + " holds " + std::to_string(clusters.size() / 3) + " colour clusters" +
                    (clusters.size() % 3 ? " (not a multiple of 3 values)" : "") + ", the model has " +
                    std::to_string(k) + " colours");
    std::vector<uint8_t> rgb(clusters.size());
    for (size_t i = 0; i < clusters.size(); ++i) {
        const double c = clusters[i];
        if (!std::isfinite(c)) throw Error(what + " holds NaN or Inf");
        const double v = std::round((c + 1.0) * 127.5);
        rgb[i] = uint8_t(v < 0 ? 0 : v > 255 ? 255 : v);
    }
    return Palette(std::move(rgb));
}

namespace imp {

void transpose_into(const std::vector<float>& src, int64_t rows, int64_t cols, float* dst) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[size_t(r * cols + c)];
}

void copy_into(const std::vector<float>& src, float* dst) { std::memcpy(dst, src.data(), src.size() * sizeof(float)); }

std::string preset_name_for(const ModelConfig& c) {
    for (const char* n : {"S", "M", "L"}) {
        const ModelConfig p = config_preset(n);
        if (c.width == p.width && c.layers == p.layers && c.heads == p.heads && c.vocab == p.vocab &&
            c.image_h == p.image_h && c.image_w == p.image_w && c.mlp_mult == p.mlp_mult)
            return n;
    }
    return "custom";
}

int32_t square_side(int64_t n_ctx, const std::string& what) {
    const int64_t s = int64_t(std::llround(std::sqrt(double(n_ctx))));
    if (n_ctx < 1 || s * s != n_ctx)
        throw Error(what + " is " + std::to_string(n_ctx) + " positions, not a square image (side x side)");
    return int32_t(s);
}

Model empty_model(const ModelConfig& cfg, Palette palette) {
    cfg.validate();
    Model m;
    m.cfg = cfg;
    m.palette = std::move(palette);
    m.specs = param_layout(cfg);
    m.params.assign(param_count(m.specs), 0.0f);
    return m;
}

}  // namespace imp
}  // namespace igpt
