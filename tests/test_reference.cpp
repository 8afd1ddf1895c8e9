// Numerics of the core engine against an independent reference: tests/ref/igpt_ref.py (Python + NumPy,
// float64) parses the model file itself and computes the forward pass; the C++ CPU backend must match it
// within 1e-4 relative, for f32 / f16 / int8 files, with and without biases, through every path the
// engine uses (uncached, prefill + decode, batched, fanned-out caches, several threads) and image_nll.
//
// Models come from both writers: the reference's own `make-model` (checks the C++ reader against an
// independent writer) and igpt::save_model (checks the C++ writer against an independent reader).
#include <catch2/catch.hpp>

#include "ref_array.h"
#include "test_util.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "backend.h"
#include "error.h"
#include "model.h"
#include "session.h"

namespace {

constexpr double kRel = 1e-4;  // the tolerance: C++ float32 vs NumPy float64
const char* const kPython = igpt_test::python();

std::string ref_script() { return std::string(IGPT_SOURCE_DIR) + "/tests/ref/igpt_ref.py"; }

std::string work_dir() {
    auto d = std::filesystem::path(IGPT_BINARY_DIR) / "test_tmp" / "reference";
    std::filesystem::create_directories(d);
    return d.string();
}

std::string quote(const std::string& s) {
    std::string r = "'";
    for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return r + "'";
}

// Runs a shell command; returns its exit status and its stdout + stderr.
int run_command(const std::string& cmd, std::string& output) {
    output.clear();
    FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
    if (!p) return -1;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) output.append(buf, n);
    int st = ::pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// The reference needs Debian's python3 with numpy. Missing: a failure that says how to fix it, never a skip.
void require_reference() {
    static int state = 0;  // 0 unknown, 1 ok, 2 missing
    static std::string why;
    if (state == 0) {
        std::string out;
        if (::access(kPython, X_OK) != 0) {
            state = 2;
            why = std::string(kPython) + " not found";
        } else if (run_command(std::string(kPython) + " -c 'import numpy'", out) != 0) {
            state = 2;
            why = "numpy cannot be imported by " + std::string(kPython) + ": " + out;
        } else if (::access(ref_script().c_str(), R_OK) != 0) {
            state = 2;
            why = ref_script() + " not found";
        } else {
            state = 1;
        }
    }
    if (state == 2)
        FAIL("the NumPy reference cannot run (" << why
                                                 << "); install it: apt-get install python3 python3-numpy, or point IGPT_PYTHON at a "
                                                    "Python that has NumPy");
}

std::string run_ref(const std::string& args) {
    require_reference();
    const std::string cmd = std::string(kPython) + " " + quote(ref_script()) + " " + args;
    std::string out;
    int rc = run_command(cmd, out);
    INFO("command: " << cmd);
    INFO("output: " << out);
    REQUIRE(rc == 0);
    return out;
}

using igpt_test::RefArray;
using igpt_test::read_ref_array;

void write_tokens(const std::string& path, const std::vector<std::vector<int32_t>>& seqs) {
    std::ofstream f(path);
    for (const auto& s : seqs) {
        for (size_t i = 0; i < s.size(); ++i) f << (i ? " " : "") << s[i];
        f << "\n";
    }
    REQUIRE(f.good());
}

// Reference logits of input sequences (each starting with -1 = sos): (S, n, V).
std::vector<double> ref_logits(const std::string& model_path, const std::vector<std::vector<int32_t>>& inputs,
                               int32_t V) {
    static int counter = 0;
    const std::string base = work_dir() + "/dump" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    write_tokens(base + ".txt", inputs);
    run_ref("dump " + quote(model_path) + " " + quote(base + ".txt") + " " + quote(base + ".bin"));
    RefArray a = read_ref_array(base + ".bin");
    REQUIRE(a.dims.size() == 3);
    REQUIRE(a.dims[0] == int64_t(inputs.size()));
    REQUIRE(a.dims[1] == int64_t(inputs[0].size()));
    REQUIRE(a.dims[2] == V);
    std::filesystem::remove(base + ".txt");
    std::filesystem::remove(base + ".bin");
    return a.v;
}

// Compares `got` with `want` elementwise: |got - want| <= rel * max(|want|, rms(want)) (logits near zero
// are judged on the scale of the whole set). Prints first values and the worst difference on failure.
bool check_close(const std::string& what, const float* got, const double* want, size_t n, double rel = kRel) {
    double ss = 0;
    for (size_t i = 0; i < n; ++i) ss += want[i] * want[i];
    const double rms = std::sqrt(ss / double(std::max<size_t>(n, 1)));
    double worst = 0, max_diff = 0;
    size_t at = 0;
    bool finite = true;
    for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(got[i])) finite = false;
        const double d = std::fabs(double(got[i]) - want[i]);
        const double r = d / (rel * std::max(std::fabs(want[i]), rms) + 1e-300);
        if (d > max_diff) max_diff = d;
        if (!(r <= worst)) {
            worst = r;
            at = i;
        }
    }
    const bool ok = finite && worst <= 1.0;
    if (!ok) {
        std::ostringstream s;
        s.precision(9);
        s << what << ": MISMATCH (tolerance " << rel << " relative, reference rms " << rms << ")\n";
        s << "  first values (C++ | reference):\n";
        for (size_t i = 0; i < std::min<size_t>(n, 6); ++i) s << "    " << got[i] << " | " << want[i] << "\n";
        s << "  max |difference| " << max_diff << "; worst at element " << at << ": " << got[at] << " vs "
          << want[at] << " (" << worst << "x the tolerance)" << (finite ? "" : "; NON-FINITE values");
        FAIL_CHECK(s.str());
    } else {
        SUCCEED(what << ": OK, worst " << worst << "x tolerance, max |diff| " << max_diff);
    }
    return ok;
}

