// Images in and out: decoding with stb_image (PNG, JPEG, BMP, GIF, TGA, PSD, HDR, PNM; grayscale, alpha,
// palette and 16-bit inputs become 8-bit RGB), the model's preparation (centre crop to the model's
// aspect, area-averaging resize), and PNG writing with text metadata.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace igpt {

struct Image {
    int32_t w = 0, h = 0;
    std::vector<uint8_t> rgb;  // h*w*3, row-major
};

struct ImageLimits {
    int64_t max_file_bytes = 256ll << 20;  // refuse larger files before reading them
    int64_t max_pixels = 100ll << 20;      // refuse larger images before decoding (image bombs)
};

Image load_image(const std::string& path, const ImageLimits& limits = {});            // throws igpt::Error
Image decode_image(const uint8_t* data, size_t size, const std::string& what,        // `what` names it in
                   const ImageLimits& limits = {});                                  // error messages
// Centre-crop to the aspect ratio of out_w:out_h, then resize: area averaging when shrinking,
// bilinear when enlarging, a copy when the size already matches.
Image prepare_image(const Image& img, int32_t out_h, int32_t out_w);
// Image files under `dir` (recursively; .png .jpg .jpeg .bmp .gif .tga .ppm .pgm .psd .hdr), sorted by
// path so every run sees the same order. Throws igpt::Error if `dir` is not a readable folder.
std::vector<std::string> list_image_files(const std::string& dir);

// Nearest-neighbour enlargement (crisp pixels for display).
Image upscale_nearest(const Image& img, int32_t factor);

// PNG with tEXt chunks (key, value). Written to a temporary file and renamed: an existing file is never
// left half-written. Throws igpt::Error on failure.
void write_png(const std::string& path, const Image& img,
               const std::vector<std::pair<std::string, std::string>>& text = {});
std::vector<uint8_t> encode_png(const Image& img,
                                const std::vector<std::pair<std::string, std::string>>& text = {});

}  // namespace igpt
