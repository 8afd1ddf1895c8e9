// GL texture helpers (WebGL2 through Emscripten's GLES3 emulation).
#include "textures.h"

#include <GLES3/gl3.h>

#include <algorithm>
#include <cmath>

namespace igpt_web {

namespace {
uint64_t g_texture_changes = 0;  // main thread only
}  // namespace

uint64_t texture_changes() { return g_texture_changes; }

void Texture::upload(const uint8_t* rgb, int32_t nw, int32_t nh, const uint8_t* alpha) {
    ++g_texture_changes;
    std::vector<uint8_t> rgba(size_t(nw) * size_t(nh) * 4);
    for (size_t i = 0; i < size_t(nw) * size_t(nh); ++i) {
        rgba[i * 4 + 0] = rgb[i * 3 + 0];
        rgba[i * 4 + 1] = rgb[i * 3 + 1];
        rgba[i * 4 + 2] = rgb[i * 3 + 2];
        rgba[i * 4 + 3] = alpha ? alpha[i] : 255;
    }
    if (!id) glGenTextures(1, &id);
    glBindTexture(GL_TEXTURE_2D, id);
    glPixelStorei(GL_UNPACK_ALIGNMENT, 1);
    if (nw != w || nh != h) {
        glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MIN_FILTER, GL_NEAREST);
        glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_MAG_FILTER, GL_NEAREST);
        glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_S, GL_CLAMP_TO_EDGE);
        glTexParameteri(GL_TEXTURE_2D, GL_TEXTURE_WRAP_T, GL_CLAMP_TO_EDGE);
        glTexImage2D(GL_TEXTURE_2D, 0, GL_RGBA8, nw, nh, 0, GL_RGBA, GL_UNSIGNED_BYTE, rgba.data());
        w = nw;
        h = nh;
    } else {
        glTexSubImage2D(GL_TEXTURE_2D, 0, 0, 0, nw, nh, GL_RGBA, GL_UNSIGNED_BYTE, rgba.data());
    }
}

void Texture::destroy() {
    ++g_texture_changes;
    if (id) glDeleteTextures(1, &id);
    id = 0;
    w = h = 0;
}

void Textures::resize_tiles(size_t n) {
    for (size_t i = n; i < samples.size(); ++i) samples[i].destroy();
    for (size_t i = n; i < entropy.size(); ++i) entropy[i].destroy();
    samples.resize(n);
    entropy.resize(n);
}

void entropy_color(float bits, float max_bits, uint8_t* rgb) {
    // A few stops of matplotlib's "inferno", linearly interpolated.
    static const float stops[6][3] = {{0, 0, 4},       {66, 10, 104},  {147, 38, 103},
                                      {221, 81, 58},   {252, 165, 10}, {252, 255, 164}};
    float t = std::clamp(max_bits > 0 ? bits / max_bits : 0.0f, 0.0f, 1.0f) * 5.0f;
    const int i = std::min(4, int(t));
    const float f = t - float(i);
    for (int c = 0; c < 3; ++c) rgb[c] = uint8_t(stops[i][c] + (stops[i + 1][c] - stops[i][c]) * f + 0.5f);
}

}  // namespace igpt_web
