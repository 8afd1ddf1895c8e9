// Importing OpenAI's published checkpoints (issue 8). tests/ref/make_foreign.py writes small random models
// with the published names, layouts and file formats (Hugging Face safetensors + JSON; OpenAI's
// TensorFlow bundle + kmeans_centers.npy) and their logits computed in NumPy float64 straight from the
// foreign layout. Checked here:
//   * the C++ CPU backend on the imported model matches those logits within 1e-4 relative;
//   * the project's own reference forward (tests/ref/igpt_ref.py) on the imported f32 file matches them
//     within 1e-5 (two float64 forwards, two layouts of the same weights);
//   * a project model sent through the Hugging Face layout comes back bit for bit;
//   * bad inputs (missing file or tensor, wrong shape, dtype or cluster count, truncated or corrupt files,
//     bad magic, compressed index blocks) fail with one line naming the problem.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend.h"
#include "error.h"
#include "import.h"
#include "model.h"
#include "session.h"
#include "ref_array.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
const char* const kPython = igpt_test::python();

std::string quote(const std::string& s) {
    std::string r = "'";
    for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return r + "'";
}

std::string script(const char* name) { return std::string(IGPT_SOURCE_DIR) + "/tests/ref/" + name; }

// Runs a reference script; a missing NumPy is a failure that says how to fix it, never a skip.
std::string run_py(const std::string& args) {
    const std::string cmd = std::string(kPython) + " " + args;
    const igpt_test::RunResult r = igpt_test::run(cmd);
    INFO("command: " << cmd);
    INFO("output: " << r.output);
    INFO("(the reference needs Debian's python3 with numpy: apt-get install python3 python3-numpy)");
    REQUIRE(r.code == 0);
    return r.output;
}

std::string foreign(const std::string& args) { return run_py(quote(script("make_foreign.py")) + " " + args); }

using igpt_test::read_ref_array;

// Input sequences (position 0 = sos): random, constant 0, constant V-1, a ramp.
std::vector<std::vector<int32_t>> inputs_for(int32_t V, int32_t n) {
    std::vector<std::vector<int32_t>> s(4, std::vector<int32_t>(size_t(n), 0));
    std::mt19937_64 rng(99);
    for (int32_t p = 0; p < n; ++p) {
        s[0][size_t(p)] = int32_t(rng() % uint64_t(V));
        s[2][size_t(p)] = V - 1;
        s[3][size_t(p)] = p % V;
    }
    for (auto& x : s) x[0] = -1;
    return s;
}

std::string write_tokens(const std::string& path, const std::vector<std::vector<int32_t>>& seqs) {
    std::ofstream f(path);
    for (const auto& s : seqs) {
        for (size_t i = 0; i < s.size(); ++i) f << (i ? " " : "") << s[i];
        f << "\n";
    }
    REQUIRE(f.good());
    return path;
}

// |got - want| <= rel * max(|want|, rms(want)); prints the first values and the worst element on failure.
template <class T>
void check_close(const std::string& what, const std::vector<T>& got, const std::vector<double>& want, double rel) {
    REQUIRE(got.size() == want.size());
    double ss = 0;
    for (double w : want) ss += w * w;
    const double rms = std::sqrt(ss / double(std::max<size_t>(want.size(), 1)));
    double worst = 0, max_diff = 0;
    size_t at = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        const double d = std::fabs(double(got[i]) - want[i]);
        const double r = d / (rel * std::max(std::fabs(want[i]), rms) + 1e-300);
        max_diff = std::max(max_diff, d);
        if (!(r <= worst)) {
            worst = r;
            at = i;
        }
    }
    std::ostringstream s;
    s.precision(9);
    s << what << ": worst " << worst << "x the tolerance (" << rel << " relative, reference rms " << rms
      << "), max |diff| " << max_diff << "; first values (got | want):";
    for (size_t i = 0; i < std::min<size_t>(want.size(), 4); ++i) s << " " << got[i] << " | " << want[i] << ";";
    s << " worst at " << at << ": " << got[at] << " vs " << want[at];
    INFO(s.str());
    CHECK(worst <= 1.0);
}

std::vector<float> cpu_logits(const igpt::Model& m, const std::vector<std::vector<int32_t>>& seqs) {
    auto be = igpt::make_cpu_backend(m, 1);
    const int32_t B = int32_t(seqs.size()), n = int32_t(seqs[0].size());
    std::vector<int32_t> toks;
    for (const auto& s : seqs) toks.insert(toks.end(), s.begin(), s.end());
    std::vector<float> out(size_t(B) * size_t(n) * size_t(m.cfg.vocab), std::nanf(""));
    be->reset(B);
    be->forward(toks.data(), B, n, 0, out.data(), true);
    return out;
}

