// The fuzzers' entry points, shared by the libFuzzer targets (fuzz/fuzz_*.cpp) and the regression test that
// replays saved crash inputs (tests/test_fuzz_regressions.cpp). Each takes arbitrary bytes and drives one
// parser through the public API. The contract under test: a parser either succeeds or throws igpt::Error;
// any other exception, crash, sanitizer report, leak or broken round trip is a finding. Oracle failures
// throw std::logic_error (uncaught in a fuzzer: abort, reported as a crash; in Catch2: a failed test).
#pragma once
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "error.h"
#include "image.h"
#include "model.h"
#include "palette.h"

#if __has_include("checkpoint.h") && __has_include("dataset.h")
#include "checkpoint.h"
#include "dataset.h"
#define IGPT_FUZZ_HAS_TRAIN 1
#endif

namespace igpt_fuzz {

inline void expect(bool ok, const char* what) {
    if (!ok) throw std::logic_error(std::string("fuzz oracle failed: ") + what);
}

// The path-based readers need a file: one per process (and per suffix), rewritten for every input.
inline std::string scratch_file(const char* suffix, const uint8_t* data, size_t size) {
    const char* dir = std::getenv("TMPDIR");
    std::string path = std::string(dir && *dir ? dir : "/tmp") + "/igpt_fuzz_" + std::to_string(getpid()) + suffix;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) throw std::runtime_error("cannot write scratch file " + path);
    if (size) std::fwrite(data, 1, size, f);
    std::fclose(f);
    return path;
}

// Model file: header, tensors, metadata. A model that loads must survive save -> load unchanged.
inline void model_file(const uint8_t* data, size_t size) {
    igpt::ModelLimits lim;
    lim.max_file_bytes = 1 << 20;  // keeps each input cheap; the limit check itself is part of the target
    igpt::Model m;
    try {
        m = igpt::load_model_from_memory(data, size, "fuzz", lim);
    } catch (const igpt::Error&) {
        return;
    }
    expect(m.params.size() == igpt::param_count(m.specs), "params match the layout");
    for (float v : m.params) expect(std::isfinite(v), "loaded weights are finite");
    expect(m.palette.k() == m.cfg.vocab, "palette size == vocab");
    const std::vector<uint8_t> again = igpt::serialize_model(m, igpt::DType::F32);
    igpt::Model m2 = igpt::load_model_from_memory(again.data(), again.size(), "fuzz round trip");
    expect(m2.params == m.params, "round trip keeps the weights");
    expect(m2.palette.rgb() == m.palette.rgb(), "round trip keeps the palette");
}

// Palette file (or a model file read for its palette), through the path API.
inline void palette_file(const uint8_t* data, size_t size) {
    const std::string path = scratch_file(".palette", data, size);
    try {
        igpt::Palette p = igpt::load_palette_file(path);
        expect(p.k() >= 1 && p.k() <= 65536 && p.rgb().size() == size_t(p.k()) * 3, "palette size in range");
        // Quantise a few colours and map them back: every index must be inside the palette.
        std::vector<uint8_t> px(data, data + std::min<size_t>(size - size % 3, 48));
        std::vector<uint8_t> back = p.dequantize(p.quantize(px));
        expect(back.size() == px.size(), "quantize/dequantize sizes");
    } catch (const igpt::Error&) {
    }
}

