// Representation learning (src/probe/, `igpt features | probe | finetune | classify`): on a tiny synthetic
// ImageFolder whose three classes differ by colour, the probe separates them; features have the documented
// shapes; the backend's pooled features equal the training forward's norms averaged by hand; the logistic
// regression and the classification head's gradient match finite differences; fine-tuning lowers the
// classification loss; the model file keeps the head; bad inputs get one clear line.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "backend.h"
#include "error.h"
#include "finetune.h"
#include "image.h"
#include "image_features.h"
#include "logreg.h"
#include "model.h"
#include "npy.h"
#include "test_util.h"
#include "train_model.h"

using namespace igpt;
namespace pr = igpt::probe;
namespace fs = std::filesystem;

namespace {

const uint8_t kClassColours[3][3] = {{200, 40, 40}, {40, 180, 60}, {50, 70, 210}};

// 3 classes x `per_class` 16x16 PNGs: noise around a class colour, plus a random lighter/darker stripe so
// that no two images are alike.
std::string make_colour_folder(const std::string& name, int per_class, uint32_t seed) {
    const std::string dir = igpt_test::temp_dir(name);
    const char* names[3] = {"red", "green", "blue"};
    std::mt19937 g(seed);
    std::normal_distribution<float> noise(0.0f, 18.0f);
    for (int c = 0; c < 3; c++) {
        fs::create_directories(dir + "/" + names[c]);
        for (int i = 0; i < per_class; i++) {
            Image img;
            img.w = img.h = 16;
            img.rgb.resize(16 * 16 * 3);
            const int stripe = int(g() % 16);
            for (int p = 0; p < 256; p++)
                for (int k = 0; k < 3; k++) {
                    float v = kClassColours[c][k] + noise(g) + (p / 16 == stripe ? 30.0f : 0.0f);
                    img.rgb[size_t(p) * 3 + size_t(k)] = uint8_t(std::clamp(v, 0.0f, 255.0f));
                }
            char f[64];
            std::snprintf(f, sizeof f, "/%s/%03d.png", names[c], i);
            write_png(dir + f, img);
        }
    }
    return dir;
}

// The tests' small model (8x8, 16 colours) with a palette that spans the class colours and greys.
Model colour_model(uint64_t seed = 3) {
    Model m = igpt_test::small_model(seed);
    std::vector<uint8_t> rgb;
    for (int i = 0; i < 16; i++) {
        const uint8_t* c = kClassColours[i % 3];
        const float s = 0.55f + 0.1f * float(i / 3);  // 6 shades of each class colour, one grey
        for (int k = 0; k < 3; k++) rgb.push_back(i == 15 ? 128 : uint8_t(std::min(255.0f, c[k] * s)));
    }
    m.palette = Palette(rgb);
    return m;
}

std::string save_colour_model(const std::string& dir) {
    const std::string p = dir + "/model.safetensors";
    save_model(colour_model(), p);
    return p;
}

nlohmann::json read_json(const std::string& path) {
    std::ifstream f(path);
    return nlohmann::json::parse(f);
}

// The last line of a command's output (the error line).
std::string last_line(const std::string& s) {
    std::string t = s;
    while (!t.empty() && t.back() == '\n') t.pop_back();
    const size_t p = t.rfind('\n');
    return p == std::string::npos ? t : t.substr(p + 1);
}

}  // namespace

TEST_CASE("probe: balanced subsets take an equal share of every class", "[probe]") {
    std::vector<int32_t> labels;
    for (int i = 0; i < 100; i++) labels.push_back(i < 70 ? 0 : i < 90 ? 1 : 2);  // 70 / 20 / 10
    const auto pick = pr::balanced_subset(labels, 30, 5);
    REQUIRE(pick.size() == 30);
    int count[3] = {0, 0, 0};
    for (int64_t i : pick) count[labels[size_t(i)]]++;
    CHECK(count[0] == 10);
    CHECK(count[1] == 10);
    CHECK(count[2] == 10);
    CHECK(pr::balanced_subset(labels, 30, 5) == pick);  // seeded
    CHECK(pr::balanced_subset(labels, 30, 6) != pick);
    // a small class gives its share to the others
    const auto big = pr::balanced_subset(labels, 60, 1);
    int c2 = 0;
    for (int64_t i : big) c2 += labels[size_t(i)] == 2;
    CHECK(big.size() == 60);
    CHECK(c2 == 10);
}

