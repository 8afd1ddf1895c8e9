// Comparing a computed tensor with a reference, for the tests of the CUDA trainer and its kernels (the GPU
// ones and the emulated ones). No dependencies, so the small sanitizer builds can take it too.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>

namespace igpt_test {

// max |got - want| over the elements i < n where pick(i) holds, relative to max |want| there (at least
// 1e-12); a NaN in got counts as an infinite error. For comparing a backend's tensor with a reference.
template <typename G, typename W, typename Pick>
double normalised_error(const G* got, const W* want, size_t n, Pick pick) {
    double worst = 0, scale = 1e-12;
    for (size_t i = 0; i < n; ++i) {
        if (!pick(i)) continue;
        const double e = std::fabs(double(got[i]) - double(want[i]));
        worst = std::isnan(e) ? INFINITY : std::max(worst, e);
        scale = std::max(scale, std::fabs(double(want[i])));
    }
    return worst / scale;
}
template <typename G, typename W> double normalised_error(const G* got, const W* want, size_t n) {
    return normalised_error(got, want, n, [](size_t) { return true; });
}

}  // namespace igpt_test
