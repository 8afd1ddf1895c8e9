// GL textures for the app's images: crisp (nearest) RGBA textures updated with glTexSubImage2D when their
// pixels change, at most once per frame. Also the colour map of the entropy overlay.
#pragma once
#include <cstdint>
#include <vector>

namespace igpt_web {

struct Texture {
    uint32_t id = 0;
    int32_t w = 0, h = 0;
    // (Re)allocates when the size changes. rgb: w*h*3 bytes; alpha: optional w*h bytes (else opaque).
    void upload(const uint8_t* rgb, int32_t w, int32_t h, const uint8_t* alpha = nullptr);
    void destroy();
    void* imgui_id() const { return reinterpret_cast<void*>(uintptr_t(id)); }
};

struct Textures {
    Texture display, seen;                 // the centre crop (display resolution), what the model sees
    std::vector<Texture> samples, entropy; // one per sample tile
    std::vector<Texture> gallery;          // sample-image thumbnails
    // n sample tiles (and their overlays): the GL textures of tiles beyond n are freed.
    void resize_tiles(size_t n);
};

// How many times any texture's pixels changed so far: the frame loop redraws when this moves.
uint64_t texture_changes();

// Entropy (bits, 0..max_bits) -> RGB on a dark-to-bright "inferno"-like ramp.
void entropy_color(float bits, float max_bits, uint8_t* rgb);

}  // namespace igpt_web
