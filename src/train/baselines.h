// Two reference points for a model's bits per pixel, computed on the same validation tokens:
//   unigram: each pixel drawn from the palette's colour frequencies in the training set (its entropy);
//   left:    each pixel predicted from the colour to its left by counts (first column: by row start).
#pragma once
#include <cstdint>
#include <vector>

namespace igpt::train {

struct BaselineBits {
    double unigram_bpp = 0;  // cross-entropy of val pixels under the training unigram, bits per pixel
    double left_bpp = 0;     // cross-entropy under p(x | left neighbour) from training counts
};

// train/val: (n, h*w) tokens in [0, V). Counts are smoothed (add-1/2 unigram; the left-neighbour counts
// back off to the unigram), so an unseen colour never costs infinite bits.
BaselineBits compute_baselines(const std::vector<int32_t>& train, const std::vector<int32_t>& val, int32_t h,
                               int32_t w, int32_t V);

}  // namespace igpt::train
