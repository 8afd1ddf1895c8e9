// The model file reader: every kind of bad file is refused with a one-line igpt::Error naming the problem,
// random corruption never crashes, and save -> load round trips (f32 exact, f16 / int8 within their
// quantisation error). All files are generated here.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "config.h"
#include "error.h"
#include "model.h"
#include "palette.h"
#include "test_util.h"

namespace {

using Bytes = std::vector<uint8_t>;
using nlohmann::json;

igpt::Palette small_palette(int k) {
    std::vector<uint8_t> rgb(size_t(k) * 3);
    for (int i = 0; i < k; ++i) {
        rgb[size_t(i) * 3 + 0] = uint8_t(i * 16);
        rgb[size_t(i) * 3 + 1] = uint8_t(255 - i * 16);
        rgb[size_t(i) * 3 + 2] = uint8_t((i * 37) & 255);
    }
    return igpt::Palette(rgb);
}

igpt::Model small_model(bool bias, uint64_t seed = 7) {
    igpt::Model m = igpt::init_model(igpt_test::small_config(bias), small_palette(16), seed);
    // Non-trivial biases and gains, so that they are round-tripped too.
    std::mt19937 rng{unsigned(seed)};
    std::normal_distribution<float> nd(0.0f, 0.1f);
    for (const auto& s : m.specs) {
        const bool gain = s.name.size() > 2 && s.name.compare(s.name.size() - 2, 2, ".g") == 0;
        const bool b = s.name.size() > 2 && s.name.compare(s.name.size() - 2, 2, ".b") == 0;
        if (gain || b)
            for (size_t i = 0; i < s.numel; ++i) m.params[s.offset + i] = (gain ? 1.0f : 0.0f) + nd(rng);
    }
    m.provenance = R"({"data":"test","command":"test_model_file","steps":3})";
    return m;
}

// A safetensors file split into its JSON header and its data block, and put back together.
struct StFile {
    json header;
    Bytes data;

    static StFile parse(const Bytes& b) {
        REQUIRE(b.size() >= 8);
        uint64_t n = 0;
        for (int i = 0; i < 8; ++i) n |= uint64_t(b[size_t(i)]) << (8 * i);
        REQUIRE(8 + n <= b.size());
        StFile f;
        f.header = json::parse(b.begin() + 8, b.begin() + 8 + long(n));
        f.data.assign(b.begin() + 8 + long(n), b.end());
        return f;
    }
    Bytes bytes() const { return assemble(header.dump(), data); }
    static Bytes assemble(const std::string& h, const Bytes& data) {
        Bytes out(8 + h.size() + data.size());
        uint64_t n = h.size();
        for (int i = 0; i < 8; ++i) out[size_t(i)] = uint8_t(n >> (8 * i));
        std::memcpy(out.data() + 8, h.data(), h.size());
        if (!data.empty()) std::memcpy(out.data() + 8 + h.size(), data.data(), data.size());
        return out;
    }
    uint64_t begin(const std::string& t) const { return header.at(t).at("data_offsets")[0].get<uint64_t>(); }
    uint64_t end(const std::string& t) const { return header.at(t).at("data_offsets")[1].get<uint64_t>(); }
    json& meta() { return header["__metadata__"]; }
    json config() const { return json::parse(header.at("__metadata__").at("igpt.config").get<std::string>()); }
    void set_config(const json& c) { meta()["igpt.config"] = c.dump(); }
};

igpt::Model load_bytes(const Bytes& b) { return igpt::load_model_from_memory(b.data(), b.size(), "test.igpt"); }

// Expects load to throw igpt::Error whose message is one line and contains `needle`.
void expect_refused(const Bytes& b, const std::string& needle) {
    std::string msg;
    try {
        load_bytes(b);
        FAIL_CHECK("the file was accepted; expected an error containing '" << needle << "'");
        return;
    } catch (const igpt::Error& e) {
        msg = e.what();
    } catch (const std::exception& e) {
        FAIL_CHECK("expected igpt::Error, got another exception: " << e.what());
        return;
    }
    INFO("message: " << msg);
    CHECK(msg.find(needle) != std::string::npos);
    CHECK(msg.find('\n') == std::string::npos);
    CHECK(!msg.empty());
}

std::string tmp_dir() {
    auto d = std::filesystem::path(IGPT_BINARY_DIR) / "test_tmp" / "model_file";
    std::filesystem::create_directories(d);
    return d.string();
}

}  // namespace

