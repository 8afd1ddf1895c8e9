// Image decoding (stb_image), the model's preparation (centre crop + area-averaging resize) and PNG output.
#include "image.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "error.h"
#include "model.h"  // read_file, write_file_atomic

// stb_image allocates through a per-thread budget that decode_image sets from the image's header, so that
// a file whose data expands far beyond its stated size (a PNG "zlib bomb": 300 KB that claims 64x64 pixels
// and inflates to 300 MB) is refused instead of exhausting memory. No single buffer a genuine image needs
// is larger than 16 bytes per (block-padded) pixel (HDR as float RGBA) plus twice the compressed data.
namespace {
thread_local size_t t_stbi_max_alloc = SIZE_MAX;
thread_local bool t_stbi_refused = false;
void* igpt_stbi_malloc(size_t n) {
    if (n > t_stbi_max_alloc) return t_stbi_refused = true, nullptr;
    return std::malloc(n);
}
void* igpt_stbi_realloc(void* p, size_t n) {
    if (n > t_stbi_max_alloc) return t_stbi_refused = true, nullptr;
    return std::realloc(p, n);
}
}  // namespace
#define STBI_MALLOC(sz) igpt_stbi_malloc(sz)
#define STBI_REALLOC(p, sz) igpt_stbi_realloc(p, sz)
#define STBI_FREE(p) std::free(p)
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_FAILURE_USERMSG
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
// stb_image_write's JPEG encoder left-shifts negative ints (well defined since C++20, and two's complement
// on every target); igpt writes PNG only, a test writes a JPEG fixture. UBSan's shift-base check is off for
// these functions alone, so the sanitizer suite can run with -fno-sanitize-recover (scripts/test_sanitize.sh).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((no_sanitize("shift-base"))), apply_to = function)
#endif
#include <stb/stb_image_write.h>
#if defined(__clang__)
#pragma clang attribute pop
#endif

