// Trainer data: source scanning (ImageFolder, flat, CIFAR-10 binary), unreadable files skipped with a
// warning, the token cache (reuse, invalidation), the seeded split, batch crops/flips, the baselines.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "baselines.h"
#include "dataset.h"
#include "error.h"
#include "image.h"

namespace fs = std::filesystem;
using namespace igpt;
using namespace igpt::train;

namespace {

std::string fresh_dir(const std::string& name) {
    fs::path p = fs::path(IGPT_BINARY_DIR) / "test_train_tmp" / name;
    fs::remove_all(p);
    fs::create_directories(p);
    return p.string();
}

Image test_image(int32_t w, int32_t h, int32_t seed) {
    Image img;
    img.w = w;
    img.h = h;
    img.rgb.resize(size_t(w) * h * 3);
    for (int32_t y = 0; y < h; y++)
        for (int32_t x = 0; x < w; x++) {
            uint8_t* p = &img.rgb[(size_t(y) * w + x) * 3];
            p[0] = uint8_t(x * 30 + seed * 40);
            p[1] = uint8_t(y * 30 + seed * 7);
            p[2] = uint8_t((x + y) * 15 + seed * 90);
        }
    return img;
}

Palette grey_palette() {
    std::vector<uint8_t> rgb;
    for (int i = 0; i < 8; i++)
        for (int c = 0; c < 3; c++) rgb.push_back(uint8_t(i * 36 + c * 5));
    return Palette(rgb);
}

}  // namespace

TEST_CASE("train data: ImageFolder with a corrupt file, token cache and its key", "[train][data]") {
    const std::string root = fresh_dir("imagefolder");
    fs::create_directories(root + "/cats");
    fs::create_directories(root + "/dogs");
    write_png(root + "/cats/a.png", test_image(8, 8, 1));
    write_png(root + "/cats/b.png", test_image(12, 8, 2));  // not square: centre-cropped
    write_png(root + "/dogs/c.png", test_image(8, 8, 3));
    {
        std::ofstream f(root + "/dogs/broken.jpg", std::ios::binary);
        f << "this is not a jpeg";
    }
    std::ofstream(root + "/dogs/notes.txt") << "ignored: not an image";

    ImageSource src = scan_source(root);
    CHECK(src.kind == ImageSource::Kind::ImageFolder);
    REQUIRE(src.classes == std::vector<std::string>{"cats", "dogs"});
    REQUIRE(src.items.size() == 4);  // a, b, broken, c (sorted paths); notes.txt is not an image
    CHECK(src.items[0].label == 0);
    CHECK(src.items[3].label == 1);

    const Palette pal = grey_palette();
    TokenBuildParams p;
    p.h = p.w = 8;
    p.cache_dir = root + "/../imagefolder-cache";
    p.threads = 2;
    std::vector<std::string> warnings;
    p.warn = [&](const std::string& m) { warnings.push_back(m); };
    const std::vector<int64_t> all = {0, 1, 2, 3};
    TokenBuildInfo info;
    TokenDataset d = load_token_dataset(src, all, pal, p, &info);
    CHECK_FALSE(info.from_cache);
    CHECK(info.skipped == 1);
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find("broken.jpg") != std::string::npos);
    REQUIRE(d.size() == 3);
    CHECK(d.label(0) == 0);
    CHECK(d.label(2) == 1);
    // the cached tokens are the palette indices of the prepared image
    const Image b = prepare_image(load_image(root + "/cats/b.png"), 8, 8);
    const std::vector<int32_t> want = pal.quantize(b.rgb);
    for (int i = 0; i < 64; i++) CHECK(d.image(1)[i] == want[i]);

    // same inputs: reused from the cache file, no warnings this time
    warnings.clear();
    TokenBuildInfo again;
    TokenDataset d2 = load_token_dataset(src, all, pal, p, &again);
    CHECK(again.from_cache);
    CHECK(again.cache_path == info.cache_path);
    CHECK(warnings.empty());
    CHECK(d2.size() == 3);
    // another palette or resolution: another cache file
    std::vector<uint8_t> rgb2 = pal.rgb();
    rgb2[0] ^= 1;
    TokenBuildInfo other;
    load_token_dataset(src, all, Palette(rgb2), p, &other);
    CHECK_FALSE(other.from_cache);
    CHECK(other.cache_path != info.cache_path);
    p.h = p.w = 4;
    TokenBuildInfo smaller;
    TokenDataset d4 = load_token_dataset(src, all, pal, p, &smaller);
    CHECK_FALSE(smaller.from_cache);
    CHECK(d4.h() == 4);
}

TEST_CASE("train data: flat folder and missing data", "[train][data]") {
    const std::string root = fresh_dir("flat");
    write_png(root + "/x.png", test_image(8, 8, 4));
    write_png(root + "/y.png", test_image(8, 8, 5));
    ImageSource src = scan_source(root);
    CHECK(src.kind == ImageSource::Kind::Flat);
    CHECK(src.items.size() == 2);
    CHECK(src.items[0].label == -1);
    CHECK_THROWS_AS(scan_source(root + "/nope"), Error);
    const std::string empty = fresh_dir("empty");
    CHECK_THROWS_AS(scan_source(empty), Error);
}