// The project's own reference forward (igpt_ref.py dump) on a model file.
std::vector<double> project_ref_logits(const std::string& model_path, const std::string& tokens_path,
                                       const std::string& out) {
    run_py(quote(script("igpt_ref.py")) + " dump " + quote(model_path) + " " + quote(tokens_path) + " " + quote(out));
    return read_ref_array(out).v;
}

template <class F>
std::string error_of(F f) {
    try {
        f();
    } catch (const igpt::Error& e) {
        return e.what();
    }
    return "(no error)";
}

#define CHECK_IMPORT_ERROR(expr, needle)                                   \
    do {                                                                   \
        const std::string msg_ = error_of([&] { (void)(expr); });          \
        INFO("message: " << msg_);                                         \
        CHECK(msg_.find(needle) != std::string::npos);                     \
        CHECK(msg_.find('\n') == std::string::npos);                       \
    } while (0)

struct Shape {
    std::string name, args;  // make_foreign shape arguments
    int32_t V, n;            // vocab, sequence length
};

const std::vector<Shape>& shapes() {
    static const std::vector<Shape> s = {
        {"default", "--width 32 --layers 2 --heads 4 --image 8 --vocab 16", 16, 64},
        {"odd", "--width 48 --layers 3 --heads 3 --image 4 --vocab 10 --mlp-mult 2 --eps 0.05 --seed 5", 10, 16},
    };
    return s;
}

void resize_file(const std::string& path, uint64_t size) { fs::resize_file(path, size); }

void poke(const std::string& path, int64_t offset_from_end, uint8_t xor_mask) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(0, std::ios::end);
    const int64_t size = f.tellg();
    f.seekg(size - offset_from_end);
    char c;
    f.get(c);
    f.seekp(size - offset_from_end);
    f.put(char(uint8_t(c) ^ xor_mask));
    REQUIRE(f.good());
}

}  // namespace

TEST_CASE("import hf: logits match the Hugging Face layout's own forward pass", "[import]") {
    for (const auto& sh : shapes()) {
        for (const char* dt : {"F32", "F16", "BF16"}) {
            if (sh.name == "odd" && std::string(dt) != "F32") continue;
            DYNAMIC_SECTION(sh.name << " " << dt) {
                const std::string d = igpt_test::temp_dir(std::string("import_hf_") + sh.name + dt);
                auto inputs = inputs_for(sh.V, sh.n);
                const std::string toks = write_tokens(d + "/tokens.txt", inputs);
                foreign("hf " + quote(d + "/m") + " " + sh.args + " --dtype " + dt + " --tokens " + quote(toks) +
                        " --logits " + quote(d + "/want.bin"));
                const igpt_test::RefArray ref = read_ref_array(d + "/want.bin");
                const std::vector<double>& want = ref.v;
                REQUIRE(ref.dims == std::vector<int64_t>{4, sh.n, sh.V});

                const igpt::Model m = igpt::import_hf({d + "/m"});
                CHECK(m.cfg.vocab == sh.V);
                CHECK(m.cfg.n_ctx() == sh.n);
                CHECK(m.cfg.bias);
                CHECK(m.palette.k() == sh.V);
                check_close(sh.name + " " + dt + ": C++ CPU backend vs HF-layout reference", cpu_logits(m, inputs), want, 1e-4);

                // The project's own float64 reference on the imported weights: the same function.
                igpt::save_model(m, d + "/imported.safetensors", igpt::DType::F32);
                check_close(sh.name + " " + dt + ": igpt_ref.py on the imported file vs HF-layout reference",
                            project_ref_logits(d + "/imported.safetensors", toks, d + "/proj.bin"), want, 1e-5);
            }
        }
    }
}

