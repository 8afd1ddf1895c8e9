// Image decoding and preparation: formats stb reads (grey, alpha, palette, 16-bit PNG, JPEG), the centre
// crop, area averaging checked against a direct computation, limits and bad files.
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>

#include "error.h"
#include "image.h"
#include "test_util.h"

#include <stb/stb_image_write.h>

using namespace igpt;

namespace {
std::vector<uint8_t> file_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
// Hand-built 16-bit greyscale PNG (stb_image_write only writes 8-bit): zlib "stored" block, no filter.
std::vector<uint8_t> png16_grey(int w, int h, uint16_t value) {
    std::vector<uint8_t> raw;
    for (int y = 0; y < h; ++y) {
        raw.push_back(0);
        for (int x = 0; x < w; ++x) { raw.push_back(uint8_t(value >> 8)); raw.push_back(uint8_t(value)); }
    }
    auto be32 = [](std::vector<uint8_t>& v, uint32_t x) { for (int i = 3; i >= 0; --i) v.push_back(uint8_t(x >> (8 * i))); };
    auto crc = [](const uint8_t* p, size_t n) {
        uint32_t c = 0xffffffffu;
        for (size_t i = 0; i < n; ++i) { c ^= p[i]; for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1))); }
        return c ^ 0xffffffffu;
    };
    auto chunk = [&](std::vector<uint8_t>& out, const char* type, const std::vector<uint8_t>& body) {
        be32(out, uint32_t(body.size()));
        std::vector<uint8_t> t(type, type + 4);
        if (!body.empty()) t.insert(t.end(), body.begin(), body.end());  // (GCC 12 warns on an empty range)
        out.insert(out.end(), t.begin(), t.end());
        be32(out, crc(t.data(), t.size()));
    };
    std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    std::vector<uint8_t> ihdr;
    be32(ihdr, uint32_t(w)); be32(ihdr, uint32_t(h));
    ihdr.insert(ihdr.end(), {16, 0, 0, 0, 0});  // 16-bit greyscale
    chunk(png, "IHDR", ihdr);
    std::vector<uint8_t> z = {0x78, 0x01, 0x01, uint8_t(raw.size()), uint8_t(raw.size() >> 8),
                              uint8_t(~raw.size()), uint8_t(~raw.size() >> 8)};
    z.insert(z.end(), raw.begin(), raw.end());
    uint32_t a = 1, b = 0;
    for (uint8_t x : raw) { a = (a + x) % 65521; b = (b + a) % 65521; }
    be32(z, (b << 16) | a);
    chunk(png, "IDAT", z);
    chunk(png, "IEND", {});
    return png;
}
}  // namespace

TEST_CASE("grey, grey+alpha, RGBA and JPEG files decode to 8-bit RGB", "[image]") {
    const std::string d = igpt_test::temp_dir("image_formats");
    std::vector<uint8_t> grey(6 * 4, 77), ga(6 * 4 * 2), rgba(6 * 4 * 4);
    for (size_t i = 0; i < 24; ++i) { ga[2 * i] = 200; ga[2 * i + 1] = 0; }  // fully transparent -> white
    for (size_t i = 0; i < 24; ++i) { rgba[4 * i] = 10; rgba[4 * i + 1] = 20; rgba[4 * i + 2] = 30; rgba[4 * i + 3] = 255; }
    REQUIRE(stbi_write_png((d + "/g.png").c_str(), 6, 4, 1, grey.data(), 6));
    REQUIRE(stbi_write_png((d + "/ga.png").c_str(), 6, 4, 2, ga.data(), 12));
    REQUIRE(stbi_write_png((d + "/rgba.png").c_str(), 6, 4, 4, rgba.data(), 24));
    REQUIRE(stbi_write_jpg((d + "/c.jpg").c_str(), 6, 4, 4, rgba.data(), 95));
    Image g = load_image(d + "/g.png");
    CHECK((g.w == 6 && g.h == 4));
    CHECK((g.rgb[0] == 77 && g.rgb[1] == 77 && g.rgb[2] == 77));
    Image a = load_image(d + "/ga.png");
    CHECK((a.rgb[0] == 255 && a.rgb[2] == 255));
    Image c = load_image(d + "/rgba.png");
    CHECK((c.rgb[0] == 10 && c.rgb[1] == 20 && c.rgb[2] == 30));
    Image j = load_image(d + "/c.jpg");
    CHECK(std::abs(int(j.rgb[2]) - 30) <= 4);
    auto p16 = png16_grey(3, 2, 0x8000);
    Image h = decode_image(p16.data(), p16.size(), "16-bit png");
    CHECK((h.w == 3 && h.h == 2));
    CHECK(std::abs(int(h.rgb[0]) - 128) <= 1);
}

