// Unigram and left-neighbour count baselines (see baselines.h).
#include "baselines.h"

#include <cmath>

#include "error.h"

namespace igpt::train {

BaselineBits compute_baselines(const std::vector<int32_t>& train, const std::vector<int32_t>& val, int32_t h,
                               int32_t w, int32_t V) {
    const size_t npx = size_t(h) * w;
    if (npx == 0 || train.empty() || val.empty() || train.size() % npx || val.size() % npx)
        throw Error("baselines: need whole images of tokens for train and val");
    // unigram counts; left-neighbour counts with context V = "row start"
    std::vector<double> uni(V, 0.0), pair(size_t(V + 1) * V, 0.0), ctx(V + 1, 0.0);
    for (size_t i = 0; i < train.size(); i++) {
        const int32_t x = train[i];
        const size_t col = (i % npx) % w;
        const int32_t left = col == 0 ? V : train[i - 1];
        uni[x] += 1;
        pair[size_t(left) * V + x] += 1;
        ctx[left] += 1;
    }
    const double n = double(train.size());
    std::vector<double> p_uni(V);
    for (int32_t v = 0; v < V; v++) p_uni[v] = (uni[v] + 0.5) / (n + 0.5 * V);
    const double beta = 1.0;  // pseudo-count of the unigram in each left context
    double bits_uni = 0, bits_left = 0;
    for (size_t i = 0; i < val.size(); i++) {
        const int32_t x = val[i];
        if (x < 0 || x >= V) throw Error("baselines: token out of range");
        const size_t col = (i % npx) % w;
        const int32_t left = col == 0 ? V : val[i - 1];
        bits_uni -= std::log2(p_uni[x]);
        bits_left -= std::log2((pair[size_t(left) * V + x] + beta * p_uni[x]) / (ctx[left] + beta));
    }
    BaselineBits b;
    b.unigram_bpp = bits_uni / double(val.size());
    b.left_bpp = bits_left / double(val.size());
    return b;
}

}  // namespace igpt::train