bool check_close(const std::string& what, const std::vector<float>& got, const std::vector<double>& want,
                 double rel = kRel) {
    if (got.size() != want.size()) {
        FAIL_CHECK(what << ": size " << got.size() << " vs " << want.size());
        return false;
    }
    return check_close(what, got.data(), want.data(), got.size(), rel);
}

bool check_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& want,
                 double rel = kRel) {
    std::vector<double> w(want.begin(), want.end());
    return check_close(what, got, w, rel);
}

// ---- models --------------------------------------------------------------------------------------------

struct Variant {
    std::string name;
    std::string args;  // make-model arguments
};

// A model written by the reference's own writer (cached per variant for the whole run).
// The files are removed when the test binary exits.
const std::string& ref_model(const Variant& v) {
    struct Made : std::map<std::string, std::string> {
        ~Made() {
            std::error_code ec;
            for (const auto& kv : *this) std::filesystem::remove(kv.second, ec);
        }
    };
    static Made made;
    auto it = made.find(v.name);
    if (it != made.end()) return it->second;
    const std::string path = work_dir() + "/" + v.name + "." + std::to_string(::getpid()) + ".igpt";
    run_ref("make-model " + quote(path) + " " + v.args);
    return made[v.name] = path;
}

const std::vector<Variant>& variants() {
    static const std::vector<Variant> v = {
        {"f32", "--dtype f32 --bias 0 --seed 1"},
        {"f32_bias", "--dtype f32 --bias 1 --seed 2"},
        {"f16", "--dtype f16 --bias 0 --seed 3"},
        {"f16_bias", "--dtype f16 --bias 1 --seed 4"},
        {"int8", "--dtype int8 --bias 0 --seed 5"},
        {"int8_bias", "--dtype int8 --bias 1 --seed 6"},
        // Another shape: 3 heads of 16, 3 layers, a 4x6 image, 10 colours, mlp x2.
        {"odd_shape", "--dtype f32 --bias 1 --seed 7 --width 48 --heads 3 --layers 3 --image-h 4 --image-w 6 "
                      "--vocab 10 --mlp-mult 2 --norm-eps 0.05"},
    };
    return v;
}

const Variant& variant(const std::string& name) {
    for (const auto& v : variants())
        if (v.name == name) return v;
    FAIL("no variant " << name);
    throw 0;
}

// Input sequences of length n (position 0 = sos): random, constant 0, constant V-1, a ramp.
std::vector<std::vector<int32_t>> fixed_inputs(int32_t V, int32_t n, uint64_t seed = 1) {
    std::vector<std::vector<int32_t>> s(4, std::vector<int32_t>(size_t(n), 0));
    std::mt19937_64 rng(seed);
    for (int32_t p = 0; p < n; ++p) {
        s[0][size_t(p)] = int32_t(rng() % uint64_t(V));
        s[1][size_t(p)] = 0;
        s[2][size_t(p)] = V - 1;
        s[3][size_t(p)] = p % V;
    }
    for (auto& x : s) x[0] = -1;
    return s;
}