TEST_CASE("model file: a valid file loads and matches the model", "[model_file]") {
    for (bool bias : {false, true}) {
        igpt::Model m = small_model(bias);
        Bytes b = igpt::serialize_model(m);
        igpt::Model r = load_bytes(b);
        CHECK(r.cfg.to_json() == m.cfg.to_json());
        CHECK(r.palette.rgb() == m.palette.rgb());
        CHECK(r.provenance == m.provenance);
        CHECK(r.file_dtype == igpt::DType::F32);
        REQUIRE(r.params.size() == m.params.size());
        CHECK(std::memcmp(r.params.data(), m.params.data(), 4 * m.params.size()) == 0);
    }
}

TEST_CASE("model file: truncated files are refused at every cut point", "[model_file]") {
    const Bytes full = igpt::serialize_model(small_model(true));
    uint64_t hlen = 0;
    for (int i = 0; i < 8; ++i) hlen |= uint64_t(full[size_t(i)]) << (8 * i);
    std::vector<size_t> cuts;
    for (size_t c = 0; c <= 9; ++c) cuts.push_back(c);                            // inside the length
    for (size_t c = 10; c < 8 + hlen; c += std::max<size_t>(1, hlen / 40)) cuts.push_back(c);  // header
    cuts.push_back(8 + hlen - 1);
    cuts.push_back(8 + hlen);                                                     // no data at all
    for (size_t c = 8 + hlen + 1; c < full.size(); c += (full.size() - 8 - hlen) / 60 + 1) cuts.push_back(c);
    cuts.push_back(full.size() - 1);
    for (size_t cut : cuts) {
        INFO("cut at " << cut << " of " << full.size() << " bytes (header " << hlen << ")");
        Bytes b(full.begin(), full.begin() + long(cut));
        std::string msg;
        try {
            load_bytes(b);
            FAIL_CHECK("truncated file accepted");
            continue;
        } catch (const igpt::Error& e) {
            msg = e.what();
        }
        INFO("message: " << msg);
        CHECK((msg.find("truncated") != std::string::npos || msg.find("too short") != std::string::npos));
        CHECK(msg.find('\n') == std::string::npos);
    }
}

TEST_CASE("model file: header problems", "[model_file]") {
    const Bytes full = igpt::serialize_model(small_model(false));
    SECTION("header length larger than the file") {
        Bytes b = full;
        uint64_t n = full.size();  // one more than the bytes after the length field can hold... and more
        for (int i = 0; i < 8; ++i) b[size_t(i)] = uint8_t(n >> (8 * i));
        expect_refused(b, "header length");
        for (int i = 0; i < 8; ++i) b[size_t(i)] = 0xff;  // 2^64-1: must not overflow a bounds check
        expect_refused(b, "header length");
        b[7] = 0x7f;
        expect_refused(b, "header length");
    }
    SECTION("garbage JSON") {
        expect_refused(StFile::assemble("{\"__metadata__\": {\"igpt.form", {}), "JSON");
        expect_refused(StFile::assemble("\x01\x02garbage\xff\xfe", Bytes(100, 0)), "JSON");
        expect_refused(StFile::assemble("[1, 2, 3]", Bytes(100, 0)), "JSON");
        expect_refused(StFile::assemble("", Bytes(100, 0)), "JSON");
    }
    SECTION("file shorter than the length field") {
        expect_refused(Bytes{1, 2, 3}, "too short");
        expect_refused(Bytes{}, "too short");
    }
    SECTION("a missing file") {
        try {
            igpt::load_model(tmp_dir() + "/does_not_exist.igpt");
            FAIL("missing file accepted");
        } catch (const igpt::Error& e) {
            CHECK(std::string(e.what()).find("does_not_exist.igpt") != std::string::npos);
        }
    }
    SECTION("a header entry that is not a tensor") {
        StFile f = StFile::parse(full);
        f.header["wte"] = 42;
        expect_refused(f.bytes(), "wte");
        f = StFile::parse(full);
        f.header["wte"]["shape"] = "16x32";
        expect_refused(f.bytes(), "wte");
        f = StFile::parse(full);
        f.header["wte"]["shape"] = {16, -32};
        expect_refused(f.bytes(), "wte");
        f = StFile::parse(full);
        f.header["wte"]["data_offsets"] = {0};
        expect_refused(f.bytes(), "wte");
        f = StFile::parse(full);
        f.header["wte"]["data_offsets"] = {"0", "2048"};
        expect_refused(f.bytes(), "wte");
        f = StFile::parse(full);
        f.header["wte"]["shape"] = {uint64_t(1) << 32, uint64_t(1) << 32};  // numel overflows 2^64 by bytes
        expect_refused(f.bytes(), "wte");
    }
}