TEST_CASE("train data: CIFAR-10 binary batch", "[train][data]") {
    const std::string root = fresh_dir("cifar");
    std::vector<uint8_t> bytes;
    for (int r = 0; r < 3; r++) {
        bytes.push_back(uint8_t(r * 4));  // labels 0, 4, 8
        for (int c = 0; c < 3; c++)
            for (int px = 0; px < 1024; px++) bytes.push_back(uint8_t(r * 50 + c * 70 + (px % 32)));
    }
    {
        std::ofstream f(root + "/data_batch_1.bin", std::ios::binary);
        f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    }
    ImageSource src = scan_source(root);
    CHECK(src.kind == ImageSource::Kind::Cifar);
    REQUIRE(src.items.size() == 3);
    CHECK(src.items[1].label == 4);
    CHECK(src.classes.at(8) == "ship");
    Image img = read_item(src, 2);
    REQUIRE(img.w == 32);
    // pixel (x=5, y=1) of record 2: R plane, G plane, B plane
    CHECK(img.rgb[(1 * 32 + 5) * 3 + 0] == uint8_t(100 + 0 + 5));
    CHECK(img.rgb[(1 * 32 + 5) * 3 + 1] == uint8_t(100 + 70 + 5));
    CHECK(img.rgb[(1 * 32 + 5) * 3 + 2] == uint8_t(100 + 140 + 5));
    // a single batch file works too; a truncated one is refused with a message
    CHECK(scan_source(root + "/data_batch_1.bin").items.size() == 3);
    {
        std::ofstream f(root + "/test_batch.bin", std::ios::binary);
        f.write(reinterpret_cast<const char*>(bytes.data()), 3000);
    }
    CHECK_THROWS_WITH(scan_source(root + "/test_batch.bin"), Catch::Contains("3073"));
}

TEST_CASE("train data: seeded split, crops, flips and epochs", "[train][data]") {
    Split a = split_indices(100, 0.2, 7), b = split_indices(100, 0.2, 7), c = split_indices(100, 0.2, 8);
    CHECK(a.val.size() == 20);
    CHECK(a.train.size() == 80);
    CHECK(a.val == b.val);
    CHECK(a.val != c.val);
    std::set<int64_t> all(a.train.begin(), a.train.end());
    all.insert(a.val.begin(), a.val.end());
    CHECK(all.size() == 100);

    // 5 images stored at 6x6, crops of 4x4
    const std::string root = fresh_dir("crops");
    for (int i = 0; i < 5; i++) write_png(root + "/" + std::to_string(i) + ".png", test_image(6, 6, i));
    ImageSource src = scan_source(root);
    std::vector<uint8_t> rgb;
    for (int i = 0; i < 256; i++) {  // a palette that keeps every distinct value distinct enough
        rgb.push_back(uint8_t(i));
        rgb.push_back(uint8_t((i * 37) & 255));
        rgb.push_back(uint8_t((i * 101) & 255));
    }
    TokenBuildParams p;
    p.h = p.w = 6;
    p.cache_dir = root + "/cache";
    TokenDataset d = load_token_dataset(src, {0, 1, 2, 3, 4}, Palette(rgb), p);
    BatchSampler s(d, 3, 4, 4, true);
    DataCursor cur;
    std::vector<int32_t> batch(5 * 16);
    s.next(cur, 5, batch.data());
    CHECK(cur.epoch == 0);
    CHECK(cur.pos == 5);
    // every crop is a (possibly mirrored) 4x4 window of a distinct image: one epoch visits each once
    std::set<int64_t> seen;
    int flips = 0;
    for (int b = 0; b < 5; b++) {
        bool found = false;
        for (int64_t i = 0; i < 5 && !found; i++)
            for (int oy = 0; oy <= 2 && !found; oy++)
                for (int ox = 0; ox <= 2 && !found; ox++)
                    for (bool flip : {false, true}) {
                        std::vector<int32_t> w(16);
                        d.crop(i, oy, ox, flip, 4, 4, w.data());
                        if (std::equal(w.begin(), w.end(), batch.begin() + b * 16)) {
                            found = true;
                            seen.insert(i);
                            flips += flip;
                            break;
                        }
                    }
        CHECK(found);
    }
    CHECK(seen.size() == 5);
    // a mirrored crop really is mirrored
    std::vector<int32_t> u(16), m(16);
    d.crop(0, 1, 1, false, 4, 4, u.data());
    d.crop(0, 1, 1, true, 4, 4, m.data());
    CHECK(u[0] == m[3]);
    CHECK(u[4 * 2 + 1] == m[4 * 2 + 2]);
    // the batch depends only on the cursor: replaying from a saved cursor gives the same tokens
    DataCursor saved = cur;
    std::vector<int32_t> n1(3 * 16), n2(3 * 16);
    s.next(cur, 3, n1.data());
    BatchSampler s2(d, 3, 4, 4, true);
    s2.next(saved, 3, n2.data());
    CHECK(n1 == n2);
    CHECK(cur.epoch == 1);
    CHECK(saved.pos == cur.pos);
}

TEST_CASE("train baselines: unigram entropy and left-neighbour model", "[train][baselines]") {
    // rows that count up: each pixel is its left neighbour + 1 (mod V), first column uniform
    const int32_t V = 8, h = 4, w = 8;
    std::vector<int32_t> train, val;
    for (int img = 0; img < 400; img++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) train.push_back((img + y * 3 + x) % V);
    for (int img = 0; img < 20; img++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) val.push_back((img * 5 + y + x) % V);
    BaselineBits b = compute_baselines(train, val, h, w, V);
    CHECK(b.unigram_bpp == Approx(3.0).epsilon(1e-3));  // uniform colours: log2(8)
    // left neighbour determines the pixel except in the first column (uniform: 3 bits, 1 pixel in 8)
    CHECK(b.left_bpp == Approx(3.0 / 8).margin(0.01));
    CHECK(b.left_bpp < b.unigram_bpp);
}
