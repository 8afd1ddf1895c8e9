// Shared CLI helpers (see cli_util.h).
#include "cli_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "error.h"

namespace igpt_cli {

igpt::BackendKind parse_device(const std::string& device) {
    if (device == "cpu") return igpt::BackendKind::Cpu;
    if (device == "cuda") {
        if (!igpt::cuda_available()) throw igpt::Error("--device cuda: no CUDA GPU available in this build or machine");
        return igpt::BackendKind::Cuda;
    }
    if (device == "auto") return igpt::cuda_available() ? igpt::BackendKind::Cuda : igpt::BackendKind::Cpu;
    throw igpt::Error("unknown device '" + device + "' (use cpu, cuda or auto)");
}

std::shared_ptr<const igpt::Model> load_model_shared(const std::string& path) {
    return std::make_shared<const igpt::Model>(igpt::load_model(path));
}

std::vector<std::string> expand_image_args(const std::vector<std::string>& args) {
    std::vector<std::string> out;
    for (const auto& a : args) {
        std::error_code ec;
        if (std::filesystem::is_directory(a, ec)) {
            auto files = igpt::list_image_files(a);
            if (files.empty()) throw igpt::Error("no images found in folder " + a);
            out.insert(out.end(), files.begin(), files.end());
        } else {
            out.push_back(a);
        }
    }
    if (out.empty()) throw igpt::Error("no images given");
    return out;
}

igpt::Image tokens_to_image(const igpt::Model& m, const int32_t* tokens, int32_t valid) {
    igpt::Image img;
    img.w = m.cfg.image_w;
    img.h = m.cfg.image_h;
    const int32_t n = m.cfg.n_ctx();
    img.rgb.assign(size_t(n) * 3, 0);
    for (int32_t i = 0; i < n; ++i) {
        if (i < valid) m.palette.dequantize(&tokens[i], 1, &img.rgb[size_t(i) * 3]);
        else img.rgb[size_t(i) * 3] = img.rgb[size_t(i) * 3 + 1] = img.rgb[size_t(i) * 3 + 2] = 128;
    }
    return img;
}

igpt::Image make_grid(const std::vector<std::vector<igpt::Image>>& rows, int32_t scale) {
    if (rows.empty() || rows[0].empty()) throw igpt::Error("empty grid");
    const int32_t th = rows[0][0].h * scale, tw = rows[0][0].w * scale, gap = std::max(1, scale);
    size_t cols = 0;
    for (const auto& r : rows) cols = std::max(cols, r.size());
    igpt::Image g;
    g.w = int32_t(cols) * (tw + gap) + gap;
    g.h = int32_t(rows.size()) * (th + gap) + gap;
    g.rgb.assign(size_t(g.w) * g.h * 3, 255);
    for (size_t r = 0; r < rows.size(); ++r)
        for (size_t c = 0; c < rows[r].size(); ++c) {
            const igpt::Image big = igpt::upscale_nearest(rows[r][c], scale);
            const int32_t ox = gap + int32_t(c) * (tw + gap), oy = gap + int32_t(r) * (th + gap);
            for (int32_t y = 0; y < std::min(th, big.h); ++y)
                std::memcpy(&g.rgb[(size_t(oy + y) * g.w + ox) * 3], &big.rgb[size_t(y) * big.w * 3],
                            size_t(std::min(tw, big.w)) * 3);
        }
    return g;
}

void heat_colour(float v, uint8_t* rgb) {
    static const float stops[][3] = {{0, 0, 4}, {87, 16, 110}, {188, 55, 84}, {249, 142, 9}, {252, 255, 164}};
    v = std::clamp(v, 0.0f, 1.0f) * 4.0f;
    const int i = std::min(3, int(v));
    const float f = v - float(i);
    for (int c = 0; c < 3; ++c) rgb[c] = uint8_t(std::lround(stops[i][c] * (1 - f) + stops[i + 1][c] * f));
}

std::string command_line() {
    std::ifstream f("/proc/self/cmdline", std::ios::binary);
    std::string raw((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>()), out;
    std::string arg;
    auto flush = [&] {
        if (!out.empty()) out += ' ';
        const bool quote = arg.empty() || arg.find_first_of(" \t'\"$") != std::string::npos;
        out += quote ? "'" + arg + "'" : arg;
        arg.clear();
    };
    for (char c : raw) {
        if (c == '\0') flush();
        else arg += c;
    }
    if (!arg.empty()) flush();
    if (!out.empty()) {
        // the program's own path is noise: keep its name
        const size_t sp = out.find(' ');
        const std::string prog = out.substr(0, sp);
        out = std::filesystem::path(prog).filename().string() + (sp == std::string::npos ? "" : out.substr(sp));
    }
    return out;
}

}  // namespace igpt_cli
