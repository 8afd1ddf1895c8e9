// Drawing charts into an RGB buffer by hand (shared by `igpt plot` and `igpt probe`): a canvas with
// rectangles, thick lines and stb_easy_font text, and "nice" axis ticks.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "image.h"

namespace igpt_cli {

struct Canvas {
    int32_t w, h;
    std::vector<uint8_t> rgb;
    Canvas(int32_t w_, int32_t h_) : w(w_), h(h_), rgb(size_t(w_) * h_ * 3, 255) {}
    void px(int32_t x, int32_t y, const uint8_t* c);
    void rect(int32_t x0, int32_t y0, int32_t x1, int32_t y1, const uint8_t* c);
    void line(double x0, double y0, double x1, double y1, const uint8_t* c, int32_t thick);
    // stb_easy_font quads, scaled; (x, y) is the top left of the text
    void text(double x, double y, const std::string& s, const uint8_t* c, int32_t scale = 2);
    static int32_t text_width(const std::string& s, int32_t scale = 2);
    igpt::Image image() const;
};

// ~n "nice" tick values covering [lo, hi]
std::vector<double> ticks(double lo, double hi, int n);
// A tick label: "%g", thousands as "5k".
std::string fmt_tick(double v);

// The vertical side of a chart on a w x h canvas: the plot area lies inside margins L, R, T, B, and the
// values [y0, y1] run from its bottom to its top.
struct YAxis {
    int32_t w, h, L, R, T, B;
    double y0, y1;
    double Y(double v) const { return h - B - (h - T - B) * (v - y0) / (y1 - y0); }
    // Horizontal grid lines labelled at ~6 nice ticks, then the left and bottom axes.
    void draw(Canvas& cv, const uint8_t* grid, const uint8_t* ink) const;
};

// The colours of successive series (matplotlib's first six).
const uint8_t* series_colour(size_t i);

}  // namespace igpt_cli