TEST_CASE("probe: logistic regression gradient matches finite differences", "[probe]") {
    const int64_t n = 23, D = 5;
    const int32_t K = 3;
    std::mt19937 g(11);
    std::normal_distribution<double> nd(0.0, 1.0);
    std::vector<double> X(size_t(n * D)), theta(size_t(K * D + K));
    std::vector<int32_t> y(static_cast<size_t>(n));
    for (double& v : X) v = nd(g);
    for (double& v : theta) v = 0.5 * nd(g);
    for (int32_t& v : y) v = int32_t(g() % K);
    const double l2 = 0.3;
    std::vector<double> grad(theta.size());
    pr::logreg_loss<double>(X.data(), y.data(), n, D, K, theta.data(), l2, grad.data(), nullptr);
    double worst = 0;
    for (size_t i = 0; i < theta.size(); i++) {
        const double h = 1e-6, t0 = theta[i];
        theta[i] = t0 + h;
        const double fp = pr::logreg_loss<double>(X.data(), y.data(), n, D, K, theta.data(), l2, nullptr, nullptr);
        theta[i] = t0 - h;
        const double fm = pr::logreg_loss<double>(X.data(), y.data(), n, D, K, theta.data(), l2, nullptr, nullptr);
        theta[i] = t0;
        const double num = (fp - fm) / (2 * h);
        worst = std::max(worst, std::abs(num - grad[i]) / std::max(1e-3, std::abs(num)));
    }
    INFO("largest relative difference " << worst);
    CHECK(worst < 1e-6);
    // the float path agrees with the double one
    std::vector<float> Xf(X.begin(), X.end());
    std::vector<double> gradf(theta.size());
    const double lf = pr::logreg_loss<float>(Xf.data(), y.data(), n, D, K, theta.data(), l2, gradf.data(), nullptr);
    const double ld = pr::logreg_loss<double>(X.data(), y.data(), n, D, K, theta.data(), l2, nullptr, nullptr);
    CHECK(lf == Approx(ld).epsilon(1e-5));
    for (size_t i = 0; i < theta.size(); i++) CHECK(gradf[i] == Approx(grad[i]).margin(1e-5));
}

TEST_CASE("probe: classification head gradient through the network matches finite differences", "[probe]") {
    const ModelConfig c = igpt_test::micro_config(false);
    std::vector<uint8_t> rgb(33);
    for (size_t i = 0; i < rgb.size(); i++) rgb[i] = uint8_t(i * 37);
    Model m = init_model(c, Palette(rgb), 5);
    std::mt19937 g(4);
    std::normal_distribution<double> nd(0.0, 0.3);
    std::vector<double> p(m.params.begin(), m.params.end());
    for (double& v : p) v = v * 10 + 0.05 * nd(g);
    for (const ParamSpec& s : m.specs)
        if (s.name.size() > 2 && s.name.compare(s.name.size() - 2, 2, ".g") == 0)
            for (size_t i = 0; i < s.numel; i++) p[s.offset + i] = 1.0 + nd(g);
    const int32_t K = 3, label = 2;
    std::vector<double> head(size_t(K) * 8 + K);
    for (double& v : head) v = nd(g) * 3;
    std::vector<int32_t> tok(12);
    for (int32_t& t : tok) t = int32_t(g() % 11);
    const double scale = 0.37, alpha = 1.3;

    train::Net<double> net(c);
    auto loss = [&](const std::vector<double>& params, const std::vector<double>& hd) {
        train::Weights<double> w = train::bind_weights(c, const_cast<double*>(params.data()));
        const double nll = net.forward(w, tok.data());
        std::vector<double> pooled(8);
        net.pooled_lnf(pooled.data());
        return scale * nll + alpha * train::clf_head<double>(pooled.data(), hd.data(), hd.data() + K * 8, K, 8, label,
                                                             0, nullptr, nullptr, nullptr);
    };
    std::vector<double> grad(p.size(), 0.0), hgrad(head.size(), 0.0), dpooled(8), pooled(8);
    {
        train::Weights<double> w = train::bind_weights(c, p.data());
        train::Weights<double> gw = train::bind_weights(c, grad.data());
        net.forward(w, tok.data());
        net.pooled_lnf(pooled.data());
        train::clf_head<double>(pooled.data(), head.data(), head.data() + K * 8, K, 8, label, alpha, hgrad.data(),
                                hgrad.data() + K * 8, dpooled.data());
        net.backward(w, tok.data(), scale, gw, dpooled.data());
    }
    double worst = 0;
    auto check = [&](std::vector<double>& v, size_t i, double analytic) {
        const double h = 1e-6, v0 = v[i];
        v[i] = v0 + h;
        const double fp = loss(p, head);
        v[i] = v0 - h;
        const double fm = loss(p, head);
        v[i] = v0;
        const double num = (fp - fm) / (2 * h);
        worst = std::max(worst, std::abs(num - analytic) / std::max(1e-4, std::abs(num)));
    };
    for (size_t i = 0; i < p.size(); i += 7) check(p, i, grad[i]);
    for (size_t i = 0; i < head.size(); i++) check(head, i, hgrad[i]);
    INFO("largest relative difference " << worst);
    CHECK(worst < 1e-4);  // central differences, h = 1e-6: 1.9e-5 seen on another machine (its libm)
}