std::vector<std::vector<int32_t>> random_inputs(int32_t count, int32_t V, int32_t n, uint64_t seed) {
    std::vector<std::vector<int32_t>> s(size_t(count), std::vector<int32_t>(size_t(n), 0));
    std::mt19937_64 rng(seed);
    for (auto& x : s) {
        for (auto& t : x) t = int32_t(rng() % uint64_t(V));
        x[0] = -1;
    }
    return s;
}

std::vector<float> forward_all(igpt::Backend& be, const std::vector<std::vector<int32_t>>& seqs, int32_t V) {
    const int32_t B = int32_t(seqs.size()), n = int32_t(seqs[0].size());
    std::vector<int32_t> toks;
    for (const auto& s : seqs) toks.insert(toks.end(), s.begin(), s.end());
    std::vector<float> out(size_t(B) * size_t(n) * size_t(V), std::nanf(""));
    be.reset(B);
    be.forward(toks.data(), B, n, 0, out.data(), true);
    return out;
}

std::vector<float> slice(const std::vector<float>& v, size_t begin, size_t count) {
    return std::vector<float>(v.begin() + long(begin), v.begin() + long(begin + count));
}
std::vector<double> slice(const std::vector<double>& v, size_t begin, size_t count) {
    return std::vector<double>(v.begin() + long(begin), v.begin() + long(begin + count));
}

}  // namespace

TEST_CASE("reference: the NumPy reference is available", "[reference]") {
    require_reference();
    std::string out = run_ref("--help");
    CHECK(out.find("make-model") != std::string::npos);
}

TEST_CASE("reference: CPU logits match the reference (reference-written files)", "[reference]") {
    for (const auto& v : variants()) {
        DYNAMIC_SECTION("variant " << v.name) {
            const std::string& path = ref_model(v);
            igpt::Model m = igpt::load_model(path);
            const int32_t V = m.cfg.vocab, T = m.cfg.n_ctx();
            if (v.name.rfind("f16", 0) == 0) CHECK(m.file_dtype == igpt::DType::F16);
            if (v.name.rfind("int8", 0) == 0) CHECK(m.file_dtype == igpt::DType::I8);
            auto inputs = fixed_inputs(V, T, 17);
            std::vector<double> want = ref_logits(path, inputs, V);
            auto be = igpt::make_cpu_backend(m, 1);
            for (size_t s = 0; s < inputs.size(); ++s) {
                std::vector<float> got = forward_all(*be, {inputs[s]}, V);
                check_close(v.name + " sequence " + std::to_string(s) + " (batch 1, uncached)", got,
                            slice(want, s * size_t(T) * V, size_t(T) * V));
            }
            // A shorter forward (not the whole context) matches the reference's prefix.
            const int32_t n = std::min<int32_t>(T, 13);
            std::vector<std::vector<int32_t>> pre = {std::vector<int32_t>(inputs[0].begin(), inputs[0].begin() + n)};
            std::vector<float> got = forward_all(*be, pre, V);
            check_close(v.name + " first " + std::to_string(n) + " positions", got, slice(want, 0, size_t(n) * V));
            // all_positions = false gives the last position's logits.
            std::vector<float> last(size_t(V), 0.0f);
            be->reset(1);
            be->forward(pre[0].data(), 1, n, 0, last.data(), false);
            check_close(v.name + " last position only", last, slice(want, size_t(n - 1) * V, size_t(V)));
        }
    }
}