TEST_CASE("import tf: logits match OpenAI's TensorFlow layout's own forward pass", "[import]") {
    for (const auto& sh : shapes()) {
        for (int shards : {1, 3}) {
            DYNAMIC_SECTION(sh.name << " shards " << shards) {
                const std::string d = igpt_test::temp_dir("import_tf_" + sh.name + std::to_string(shards));
                auto inputs = inputs_for(sh.V, sh.n);
                const std::string toks = write_tokens(d + "/tokens.txt", inputs);
                foreign("tf " + quote(d + "/m") + " " + sh.args + " --shards " + std::to_string(shards) + " --tokens " +
                        quote(toks) + " --logits " + quote(d + "/want.bin"));
                const std::vector<double> want = read_ref_array(d + "/want.bin").v;

                const igpt::Model m = igpt::import_tf(d + "/m/model.ckpt-7", d + "/m/kmeans_centers.npy");
                CHECK(m.cfg.vocab == sh.V);
                CHECK(m.cfg.n_ctx() == sh.n);
                CHECK_FALSE(m.cfg.bias);
                CHECK(m.cfg.name == "custom");
                check_close(sh.name + ": C++ CPU backend vs TF-layout reference", cpu_logits(m, inputs), want, 1e-4);
                igpt::save_model(m, d + "/imported.safetensors", igpt::DType::F32);
                check_close(sh.name + ": igpt_ref.py on the imported file vs TF-layout reference",
                            project_ref_logits(d + "/imported.safetensors", toks, d + "/proj.bin"), want, 1e-5);
                // The ".index" path is accepted as the prefix too.
                const igpt::Model m2 = igpt::import_tf(d + "/m/model.ckpt-7.index", d + "/m/kmeans_centers.npy");
                CHECK(m2.params == m.params);
            }
        }
    }
}

TEST_CASE("import hf: a project model comes back bit for bit through the Hugging Face layout", "[import]") {
    for (bool bias : {false, true}) {
        DYNAMIC_SECTION("bias " << bias) {
            const std::string d = igpt_test::temp_dir(std::string("import_roundtrip") + (bias ? "1" : "0"));
            const igpt::Model orig = igpt_test::small_model(3, bias);
            igpt::save_model(orig, d + "/orig.safetensors");
            foreign("hf-from-igpt " + quote(d + "/orig.safetensors") + " " + quote(d + "/hf"));
            // Files given one by one instead of the folder.
            const igpt::Model m = igpt::import_hf(
                {d + "/hf/preprocessor_config.json", d + "/hf/model.safetensors", d + "/hf/config.json"});
            CHECK(m.cfg.bias);  // the HF layout always carries biases (zeros here when the original had none)
            CHECK(m.palette.rgb() == orig.palette.rgb());
            for (const auto& s : orig.specs) {
                const auto it = std::find_if(m.specs.begin(), m.specs.end(), [&](const igpt::ParamSpec& t) { return t.name == s.name; });
                REQUIRE(it != m.specs.end());
                INFO(s.name);
                CHECK(std::equal(orig.params.begin() + long(s.offset), orig.params.begin() + long(s.offset + s.numel),
                                 m.params.begin() + long(it->offset)));
            }
        }
    }
}

TEST_CASE("import: the CLI writes f32, f16 and int8 files; int8 moves bits per pixel little", "[import]") {
    const std::string d = igpt_test::temp_dir("import_cli");
    foreign("hf " + quote(d + "/hf") + " --width 64 --layers 2 --heads 4 --image 8 --vocab 32 --seed 11");
    foreign("tf " + quote(d + "/tf") + " --width 64 --layers 2 --heads 4 --image 8 --vocab 32 --seed 12");
    std::vector<igpt::Model> models;
    for (const char* dt : {"f32", "f16", "int8"}) {
        const std::string out = d + "/m_" + dt + ".safetensors";
        const auto r = igpt_test::run(igpt_test::cli() + " import hf " + quote(d + "/hf") + " -o " + quote(out) + " --dtype " + dt);
        INFO(r.output);
        REQUIRE(r.code == 0);
        CHECK(r.output.find("wrote") != std::string::npos);
        models.push_back(igpt::load_model(out));
        const auto t = igpt_test::run(igpt_test::cli() + " import tf " + quote(d + "/tf/model.ckpt-7") + " --clusters " +
                                      quote(d + "/tf/kmeans_centers.npy") + " -o " + quote(d + "/t_" + dt + ".safetensors") +
                                      " --dtype " + dt);
        INFO(t.output);
        CHECK(t.code == 0);
    }
    const auto sz = [&](const char* n) { return fs::file_size(d + "/" + n); };
    CHECK(sz("m_f16.safetensors") < sz("m_f32.safetensors"));
    CHECK(sz("m_int8.safetensors") < sz("m_f16.safetensors"));
    CHECK(models[2].file_dtype == igpt::DType::I8);

    // Bits per pixel of smooth-ish images under f32, f16 and int8 weights of the same imported model.
    const int32_t T = models[0].cfg.n_ctx(), V = models[0].cfg.vocab, n_images = 16;
    std::vector<int32_t> toks(size_t(n_images) * T);
    std::mt19937_64 rng(5);
    for (int32_t i = 0; i < n_images; ++i)
        for (int32_t p = 0; p < T; ++p)
            toks[size_t(i) * T + p] = (rng() % 4 == 0) ? int32_t(rng() % uint64_t(V)) : (p / 5 + i) % V;
    std::vector<double> bpp;
    for (const auto& m : models) {
        auto be = igpt::make_cpu_backend(m, 1);
        bpp.push_back(igpt::image_nll(m, *be, toks, n_images).bits_per_pixel);
    }
    WARN("imported random model, bits per pixel: f32 " << bpp[0] << ", f16 " << bpp[1] << " (" << bpp[1] - bpp[0]
                                                       << "), int8 " << bpp[2] << " (" << bpp[2] - bpp[0] << ")");
    CHECK(std::fabs(bpp[1] - bpp[0]) < 0.01);
    CHECK(std::fabs(bpp[2] - bpp[0]) < 0.05);  // random weights: a loose bound; trained models: see docs/import.md
}

