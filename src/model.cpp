// The model file: safetensors container with igpt metadata (format described in model.h).
// The reader validates every byte range and value before trusting it; any problem is one igpt::Error.
#include "model.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "half.h"
#include "sampler.h"

namespace igpt {

const char* dtype_name(DType t) {
    switch (t) {
        case DType::F32: return "f32";
        case DType::F16: return "f16";
        case DType::I8: return "int8";
    }
    return "?";
}

DType dtype_from_name(const std::string& s) {
    if (s == "f32" || s == "F32") return DType::F32;
    if (s == "f16" || s == "F16") return DType::F16;
    if (s == "int8" || s == "i8" || s == "I8") return DType::I8;
    throw Error("unknown weight type '" + s + "' (use f32, f16 or int8)");
}

// ---- files ---------------------------------------------------------------------------------------------

std::vector<uint8_t> read_file(const std::string& path, int64_t max_bytes) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw Error("cannot open " + path + ": " + std::strerror(errno));
    struct stat st {};
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        std::fclose(f);
        throw Error(path + " is not a regular file");
    }
    if (st.st_size > max_bytes) {
        std::fclose(f);
        throw Error(path + " is too large (" + std::to_string(st.st_size) + " bytes, limit " +
                    std::to_string(max_bytes) + ")");
    }
    std::vector<uint8_t> buf(static_cast<size_t>(st.st_size));
    size_t got = buf.empty() ? 0 : std::fread(buf.data(), 1, buf.size(), f);
    bool err = std::ferror(f);
    std::fclose(f);
    if (err || got != buf.size()) throw Error("cannot read " + path);
    return buf;
}

void write_file_atomic(const std::string& path, const uint8_t* bytes, size_t size) {
    const std::string tmp = path + ".tmp." + std::to_string(getpid());
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) throw Error("cannot write " + path + ": " + std::strerror(errno));
    size_t done = 0;
    while (done < size) {
        ssize_t w = ::write(fd, bytes + done, size - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            throw Error("cannot write " + path + ": " + std::strerror(e ? e : ENOSPC) +
                        " (the previous file, if any, is untouched)");
        }
        done += size_t(w);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        throw Error("cannot write " + path + ": " + std::strerror(e) + " (the previous file, if any, is untouched)");
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        int e = errno;
        ::unlink(tmp.c_str());
        throw Error("cannot write " + path + ": " + std::strerror(e));
    }
}

// ---- init ----------------------------------------------------------------------------------------------

Model init_model(const ModelConfig& cfg, const Palette& palette, uint64_t seed) {
    cfg.validate();
    if (palette.k() != cfg.vocab)
        throw Error("palette has " + std::to_string(palette.k()) + " colours but the config's vocab is " +
                    std::to_string(cfg.vocab));
    Model m;
    m.cfg = cfg;
    m.palette = palette;
    m.specs = param_layout(cfg);
    m.params.assign(param_count(m.specs), 0.0f);
    Rng rng(seed);
    const float proj_std = 0.02f / std::sqrt(2.0f * float(cfg.layers));
    for (const auto& s : m.specs) {
        float* p = m.params.data() + s.offset;
        const std::string& n = s.name;
        auto ends = [&](const char* suf) {
            size_t l = std::strlen(suf);
            return n.size() >= l && n.compare(n.size() - l, l, suf) == 0;
        };
        if (ends(".g")) {
            std::fill(p, p + s.numel, 1.0f);
        } else if (ends(".b")) {
            // zero
        } else {
            float sd = 0.02f;
            if (n == "wpe") sd = 0.01f;
            if (ends("attn.proj.w") || ends("mlp.proj.w")) sd = proj_std;
            for (size_t i = 0; i < s.numel; ++i) p[i] = sd * rng.normal();
        }
    }
    return m;
}

// ---- writer --------------------------------------------------------------------------------------------

namespace {

size_t dtype_size(const std::string& st) {
    if (st == "F32" || st == "I32" || st == "U32") return 4;
    if (st == "F16" || st == "BF16" || st == "I16" || st == "U16") return 2;
    if (st == "I8" || st == "U8" || st == "BOOL") return 1;
    if (st == "F64" || st == "I64" || st == "U64") return 8;
    return 0;
}

void put_f32(std::vector<uint8_t>& out, const float* v, size_t n) {
    size_t at = out.size();
    out.resize(at + 4 * n);
    std::memcpy(out.data() + at, v, 4 * n);  // little-endian hosts only (x86, wasm)
}

}  // namespace