TEST_CASE("model file: tensor problems", "[model_file]") {
    const Bytes full = igpt::serialize_model(small_model(true));
    const StFile orig = StFile::parse(full);

    SECTION("missing tensor") {
        for (const char* name : {"h.1.mlp.fc.w", "sos", "head.w", "h.0.attn.qkv.b", "ln_f.g", "palette"}) {
            StFile f = orig;
            f.header.erase(name);
            INFO("removed " << name);
            expect_refused(f.bytes(), std::string("missing tensor '") + name + "'");
        }
    }
    SECTION("missing int8 scale") {
        StFile f = StFile::parse(igpt::serialize_model(small_model(true), igpt::DType::I8));
        f.header.erase("h.0.mlp.fc.w.scale");
        expect_refused(f.bytes(), "h.0.mlp.fc.w.scale");
    }
    SECTION("wrong shape vs config") {
        // Same byte size, different shape: only the shape check can catch it.
        StFile f = orig;
        f.header["h.0.mlp.fc.w"]["shape"] = {32, 128};
        expect_refused(f.bytes(), "h.0.mlp.fc.w");
        expect_refused(f.bytes(), "shape");
        f = orig;
        f.header["wpe"]["shape"] = {2048};
        expect_refused(f.bytes(), "wpe");
        // The config says a wider model than the tensors hold.
        f = orig;
        json c = f.config();
        c["width"] = 64;
        f.set_config(c);
        expect_refused(f.bytes(), "shape");
        // The config says more layers.
        f = orig;
        c = f.config();
        c["layers"] = 3;
        f.set_config(c);
        expect_refused(f.bytes(), "missing tensor 'h.2.");
        // Bias in the file but not in the config: extra tensors.
        f = orig;
        c = f.config();
        c["bias"] = false;
        f.set_config(c);
        expect_refused(f.bytes(), "unexpected tensor");
    }
    SECTION("byte size does not match shape and dtype") {
        StFile f = orig;
        f.header["sos"]["data_offsets"] = {orig.begin("sos"), orig.end("sos") - 4};
        expect_refused(f.bytes(), "sos");
    }
    SECTION("wrong dtype") {
        StFile f = orig;
        f.header["h.0.ln_1.g"]["dtype"] = "Q4";
        expect_refused(f.bytes(), "dtype");
        f = orig;
        // F64 with a matching byte size: [16] of 8 bytes == [32] of 4 bytes.
        f.header["sos"]["dtype"] = "F64";
        f.header["sos"]["shape"] = {16};
        expect_refused(f.bytes(), "sos");
        f = orig;
        // I32 of the right shape and size: a known dtype that weights must not use.
        f.header["wte"]["dtype"] = "I32";
        expect_refused(f.bytes(), "I32");
        f = orig;
        // A palette must be U8.
        f.header["palette"]["dtype"] = "I8";
        expect_refused(f.bytes(), "palette");
        // An I8 vector (vectors stay F32; they have no per-row scale).
        StFile q = StFile::parse(igpt::serialize_model(small_model(true), igpt::DType::I8));
        q.header["h.0.ln_1.g"]["dtype"] = "I8";
        q.header["h.0.ln_1.g"]["data_offsets"] = {q.begin("h.0.ln_1.g"), q.begin("h.0.ln_1.g") + 32};
        expect_refused(q.bytes(), "h.0.ln_1.g");
    }
    SECTION("offsets out of bounds") {
        StFile f = orig;
        const uint64_t n = orig.data.size();
        f.header["head.w"]["data_offsets"] = {n - 100, n - 100 + 16 * 32 * 4};
        expect_refused(f.bytes(), "outside the file");
        f = orig;
        f.header["head.w"]["data_offsets"] = {uint64_t(-1) - 10, uint64_t(-1)};  // no wrap-around
        expect_refused(f.bytes(), "head.w");
        f = orig;
        f.header["head.w"]["data_offsets"] = {orig.end("head.w"), orig.begin("head.w")};  // reversed
        expect_refused(f.bytes(), "head.w");
    }
    SECTION("overlapping tensors") {
        StFile f = orig;
        // Two [C] vectors at the same place.
        f.header["h.0.ln_2.g"]["data_offsets"] = orig.header["h.0.ln_1.g"]["data_offsets"];
        expect_refused(f.bytes(), "overlap");
        // Partly overlapping: shift one tensor by 4 bytes into its neighbour.
        f = orig;
        f.header["ln_f.g"]["data_offsets"] = {orig.begin("ln_f.g") - 4, orig.end("ln_f.g") - 4};
        expect_refused(f.bytes(), "overlap");
    }
    SECTION("NaN and Inf in weights") {
        for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
            for (const char* name : {"wte", "h.1.attn.proj.b", "ln_f.g"}) {
                StFile f = orig;
                std::memcpy(f.data.data() + orig.begin(name) + 8, &bad, 4);
                INFO(name << " = " << bad);
                expect_refused(f.bytes(), "NaN or Inf");
                expect_refused(f.bytes(), name);
            }
        }
        // f16 Inf / NaN
        StFile h = StFile::parse(igpt::serialize_model(small_model(true), igpt::DType::F16));
        for (uint16_t bits : {uint16_t(0x7c00), uint16_t(0x7e00), uint16_t(0xfc00)}) {
            StFile f = h;
            std::memcpy(f.data.data() + h.begin("h.0.mlp.proj.w") + 2, &bits, 2);
            expect_refused(f.bytes(), "NaN or Inf");
        }
        // int8 with a NaN scale
        StFile q = StFile::parse(igpt::serialize_model(small_model(true), igpt::DType::I8));
        const float nan = std::numeric_limits<float>::quiet_NaN();
        std::memcpy(q.data.data() + q.begin("head.w.scale"), &nan, 4);
        expect_refused(q.bytes(), "NaN or Inf");
    }
    SECTION("missing or invalid config metadata") {
        StFile f = orig;
        f.header.erase("__metadata__");
        expect_refused(f.bytes(), "metadata");
        f = orig;
        f.meta().erase("igpt.config");
        expect_refused(f.bytes(), "igpt.config");
        f = orig;
        f.meta()["igpt.config"] = "{not json";
        expect_refused(f.bytes(), "config");
        f = orig;
        f.meta()["igpt.config"] = json{{"width", 32}};  // an object, not a string
        expect_refused(f.bytes(), "igpt.config");
        f = orig;
        f.meta().erase("igpt.format");
        expect_refused(f.bytes(), "igpt.format");
        f = orig;
        f.meta()["igpt.format"] = "99";
        expect_refused(f.bytes(), "format");
        struct Case {
            const char* key;
            json value;
            const char* needle;
        };
        const Case cases[] = {
            {"heads", 5, "heads"},         {"width", 0, "width"},         {"vocab", 1, "vocab"},
            {"vocab", 70000, "vocab"},     {"layers", -1, "layers"},      {"image_h", "8", "image_h"},
            {"width", 32.5, "width"},      {"norm_eps", 0.0, "norm_eps"}, {"norm_eps", "x", "norm_eps"},
            {"bias", 1, "bias"},           {"mlp_mult", 0, "mlp_mult"},   {"image_w", 1 << 20, "image"},
        };
        for (const auto& cs : cases) {
            f = orig;
            json c = f.config();
            c[cs.key] = cs.value;
            f.set_config(c);
            INFO("config " << cs.key << " = " << cs.value.dump());
            expect_refused(f.bytes(), cs.needle);
        }
        for (const char* key : {"vocab", "width", "layers", "heads", "image_h", "image_w"}) {
            f = orig;
            json c = f.config();
            c.erase(key);
            f.set_config(c);
            INFO("config without " << key);
            expect_refused(f.bytes(), key);
        }
    }
    SECTION("a config far larger than the file is refused without allocating for it") {
        // ~16e9 parameters (64 GB as f32) claimed by a 100 kB file: must be an igpt::Error, not
        // std::bad_alloc or an attempt to allocate and zero the memory.
        StFile f = orig;
        json c = f.config();
        c["width"] = 16384;
        c["heads"] = 16;
        c["layers"] = 5;
        f.set_config(c);
        expect_refused(f.bytes(), "");
    }
    SECTION("palette of the wrong size") {
        StFile f = orig;
        // 15 colours for a vocab of 16 (shape and byte range consistent with each other).
        f.header["palette"]["shape"] = {15, 3};
        f.header["palette"]["data_offsets"] = {orig.begin("palette"), orig.end("palette") - 3};
        expect_refused(f.bytes(), "palette");
        f = orig;
        f.header["palette"]["shape"] = {48};
        expect_refused(f.bytes(), "palette");
    }
}

