// Colour palette: k-means clusters of RGB colours. Tokens are palette indices; dequantisation maps an
// index to its exact 8-bit colour, and quantisation picks the nearest colour (squared RGB distance,
// lowest index on ties).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace igpt {

class Palette {
public:
    Palette() = default;
    explicit Palette(std::vector<uint8_t> rgb);  // k*3 bytes, k in [1, 65536]; throws igpt::Error

    int32_t k() const { return int32_t(rgb_.size() / 3); }
    const std::vector<uint8_t>& rgb() const { return rgb_; }

    // n pixels of packed RGB -> n indices.
    void quantize(const uint8_t* rgb, size_t n, int32_t* out) const;
    // n indices -> n packed RGB pixels; an index out of range throws igpt::Error.
    void dequantize(const int32_t* idx, size_t n, uint8_t* rgb) const;
    std::vector<int32_t> quantize(const std::vector<uint8_t>& rgb) const;
    std::vector<uint8_t> dequantize(const std::vector<int32_t>& idx) const;

private:
    std::vector<uint8_t> rgb_;
    std::vector<int32_t> r_, g_, b_;  // structure-of-arrays copy for the vectorised nearest search
};

struct PaletteTrainParams {
    int32_t k = 512;
    uint64_t seed = 1;
    int32_t iterations = 30;      // Lloyd iterations after k-means++ seeding (stops early on convergence)
    std::function<void(int32_t iter, int32_t total, double inertia)> on_iter;  // optional progress
};

// k-means++ seeded, deterministic for a seed. `pixels` is n*3 packed RGB (n >= 1).
Palette train_palette(const std::vector<uint8_t>& pixels, const PaletteTrainParams& params);

}  // namespace igpt
