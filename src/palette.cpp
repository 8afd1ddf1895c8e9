// Palette quantisation and k-means++ training.
#include "palette.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>

#include "error.h"
#include "sampler.h"

namespace igpt {

Palette::Palette(std::vector<uint8_t> rgb) : rgb_(std::move(rgb)) {
    if (rgb_.empty() || rgb_.size() % 3 != 0 || rgb_.size() / 3 > 65536)
        throw Error("palette must hold 1..65536 RGB colours");
    const size_t k = rgb_.size() / 3;
    r_.resize(k);
    g_.resize(k);
    b_.resize(k);
    for (size_t i = 0; i < k; ++i) {
        r_[i] = rgb_[3 * i];
        g_[i] = rgb_[3 * i + 1];
        b_[i] = rgb_[3 * i + 2];
    }
}

void Palette::quantize(const uint8_t* rgb, size_t n, int32_t* out) const {
    const int32_t k = this->k();
    const int32_t* R = r_.data();
    const int32_t* G = g_.data();
    const int32_t* B = b_.data();
    if (k <= 8192) {
        // Pack (distance << 13 | index) into one int32 (distance <= 3*255^2 < 2^18): a plain min-reduction
        // then yields the nearest colour with the lowest index on ties, and vectorises (AVX2 / wasm SIMD).
        for (size_t p = 0; p < n; ++p) {
            const int32_t r = rgb[3 * p], g = rgb[3 * p + 1], b = rgb[3 * p + 2];
            int32_t best = INT32_MAX;
            for (int32_t i = 0; i < k; ++i) {
                const int32_t dr = R[i] - r, dg = G[i] - g, db = B[i] - b;
                const int32_t key = ((dr * dr + dg * dg + db * db) << 13) | i;
                best = key < best ? key : best;
            }
            out[p] = best & 8191;
        }
        return;
    }
    std::vector<int32_t> dist(static_cast<size_t>(k));
    for (size_t p = 0; p < n; ++p) {
        const int32_t r = rgb[3 * p], g = rgb[3 * p + 1], b = rgb[3 * p + 2];
        int32_t* d = dist.data();
        for (int32_t i = 0; i < k; ++i) {
            const int32_t dr = R[i] - r, dg = G[i] - g, db = B[i] - b;
            d[i] = dr * dr + dg * dg + db * db;
        }
        int32_t best = 0, bd = d[0];
        for (int32_t i = 1; i < k; ++i)
            if (d[i] < bd) { bd = d[i]; best = i; }
        out[p] = best;
    }
}

void Palette::dequantize(const int32_t* idx, size_t n, uint8_t* rgb) const {
    const int32_t k = this->k();
    for (size_t p = 0; p < n; ++p) {
        if (idx[p] < 0 || idx[p] >= k)
            throw Error("token " + std::to_string(idx[p]) + " is outside the palette (" + std::to_string(k) + " colours)");
        std::copy_n(&rgb_[size_t(idx[p]) * 3], 3, &rgb[3 * p]);
    }
}

std::vector<int32_t> Palette::quantize(const std::vector<uint8_t>& rgb) const {
    std::vector<int32_t> out(rgb.size() / 3);
    quantize(rgb.data(), out.size(), out.data());
    return out;
}

std::vector<uint8_t> Palette::dequantize(const std::vector<int32_t>& idx) const {
    std::vector<uint8_t> out(idx.size() * 3);
    dequantize(idx.data(), idx.size(), out.data());
    return out;
}

// ---- k-means -------------------------------------------------------------------------------------------

namespace {

// Nearest centre (float centres, SoA) for every point; returns total squared distance.
double assign(const std::vector<float>& px, size_t n, const std::vector<float>& cr, const std::vector<float>& cg,
              const std::vector<float>& cb, std::vector<int32_t>& label) {
    const size_t k = cr.size();
    std::vector<float> d(k);
    double inertia = 0;
    for (size_t p = 0; p < n; ++p) {
        const float r = px[3 * p], g = px[3 * p + 1], b = px[3 * p + 2];
        for (size_t i = 0; i < k; ++i) {
            const float dr = cr[i] - r, dg = cg[i] - g, db = cb[i] - b;
            d[i] = dr * dr + dg * dg + db * db;
        }
        size_t best = 0;
        float bd = d[0];
        for (size_t i = 1; i < k; ++i)
            if (d[i] < bd) { bd = d[i]; best = i; }
        label[p] = int32_t(best);
        inertia += bd;
    }
    return inertia;
}

}  // namespace

Palette train_palette(const std::vector<uint8_t>& pixels, const PaletteTrainParams& params) {
    const size_t n = pixels.size() / 3;
    if (n == 0) throw Error("no pixels to train a palette on");
    if (params.k < 1 || params.k > 65536) throw Error("palette size must be in [1, 65536]");
    const size_t k = size_t(params.k);
    std::vector<float> px(pixels.begin(), pixels.begin() + ptrdiff_t(n * 3));
    Rng rng(params.seed);

    // k-means++ seeding: each new centre drawn with probability proportional to squared distance.
    std::vector<float> cr, cg, cb;
    std::vector<float> mind(n, std::numeric_limits<float>::max());
    size_t first = size_t(rng.next() % n);
    auto add_centre = [&](size_t p) {
        const float r = px[3 * p], g = px[3 * p + 1], b = px[3 * p + 2];
        cr.push_back(r);
        cg.push_back(g);
        cb.push_back(b);
        for (size_t q = 0; q < n; ++q) {
            const float dr = px[3 * q] - r, dg = px[3 * q + 1] - g, db = px[3 * q + 2] - b;
            mind[q] = std::min(mind[q], dr * dr + dg * dg + db * db);
        }
    };
    add_centre(first);
    while (cr.size() < k) {
        double total = 0;
        for (float d : mind) total += d;
        size_t pick = 0;
        if (total <= 0) {
            pick = size_t(rng.next() % n);  // fewer distinct colours than k: duplicates are harmless
        } else {
            double u = rng.uniform() * total, acc = 0;
            pick = n - 1;
            for (size_t q = 0; q < n; ++q) {
                acc += mind[q];
                if (acc > u) { pick = q; break; }
            }
        }
        add_centre(pick);
    }

    // Lloyd iterations.
    std::vector<int32_t> label(n);
    double prev = std::numeric_limits<double>::max();
    for (int32_t it = 0; it < params.iterations; ++it) {
        const double inertia = assign(px, n, cr, cg, cb, label);
        std::vector<double> sr(k, 0), sg(k, 0), sb(k, 0);
        std::vector<int64_t> cnt(k, 0);
        for (size_t p = 0; p < n; ++p) {
            const size_t c = size_t(label[p]);
            sr[c] += px[3 * p];
            sg[c] += px[3 * p + 1];
            sb[c] += px[3 * p + 2];
            ++cnt[c];
        }
        for (size_t c = 0; c < k; ++c) {
            if (cnt[c] == 0) continue;  // an empty cluster keeps its centre
            cr[c] = float(sr[c] / double(cnt[c]));
            cg[c] = float(sg[c] / double(cnt[c]));
            cb[c] = float(sb[c] / double(cnt[c]));
        }
        if (params.on_iter) params.on_iter(it + 1, params.iterations, inertia / double(n));
        if (prev - inertia <= 1e-6 * prev) break;
        prev = inertia;
    }

    // Sort centres by luminance so palettes are easy to look at, then round to 8-bit colours.
    std::vector<size_t> order(k);
    for (size_t i = 0; i < k; ++i) order[i] = i;
    auto lum = [&](size_t i) { return 0.299f * cr[i] + 0.587f * cg[i] + 0.114f * cb[i]; };
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return lum(a) < lum(b); });
    std::vector<uint8_t> rgb(k * 3);
    auto to8 = [](float v) { return uint8_t(std::clamp(std::lround(v), 0l, 255l)); };
    for (size_t i = 0; i < k; ++i) {
        rgb[3 * i] = to8(cr[order[i]]);
        rgb[3 * i + 1] = to8(cg[order[i]]);
        rgb[3 * i + 2] = to8(cb[order[i]]);
    }
    return Palette(std::move(rgb));
}

}  // namespace igpt
