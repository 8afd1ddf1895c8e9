// The igpt CLI end to end on a small model made here: complete writes a PNG grid whose kept rows equal the
// input's quantised rows; nll, sample, info, palette, init work; bad input gives one line and exit 1.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>

#include "backend.h"
#include "image.h"
#include "test_util.h"

using namespace igpt;
using igpt_test::run;

namespace {
int count_lines(const std::string& s) {
    int n = 0;
    for (char c : s) n += c == '\n';
    return n;
}
}  // namespace

TEST_CASE("igpt complete keeps the input's quantised rows in every sample", "[cli]") {
    const std::string d = igpt_test::temp_dir("cli_complete");
    Model m = igpt_test::small_model(9);
    save_model(m, d + "/m.safetensors");
    // A 20x12 input: prepared to 8x8 by centre crop (12x12) and area averaging.
    Image img;
    img.w = 20;
    img.h = 12;
    Rng r(1);
    for (int i = 0; i < 20 * 12 * 3; ++i) img.rgb.push_back(uint8_t(r.next()));
    write_png(d + "/in.png", img);
    auto res = run(igpt_test::cli() + " complete " + d + "/m.safetensors " + d + "/in.png --rows 3 -n 2 --scale 1 -o " + d + "/out.png");
    INFO(res.output);
    REQUIRE(res.code == 0);
    Image out = load_image(d + "/out.png");
    // Layout: gap 1 | kept | gap | sample 1 | gap | sample 2 | gap | original | gap.
    REQUIRE(out.w == 1 + 4 * 9);
    REQUIRE(out.h == 1 + 9);
    const Image prep = prepare_image(img, 8, 8);
    const auto q = m.palette.dequantize(m.palette.quantize(prep.rgb));
    for (int tile = 0; tile < 4; ++tile) {
        const int rows = tile == 3 ? 8 : 3;  // the original shows every row
        for (int y = 0; y < rows; ++y)
            for (int x = 0; x < 8; ++x)
                for (int c = 0; c < 3; ++c)
                    REQUIRE(out.rgb[((1 + y) * out.w + 1 + tile * 9 + x) * 3 + c] == q[(y * 8 + x) * 3 + c]);
    }
    // Below the kept rows, the first tile is grey.
    CHECK(out.rgb[((1 + 5) * out.w + 1) * 3] == 128);
}

TEST_CASE("igpt nll, sample, info, palette and init run end to end", "[cli]") {
    const std::string d = igpt_test::temp_dir("cli_misc");
    Model m = igpt_test::small_model(10);
    save_model(m, d + "/m.safetensors");
    Image img;
    img.w = img.h = 8;
    for (int i = 0; i < 64 * 3; ++i) img.rgb.push_back(uint8_t(i));
    write_png(d + "/a.png", img);
    auto res = run(igpt_test::cli() + " nll " + d + "/m.safetensors " + d + "/a.png --heatmap " + d + "/h.png");
    INFO(res.output);
    REQUIRE(res.code == 0);
    CHECK(res.output.find("bits/pixel") != std::string::npos);
    CHECK(load_image(d + "/h.png").w > 0);
    res = run(igpt_test::cli() + " sample " + d + "/m.safetensors -n 3 -o " + d + "/s.png");
    REQUIRE(res.code == 0);
    CHECK(load_image(d + "/s.png").w == 4 + 3 * (8 * 4 + 4));
    res = run(igpt_test::cli() + " info " + d + "/m.safetensors");
    REQUIRE(res.code == 0);
    CHECK(res.output.find("width 32, layers 2, heads 4") != std::string::npos);
    res = run(igpt_test::cli() + " palette " + d + " -k 4 --samples 500 -o " + d + "/p.safetensors");
    INFO(res.output);
    REQUIRE(res.code == 0);
    res = run(igpt_test::cli() + " init -c tiny --size 8 --palette " + d + "/p.safetensors -o " + d + "/t.safetensors");
    INFO(res.output);
    REQUIRE(res.code == 0);
    Model t = load_model(d + "/t.safetensors");
    CHECK(t.cfg.vocab == 4);
    CHECK(t.cfg.width == 128);
    // export re-encodes a model file: int8 weights within a row's step of the originals, f16 exactly so
    for (const char* dt : {"int8", "f16"}) {
        res = run(igpt_test::cli() + " export " + d + "/m.safetensors " + d + "/m." + dt + ".safetensors --dtype " + dt);
        INFO(res.output);
        REQUIRE(res.code == 0);
        const Model e = load_model(d + "/m." + dt + ".safetensors");
        CHECK(e.file_dtype == dtype_from_name(dt));
        CHECK(e.cfg.width == m.cfg.width);
        CHECK(e.palette.rgb() == m.palette.rgb());
        REQUIRE(e.params.size() == m.params.size());
        double err = 0, ref = 0;
        for (size_t i = 0; i < m.params.size(); ++i) {
            err += double(e.params[i] - m.params[i]) * double(e.params[i] - m.params[i]);
            ref += double(m.params[i]) * double(m.params[i]);
        }
        INFO(dt << ": normalised error " << std::sqrt(err / ref));
        CHECK(std::sqrt(err / ref) < (std::string(dt) == "int8" ? 1e-2 : 1e-3));
        CHECK(e.provenance.find("\"export_dtype\":\"" + std::string(dt) + "\"") != std::string::npos);
    }
}

TEST_CASE("bad CLI input gets a one-line error and exit code 1", "[cli]") {
    const std::string d = igpt_test::temp_dir("cli_bad");
    Model m = igpt_test::small_model(11);
    save_model(m, d + "/m.safetensors");
    Image img;
    img.w = img.h = 8;
    img.rgb.assign(64 * 3, 50);
    write_png(d + "/a.png", img);
    std::ofstream(d + "/corrupt.safetensors") << "garbage that is not a model";
    struct Case {
        std::string args, expect;
    };
    std::vector<Case> cases = {
        {"complete " + d + "/m.safetensors " + d + "/missing.png", "cannot open"},
        {"complete " + d + "/m.safetensors " + d + "/a.png --rows 9", "more than the model's 8 rows"},
        {"complete " + d + "/corrupt.safetensors " + d + "/a.png", "corrupt.safetensors"},
        {"complete " + d + "/nope.safetensors " + d + "/a.png", "cannot open"},
        {"nll " + d + "/m.safetensors " + d + "/m.safetensors", "not a readable image"},
        {"info " + d + "/a.png", "a.png"},
    };
    if (!igpt::cuda_available())  // on a GPU machine --device cuda works
        cases.push_back({"complete " + d + "/m.safetensors " + d + "/a.png --device cuda", "no CUDA"});
    for (const auto& c : cases) {
        auto res = run(igpt_test::cli() + " " + c.args);
        INFO(c.args << "\n" << res.output);
        CHECK(res.code == 1);
        CHECK(res.output.find(c.expect) != std::string::npos);
        CHECK(count_lines(res.output) == 1);
        CHECK(res.output.find("igpt: ") == 0);
    }
}
