// Hand-drawn charts (see chart.h).
#include "chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <stb/stb_easy_font.h>

namespace igpt_cli {

void Canvas::px(int32_t x, int32_t y, const uint8_t* c) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    std::copy(c, c + 3, &rgb[(size_t(y) * w + x) * 3]);
}

void Canvas::rect(int32_t x0, int32_t y0, int32_t x1, int32_t y1, const uint8_t* c) {
    for (int32_t y = y0; y < y1; y++)
        for (int32_t x = x0; x < x1; x++) px(x, y, c);
}

void Canvas::line(double x0, double y0, double x1, double y1, const uint8_t* c, int32_t thick) {
    const int32_t n = int32_t(std::max(std::abs(x1 - x0), std::abs(y1 - y0))) + 1;
    for (int32_t i = 0; i <= n; i++) {
        const double t = double(i) / n;
        const int32_t x = int32_t(std::lround(x0 + (x1 - x0) * t)), y = int32_t(std::lround(y0 + (y1 - y0) * t));
        rect(x - thick / 2, y - thick / 2, x - thick / 2 + thick, y - thick / 2 + thick, c);
    }
}

void Canvas::text(double x, double y, const std::string& s, const uint8_t* c, int32_t scale) {
    static thread_local char buf[60000];
    const int quads = stb_easy_font_print(0, 0, const_cast<char*>(s.c_str()), nullptr, buf, sizeof buf);
    const float* v = reinterpret_cast<const float*>(buf);
    for (int q = 0; q < quads; q++) {
        const float* a = v + q * 16;  // 4 vertices of (x, y, z, color)
        const float qx0 = a[0], qy0 = a[1], qx1 = a[8], qy1 = a[9];
        rect(int32_t(x + qx0 * scale), int32_t(y + qy0 * scale), int32_t(x + qx1 * scale), int32_t(y + qy1 * scale), c);
    }
}

int32_t Canvas::text_width(const std::string& s, int32_t scale) {
    return stb_easy_font_width(const_cast<char*>(s.c_str())) * scale;
}

igpt::Image Canvas::image() const {
    igpt::Image img;
    img.w = w;
    img.h = h;
    img.rgb = rgb;
    return img;
}

void YAxis::draw(Canvas& cv, const uint8_t* grid, const uint8_t* ink) const {
    for (double t : ticks(y0, y1, 6)) {
        cv.line(L, Y(t), w - R, Y(t), grid, 1);
        const std::string s = fmt_tick(t);
        cv.text(L - 10 - Canvas::text_width(s), Y(t) - 6, s, ink);
    }
    cv.line(L, T, L, h - B, ink, 2);
    cv.line(L, h - B, w - R, h - B, ink, 2);
}

std::vector<double> ticks(double lo, double hi, int n) {
    const double raw = (hi - lo) / n, mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = mag;
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
        if (m * mag >= raw) {
            step = m * mag;
            break;
        }
    std::vector<double> t;
    for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step; v += step) t.push_back(v);
    return t;
}

std::string fmt_tick(double v) {
    char b[32];
    if (std::abs(v) >= 1000 && std::fmod(v, 1000) == 0) std::snprintf(b, sizeof b, "%gk", v / 1000);
    else std::snprintf(b, sizeof b, "%g", v);
    return b;
}

const uint8_t* series_colour(size_t i) {
    static const uint8_t colours[][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},
                                         {214, 39, 40},  {148, 103, 189}, {140, 86, 75}};
    return colours[i % 6];
}

}  // namespace igpt_cli