TEST_CASE("import hf: bad inputs fail with one line naming the problem", "[import]") {
    const std::string d = igpt_test::temp_dir("import_hf_bad");
    const std::string base = "--width 32 --layers 2 --heads 4 --image 4 --vocab 16";
    auto make = [&](const std::string& name, const std::string& extra) {
        foreign("hf " + quote(d + "/" + name) + " " + base + " " + extra);
        return d + "/" + name;
    };
    {
        const std::string p = make("no_config", "");
        fs::remove(p + "/config.json");
        CHECK_IMPORT_ERROR(igpt::import_hf({p}), "config.json is missing");
    }
    {
        const std::string p = make("no_pre", "");
        fs::remove(p + "/preprocessor_config.json");
        CHECK_IMPORT_ERROR(igpt::import_hf({p}), "preprocessor_config.json is missing");
    }
    CHECK_IMPORT_ERROR(igpt::import_hf({d + "/does_not_exist"}), "does_not_exist");
    {
        const std::string p = make("bin_only", "");
        fs::remove(p + "/model.safetensors");
        std::ofstream(p + "/pytorch_model.bin") << "x";
        CHECK_IMPORT_ERROR(igpt::import_hf({p}), "convert them to model.safetensors");
    }
    CHECK_IMPORT_ERROR(igpt::import_hf({make("drop", "--drop transformer.h.1.mlp.c_fc.bias")}),
                       "lacks tensor 'transformer.h.1.mlp.c_fc.bias'");
    CHECK_IMPORT_ERROR(igpt::import_hf({make("no_head", "--drop lm_head.weight")}), "lm_head.weight");
    CHECK_IMPORT_ERROR(igpt::import_hf({make("shape", "--transpose transformer.h.0.attn.c_attn.weight")}),
                       "tensor 'transformer.h.0.attn.c_attn.weight' of");
    CHECK_IMPORT_ERROR(igpt::import_hf({d + "/shape"}), "has shape [96, 32], expected [32, 96]");
    CHECK_IMPORT_ERROR(igpt::import_hf({make("dtype", "--int-tensor transformer.wpe.weight")}), "has dtype I32");
    CHECK_IMPORT_ERROR(igpt::import_hf({make("clusters", "--clusters 15")}), "holds 15 colour clusters, the model has 16 colours");
    {
        const std::string p = make("trunc", "");
        resize_file(p + "/model.safetensors", fs::file_size(p + "/model.safetensors") - 100);
        CHECK_IMPORT_ERROR(igpt::import_hf({p}), "is truncated");
        resize_file(p + "/model.safetensors", 4);
        CHECK_IMPORT_ERROR(igpt::import_hf({p}), "not a safetensors file");
    }
    {
        const std::string p = make("act", "");
        std::ifstream in(p + "/config.json");
        std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        cfg.replace(cfg.find("quick_gelu"), 10, "gelu_new");
        std::ofstream(p + "/config.json") << cfg;
        CHECK_IMPORT_ERROR(igpt::import_hf({p}), "only \"quick_gelu\"");
    }
    // Through the CLI: exit status 1 and the message on one line prefixed with "igpt: ".
    const auto r = igpt_test::run(igpt_test::cli() + " import hf " + quote(d + "/drop") + " -o " + quote(d + "/x.safetensors"));
    INFO(r.output);
    CHECK(r.code == 1);
    CHECK(r.output.find("igpt: ") != std::string::npos);
    CHECK(r.output.find("lacks tensor 'transformer.h.1.mlp.c_fc.bias'\n") != std::string::npos);
    CHECK_FALSE(fs::exists(d + "/x.safetensors"));
}