// Image decoding (every format stb accepts) and preparation, with small limits so that absurd sizes are
// refused by the limit checks rather than by running out of memory.
inline void image_decode(const uint8_t* data, size_t size) {
    igpt::ImageLimits lim;
    lim.max_file_bytes = 1 << 20;
    lim.max_pixels = 1 << 16;  // 256x256
    igpt::Image img;
    try {
        img = igpt::decode_image(data, size, "fuzz", lim);
    } catch (const igpt::Error&) {
        return;
    }
    expect(img.w > 0 && img.h > 0 && int64_t(img.w) * img.h <= lim.max_pixels, "decoded size within the limit");
    expect(img.rgb.size() == size_t(img.w) * img.h * 3, "pixel buffer size");
    // The model's preparation at its usual size and at an odd one derived from the input.
    igpt::Image a = igpt::prepare_image(img, 32, 32);
    expect(a.w == 32 && a.h == 32 && a.rgb.size() == 32 * 32 * 3, "prepare 32x32");
    const int32_t oh = 1 + int32_t(size % 37), ow = 1 + int32_t((size / 37) % 41);
    igpt::Image b = igpt::prepare_image(img, oh, ow);
    expect(b.w == ow && b.h == oh && b.rgb.size() == size_t(oh) * ow * 3, "prepare odd size");
    // PNG out and back in is lossless.
    if (int64_t(img.w) * img.h <= 4096) {
        std::vector<uint8_t> png = igpt::encode_png(img, {{"igpt", "fuzz"}});
        igpt::Image c = igpt::decode_image(png.data(), png.size(), "fuzz png");
        expect(c.w == img.w && c.h == img.h && c.rgb == img.rgb, "PNG round trip");
    }
}

#ifdef IGPT_FUZZ_HAS_TRAIN
// CIFAR-10 binary batch: scan the file as a data source, then decode and prepare its first records.
inline void cifar_batch(const uint8_t* data, size_t size) {
    const std::string path = scratch_file(".bin", data, size);
    try {
        igpt::train::ImageSource src = igpt::train::scan_source(path);
        expect(src.kind == igpt::train::ImageSource::Kind::Cifar, "a .bin file is a CIFAR source");
        expect(src.items.size() == size / 3073, "one item per 3073-byte record");
        for (size_t i = 0; i < src.items.size() && i < 4; ++i) {
            expect(src.items[i].label >= 0 && src.items[i].label < int32_t(src.classes.size()), "label in range");
            igpt::Image img = igpt::train::read_item(src, i);
            expect(img.w == 32 && img.h == 32 && img.rgb.size() == 32 * 32 * 3, "CIFAR record is 32x32 RGB");
            igpt::prepare_image(img, 16, 16);
        }
    } catch (const igpt::Error&) {
    }
}

// Token cache (memory-mapped): every image the header promises must lie inside the file.
inline void token_cache(const uint8_t* data, size_t size) {
    const std::string path = scratch_file(".tok", data, size);
    try {
        igpt::train::TokenDataset d(path);
        expect(d.size() >= 0 && d.h() > 0 && d.w() > 0, "token cache dimensions");
        const int64_t n = std::min<int64_t>(d.size(), 8);
        uint64_t sum = 0;
        for (int64_t i = 0; i < n; ++i) {
            const uint16_t* img = d.image(i);
            for (int64_t p = 0; p < int64_t(d.h()) * d.w(); ++p) sum += img[p];
            sum += uint64_t(d.label(i));
        }
        if (n > 0) {
            std::vector<int32_t> out(size_t(d.h()) * d.w());
            d.crop(n - 1, 0, 0, true, d.h(), d.w(), out.data());
        }
        (void)sum;
    } catch (const igpt::Error&) {
    }
}

// Training checkpoint.
inline void checkpoint_file(const uint8_t* data, size_t size) {
    const std::string path = scratch_file(".ckpt", data, size);
    try {
        igpt::train::Checkpoint ck = igpt::train::load_checkpoint(path);
        const size_t n = igpt::param_count(igpt::param_layout(ck.cfg));
        expect(ck.params.size() == n && ck.adam_m.size() == n && ck.adam_v.size() == n, "state sizes match the config");
        // A checkpoint the trainer can resume from: palette indices fit the embedding, the data cursor and
        // the step are not negative (BatchSampler indexes its permutation with the cursor).
        expect(ck.palette.k() == ck.cfg.vocab, "palette size == vocab");
        expect(ck.step >= 0 && ck.cursor.epoch >= 0 && ck.cursor.pos >= 0, "step and data cursor not negative");
    } catch (const igpt::Error&) {
    }
}
#endif

}  // namespace igpt_fuzz