TEST_CASE("reference: files written by igpt::save_model read the same in the reference", "[reference]") {
    const igpt::ModelConfig cfg = igpt_test::small_config(true);
    std::vector<uint8_t> rgb(16 * 3);
    for (int i = 0; i < 48; ++i) rgb[size_t(i)] = uint8_t(i * 5);
    igpt::Model m = igpt::init_model(cfg, igpt::Palette(rgb), 3);
    // Scale the weights up (init's N(0, 0.02) gives near-uniform logits) and make biases / gains non-trivial.
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (const auto& s : m.specs) {
        float* p = m.params.data() + s.offset;
        const bool gain = s.name.size() > 2 && s.name.compare(s.name.size() - 2, 2, ".g") == 0;
        const bool bias = s.name.size() > 2 && s.name.compare(s.name.size() - 2, 2, ".b") == 0;
        for (size_t i = 0; i < s.numel; ++i) {
            if (gain) p[i] = 1.0f + 0.2f * nd(rng);
            else if (bias) p[i] = 0.1f * nd(rng);
            else if (s.matrix) p[i] *= (s.name == "wte" || s.name == "wpe") ? 50.0f : 1.0f / (0.02f * std::sqrt(float(s.shape[1])));
            else p[i] = nd(rng);  // sos
        }
    }
    for (igpt::DType dt : {igpt::DType::F32, igpt::DType::F16, igpt::DType::I8}) {
        DYNAMIC_SECTION("dtype " << igpt::dtype_name(dt)) {
            const std::string path = work_dir() + "/cpp_written_" + igpt::dtype_name(dt) + "." +
                                     std::to_string(::getpid()) + ".igpt";
            igpt::save_model(m, path, dt);
            igpt::Model r = igpt::load_model(path);
            auto inputs = fixed_inputs(cfg.vocab, cfg.n_ctx(), 99);
            inputs.resize(2);
            std::vector<double> want = ref_logits(path, inputs, cfg.vocab);
            auto be = igpt::make_cpu_backend(r, 1);
            std::vector<float> got = forward_all(*be, inputs, cfg.vocab);
            check_close(std::string("C++-written ") + igpt::dtype_name(dt) + " file", got, want);
            std::filesystem::remove(path);
        }
    }
}

TEST_CASE("reference: cached decoding equals one uncached forward", "[reference]") {
    for (const char* vn : {"f32_bias", "int8", "odd_shape"}) {
        DYNAMIC_SECTION("variant " << vn) {
            const std::string& path = ref_model(variant(vn));
            igpt::Model m = igpt::load_model(path);
            const int32_t V = m.cfg.vocab, T = m.cfg.n_ctx();
            auto inputs = random_inputs(1, V, T, 42);
            std::vector<double> want = ref_logits(path, inputs, V);
            auto be = igpt::make_cpu_backend(m, 1);
            std::vector<float> uncached = forward_all(*be, inputs, V);
            check_close(std::string(vn) + " uncached vs reference", uncached, want);

            // Prefill k positions, then one token at a time (last-position logits).
            const int32_t k = T / 3;
            std::vector<float> cached(size_t(T) * V, std::nanf(""));
            be->reset(1);
            be->forward(inputs[0].data(), 1, k, 0, cached.data(), true);
            for (int32_t p = k; p < T; ++p)
                be->forward(&inputs[0][size_t(p)], 1, 1, p, &cached[size_t(p) * V], false);
            check_close(std::string(vn) + " prefill + decode vs uncached", cached, uncached);
            check_close(std::string(vn) + " prefill + decode vs reference", cached, want);

            // Uneven chunks with all positions.
            std::vector<float> chunked(size_t(T) * V, std::nanf(""));
            be->reset(1);
            for (int32_t p = 0, c = 1; p < T; p += c, c = c % 7 + 2) {
                const int32_t n = std::min(c, T - p);
                be->forward(&inputs[0][size_t(p)], 1, n, p, &chunked[size_t(p) * V], true);
            }
            check_close(std::string(vn) + " chunked vs uncached", chunked, uncached);

            // reset() forgets the cache: running again from position 0 gives the same logits.
            std::vector<float> again = forward_all(*be, inputs, V);
            check_close(std::string(vn) + " after reset", again, uncached, 1e-6);
        }
    }
}