TEST_CASE("probe: pooled_features equal the training forward's norms averaged over positions", "[probe]") {
    for (bool bias : {false, true}) {
        Model m = igpt_test::small_model(9, bias, 32, 3);
        const int64_t T = m.cfg.n_ctx(), C = m.cfg.width, L = m.cfg.layers, n = 3;
        std::mt19937 g(2);
        std::vector<int32_t> tokens(size_t(n * T));
        for (int32_t& t : tokens) t = int32_t(g() % uint32_t(m.cfg.vocab));
        auto backend = make_cpu_backend(m, 2);
        std::vector<int32_t> layers;
        for (int32_t l = 0; l <= L; l++) layers.push_back(l);
        // batch 2 for 3 images: a full and a partial batch
        const std::vector<float> f = pr::extract_features(*backend, m.cfg, tokens.data(), n, layers, 2);
        REQUIRE(f.size() == size_t((L + 1) * n * C));

        std::vector<double> p(m.params.begin(), m.params.end());
        train::Net<double> net(m.cfg);
        const train::Weights<double> w = train::bind_weights(m.cfg, p.data());
        double worst = 0;
        for (int64_t i = 0; i < n; i++) {
            net.forward(w, &tokens[size_t(i * T)]);
            for (int64_t l = 0; l <= L; l++) {
                const auto& a = l < L ? net.acts.layers[size_t(l)].ln1 : net.acts.lnf;
                for (int64_t c = 0; c < C; c++) {
                    double ref = 0;
                    for (int64_t t = 0; t < T; t++) ref += a[size_t(t * C + c)];
                    ref /= double(T);
                    const double got = f[size_t((l * n + i) * C + c)];
                    worst = std::max(worst, std::abs(got - ref) / (1e-3 + std::abs(ref)));
                }
            }
        }
        INFO("bias " << bias << ": largest relative difference " << worst);
        CHECK(worst < 1e-4);
    }
    // layer out of range: one line naming it
    Model m = igpt_test::small_model(1);
    auto backend = make_cpu_backend(m, 1);
    std::vector<int32_t> tokens(size_t(m.cfg.n_ctx()), 0);
    CHECK_THROWS_WITH(pr::extract_features(*backend, m.cfg, tokens.data(), 1, {3}, 1),
                      Catch::Contains("layer 3 is out of range: the model has layers 0..2"));
}

