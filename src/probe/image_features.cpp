// Labelled images, tokens, raw pixels and pooled features (see image_features.h).
#include "image_features.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "cpu/thread_pool.h"
#include "dataset.h"
#include "error.h"
#include "sampler.h"

namespace igpt::probe {

std::vector<int64_t> balanced_subset(const std::vector<int32_t>& labels, int64_t limit, uint64_t seed) {
    const int64_t n = int64_t(labels.size());
    std::vector<int64_t> out;
    if (limit <= 0 || limit >= n) {
        out.resize(size_t(n));
        for (int64_t i = 0; i < n; i++) out[size_t(i)] = i;
        return out;
    }
    std::map<int32_t, std::vector<int64_t>> by_class;
    for (int64_t i = 0; i < n; i++) by_class[labels[size_t(i)]].push_back(i);
    Rng rng(train::mix_seed(seed, 0xBA1A4CEull));
    std::vector<std::vector<int64_t>*> cls;
    for (auto& [label, v] : by_class) {
        for (int64_t i = int64_t(v.size()) - 1; i > 0; i--) std::swap(v[size_t(i)], v[size_t(rng.next() % uint64_t(i + 1))]);
        cls.push_back(&v);
    }
    // Round-robin over classes in shuffled order: every class gets its share, small classes stop early.
    std::vector<size_t> taken(cls.size(), 0);
    while (int64_t(out.size()) < limit) {
        bool any = false;
        for (size_t c = 0; c < cls.size() && int64_t(out.size()) < limit; c++)
            if (taken[c] < cls[c]->size()) {
                out.push_back((*cls[c])[taken[c]++]);
                any = true;
            }
        if (!any) break;
    }
    std::sort(out.begin(), out.end());
    return out;
}

LabelledImages load_labelled_images(const std::string& path, int64_t limit, uint64_t seed, int32_t h, int32_t w,
                                    int32_t threads, const ProgressFn& progress,
                                    const std::function<void(const std::string&)>& warn) {
    const train::ImageSource src = train::scan_source(path);
    std::vector<int32_t> all_labels(src.items.size());
    for (size_t i = 0; i < src.items.size(); i++) all_labels[i] = src.items[i].label;
    const std::vector<int64_t> idx = balanced_subset(all_labels, limit, seed);

    const int64_t n = int64_t(idx.size());
    const size_t npx = size_t(h) * size_t(w);
    std::vector<uint8_t> rgb(size_t(n) * npx * 3);
    std::vector<uint8_t> ok(size_t(n), 0);
    std::vector<std::string> errors(static_cast<size_t>(n));
    ThreadPool pool(threads);
    constexpr int64_t kChunk = 256;
    for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
        const int64_t c1 = std::min(n, c0 + kChunk);
        pool.parallel_for(c1 - c0, 1, [&](int64_t b, int64_t e, int32_t) {
            for (int64_t j = c0 + b; j < c0 + e; j++) {
                try {
                    const Image img = prepare_image(train::read_item(src, size_t(idx[size_t(j)])), h, w);
                    std::copy(img.rgb.begin(), img.rgb.end(), rgb.begin() + ptrdiff_t(size_t(j) * npx * 3));
                    ok[size_t(j)] = 1;
                } catch (const std::exception& ex) {
                    errors[size_t(j)] = ex.what();
                }
            }
        });
        if (progress) progress(c1, n);
    }
    LabelledImages out;
    out.root = path;
    out.classes = src.classes;
    out.h = h;
    out.w = w;
    for (int64_t j = 0; j < n; j++) {
        if (!ok[size_t(j)]) {
            if (warn) warn("skipping unreadable image " + errors[size_t(j)]);
            else std::fprintf(stderr, "igpt: warning: skipping unreadable image %s\n", errors[size_t(j)].c_str());
            out.skipped++;
            continue;
        }
        if (out.n != j)
            std::copy_n(rgb.begin() + ptrdiff_t(size_t(j) * npx * 3), npx * 3,
                        rgb.begin() + ptrdiff_t(size_t(out.n) * npx * 3));
        out.labels.push_back(src.items[size_t(idx[size_t(j)])].label);
        out.n++;
    }
    rgb.resize(size_t(out.n) * npx * 3);
    out.rgb = std::move(rgb);
    if (out.n == 0) throw Error(path + ": none of its " + std::to_string(n) + " images could be read");
    return out;
}

std::vector<int32_t> quantize_images(const LabelledImages& imgs, const Palette& pal, int32_t threads) {
    const size_t npx = size_t(imgs.h) * size_t(imgs.w);
    std::vector<int32_t> tokens(size_t(imgs.n) * npx);
    ThreadPool pool(threads);
    pool.parallel_for(imgs.n, 16, [&](int64_t b, int64_t e, int32_t) {
        for (int64_t i = b; i < e; i++) pal.quantize(&imgs.rgb[size_t(i) * npx * 3], npx, &tokens[size_t(i) * npx]);
    });
    return tokens;
}

std::vector<float> raw_pixel_features(const LabelledImages& imgs) {
    std::vector<float> x(imgs.rgb.size());
    for (size_t i = 0; i < x.size(); i++) x[i] = float(imgs.rgb[i]) * (1.0f / 255.0f);
    return x;
}

std::vector<float> extract_features(Backend& backend, const ModelConfig& cfg, const int32_t* tokens, int64_t n,
                                    const std::vector<int32_t>& layers, int32_t batch, const ProgressFn& progress) {
    const int64_t T = cfg.n_ctx(), C = cfg.width, V = cfg.vocab;
    if (batch < 1) throw Error("feature batch must be at least 1");
    for (int32_t l : layers)
        if (l < 0 || l > cfg.layers)
            throw Error("layer " + std::to_string(l) + " is out of range: the model has layers 0.." +
                        std::to_string(cfg.layers) + " (" + std::to_string(cfg.layers) + " = the final norm)");
    for (int64_t i = 0; i < n * T; i++)
        if (tokens[i] < 0 || tokens[i] >= V) throw Error("token out of range of the model's palette");
    const int32_t B = int32_t(std::min<int64_t>(batch, std::max<int64_t>(n, 1)));
    std::vector<float> out(layers.size() * size_t(n) * size_t(C));
    std::vector<int32_t> in(size_t(B) * T);
    std::vector<float> logits(size_t(B) * V), pooled(size_t(B) * C);
    backend.reset(B);
    for (int64_t i0 = 0; i0 < n; i0 += B) {
        const int32_t b = int32_t(std::min<int64_t>(B, n - i0));
        // inputs: [sos, x0, ..., x_{T-2}]: every position of the image (position p predicts x_p)
        for (int32_t j = 0; j < b; j++) {
            const int32_t* t = tokens + (i0 + j) * T;
            int32_t* o = &in[size_t(j) * T];
            o[0] = -1;
            std::copy(t, t + T - 1, o + 1);
        }
        backend.forward(in.data(), b, int32_t(T), 0, logits.data(), false);
        for (size_t k = 0; k < layers.size(); k++) {
            if (!backend.pooled_features(layers[k], pooled.data()))
                throw Error("the " + backend.name() + " backend cannot pool features");
            std::copy_n(pooled.begin(), size_t(b) * C, out.begin() + ptrdiff_t((k * size_t(n) + size_t(i0)) * C));
        }
        if (progress) progress(i0 + b, n);
    }
    return out;
}

}  // namespace igpt::probe