TEST_CASE("reference: batch of 1 and batch of 8 agree", "[reference]") {
    for (const char* vn : {"f32", "f16_bias", "int8_bias"}) {
        DYNAMIC_SECTION("variant " << vn) {
            const std::string& path = ref_model(variant(vn));
            igpt::Model m = igpt::load_model(path);
            const int32_t V = m.cfg.vocab, T = m.cfg.n_ctx();
            const size_t TV = size_t(T) * size_t(V);
            auto inputs = random_inputs(8, V, T, 7);
            std::vector<double> want = ref_logits(path, inputs, V);
            auto be = igpt::make_cpu_backend(m, 1);
            std::vector<float> b8 = forward_all(*be, inputs, V);
            check_close(std::string(vn) + " batch 8 vs reference", b8, want);
            for (size_t s = 0; s < 8; ++s) {
                std::vector<float> b1 = forward_all(*be, {inputs[s]}, V);
                check_close(std::string(vn) + " batch 1 vs batch 8, sequence " + std::to_string(s), b1,
                            slice(b8, s * TV, TV));
            }
            // Batched decoding: prefill 8 sequences together, then decode them together token by token.
            const int32_t k = T / 2;
            std::vector<float> dec(8 * TV, std::nanf(""));
            std::vector<int32_t> toks;
            for (const auto& s : inputs) toks.insert(toks.end(), s.begin(), s.begin() + k);
            be->reset(8);
            std::vector<float> pre(8 * size_t(k) * V);
            be->forward(toks.data(), 8, k, 0, pre.data(), true);
            for (size_t s = 0; s < 8; ++s)
                std::copy(pre.begin() + long(s * k * V), pre.begin() + long((s + 1) * k * V), dec.begin() + long(s * TV));
            std::vector<float> step(8 * size_t(V));
            for (int32_t p = k; p < T; ++p) {
                std::vector<int32_t> t(8);
                for (size_t s = 0; s < 8; ++s) t[s] = inputs[s][size_t(p)];
                be->forward(t.data(), 8, 1, p, step.data(), false);
                for (size_t s = 0; s < 8; ++s)
                    std::copy(step.begin() + long(s * V), step.begin() + long((s + 1) * V),
                              dec.begin() + long(s * TV + size_t(p) * V));
            }
            check_close(std::string(vn) + " batch 8 prefill + decode vs reference", dec, want);
            // A batch smaller than the reset() batch uses sequences 0..batch-1.
            be->reset(8);
            std::vector<int32_t> t3;
            for (size_t s = 0; s < 3; ++s) t3.insert(t3.end(), inputs[s].begin(), inputs[s].end());
            std::vector<float> b3(3 * TV);
            be->forward(t3.data(), 3, T, 0, b3.data(), true);
            check_close(std::string(vn) + " batch 3 of 8 vs reference", b3, slice(want, 0, 3 * TV));
        }
    }
}