TEST_CASE("probe: model file keeps a classification head and validates it", "[probe]") {
    const std::string dir = igpt_test::temp_dir("probe_head");
    Model m = igpt_test::small_model(2);
    const int64_t C = m.cfg.width;
    m.classes = {"red", "green", "blue"};
    for (int64_t i = 0; i < 3 * C; i++) m.clf_w.push_back(0.01f * float(i));
    m.clf_b = {0.5f, -0.25f, 1.0f};
    for (DType dt : {DType::I8, DType::F32}) {  // F32 last: compared below
        save_model(m, dir + "/h.safetensors", dt);
        const Model r = load_model(dir + "/h.safetensors");
        CHECK(r.classes == m.classes);
        CHECK(r.clf_w == m.clf_w);  // always F32
        CHECK(r.clf_b == m.clf_b);
    }
    // a model without a head still loads as before, and the head changes nothing for generation
    Model plain = igpt_test::small_model(2);
    save_model(plain, dir + "/p.safetensors");
    const Model rp = load_model(dir + "/p.safetensors");
    CHECK_FALSE(rp.has_head());
    CHECK(rp.params == load_model(dir + "/h.safetensors").params);

    // damaged heads: rewrite the header's JSON (and its length) by hand
    auto patched = [&](const std::function<void(nlohmann::json&)>& edit) {
        std::vector<uint8_t> b = serialize_model(m);
        uint64_t hl = 0;
        for (int i = 0; i < 8; i++) hl |= uint64_t(b[size_t(i)]) << (8 * i);
        nlohmann::json h = nlohmann::json::parse(b.begin() + 8, b.begin() + 8 + ptrdiff_t(hl));
        edit(h);
        std::string s = h.dump();
        while (s.size() < hl) s.push_back(' ');
        REQUIRE(s.size() == hl);  // the edits only shorten the header
        std::memcpy(b.data() + 8, s.data(), s.size());
        return b;
    };
    auto load_err = [&](const std::vector<uint8_t>& b) {
        try {
            load_model_from_memory(b.data(), b.size(), "m.safetensors");
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string("(no error)");
    };
    CHECK(load_err(patched([](nlohmann::json& h) { h["__metadata__"].erase("igpt.classes"); })) ==
          "m.safetensors: tensor 'clf.w'/'clf.b' (a classification head) without the \"igpt.classes\" metadata naming "
          "its classes");
    CHECK(load_err(patched([](nlohmann::json& h) { h["__metadata__"]["igpt.classes"] = "[\"a\",\"b\"]"; })) ==
          "m.safetensors: tensor 'clf.w' has shape [3, 32], the config needs [2, 32]");
    CHECK(load_err(patched([](nlohmann::json& h) { h["__metadata__"]["igpt.classes"] = "{}"; })) ==
          "m.safetensors: metadata \"igpt.classes\" is not a JSON array of 1 to 100000 class names");
    CHECK(load_err(patched([](nlohmann::json& h) { h.erase("clf.b"); })) == "m.safetensors: missing tensor 'clf.b'");
}

TEST_CASE("probe: fine-tuning lowers the classification loss and stores the head", "[probe]") {
    const std::string data = make_colour_folder("probe_ft_data", 6, 21);
    pr::LabelledImages imgs = pr::load_labelled_images(data, 0, 1, 8, 8, 2);
    REQUIRE(imgs.n == 18);
    REQUIRE(imgs.classes == std::vector<std::string>{"blue", "green", "red"});
    Model m = colour_model();
    const std::vector<int32_t> tokens = pr::quantize_images(imgs, m.palette, 2);
    pr::FinetuneOptions o;
    o.steps = 40;
    o.batch = 6;
    o.lr = 1e-3f;
    o.warmup = 2;
    o.head_init = "zero";
    o.threads = 2;
    const pr::FinetuneResult r = pr::finetune(m, tokens, imgs.labels, imgs.classes, o);
    INFO("classification loss " << r.first_clf_loss << " -> " << r.last_clf_loss);
    CHECK(r.steps == 40);
    CHECK(r.first_clf_loss == Approx(std::log(3.0)).epsilon(0.2));  // zero head: near uniform
    CHECK(r.last_clf_loss < 0.5 * r.first_clf_loss);
    REQUIRE(m.has_head());
    auto backend = make_cpu_backend(m, 2);
    const auto pred = pr::argmax_rows(pr::classify_logits(*backend, m, tokens.data(), imgs.n, 4), 3);
    CHECK(pr::accuracy(pred, imgs.labels.data()) >= 0.95);
}

TEST_CASE("probe: CLI features, probe, finetune and classify on a colour-separable folder", "[probe]") {
    const std::string data = make_colour_folder("probe_cli_data", 10, 5);
    const std::string dir = igpt_test::temp_dir("probe_cli");
    const std::string model = save_colour_model(dir);
    const std::string cli = igpt_test::cli();

    // features of all layers: (L+1, n, C) float32 + int32 labels
    auto r = igpt_test::run(cli + " features " + model + " " + data + " -o " + dir + "/f.npy -j 2");
    INFO(r.output);
    REQUIRE(r.code == 0);
    const auto f = pr::read_npy_f32(dir + "/f.npy", 2, 3);
    CHECK(f.shape == std::vector<int64_t>{3, 30, 32});
    const auto l = pr::read_npy_i32(dir + "/f.labels.npy", 1, 1);
    CHECK(l.shape == std::vector<int64_t>{30});
    CHECK(std::count(l.v.begin(), l.v.end(), 1) == 10);
    // one layer, a balanced subset: (n, C)
    r = igpt_test::run(cli + " features " + model + " " + data + " --layer 1 --limit 9 -o " + dir + "/f1.npy");
    REQUIRE(r.code == 0);
    CHECK(pr::read_npy_f32(dir + "/f1.npy", 2, 2).shape == std::vector<int64_t>{9, 32});
    const auto l1 = pr::read_npy_i32(dir + "/f1.labels.npy", 1, 1);
    CHECK(std::count(l1.v.begin(), l1.v.end(), 0) == 3);
    // raw pixels: (n, 32*32*3)
    r = igpt_test::run(cli + " features --raw " + data + " -o " + dir + "/raw.npy");
    REQUIRE(r.code == 0);
    CHECK(pr::read_npy_f32(dir + "/raw.npy", 2, 2).shape == std::vector<int64_t>{30, 3072});

    // the probe separates the colours at every layer, and on raw pixels
    r = igpt_test::run(cli + " probe " + model + " --train " + data + " --with-raw -o " + dir + "/probe.png --json " +
                       dir + "/probe.json -j 2");
    INFO(r.output);
    REQUIRE(r.code == 0);
    const auto j = read_json(dir + "/probe.json");
    REQUIRE(j["layers"].size() == 3);
    for (const auto& e : j["layers"]) CHECK(e["test_acc"].get<double>() >= 0.95);
    CHECK(j["raw"]["test_acc"].get<double>() >= 0.95);
    CHECK(j.contains("best_layer"));
    CHECK(fs::file_size(dir + "/probe.png") > 1000);
    r = igpt_test::run(cli + " probe --replot " + dir + "/probe.json -o " + dir + "/replot.png");
    CHECK(r.code == 0);
    CHECK(fs::file_size(dir + "/replot.png") > 1000);
    // the same probe from saved features
    r = igpt_test::run(cli + " probe --train-features " + dir + "/f.npy --test-features " + dir + "/f.npy --json " +
                       dir + "/probe2.json");
    REQUIRE(r.code == 0);
    CHECK(read_json(dir + "/probe2.json")["layers"][0]["test_acc"].get<double>() >= 0.95);

    // fine-tune -> a model with a head that classify reads
    r = igpt_test::run(cli + " finetune " + model + " --train " + data + " --test " + data + " -o " + dir +
                       "/ft.safetensors --steps 20 --batch 6 --lr 1e-3 --warmup 2 --head-init-images 12 -j 2");
    INFO(r.output);
    REQUIRE(r.code == 0);
    CHECK(r.output.find("test accuracy of the head") != std::string::npos);
    r = igpt_test::run(cli + " classify " + dir + "/ft.safetensors " + data);
    REQUIRE(r.code == 0);
    CHECK(r.output.find("accuracy") != std::string::npos);
    r = igpt_test::run(cli + " classify " + dir + "/ft.safetensors " + data + "/red/000.png");
    REQUIRE(r.code == 0);
    CHECK(r.output.find("\tred\t") != std::string::npos);
    r = igpt_test::run(cli + " info " + dir + "/ft.safetensors");
    CHECK(r.output.find("classifier:  3 classes (blue, green, red)") != std::string::npos);
    // the fine-tuned file still generates
    r = igpt_test::run(cli + " sample " + dir + "/ft.safetensors -n 1 -o " + dir + "/s.png");
    CHECK(r.code == 0);
}

TEST_CASE("probe: bad inputs get one line naming the problem", "[probe]") {
    const std::string dir = igpt_test::temp_dir("probe_bad");
    const std::string model = save_colour_model(dir);
    const std::string data = make_colour_folder("probe_bad_data", 2, 9);
    const std::string cli = igpt_test::cli();
    std::vector<float> f10(40, 0.5f);
    std::vector<int32_t> y9(9, 0), y10(10, 1);
    pr::write_npy_f32(dir + "/f.npy", f10.data(), {10, 4});
    pr::write_npy_i32(dir + "/f.labels.npy", y9.data(), {9});
    pr::write_npy_f32(dir + "/g.npy", f10.data(), {10, 4});
    pr::write_npy_f32(dir + "/g.labels.npy", f10.data(), {10});  // float labels
    pr::write_npy_f32(dir + "/r1.npy", f10.data(), {40});        // rank 1 features
    pr::write_npy_i32(dir + "/r1.labels.npy", y10.data(), {10});
    fs::create_directories(dir + "/empty");
    fs::create_directories(dir + "/flat");
    fs::copy_file(data + "/red/000.png", dir + "/flat/a.png");
    fs::copy_file(data + "/blue/000.png", dir + "/flat/b.png");
    {
        std::ofstream t(dir + "/notnpy.npy");
        t << "hello";
    }

    struct Case {
        std::string args, message;
    };
    const std::vector<Case> cases = {
        {"probe --train-features " + dir + "/f.npy --test-features " + dir + "/f.npy",
         dir + "/f.npy holds 10 feature rows but " + dir + "/f.labels.npy holds 9 labels"},
        {"probe --train-features " + dir + "/g.npy --test-features " + dir + "/g.npy",
         dir + "/g.labels.npy: dtype <f4, expected <i4"},
        {"probe --train-features " + dir + "/r1.npy --test-features " + dir + "/r1.npy",
         dir + "/r1.npy: array of shape (40) has rank 1, expected 2 to 3"},
        {"probe --train-features " + dir + "/notnpy.npy --test-features " + dir + "/f.npy",
         dir + "/notnpy.npy: not a usable .npy file: bad magic (expected \\x93NUMPY)"},
        {"probe --train-features " + dir + "/nope.npy --test-features " + dir + "/f.npy",
         "cannot open " + dir + "/nope.npy: No such file or directory"},
        {"features " + model + " " + data + " --layer 3", "--layer 3 is out of range: the model has layers 0..2"},
        {"features " + model + " " + data + " --layer x", "--layer must be a number or 'all', not 'x'"},
        {"features " + model + " " + dir + "/empty", "no images found"},
        {"features " + model + " " + dir + "/missing", dir + "/missing: no such file or directory"},
        {"features " + dir + "/none.safetensors " + data, "cannot open " + dir + "/none.safetensors"},
        {"probe " + model + " --train " + dir + "/flat", "has no class labels (a flat folder?)"},
        {"probe --raw --train " + data + " --test " + dir + "/flat", "has no class labels"},
        {"finetune " + model + " --train " + dir + "/flat -o " + dir + "/x.safetensors", "has no class labels"},
        {"classify " + model + " " + data, "has no classification head"},
    };
    for (const Case& c : cases) {
        const auto r = igpt_test::run(cli + " " + c.args);
        INFO(c.args << "\n" << r.output);
        CHECK(r.code == 1);
        const std::string line = last_line(r.output);
        CHECK(line.rfind("igpt: ", 0) == 0);
        CHECK(line.find(c.message) != std::string::npos);
    }
}