TEST_CASE("import tf: bad inputs fail with one line naming the problem", "[import]") {
    const std::string d = igpt_test::temp_dir("import_tf_bad");
    const std::string base = "--width 32 --layers 2 --heads 4 --image 4 --vocab 16";
    auto make = [&](const std::string& name, const std::string& extra) {
        foreign("tf " + quote(d + "/" + name) + " " + base + " " + extra);
        return d + "/" + name;
    };
    auto imp = [](const std::string& p, const std::string& config = "") {
        return igpt::import_tf(p + "/model.ckpt-7", p + "/kmeans_centers.npy", config);
    };
    const std::string good = make("good", "");
    CHECK_NOTHROW(imp(good));
    CHECK_IMPORT_ERROR(igpt::import_tf(d + "/nothing/model.ckpt-7", good + "/kmeans_centers.npy"), "cannot open");
    CHECK_IMPORT_ERROR(imp(make("drop", "--drop model/h1/ln_2/g")), "lacks tensor 'model/h1/ln_2/g'");
    CHECK_IMPORT_ERROR(imp(make("shape", "--transpose model/h1/mlp/c_fc/w")),
                       "tensor 'model/h1/mlp/c_fc/w' of");
    CHECK_IMPORT_ERROR(imp(d + "/shape"), "has shape [128, 32], expected [32, 128]");
    CHECK_IMPORT_ERROR(imp(make("clusters", "--clusters 15")), "holds 15 colour clusters");
    CHECK_IMPORT_ERROR(imp(good, "S"), "is not iGPT-S: its width is 32, S has 512");
    {
        const std::string p = make("compressed", "--compressed");
        CHECK_IMPORT_ERROR(imp(p), "is compressed (type 1, Snappy); only uncompressed index blocks are supported");
    }
    {
        const std::string p = make("magic", "");
        poke(p + "/model.ckpt-7.index", 1, 0xff);  // last byte of the magic
        CHECK_IMPORT_ERROR(imp(p), "not a TensorFlow checkpoint index (bad table magic");
    }
    {
        const std::string p = make("trunc_index", "");
        resize_file(p + "/model.ckpt-7.index", 20);
        CHECK_IMPORT_ERROR(imp(p), "is truncated or not a TensorFlow checkpoint index");
    }
    {
        const std::string p = make("corrupt_index", "");
        poke(p + "/model.ckpt-7.index", 200, 0x5a);  // inside a block
        CHECK_IMPORT_ERROR(imp(p), "model.ckpt-7.index");
    }
    {
        const std::string p = make("trunc_data", "--shards 1");
        const std::string shard = p + "/model.ckpt-7.data-00000-of-00001";
        resize_file(shard, fs::file_size(shard) / 2);
        CHECK_IMPORT_ERROR(imp(p), "is truncated");
    }
    {
        const std::string p = make("crc", "--shards 1");
        poke(p + "/model.ckpt-7.data-00000-of-00001", 40, 0x01);
        CHECK_IMPORT_ERROR(imp(p), "fails its checksum");
    }
    {
        const std::string p = make("shard_missing", "--shards 2");
        fs::remove(p + "/model.ckpt-7.data-00001-of-00002");
        CHECK_IMPORT_ERROR(imp(p), "model.ckpt-7.data-00001-of-00002");
    }
    {
        const std::string p = make("npy", "");
        std::ofstream(p + "/kmeans_centers.npy") << "not numpy";
        CHECK_IMPORT_ERROR(imp(p), "is not a usable .npy file");
    }
    const auto r = igpt_test::run(igpt_test::cli() + " import tf " + quote(d + "/compressed/model.ckpt-7") + " --clusters " +
                                  quote(good + "/kmeans_centers.npy") + " -o " + quote(d + "/x.safetensors"));
    INFO(r.output);
    CHECK(r.code == 1);
    CHECK(r.output.find("igpt: ") != std::string::npos);
}
