// .npy writer and strict reader for float32 / int32 arrays (see npy.h). Format: "\x93NUMPY", version
// 1.0, u16 header length, a Python dict literal padded with spaces to a multiple of 64 bytes, then data.
#include "npy.h"

#include <cmath>
#include <cstring>

#include "error.h"
#include "model.h"  // read_file, write_file_atomic
#include "npy_header.h"

namespace igpt::probe {

namespace {

void write_npy(const std::string& path, const char* descr, const void* data, size_t esz,
               const std::vector<int64_t>& shape) {
    std::string s = "(";
    size_t n = 1;
    for (size_t i = 0; i < shape.size(); i++) {
        s += std::to_string(shape[i]) + (shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "");
        n *= size_t(shape[i]);
    }
    s += ")";
    std::string h = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + s + ", }";
    while ((10 + h.size() + 1) % 64) h += ' ';
    h += '\n';
    std::vector<uint8_t> out(10 + h.size() + n * esz);
    std::memcpy(out.data(), "\x93NUMPY\x01\x00", 8);
    out[8] = uint8_t(h.size() & 0xff);
    out[9] = uint8_t(h.size() >> 8);
    std::memcpy(out.data() + 10, h.data(), h.size());
    if (n) std::memcpy(out.data() + 10 + h.size(), data, n * esz);  // little-endian hosts (x86, wasm)
    write_file_atomic(path, out.data(), out.size());
}

std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "(";
    for (size_t i = 0; i < s.size(); i++) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + ")";
}

template <typename T>
NpyData<T> read_npy(const std::string& path, const char* want, int32_t min_rank, int32_t max_rank) {
    const std::vector<uint8_t> b = read_file(path, int64_t(1) << 36);
    auto bad = [&](const std::string& why) { return Error(path + ": not a usable .npy file: " + why); };
    if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) throw bad("bad magic (expected \\x93NUMPY)");
    size_t hlen, hstart;
    if (b[6] == 1) {
        hlen = size_t(b[8]) | size_t(b[9]) << 8;
        hstart = 10;
    } else if (b[6] == 2 || b[6] == 3) {
        if (b.size() < 12) throw bad("truncated header");
        hlen = size_t(b[8]) | size_t(b[9]) << 8 | size_t(b[10]) << 16 | size_t(b[11]) << 24;
        hstart = 12;
    } else {
        throw bad("format version " + std::to_string(b[6]) + " is not supported");
    }
    if (hstart + hlen > b.size()) throw bad("truncated header");
    const std::string h(reinterpret_cast<const char*>(b.data() + hstart), hlen);
    const std::string descr = npy_dict_value(h, "descr"), fortran = npy_dict_value(h, "fortran_order"),
                      shape = npy_dict_value(h, "shape");
    if (descr.empty() || fortran.empty() || shape.empty()) throw bad("header lacks descr, fortran_order or shape");
    const std::string d = descr[0] == '|' || descr[0] == '=' ? "<" + descr.substr(1) : descr;
    if (d != want) throw Error(path + ": dtype " + descr + ", expected " + want);
    if (fortran.find("True") != std::string::npos) throw Error(path + ": Fortran-order arrays are not supported");
    NpyData<T> a;
    size_t n = 1;
    if (const std::string why = npy_parse_shape(shape, a.shape, n); !why.empty()) throw bad(why);
    const int32_t rank = int32_t(a.shape.size());
    if (rank < min_rank || rank > max_rank)
        throw Error(path + ": array of shape " + shape_str(a.shape) + " has rank " + std::to_string(rank) +
                    ", expected " + (min_rank == max_rank ? std::to_string(min_rank)
                                                          : std::to_string(min_rank) + " to " + std::to_string(max_rank)));
    const size_t data = hstart + hlen;
    if (b.size() - data != n * sizeof(T))
        throw Error(path + ": shape " + shape_str(a.shape) + " of " + want + " needs " + std::to_string(n * sizeof(T)) +
                    " bytes of data, the file has " + std::to_string(b.size() - data));
    a.v.resize(n);
    if (n) std::memcpy(a.v.data(), b.data() + data, n * sizeof(T));
    return a;
}

}  // namespace

void write_npy_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
    write_npy(path, "<f4", data, 4, shape);
}
void write_npy_i32(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape) {
    write_npy(path, "<i4", data, 4, shape);
}

NpyData<float> read_npy_f32(const std::string& path, int32_t min_rank, int32_t max_rank) {
    NpyData<float> a = read_npy<float>(path, "<f4", min_rank, max_rank);
    for (float x : a.v)
        if (!std::isfinite(x)) throw Error(path + ": holds NaN or Inf");
    return a;
}
NpyData<int32_t> read_npy_i32(const std::string& path, int32_t min_rank, int32_t max_rank) {
    return read_npy<int32_t>(path, "<i4", min_rank, max_rank);
}

}  // namespace igpt::probe
