// Reading foreign tensors as float32: bounds, sizes, checksums and values checked before use.
#include "tensor_source.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>

#include "error.h"
#include "half.h"

namespace igpt::imp {

const char* src_type_name(SrcType t) {
    switch (t) {
        case SrcType::F16: return "F16";
        case SrcType::BF16: return "BF16";
        case SrcType::F32: return "F32";
        case SrcType::F64: return "F64";
        case SrcType::Other: return "other";
    }
    return "?";
}

size_t src_type_size(SrcType t) {
    switch (t) {
        case SrcType::F16:
        case SrcType::BF16: return 2;
        case SrcType::F32: return 4;
        case SrcType::F64: return 8;
        case SrcType::Other: return 0;
    }
    return 0;
}

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// ---- files ---------------------------------------------------------------------------------------------

uint64_t file_size(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw Error("cannot open " + path + ": " + std::strerror(errno));
    if (!S_ISREG(st.st_mode)) throw Error(path + " is not a regular file");
    return uint64_t(st.st_size);
}

void read_at(const std::string& path, uint64_t offset, uint64_t n, void* dst, const std::string& what) {
    const uint64_t size = file_size(path);
    if (offset > size || n > size - offset)
        throw Error(path + " is truncated: " + what + " needs bytes " + std::to_string(offset) + ".." +
                    std::to_string(offset + n) + " but the file has " + std::to_string(size));
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw Error("cannot open " + path + ": " + std::strerror(errno));
    bool ok = fseeko(f, off_t(offset), SEEK_SET) == 0;
    ok = ok && (n == 0 || std::fread(dst, 1, size_t(n), f) == size_t(n));
    std::fclose(f);
    if (!ok) throw Error("cannot read " + path + " (" + what + ")");
}

std::vector<uint8_t> read_whole(const std::string& path, uint64_t max_bytes) {
    const uint64_t size = file_size(path);
    if (size > max_bytes)
        throw Error(path + " is too large (" + std::to_string(size) + " bytes, limit " + std::to_string(max_bytes) + ")");
    std::vector<uint8_t> buf(static_cast<size_t>(size));
    read_at(path, 0, size, buf.data(), "the whole file");
    return buf;
}

// ---- crc32c --------------------------------------------------------------------------------------------

namespace {
struct Crc32cTables {
    uint32_t t[8][256];
    Crc32cTables() {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;  // reflected Castagnoli
            t[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; ++i)
            for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    }
};
const Crc32cTables& crc_tables() {
    static const Crc32cTables tables;
    return tables;
}
}  // namespace

uint32_t crc32c_extend(uint32_t crc, const uint8_t* p, size_t n) {
    const auto& T = crc_tables().t;
    uint32_t c = crc ^ 0xffffffffu;
    while (n >= 8) {  // slicing-by-8: checkpoints are gigabytes
        uint32_t lo, hi;
        std::memcpy(&lo, p, 4);
        std::memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = T[7][lo & 0xff] ^ T[6][(lo >> 8) & 0xff] ^ T[5][(lo >> 16) & 0xff] ^ T[4][lo >> 24] ^
            T[3][hi & 0xff] ^ T[2][(hi >> 8) & 0xff] ^ T[1][(hi >> 16) & 0xff] ^ T[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = T[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

// ---- tensors -------------------------------------------------------------------------------------------

void TensorSource::add(const std::string& name, TensorRef ref) {
    if (refs_.count(name)) throw Error(what_ + " holds tensor '" + name + "' twice (" + ref.file + ")");
    refs_[name] = std::move(ref);
}

const TensorRef& TensorSource::ref(const std::string& name) const {
    auto it = refs_.find(name);
    if (it == refs_.end()) throw Error(what_ + " lacks tensor '" + name + "'");
    return it->second;
}

namespace {
std::vector<int64_t> drop_leading_ones(std::vector<int64_t> s) {
    while (s.size() > 1 && s.front() == 1) s.erase(s.begin());
    return s;
}
}  // namespace

std::vector<float> TensorSource::read(const std::string& name, const std::vector<int64_t>& want) const {
    const TensorRef& r = ref(name);
    const std::string where = "tensor '" + name + "' of " + what_;
    if (drop_leading_ones(r.shape) != drop_leading_ones(want))
        throw Error(where + " has shape " + shape_str(r.shape) + ", expected " + shape_str(want));
    if (r.type == SrcType::Other)
        throw Error(where + " has dtype " + r.type_name + " (only F32, F16, BF16 and F64 can be imported)");
    size_t n = 1;
    for (int64_t d : want) n *= size_t(d);
    const size_t esz = src_type_size(r.type);
    if (r.size != uint64_t(n) * esz)
        throw Error(where + " has " + std::to_string(r.size) + " bytes, expected " + std::to_string(n * esz) +
                    " for " + src_type_name(r.type) + " " + shape_str(want));
    std::vector<uint8_t> raw(r.size);
    read_at(r.file, r.offset, r.size, raw.data(), "tensor '" + name + "'");
    if (r.has_crc && crc32c_mask(crc32c(raw.data(), raw.size())) != r.crc_masked)
        throw Error(where + " fails its checksum (crc32c): " + r.file + " is corrupt");
    std::vector<float> out(n);
    const uint8_t* p = raw.data();
    for (size_t i = 0; i < n; ++i) {
        switch (r.type) {  // all sources are little-endian (checked by their readers)
            case SrcType::F16: { uint16_t h; std::memcpy(&h, p + 2 * i, 2); out[i] = half_to_float(h); break; }
            case SrcType::BF16: { uint16_t h; std::memcpy(&h, p + 2 * i, 2); out[i] = bf16_to_float(h); break; }
            case SrcType::F32: std::memcpy(&out[i], p + 4 * i, 4); break;
            case SrcType::F64: { double d; std::memcpy(&d, p + 8 * i, 8); out[i] = float(d); break; }
            case SrcType::Other: break;
        }
        if (!std::isfinite(out[i])) throw Error(where + " holds NaN or Inf (element " + std::to_string(i) + ")");
    }
    done_ += int64_t(r.size);
    if (progress_) progress_(done_, total_);
    return out;
}

}  // namespace igpt::imp