std::vector<uint8_t> serialize_model(const Model& m, DType dtype) {
    nlohmann::json header = nlohmann::json::object();
    std::vector<uint8_t> data;
    auto entry = [&](const std::string& name, const char* dt, std::vector<int64_t> shape, size_t begin) {
        header[name] = {{"dtype", dt}, {"shape", shape}, {"data_offsets", {begin, data.size()}}};
    };
    {
        size_t b = data.size();
        data.insert(data.end(), m.palette.rgb().begin(), m.palette.rgb().end());
        entry("palette", "U8", {m.palette.k(), 3}, b);
    }
    for (const auto& s : m.specs) {
        const float* p = m.params.data() + s.offset;
        size_t b = data.size();
        if (!s.matrix || dtype == DType::F32) {
            put_f32(data, p, s.numel);
            entry(s.name, "F32", s.shape, b);
        } else if (dtype == DType::F16) {
            for (size_t i = 0; i < s.numel; ++i) {
                uint16_t h = float_to_half(p[i]);
                data.push_back(uint8_t(h & 0xff));
                data.push_back(uint8_t(h >> 8));
            }
            entry(s.name, "F16", s.shape, b);
        } else {
            const size_t rows = size_t(s.shape[0]), cols = size_t(s.shape[1]);
            std::vector<float> scale(rows);
            for (size_t r = 0; r < rows; ++r) {
                float mx = 0;
                for (size_t c = 0; c < cols; ++c) mx = std::max(mx, std::fabs(p[r * cols + c]));
                scale[r] = mx / 127.0f;
                const float inv = mx > 0 ? 127.0f / mx : 0.0f;
                for (size_t c = 0; c < cols; ++c) {
                    long q = std::lround(p[r * cols + c] * inv);
                    data.push_back(uint8_t(int8_t(std::clamp(q, -127l, 127l))));
                }
            }
            entry(s.name, "I8", s.shape, b);
            size_t bs = data.size();
            put_f32(data, scale.data(), rows);
            entry(s.name + ".scale", "F32", {int64_t(rows)}, bs);
        }
    }
    if (m.has_head()) {  // small: always F32
        const int64_t K = int64_t(m.classes.size()), C = m.cfg.width;
        if (m.clf_w.size() != size_t(K * C) || m.clf_b.size() != size_t(K))
            throw Error("classification head has the wrong size for " + std::to_string(K) + " classes");
        size_t b = data.size();
        put_f32(data, m.clf_w.data(), m.clf_w.size());
        entry("clf.w", "F32", {K, C}, b);
        b = data.size();
        put_f32(data, m.clf_b.data(), m.clf_b.size());
        entry("clf.b", "F32", {K}, b);
    }
    header["__metadata__"] = {{"igpt.format", "1"},
                              {"igpt.config", m.cfg.to_json()},
                              {"igpt.dtype", dtype_name(dtype)},
                              {"igpt.provenance", m.provenance}};
    if (m.has_head()) header["__metadata__"]["igpt.classes"] = nlohmann::json(m.classes).dump();
    std::string h = header.dump();
    while ((h.size() + 8) % 8) h.push_back(' ');
    std::vector<uint8_t> out(8 + h.size() + data.size());
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(n >> (8 * i));
    std::memcpy(out.data() + 8, h.data(), h.size());
    if (!data.empty()) std::memcpy(out.data() + 8 + h.size(), data.data(), data.size());
    return out;
}

void save_model(const Model& m, const std::string& path, DType dtype) {
    std::vector<uint8_t> bytes = serialize_model(m, dtype);
    write_file_atomic(path, bytes.data(), bytes.size());
}

// ---- reader --------------------------------------------------------------------------------------------

namespace {

struct TensorRef {
    std::string dtype;
    std::vector<int64_t> shape;
    uint64_t begin = 0, end = 0;
};

std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
}

}  // namespace

Model load_model(const std::string& path, const ModelLimits& limits) {
    std::vector<uint8_t> bytes = read_file(path, limits.max_file_bytes);
    return load_model_from_memory(bytes.data(), bytes.size(), path, limits);
}

