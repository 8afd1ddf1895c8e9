// NumPy .npy reader (format versions 1-3) for float arrays: OpenAI's kmeans_centers.npy is [512, 3] float.
#include <cstring>

#include "error.h"
#include "formats.h"
#include "half.h"
#include "npy_header.h"

namespace igpt::imp {

NpyArray read_npy(const std::string& path) {
    const std::vector<uint8_t> b = read_whole(path, uint64_t(1) << 30);
    auto bad = [&](const std::string& why) -> Error { return Error(path + " is not a usable .npy file: " + why); };
    if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) throw bad("bad magic (expected \\x93NUMPY)");
    const int major = b[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = size_t(b[8]) | size_t(b[9]) << 8;
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (b.size() < 12) throw bad("truncated header");
        hlen = size_t(b[8]) | size_t(b[9]) << 8 | size_t(b[10]) << 16 | size_t(b[11]) << 24;
        hstart = 12;
    } else {
        throw bad("format version " + std::to_string(major) + " is not supported (1, 2 or 3)");
    }
    if (hstart + hlen > b.size()) throw bad("truncated header");
    const std::string h(reinterpret_cast<const char*>(b.data() + hstart), hlen);
    const std::string descr = npy_dict_value(h, "descr"), fortran = npy_dict_value(h, "fortran_order"),
                      shape = npy_dict_value(h, "shape");
    if (descr.size() < 3 || fortran.empty() || shape.empty()) throw bad("header lacks descr, fortran_order or shape");
    if (descr[0] == '>') throw bad("big-endian data (" + descr + ") is not supported");
    const std::string kind = descr.substr(1);
    const size_t esz = kind == "f2" ? 2 : kind == "f4" ? 4 : kind == "f8" ? 8 : 0;
    if (esz == 0) throw bad("dtype " + descr + " is not a float (expected <f2, <f4 or <f8)");
    NpyArray a;
    size_t n = 1;
    if (const std::string why = npy_parse_shape(shape, a.shape, n); !why.empty()) throw bad(why);
    const size_t data = hstart + hlen;
    if (b.size() - data < n * esz)
        throw Error(path + " is truncated: " + std::to_string(n) + " values of " + descr + " need " +
                    std::to_string(n * esz) + " bytes, the file has " + std::to_string(b.size() - data));
    std::vector<double> raw(n);
    for (size_t i = 0; i < n; ++i) {
        const uint8_t* p = b.data() + data + i * esz;
        if (esz == 2) {
            uint16_t x;
            std::memcpy(&x, p, 2);
            raw[i] = half_to_float(x);
        } else if (esz == 4) {
            float x;
            std::memcpy(&x, p, 4);
            raw[i] = x;
        } else {
            std::memcpy(&raw[i], p, 8);
        }
    }
    if (fortran.find("True") != std::string::npos && a.shape.size() > 1) {
        // Column-major on disk: element (i0, i1, ..) sits at i0 + d0 * (i1 + d1 * ..). Reorder to C order.
        a.v.assign(n, 0.0);
        const size_t r = a.shape.size();
        std::vector<size_t> idx(r, 0);
        for (size_t c = 0; c < n; ++c) {  // c: C-order index; idx: its multi-index
            size_t f = 0, stride = 1;
            for (size_t k = 0; k < r; ++k) {
                f += idx[k] * stride;
                stride *= size_t(a.shape[k]);
            }
            a.v[c] = raw[f];
            for (size_t k = r; k-- > 0;) {
                if (++idx[k] < size_t(a.shape[k])) break;
                idx[k] = 0;
            }
        }
    } else {
        a.v = std::move(raw);
    }
    return a;
}

}  // namespace igpt::imp
