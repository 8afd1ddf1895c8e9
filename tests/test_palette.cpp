// Palette: exact round trip, nearest-colour correctness against brute force, k-means recovers blobs,
// determinism for a seed, and quantisation speed (reported, not asserted).
#include <catch2/catch.hpp>
#include <array>
#include <chrono>
#include <set>
#include <cstdio>

#include "error.h"
#include "palette.h"
#include "sampler.h"
#include "test_util.h"

using namespace igpt;

TEST_CASE("quantise(dequantise(i)) == i for a palette of distinct colours", "[palette]") {
    Palette p = igpt_test::random_palette(512, 3);
    std::set<std::array<uint8_t, 3>> distinct;
    for (int i = 0; i < p.k(); ++i) distinct.insert({p.rgb()[3 * i], p.rgb()[3 * i + 1], p.rgb()[3 * i + 2]});
    REQUIRE(int(distinct.size()) == p.k());
    std::vector<int32_t> idx(512);
    for (int i = 0; i < 512; ++i) idx[i] = i;
    CHECK(p.quantize(p.dequantize(idx)) == idx);
    CHECK_THROWS_AS(p.dequantize(std::vector<int32_t>{512}), igpt::Error);
    CHECK_THROWS_AS(p.dequantize(std::vector<int32_t>{-1}), igpt::Error);
}

TEST_CASE("nearest colour matches a brute-force double-precision search", "[palette]") {
    Palette p = igpt_test::random_palette(100, 8);
    Rng r(4);
    std::vector<uint8_t> px(3 * 2000);
    for (auto& x : px) x = uint8_t(r.next());
    auto q = p.quantize(px);
    for (size_t i = 0; i < 2000; ++i) {
        double best = 1e18;
        int bi = -1;
        for (int c = 0; c < p.k(); ++c) {
            double d = 0;
            for (int ch = 0; ch < 3; ++ch) {
                double v = double(px[3 * i + ch]) - double(p.rgb()[3 * c + ch]);
                d += v * v;
            }
            if (d < best) { best = d; bi = c; }
        }
        REQUIRE(q[i] == bi);
    }
}

TEST_CASE("k-means on synthetic colour blobs recovers the blob centres", "[palette]") {
    const std::vector<std::array<int, 3>> centres = {{20, 30, 200}, {220, 40, 40}, {40, 200, 60}, {240, 240, 240}, {10, 10, 10}};
    Rng r(5);
    std::vector<uint8_t> px;
    for (int i = 0; i < 20000; ++i) {
        const auto& c = centres[size_t(i) % centres.size()];
        for (int ch = 0; ch < 3; ++ch) px.push_back(uint8_t(std::clamp(int(std::lround(c[ch] + 6.0f * r.normal())), 0, 255)));
    }
    PaletteTrainParams tp;
    tp.k = 5;
    tp.seed = 1;
    Palette p = train_palette(px, tp);
    for (const auto& c : centres) {
        int best = 1 << 30;
        for (int i = 0; i < p.k(); ++i) {
            int d = 0;
            for (int ch = 0; ch < 3; ++ch) d += (p.rgb()[3 * i + ch] - c[ch]) * (p.rgb()[3 * i + ch] - c[ch]);
            best = std::min(best, d);
        }
        CHECK(best <= 3);  // within ~1 level per channel of the true centre
    }
    // Deterministic for a seed.
    CHECK(train_palette(px, tp).rgb() == p.rgb());
}

TEST_CASE("quantising a 32x32 image takes well under a millisecond", "[palette][bench]") {
    Palette p = igpt_test::random_palette(512, 3);
    Rng r(6);
    std::vector<uint8_t> px(32 * 32 * 3);
    for (auto& x : px) x = uint8_t(r.next());
    std::vector<int32_t> out(1024);
    double best = 1e9;
    for (int rep = 0; rep < 20; ++rep) {
        auto t0 = std::chrono::steady_clock::now();
        p.quantize(px.data(), 1024, out.data());
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::printf("palette: quantise 32x32 with 512 colours: %.3f ms (best of 20, one thread)\n", best * 1e3);
    CHECK(out.size() == 1024);
}