Model load_model_from_memory(const uint8_t* data, size_t size, const std::string& what,
                             const ModelLimits& limits) {
    auto fail = [&](const std::string& msg) -> void { throw Error(what + ": " + msg); };
    if (int64_t(size) > limits.max_file_bytes)
        fail("model file is too large (" + std::to_string(size) + " bytes, limit " +
             std::to_string(limits.max_file_bytes) + ")");
    if (size < 8) fail("not a model file (too short for a safetensors header, " + std::to_string(size) + " bytes)");
    uint64_t hlen = 0;
    for (int i = 0; i < 8; ++i) hlen |= uint64_t(data[i]) << (8 * i);
    if (hlen > size - 8)
        fail("truncated or not a model file (header length " + std::to_string(hlen) + " exceeds the file's " +
             std::to_string(size - 8) + " remaining bytes)");
    if (hlen > (100u << 20)) fail("safetensors header is too large");
    nlohmann::json header = nlohmann::json::parse(data + 8, data + 8 + hlen, nullptr, false);
    if (header.is_discarded() || !header.is_object()) fail("safetensors header is not valid JSON");
    const uint8_t* base = data + 8 + hlen;
    const uint64_t data_size = size - 8 - hlen;

    // Metadata
    if (!header.contains("__metadata__") || !header["__metadata__"].is_object())
        fail("no igpt metadata (__metadata__) — not a model written by igpt; convert it with `igpt import`");
    const auto& meta = header["__metadata__"];
    auto meta_str = [&](const char* key) -> std::string {
        if (!meta.contains(key)) {
            fail(std::string("metadata lacks \"") + key + "\"");
        }
        if (!meta[key].is_string()) fail(std::string("metadata \"") + key + "\" is not a string");
        return meta[key].get<std::string>();
    };
    const std::string fmt = meta_str("igpt.format");
    if (fmt != "1") fail("model format version " + fmt + " is not supported by this build (expected 1); HINT: update igpt");
    Model m;
    try {
        m.cfg = ModelConfig::from_json(meta_str("igpt.config"));
    } catch (const Error& e) {
        fail(e.what());
    }
    if (meta.contains("igpt.provenance") && meta["igpt.provenance"].is_string())
        m.provenance = meta["igpt.provenance"].get<std::string>();

    // Tensor table, with byte ranges checked against the data block and each other.
    std::map<std::string, TensorRef> table;
    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__") continue;
        const auto& v = it.value();
        const std::string name = it.key();
        if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets") ||
            !v["dtype"].is_string() || !v["shape"].is_array() || !v["data_offsets"].is_array() ||
            v["data_offsets"].size() != 2)
            fail("tensor '" + name + "' has a malformed header entry");
        TensorRef t;
        t.dtype = v["dtype"].get<std::string>();
        size_t esz = dtype_size(t.dtype);
        if (!esz) fail("tensor '" + name + "' has unknown dtype " + t.dtype);
        uint64_t numel = 1;
        for (const auto& d : v["shape"]) {
            if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
                fail("tensor '" + name + "' has an invalid shape");
            uint64_t x = d.get<uint64_t>();
            if (x > (uint64_t(1) << 40) || (x && numel > (uint64_t(1) << 40) / x))
                fail("tensor '" + name + "' is impossibly large");
            numel *= x;
            t.shape.push_back(int64_t(x));
        }
        for (const auto& o : v["data_offsets"])
            if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0))
                fail("tensor '" + name + "' has invalid data offsets");
        t.begin = v["data_offsets"][0].get<uint64_t>();
        t.end = v["data_offsets"][1].get<uint64_t>();
        if (t.begin > t.end || t.end > data_size)
            fail("tensor '" + name + "' lies outside the file (bytes " + std::to_string(t.begin) + ".." +
                 std::to_string(t.end) + " of " + std::to_string(data_size) + "; truncated file?)");
        if (t.end - t.begin != numel * esz)
            fail("tensor '" + name + "' byte size " + std::to_string(t.end - t.begin) + " does not match its shape " +
                 shape_str(t.shape) + " and dtype " + t.dtype);
        table[name] = std::move(t);
    }
    {
        std::vector<std::pair<uint64_t, std::string>> ranges;
        for (const auto& [n, t] : table)
            if (t.end > t.begin) ranges.push_back({t.begin, n});
        std::sort(ranges.begin(), ranges.end());
        for (size_t i = 1; i < ranges.size(); ++i)
            if (ranges[i].first < table[ranges[i - 1].second].end)
                fail("tensors '" + ranges[i - 1].second + "' and '" + ranges[i].second + "' overlap");
    }

    auto need = [&](const std::string& name, const std::vector<int64_t>& shape) -> const TensorRef& {
        auto it = table.find(name);
        if (it == table.end()) fail("missing tensor '" + name + "'");
        if (it->second.shape != shape)
            fail("tensor '" + name + "' has shape " + shape_str(it->second.shape) + ", the config needs " +
                 shape_str(shape));
        return it->second;
    };

    // The config's weights must fit in the file (at >= 1 byte each) before anything is allocated for them.
    m.specs = param_layout(m.cfg);
    if (param_count(m.specs) > data_size)
        fail("the config needs " + std::to_string(param_count(m.specs)) + " weights but the file holds only " +
             std::to_string(data_size) + " bytes of tensors (truncated, or config and weights do not match)");

    // Palette
    {
        const TensorRef& t = need("palette", {m.cfg.vocab, 3});
        if (t.dtype != "U8") fail("tensor 'palette' must be U8, not " + t.dtype);
        m.palette = Palette(std::vector<uint8_t>(base + t.begin, base + t.end));
    }

    // Parameters
    m.params.assign(param_count(m.specs), 0.0f);
    size_t used = 1;  // palette
    bool any_f16 = false, any_i8 = false;
    for (const auto& s : m.specs) {
        const TensorRef& t = need(s.name, s.shape);
        ++used;
        float* dst = m.params.data() + s.offset;
        const uint8_t* src = base + t.begin;
        if (t.dtype == "F32") {
            std::memcpy(dst, src, 4 * s.numel);
        } else if (t.dtype == "F16") {
            any_f16 = true;
            for (size_t i = 0; i < s.numel; ++i) dst[i] = half_to_float(uint16_t(src[2 * i] | (src[2 * i + 1] << 8)));
        } else if (t.dtype == "I8" && s.matrix) {
            any_i8 = true;
            const size_t rows = size_t(s.shape[0]), cols = size_t(s.shape[1]);
            const TensorRef& sc = need(s.name + ".scale", {int64_t(rows)});
            ++used;
            if (sc.dtype != "F32") fail("tensor '" + s.name + ".scale' must be F32");
            std::vector<float> scale(rows);
            std::memcpy(scale.data(), base + sc.begin, 4 * rows);
            for (size_t r = 0; r < rows; ++r) {
                if (!std::isfinite(scale[r])) fail("tensor '" + s.name + ".scale' holds NaN or Inf");
                for (size_t c = 0; c < cols; ++c) dst[r * cols + c] = float(int8_t(src[r * cols + c])) * scale[r];
            }
        } else {
            fail("tensor '" + s.name + "' has dtype " + t.dtype + " (expected F32, F16" +
                 std::string(s.matrix ? " or I8" : "") + ")");
        }
        for (size_t i = 0; i < s.numel; ++i)
            if (!std::isfinite(dst[i])) fail("tensor '" + s.name + "' holds NaN or Inf");
    }
    // Classification head: both tensors and the class names, or none of them.
    if (meta.contains("igpt.classes")) {
        nlohmann::json names = nlohmann::json::parse(meta_str("igpt.classes"), nullptr, false);
        if (names.is_discarded() || !names.is_array() || names.size() < 1 || names.size() > 100000)
            fail("metadata \"igpt.classes\" is not a JSON array of 1 to 100000 class names");
        for (const auto& n : names) {
            if (!n.is_string()) fail("metadata \"igpt.classes\" holds a class name that is not a string");
            m.classes.push_back(n.get<std::string>());
        }
        const int64_t K = int64_t(m.classes.size()), C = m.cfg.width;
        for (const char* name : {"clf.w", "clf.b"}) {
            const bool w = name[4] == 'w';
            const TensorRef& t = w ? need(name, {K, C}) : need(name, {K});
            if (t.dtype != "F32") fail(std::string("tensor '") + name + "' must be F32, not " + t.dtype);
            std::vector<float>& dst = w ? m.clf_w : m.clf_b;
            dst.resize(size_t(w ? K * C : K));
            std::memcpy(dst.data(), base + t.begin, 4 * dst.size());
            for (float v : dst)
                if (!std::isfinite(v)) fail(std::string("tensor '") + name + "' holds NaN or Inf");
            ++used;
        }
    } else if (table.count("clf.w") || table.count("clf.b")) {
        fail("tensor 'clf.w'/'clf.b' (a classification head) without the \"igpt.classes\" metadata naming its classes");
    }
    if (used != table.size()) {
        for (const auto& [n, t] : table) {
            bool known = n == "palette" || (m.has_head() && (n == "clf.w" || n == "clf.b"));
            for (const auto& s : m.specs) known = known || n == s.name || n == s.name + ".scale";
            if (!known) fail("unexpected tensor '" + n + "' (does the config match the weights?)");
        }
    }
    m.file_dtype = any_i8 ? DType::I8 : any_f16 ? DType::F16 : DType::F32;
    return m;
}