TEST_CASE("prepare_image centre-crops and area-averages", "[image]") {
    // 8x4 image: crop to the centre 4x4, then average 2x2 blocks into 2x2.
    Image img;
    img.w = 8;
    img.h = 4;
    img.rgb.resize(8 * 4 * 3);
    for (int y = 0; y < 4; ++y)
        for (int x = 0; x < 8; ++x)
            for (int c = 0; c < 3; ++c) img.rgb[(y * 8 + x) * 3 + c] = uint8_t(10 * x + 40 * y + c);
    Image out = prepare_image(img, 2, 2);
    REQUIRE((out.w == 2 && out.h == 2));
    for (int oy = 0; oy < 2; ++oy)
        for (int ox = 0; ox < 2; ++ox)
            for (int c = 0; c < 3; ++c) {
                double s = 0;
                for (int y = 2 * oy; y < 2 * oy + 2; ++y)
                    for (int x = 2 + 2 * ox; x < 4 + 2 * ox; ++x) s += img.rgb[(y * 8 + x) * 3 + c];
                CHECK(int(out.rgb[(oy * 2 + ox) * 3 + c]) == int(std::lround(s / 4)));
            }
    // Same size is an exact copy; a non-integer ratio keeps the mean colour.
    CHECK(prepare_image(img, 4, 8).rgb == img.rgb);
    Image flat;
    flat.w = 37;
    flat.h = 23;
    flat.rgb.assign(37 * 23 * 3, 99);
    Image f = prepare_image(flat, 5, 5);
    for (uint8_t v : f.rgb) CHECK(v == 99);
}

TEST_CASE("bad image files get one-line errors; image bombs are refused before decoding", "[image]") {
    const std::string d = igpt_test::temp_dir("image_bad");
    CHECK_THROWS_WITH(load_image(d + "/missing.png"), Catch::Contains("cannot open"));
    std::ofstream(d + "/junk.png") << "this is not a png";
    CHECK_THROWS_WITH(load_image(d + "/junk.png"), Catch::Contains("not a readable image"));
    std::ofstream(d + "/empty.jpg");
    CHECK_THROWS_WITH(load_image(d + "/empty.jpg"), Catch::Contains("empty"));
    // A valid PNG header claiming 20000 x 20000 pixels.
    auto big = png16_grey(1, 1, 0);
    const uint32_t dim = 20000;
    for (int i = 0; i < 4; ++i) { big[16 + i] = uint8_t(dim >> (24 - 8 * i)); big[20 + i] = uint8_t(dim >> (24 - 8 * i)); }
    CHECK_THROWS_WITH(decode_image(big.data(), big.size(), "bomb.png"), Catch::Contains("larger than the limit"));
    // A truncated JPEG.
    std::vector<uint8_t> rgb(16 * 16 * 3, 128);
    REQUIRE(stbi_write_jpg((d + "/t.jpg").c_str(), 16, 16, 3, rgb.data(), 90));
    auto bytes = file_bytes(d + "/t.jpg");
    bytes.resize(bytes.size() / 3);
    CHECK_THROWS_AS(decode_image(bytes.data(), bytes.size(), "t.jpg"), igpt::Error);
}

TEST_CASE("write_png round-trips pixels and keeps text metadata", "[image]") {
    const std::string d = igpt_test::temp_dir("image_png");
    Image img;
    img.w = 5;
    img.h = 3;
    for (int i = 0; i < 45; ++i) img.rgb.push_back(uint8_t(i * 5));
    write_png(d + "/x.png", img, {{"igpt", "seed=7"}});
    Image back = load_image(d + "/x.png");
    CHECK(back.rgb == img.rgb);
    auto bytes = file_bytes(d + "/x.png");
    const std::string s(bytes.begin(), bytes.end());
    CHECK(s.find("tEXtigpt") != std::string::npos);
    CHECK(s.find("seed=7") != std::string::npos);
}