TEST_CASE("model file: random corruption never crashes", "[model_file]") {
    // Each corrupted file must either load (then its weights are finite and sized by its config) or throw
    // igpt::Error; anything else (another exception, a crash, a sanitizer report) fails.
    const Bytes full = igpt::serialize_model(small_model(true), igpt::DType::I8);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; ++i) hlen |= uint64_t(full[size_t(i)]) << (8 * i);
    std::mt19937_64 rng(12345);
    int loaded = 0, refused = 0, other = 0;
    const int iters = 3000;
    for (int it = 0; it < iters; ++it) {
        Bytes b = full;
        const int flips = 1 + int(rng() % 6);
        for (int k = 0; k < flips; ++k) {
            // Mostly the length field and the header (where the parser works), sometimes the data.
            size_t at;
            switch (rng() % 4) {
                case 0: at = rng() % 8; break;
                case 1: case 2: at = 8 + rng() % hlen; break;
                default: at = rng() % b.size();
            }
            switch (rng() % 3) {
                case 0: b[at] = uint8_t(rng()); break;
                case 1: b[at] ^= uint8_t(1u << (rng() % 8)); break;
                default: {  // digits and JSON punctuation: more likely to stay parseable
                    static const char alphabet[] = "0123456789,:[]{}\"-e.";
                    b[at] = uint8_t(alphabet[rng() % (sizeof(alphabet) - 1)]);
                }
            }
        }
        if (rng() % 8 == 0) b.resize(size_t(rng() % b.size()));
        try {
            igpt::Model m = load_bytes(b);
            ++loaded;
            REQUIRE(m.params.size() == igpt::param_count(igpt::param_layout(m.cfg)));
            REQUIRE(m.palette.k() == m.cfg.vocab);
            bool finite = true;
            for (float v : m.params) finite = finite && std::isfinite(v);
            REQUIRE(finite);
        } catch (const igpt::Error& e) {
            ++refused;
            const std::string msg = e.what();
            if (msg.empty() || msg.find('\n') != std::string::npos) {
                FAIL_CHECK("bad message at iteration " << it << ": '" << msg << "'");
            }
        } catch (const std::exception& e) {
            ++other;
            FAIL_CHECK("iteration " << it << ": not an igpt::Error: " << e.what());
        }
    }
    INFO("loaded " << loaded << ", refused " << refused << ", other " << other);
    CHECK(other == 0);
    CHECK(refused > iters / 4);
}