void save_palette_file(const Palette& p, const std::string& path, const std::string& provenance) {
    nlohmann::json header = {
        {"palette", {{"dtype", "U8"}, {"shape", {p.k(), 3}}, {"data_offsets", {0, p.rgb().size()}}}},
        {"__metadata__", {{"igpt.format", "1"}, {"igpt.kind", "palette"}, {"igpt.provenance", provenance}}}};
    std::string h = header.dump();
    while ((h.size() + 8) % 8) h.push_back(' ');
    std::vector<uint8_t> out(8);
    for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(uint64_t(h.size()) >> (8 * i));
    out.insert(out.end(), h.begin(), h.end());
    out.insert(out.end(), p.rgb().begin(), p.rgb().end());
    write_file_atomic(path, out.data(), out.size());
}

Palette load_palette_file(const std::string& path) {
    std::vector<uint8_t> bytes = read_file(path, int64_t(1) << 40);
    auto fail = [&](const std::string& m) { throw Error(path + ": " + m); };
    if (bytes.size() < 8) fail("not a palette or model file (too short)");
    uint64_t hlen = 0;
    for (int i = 0; i < 8; ++i) hlen |= uint64_t(bytes[size_t(i)]) << (8 * i);
    if (hlen > bytes.size() - 8) fail("truncated or not a palette file");
    nlohmann::json header = nlohmann::json::parse(bytes.data() + 8, bytes.data() + 8 + hlen, nullptr, false);
    if (header.is_discarded() || !header.is_object()) fail("header is not valid JSON");
    const auto& meta = header.contains("__metadata__") ? header["__metadata__"] : nlohmann::json();
    if (meta.is_object() && meta.contains("igpt.config")) return load_model_from_memory(bytes.data(), bytes.size(), path).palette;
    if (!header.contains("palette")) fail("no 'palette' tensor");
    const auto& t = header["palette"];
    if (!t.is_object() || t.value("dtype", "") != "U8" || !t.contains("shape") || !t["shape"].is_array() ||
        t["shape"].size() != 2 || !t["shape"][1].is_number_unsigned() || t["shape"][1].get<uint64_t>() != 3 ||
        !t["shape"][0].is_number_unsigned() || !t.contains("data_offsets") || !t["data_offsets"].is_array() ||
        t["data_offsets"].size() != 2 || !t["data_offsets"][0].is_number_unsigned() ||
        !t["data_offsets"][1].is_number_unsigned())
        fail("'palette' must be a U8 tensor of shape [K, 3]");
    const uint64_t k = t["shape"][0].get<uint64_t>(), b = t["data_offsets"][0].get<uint64_t>(),
                   e = t["data_offsets"][1].get<uint64_t>(), avail = bytes.size() - 8 - hlen;
    if (k < 1 || k > 65536 || e < b || e - b != 3 * k || e > avail) fail("'palette' tensor is out of bounds or malformed");
    const uint8_t* base = bytes.data() + 8 + hlen;
    return Palette(std::vector<uint8_t>(base + b, base + e));
}

}  // namespace igpt