namespace igpt {

namespace {

// Inputs that Debian 12's stb_image (2.27) mishandles, refused before stb reads them (both fixed upstream in
// 2.28; found by fuzz/fuzz_image_decode). Returns the reason, or nullptr.
//  - A JPEG DHT segment declaring more than 256 Huffman codes: stb writes past its 257-entry tables.
//  - A PNM header number of more than 9 digits: stb's int parser overflows (undefined behaviour).
//  - A 16-bit PNM (maximum value > 255): stb converts it with the 8-bit routine, then reads twice the
//    buffer's size (heap over-read).
// The JPEG walk mirrors stb's: segments with a length are skipped whole, bytes between them (entropy-coded
// data, junk, 0xFF fill before SOI) are scanned for the next 0xFF marker, and every DHT segment is checked
// the way stb parses it. Like stb, a JPEG may start with 0xFF fill bytes before its SOI marker.
const char* stb_unsafe_input(const uint8_t* p, size_t n) {
    auto at = [&](size_t i) -> uint32_t { return i < n ? p[i] : 0; };  // stb reads 0 past the end
    size_t soi = 0;
    while (soi < n && p[soi] == 0xFF) ++soi;
    if (soi >= 1 && soi < n && p[soi] == 0xD8) {
        size_t i = soi + 1;
        while (i + 1 < n) {
            if (p[i] != 0xFF || p[i + 1] == 0xFF || p[i + 1] == 0x00 || (p[i + 1] >= 0xD0 && p[i + 1] <= 0xD9)) {
                ++i;  // data, fill byte, stuffed zero, RSTn/SOI/EOI: no segment starts here
                continue;
            }
            const uint32_t marker = p[i + 1];
            const size_t len = (at(i + 2) << 8) | at(i + 3);
            if (marker == 0xC4) {
                int64_t left = int64_t(len) - 2;
                size_t q = i + 4;
                while (left > 0) {
                    if ((at(q) >> 4) > 1 || (at(q) & 15) > 3) break;  // stb refuses the table
                    uint32_t codes = 0;
                    for (size_t k = 1; k <= 16; ++k) codes += at(q + k);
                    if (codes > 256) return "corrupt JPEG (Huffman table with more than 256 codes)";
                    q += 17 + codes;
                    left -= 17 + int64_t(codes);
                }
            }
            i += 2 + std::max<size_t>(len, 2);
        }
    }
    if (n >= 2 && p[0] == 'P' && (p[1] == '5' || p[1] == '6')) {
        auto space = [](uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
        size_t i = 2;
        for (int field = 0; field < 3; ++field) {  // width, height, maximum value
            while (i < n && (space(p[i]) || p[i] == '#')) {
                if (p[i] == '#')
                    while (i < n && p[i] != '\n' && p[i] != '\r') ++i;
                else
                    ++i;
            }
            size_t digits = 0;
            int64_t value = 0;
            for (; i < n && p[i] >= '0' && p[i] <= '9'; ++i, ++digits)
                if (digits < 10) value = value * 10 + (p[i] - '0');
            if (digits > 9) return "corrupt PNM header (number too long)";
            if (field == 2 && value > 255) return "16-bit PNM is not supported; convert it to PNG";
        }
    }
    return nullptr;
}

}  // namespace

Image load_image(const std::string& path, const ImageLimits& limits) {
    std::vector<uint8_t> bytes = read_file(path, limits.max_file_bytes);
    return decode_image(bytes.data(), bytes.size(), path, limits);
}

Image decode_image(const uint8_t* data, size_t size, const std::string& what, const ImageLimits& limits) {
    if (int64_t(size) > limits.max_file_bytes) throw Error(what + ": image file is too large");
    if (size == 0) throw Error(what + ": empty file, not an image");
    if (size > size_t(INT32_MAX)) throw Error(what + ": image file is too large");
    if (const char* why = stb_unsafe_input(data, size)) throw Error(what + ": not a readable image (" + why + ")");
    int w = 0, h = 0, comp = 0;
    // Check dimensions before decoding, so an image bomb is refused without allocating its pixels.
    if (!stbi_info_from_memory(data, int(size), &w, &h, &comp))
        throw Error(what + ": not a readable image (" + std::string(stbi_failure_reason()) + ")");
    if (w <= 0 || h <= 0 || int64_t(w) * h > limits.max_pixels)
        throw Error(what + ": image is " + std::to_string(w) + "x" + std::to_string(h) + ", larger than the limit of " +
                    std::to_string(limits.max_pixels) + " pixels");
    // Decode to RGBA at 8 bits (16-bit PNGs are scaled down by stb), then composite alpha over white.
    const int32_t iw = w, ih = h;
    const uint64_t budget = 16 * (uint64_t(w) + 16) * (uint64_t(h) + 16) + 2 * uint64_t(size) + (1u << 20);
    t_stbi_max_alloc = size_t(std::min<uint64_t>(budget, SIZE_MAX));
    t_stbi_refused = false;
    stbi_uc* px = stbi_load_from_memory(data, int(size), &w, &h, &comp, 4);
    t_stbi_max_alloc = SIZE_MAX;
    if (!px && t_stbi_refused)
        throw Error(what + ": image data expands far beyond its " + std::to_string(iw) + "x" + std::to_string(ih) +
                    " pixels (a decompression bomb?); refused");
    if (!px) throw Error(what + ": cannot decode image (" + std::string(stbi_failure_reason()) + ")");
    if (w != iw || h != ih) {  // the pixels must be what the header promised (and what the limit checked)
        stbi_image_free(px);
        throw Error(what + ": image header and data disagree about its size");
    }
    Image img;
    img.w = w;
    img.h = h;
    img.rgb.resize(size_t(w) * h * 3);
    for (size_t i = 0; i < size_t(w) * h; ++i) {
        const uint32_t a = px[4 * i + 3];
        for (int c = 0; c < 3; ++c)
            img.rgb[3 * i + c] = uint8_t((px[4 * i + c] * a + 255 * (255 - a) + 127) / 255);
    }
    stbi_image_free(px);
    return img;
}

Image prepare_image(const Image& img, int32_t out_h, int32_t out_w) {
    if (img.w <= 0 || img.h <= 0) throw Error("empty image");
    // Centre crop to the target aspect ratio (in source pixels, fractional allowed for exact centring).
    double cw = img.w, ch = img.h;
    if (double(img.w) * out_h > double(img.h) * out_w) cw = double(img.h) * out_w / out_h;
    else ch = double(img.w) * out_h / out_w;
    const double x0 = (img.w - cw) / 2, y0 = (img.h - ch) / 2;
    Image out;
    out.w = out_w;
    out.h = out_h;
    out.rgb.resize(size_t(out_w) * out_h * 3);
    if (cw == out_w && ch == out_h && x0 == std::floor(x0) && y0 == std::floor(y0)) {
        for (int32_t y = 0; y < out_h; ++y)
            std::memcpy(&out.rgb[size_t(y) * out_w * 3], &img.rgb[((size_t(y0) + y) * img.w + size_t(x0)) * 3],
                        size_t(out_w) * 3);
        return out;
    }
    const double sx = cw / out_w, sy = ch / out_h;
    auto src = [&](int64_t x, int64_t y, int c) -> double {
        x = std::clamp<int64_t>(x, 0, img.w - 1);
        y = std::clamp<int64_t>(y, 0, img.h - 1);
        return img.rgb[(size_t(y) * img.w + size_t(x)) * 3 + c];
    };
    for (int32_t oy = 0; oy < out_h; ++oy) {
        for (int32_t ox = 0; ox < out_w; ++ox) {
            double acc[3] = {0, 0, 0};
            if (sx >= 1.0 && sy >= 1.0) {
                // Area average: every source pixel weighted by its overlap with the output pixel's footprint.
                const double fx0 = x0 + ox * sx, fx1 = fx0 + sx, fy0 = y0 + oy * sy, fy1 = fy0 + sy;
                double wsum = 0;
                for (int64_t y = int64_t(std::floor(fy0)); y < int64_t(std::ceil(fy1)); ++y) {
                    const double wy = std::min<double>(fy1, y + 1) - std::max<double>(fy0, y);
                    if (wy <= 0) continue;
                    for (int64_t x = int64_t(std::floor(fx0)); x < int64_t(std::ceil(fx1)); ++x) {
                        const double wx = std::min<double>(fx1, x + 1) - std::max<double>(fx0, x);
                        if (wx <= 0) continue;
                        for (int c = 0; c < 3; ++c) acc[c] += wx * wy * src(x, y, c);
                        wsum += wx * wy;
                    }
                }
                for (double& a : acc) a /= wsum;
            } else {
                // Enlarging (in either axis): bilinear on pixel centres.
                const double fx = x0 + (ox + 0.5) * sx - 0.5, fy = y0 + (oy + 0.5) * sy - 0.5;
                const int64_t ix = int64_t(std::floor(fx)), iy = int64_t(std::floor(fy));
                const double ax = fx - ix, ay = fy - iy;
                for (int c = 0; c < 3; ++c)
                    acc[c] = (1 - ay) * ((1 - ax) * src(ix, iy, c) + ax * src(ix + 1, iy, c)) +
                             ay * ((1 - ax) * src(ix, iy + 1, c) + ax * src(ix + 1, iy + 1, c));
            }
            for (int c = 0; c < 3; ++c)
                out.rgb[(size_t(oy) * out_w + ox) * 3 + c] = uint8_t(std::clamp(std::lround(acc[c]), 0l, 255l));
        }
    }
    return out;
}

std::vector<std::string> list_image_files(const std::string& dir) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw Error(dir + " is not a folder");
    std::vector<std::string> out;
    fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
    if (ec) throw Error("cannot read folder " + dir + ": " + ec.message());
    for (; it != end; it.increment(ec)) {
        if (ec) throw Error("cannot read folder " + dir + ": " + ec.message());
        if (!it->is_regular_file(ec)) continue;
        std::string ext = it->path().extension().string();
        for (char& ch : ext) ch = char(std::tolower(static_cast<unsigned char>(ch)));
        static const char* kExts[] = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tga", ".ppm", ".pgm", ".psd", ".hdr"};
        for (const char* e : kExts)
            if (ext == e) { out.push_back(it->path().string()); break; }
    }
    std::sort(out.begin(), out.end());
    return out;
}

Image upscale_nearest(const Image& img, int32_t f) {
    Image out;
    out.w = img.w * f;
    out.h = img.h * f;
    out.rgb.resize(size_t(out.w) * out.h * 3);
    for (int32_t y = 0; y < out.h; ++y)
        for (int32_t x = 0; x < out.w; ++x)
            std::memcpy(&out.rgb[(size_t(y) * out.w + x) * 3], &img.rgb[(size_t(y / f) * img.w + x / f) * 3], 3);
    return out;
}

namespace {

uint32_t crc32(const uint8_t* p, size_t n, uint32_t c = 0xffffffffu) {
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c;
}

void put_be32(std::vector<uint8_t>& v, uint32_t x) {
    for (int i = 3; i >= 0; --i) v.push_back(uint8_t(x >> (8 * i)));
}

}  // namespace

std::vector<uint8_t> encode_png(const Image& img, const std::vector<std::pair<std::string, std::string>>& text) {
    int len = 0;
    unsigned char* png = stbi_write_png_to_mem(img.rgb.data(), img.w * 3, img.w, img.h, 3, &len);
    if (!png) throw Error("cannot encode PNG");
    std::vector<uint8_t> out(png, png + len);
    STBIW_FREE(png);
    // Insert tEXt chunks right after IHDR (8-byte signature + 25-byte IHDR chunk).
    std::vector<uint8_t> chunks;
    for (const auto& [k, v] : text) {
        std::vector<uint8_t> body(k.begin(), k.end());
        body.push_back(0);
        body.insert(body.end(), v.begin(), v.end());
        put_be32(chunks, uint32_t(body.size()));
        std::vector<uint8_t> typed = {'t', 'E', 'X', 't'};
        typed.insert(typed.end(), body.begin(), body.end());
        chunks.insert(chunks.end(), typed.begin(), typed.end());
        put_be32(chunks, crc32(typed.data(), typed.size()) ^ 0xffffffffu);
    }
    out.insert(out.begin() + 33, chunks.begin(), chunks.end());
    return out;
}

void write_png(const std::string& path, const Image& img, const std::vector<std::pair<std::string, std::string>>& text) {
    std::vector<uint8_t> bytes = encode_png(img, text);
    write_file_atomic(path, bytes.data(), bytes.size());
}

}  // namespace igpt