TEST_CASE("model file: save -> load round trip", "[model_file]") {
    for (bool bias : {false, true}) {
        const igpt::Model m = small_model(bias, 11);
        const std::string dir = tmp_dir();
        SECTION(std::string("f32 is exact, bias ") + (bias ? "on" : "off")) {
            const std::string path = dir + "/rt_f32.igpt";
            igpt::save_model(m, path, igpt::DType::F32);
            igpt::Model r = igpt::load_model(path);
            CHECK(r.file_dtype == igpt::DType::F32);
            CHECK(r.cfg.to_json() == m.cfg.to_json());
            CHECK(r.palette.rgb() == m.palette.rgb());
            CHECK(r.provenance == m.provenance);
            REQUIRE(r.params.size() == m.params.size());
            CHECK(std::memcmp(r.params.data(), m.params.data(), 4 * m.params.size()) == 0);
            // No temporary file left beside it.
            int n = 0;
            for (const auto& e : std::filesystem::directory_iterator(dir))
                if (e.path().filename().string().rfind("rt_f32.igpt", 0) == 0) ++n;
            CHECK(n == 1);
            // Serialising again gives the same bytes.
            CHECK(igpt::serialize_model(r) == igpt::serialize_model(m));
        }
        SECTION(std::string("f16 within half precision, bias ") + (bias ? "on" : "off")) {
            const std::string path = dir + "/rt_f16.igpt";
            igpt::save_model(m, path, igpt::DType::F16);
            igpt::Model r = igpt::load_model(path);
            CHECK(r.file_dtype == igpt::DType::F16);
            REQUIRE(r.params.size() == m.params.size());
            size_t bad = 0;
            double worst = 0;
            for (const auto& s : m.specs) {
                for (size_t i = s.offset; i < s.offset + s.numel; ++i) {
                    const double a = m.params[i], b = r.params[i];
                    // matrices: half precision (relative 2^-11, subnormal step 2^-24); vectors exact.
                    const double tol = s.matrix ? std::fabs(a) * std::ldexp(1.0, -11) + std::ldexp(1.0, -25) : 0.0;
                    const double d = std::fabs(a - b);
                    if (d > tol) ++bad;
                    if (s.matrix && std::fabs(a) > 1e-3) worst = std::max(worst, d / std::fabs(a));
                }
            }
            INFO("worst relative error " << worst);
            CHECK(bad == 0);
            CHECK(worst > 0);  // it really was stored as f16
            CHECK(std::filesystem::file_size(path) < igpt::serialize_model(m).size() * 6 / 10);
        }
        SECTION(std::string("int8 within half a quantisation step per row, bias ") + (bias ? "on" : "off")) {
            const std::string path = dir + "/rt_i8.igpt";
            igpt::save_model(m, path, igpt::DType::I8);
            igpt::Model r = igpt::load_model(path);
            CHECK(r.file_dtype == igpt::DType::I8);
            REQUIRE(r.params.size() == m.params.size());
            size_t bad = 0;
            for (const auto& s : m.specs) {
                if (!s.matrix) {
                    for (size_t i = s.offset; i < s.offset + s.numel; ++i) bad += m.params[i] != r.params[i];
                    continue;
                }
                const size_t rows = size_t(s.shape[0]), cols = size_t(s.shape[1]);
                for (size_t row = 0; row < rows; ++row) {
                    const float* a = &m.params[s.offset + row * cols];
                    const float* b = &r.params[s.offset + row * cols];
                    double amax = 0;
                    for (size_t c = 0; c < cols; ++c) amax = std::max(amax, double(std::fabs(a[c])));
                    const double step = amax / 127.0;
                    for (size_t c = 0; c < cols; ++c)
                        if (std::fabs(double(a[c]) - double(b[c])) > 0.5 * step * (1 + 1e-5) + 1e-12) ++bad;
                }
            }
            CHECK(bad == 0);
            CHECK(std::filesystem::file_size(path) < igpt::serialize_model(m).size() * 4 / 10);
        }
    }
}

TEST_CASE("model file: an all-zero int8 row round trips to zeros", "[model_file]") {
    igpt::Model m = small_model(false);
    const auto& s = m.specs[1];  // wte
    REQUIRE(s.name == "wte");
    std::fill(m.params.begin() + long(s.offset), m.params.begin() + long(s.offset + 32), 0.0f);
    igpt::Model r = load_bytes(igpt::serialize_model(m, igpt::DType::I8));
    for (size_t i = 0; i < 32; ++i) CHECK(r.params[s.offset + i] == 0.0f);
}