TEST_CASE("reference: copy_cache fans a prefilled prompt out to every sequence", "[reference]") {
    for (const char* vn : {"f32_bias", "int8", "f16"}) {
        DYNAMIC_SECTION("variant " << vn) {
            const std::string& path = ref_model(variant(vn));
            igpt::Model m = igpt::load_model(path);
            const int32_t V = m.cfg.vocab, T = m.cfg.n_ctx();
            const int32_t k = 24;  // shared prompt
            // 8 sequences sharing the first k inputs, then diverging.
            auto inputs = random_inputs(8, V, T, 1234);
            for (size_t s = 1; s < 8; ++s) std::copy(inputs[0].begin(), inputs[0].begin() + k, inputs[s].begin());
            std::vector<double> want = ref_logits(path, inputs, V);
            const size_t TV = size_t(T) * V;
            auto be = igpt::make_cpu_backend(m, 2);
            be->reset(8);
            // Dirty every cache first, so a copy that misses a sequence or a position shows.
            {
                auto junk = random_inputs(8, V, k, 555);
                std::vector<int32_t> jt;
                for (const auto& s : junk) jt.insert(jt.end(), s.begin(), s.end());
                std::vector<float> tmp(8 * size_t(k) * V);
                be->forward(jt.data(), 8, k, 0, tmp.data(), true);
            }
            std::vector<float> prompt(size_t(k) * V);
            be->forward(inputs[0].data(), 1, k, 0, prompt.data(), true);  // sequence 0 only
            check_close(std::string(vn) + " prompt", prompt, slice(want, 0, size_t(k) * V));
            be->copy_cache(0, 8, k);
            // One position at a time for all (the decode steps that read the shared prompt once for the
            // group), then the rest in one chunk.
            const int32_t singles = 6;
            std::vector<float> l1(size_t(singles) * 8 * size_t(V));
            for (int32_t i = 0; i < singles; ++i) {
                std::vector<int32_t> t1(8);
                for (size_t s = 0; s < 8; ++s) t1[s] = inputs[s][size_t(k + i)];
                be->forward(t1.data(), 8, 1, k + i, l1.data() + size_t(i) * 8 * size_t(V), false);
            }
            const int32_t rest = T - k - singles;
            std::vector<int32_t> tr;
            for (const auto& s : inputs) tr.insert(tr.end(), s.begin() + k + singles, s.end());
            std::vector<float> lr(8 * size_t(rest) * V);
            be->forward(tr.data(), 8, rest, k + singles, lr.data(), true);
            for (size_t s = 0; s < 8; ++s) {
                for (int32_t i = 0; i < singles; ++i)
                    check_close(std::string(vn) + " fan-out sequence " + std::to_string(s) + " position k+" +
                                    std::to_string(i),
                                slice(l1, (size_t(i) * 8 + s) * V, size_t(V)),
                                slice(want, s * TV + size_t(k + i) * V, size_t(V)));
                check_close(std::string(vn) + " fan-out sequence " + std::to_string(s) + " rest",
                            slice(lr, s * size_t(rest) * V, size_t(rest) * V),
                            slice(want, s * TV + size_t(k + singles) * V, size_t(rest) * V));
            }
            // The backend may share the prompt's cache instead of copying it; running positions below k
            // again (here k-4 onwards, for every sequence) must give each sequence its own copy first.
            be->copy_cache(0, 8, k);
            const int32_t from = k - 4, len = T - from;
            std::vector<int32_t> ta;
            for (const auto& s : inputs) ta.insert(ta.end(), s.begin() + from, s.end());
            std::vector<float> la(8 * size_t(len) * V);
            be->forward(ta.data(), 8, len, from, la.data(), true);
            for (size_t s = 0; s < 8; ++s)
                check_close(std::string(vn) + " rerun from k-4, sequence " + std::to_string(s),
                            slice(la, s * size_t(len) * V, size_t(len) * V),
                            slice(want, s * TV + size_t(from) * V, size_t(len) * V));
        }
    }
}

TEST_CASE("reference: image_nll bits per pixel matches the reference", "[reference]") {
    for (const char* vn : {"f32", "f16_bias", "int8_bias", "odd_shape"}) {
        DYNAMIC_SECTION("variant " << vn) {
            const std::string& path = ref_model(variant(vn));
            igpt::Model m = igpt::load_model(path);
            const int32_t V = m.cfg.vocab, T = m.cfg.n_ctx();
            const int32_t n_images = 5;
            std::vector<std::vector<int32_t>> imgs(size_t(n_images), std::vector<int32_t>(size_t(T), 0));
            std::mt19937_64 rng(77);
            for (auto& im : imgs)
                for (int32_t p = 0; p < T; ++p)  // smooth-ish images, not pure noise
                    im[size_t(p)] = (rng() % 4 == 0) ? int32_t(rng() % uint64_t(V)) : (p / 3) % V;
            const std::string base = work_dir() + "/nll_" + vn + "." + std::to_string(::getpid());
            write_tokens(base + ".txt", imgs);
            std::string out = run_ref("nll " + quote(path) + " " + quote(base + ".txt") + " --pixel-bits " +
                                      quote(base + ".bin"));
            const double ref_bpp = std::stod(out);
            RefArray pix = read_ref_array(base + ".bin");
            REQUIRE(pix.v.size() == size_t(n_images) * T);
            std::vector<int32_t> flat;
            for (const auto& im : imgs) flat.insert(flat.end(), im.begin(), im.end());
            for (int32_t batch : {8, 2, 1}) {
                for (int32_t threads : {1, 2}) {
                    auto be = igpt::make_cpu_backend(m, threads);
                    igpt::NllResult r = igpt::image_nll(m, *be, flat, n_images, batch);
                    INFO(vn << " batch " << batch << " threads " << threads << ": C++ " << r.bits_per_pixel
                            << " bpp, reference " << ref_bpp);
                    CHECK(std::fabs(r.bits_per_pixel - ref_bpp) <= kRel * std::max(1.0, std::fabs(ref_bpp)));
                    REQUIRE(r.pixel_bits.size() == pix.v.size());
                    // per-pixel surprise: -log2 p, within 1e-4 relative on the scale of a few bits
                    double worst = 0;
                    size_t at = 0;
                    for (size_t i = 0; i < pix.v.size(); ++i) {
                        const double d = std::fabs(double(r.pixel_bits[i]) - pix.v[i]) / std::max(1.0, pix.v[i]);
                        if (!(d <= worst)) {
                            worst = d;
                            at = i;
                        }
                    }
                    INFO("worst pixel " << at << ": " << r.pixel_bits[at] << " vs " << pix.v[at]);
                    CHECK(worst <= 2 * kRel);
                }
            }
            std::filesystem::remove(base + ".txt");
            std::filesystem::remove(base + ".bin");
        }
    }
}

