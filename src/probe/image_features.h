// Image GPT features (Chen et al. 2020, section 3.3): the normalised input of block l (its ln_1 output;
// l == L: the final norm's output) average-pooled over every position of one forward pass, for labelled
// images read with the trainer's loaders (ImageFolder, flat folder, CIFAR-10 batches), centre-cropped
// and resized to the model's resolution like every evaluation image.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend.h"
#include "model.h"

namespace igpt::probe {

using ProgressFn = std::function<void(int64_t done, int64_t total)>;

// Images of one split, prepared to h x w (centre crop to aspect, area-averaging resize).
struct LabelledImages {
    std::string root;
    std::vector<std::string> classes;  // label -> name; empty for a flat folder (labels all -1)
    int32_t h = 0, w = 0;
    int64_t n = 0;
    std::vector<int32_t> labels;       // (n)
    std::vector<uint8_t> rgb;          // (n, h, w, 3)
    int64_t skipped = 0;               // unreadable files, skipped with a warning each
};

// Indices of at most `limit` items of `labels` (limit <= 0: all), balanced over classes: each class gets
// limit / n_classes (the remainder to the first classes; a class with too few gives its share to the
// others), drawn by a seeded shuffle. Unlabelled items (-1) count as one class. Sorted.
std::vector<int64_t> balanced_subset(const std::vector<int32_t>& labels, int64_t limit, uint64_t seed);

// Scans `path` (train/dataset.h: scan_source), takes balanced_subset(limit, seed) and decodes it on
// `threads` threads. Throws igpt::Error when nothing readable is found.
LabelledImages load_labelled_images(const std::string& path, int64_t limit, uint64_t seed, int32_t h, int32_t w,
                                    int32_t threads, const ProgressFn& progress = {},
                                    const std::function<void(const std::string&)>& warn = {});

// The model's tokens of the images: (n, h*w) palette indices.
std::vector<int32_t> quantize_images(const LabelledImages& imgs, const Palette& pal, int32_t threads);
// The raw-pixel baseline's features: (n, h*w*3), RGB scaled to [0, 1].
std::vector<float> raw_pixel_features(const LabelledImages& imgs);

// Pooled features of `layers` (each in [0, L]) for n images (tokens (n, T)), `batch` images per forward
// pass through the backend (Backend::pooled_features). Returns (layers.size(), n, C).
std::vector<float> extract_features(Backend& backend, const ModelConfig& cfg, const int32_t* tokens, int64_t n,
                                    const std::vector<int32_t>& layers, int32_t batch,
                                    const ProgressFn& progress = {});

}  // namespace igpt::probe