TEST_CASE("reference: 1 and 2 threads agree", "[reference]") {
    for (const char* vn : {"f32_bias", "int8", "odd_shape"}) {
        DYNAMIC_SECTION("variant " << vn) {
            const std::string& path = ref_model(variant(vn));
            igpt::Model m = igpt::load_model(path);
            const int32_t V = m.cfg.vocab, T = m.cfg.n_ctx();
            auto inputs = random_inputs(8, V, T, 2024);
            std::vector<double> want = ref_logits(path, inputs, V);
            auto be1 = igpt::make_cpu_backend(m, 1);
            auto be2 = igpt::make_cpu_backend(m, 2);
            std::vector<float> l1 = forward_all(*be1, inputs, V);
            std::vector<float> l2 = forward_all(*be2, inputs, V);
            check_close(std::string(vn) + " 2 threads vs reference", l2, want);
            check_close(std::string(vn) + " 2 threads vs 1 thread", l2, l1, 1e-5);
            // Decoding with 2 threads too (the GEMV path).
            const int32_t k = T / 2;
            be2->reset(1);
            std::vector<float> dec(size_t(T) * V);
            be2->forward(inputs[3].data(), 1, k, 0, dec.data(), true);
            for (int32_t p = k; p < T; ++p) be2->forward(&inputs[3][size_t(p)], 1, 1, p, &dec[size_t(p) * V], false);
            check_close(std::string(vn) + " 2-thread decode vs reference", dec,
                        slice(want, 3 * size_t(T) * V, size_t(T) * V));
            // Default thread count (all hardware threads) as well.
            auto be0 = igpt::make_cpu_backend(m, 0);
            check_close(std::string(vn) + " default threads vs 1 thread", forward_all(*be0, inputs, V), l1, 1e-5);
        }
    }
}

TEST_CASE("reference: a tiny-sized model over the full 32x32 context", "[reference][slow]") {
    // The shipped 'tiny' shape (128 wide, 4 layers, 4 heads, 1024 positions, 512 colours): long enough
    // for the kernels' blocked paths; int8 so the realistic per-row scales are exercised too.
    const Variant tiny{"tiny_int8", "--dtype int8 --bias 0 --seed 11 --width 128 --layers 4 --heads 4 "
                                    "--image-h 32 --image-w 32 --vocab 512"};
    const std::string& path = ref_model(tiny);
    igpt::Model m = igpt::load_model(path);
    const int32_t V = m.cfg.vocab, T = m.cfg.n_ctx();
    REQUIRE(T == 1024);
    auto inputs = random_inputs(2, V, T, 3);
    std::vector<double> want = ref_logits(path, inputs, V);
    auto be = igpt::make_cpu_backend(m, 2);
    std::vector<float> got = forward_all(*be, inputs, V);
    check_close("tiny batch 2 uncached", got, want);
    // Prefill the top half, decode 40 tokens of the bottom half.
    be->reset(1);
    const int32_t k = 512;
    std::vector<float> pre(size_t(k) * V);
    be->forward(inputs[1].data(), 1, k, 0, pre.data(), true);
    const size_t TV = size_t(T) * V;
    check_close("tiny prefill", pre, slice(want, TV, size_t(k) * V));
    std::vector<float> dec(40 * size_t(V));
    for (int32_t p = k; p < k + 40; ++p) be->forward(&inputs[1][size_t(p)], 1, 1, p, &dec[size_t(p - k) * V], false);
    check_close("tiny decode", dec, slice(want, TV + size_t(k) * V, 40 * size_t(V)));
}
