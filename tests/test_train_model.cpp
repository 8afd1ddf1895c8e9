// Trainer model: the whole network's gradient against finite differences (double, tiny config), the float
// batch path against the double reference, the trainer's loss against the inference engine's image_nll,
// and AdamW / schedule / clipping against their definitions.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "backend.h"
#include "model.h"
#include "optim.h"
#include "session.h"
#include "test_util.h"
#include "train_model.h"

using namespace igpt;
using namespace igpt::train;
using igpt_test::random_tokens;

namespace {

using igpt_test::micro_config;

Palette test_palette(int32_t k) {
    std::vector<uint8_t> rgb(size_t(k) * 3);
    for (int32_t i = 0; i < k; i++) {
        rgb[i * 3] = uint8_t(i * 23);
        rgb[i * 3 + 1] = uint8_t(i * 71);
        rgb[i * 3 + 2] = uint8_t(i * 131);
    }
    return Palette(rgb);
}

// init_model's parameters, with gains and biases moved away from 1 and 0 so their gradients matter.
std::vector<double> random_params(const ModelConfig& cfg, uint64_t seed) {
    Model m = init_model(cfg, test_palette(cfg.vocab), seed);
    std::mt19937 g{uint32_t(seed)};
    std::normal_distribution<double> d(0.0, 0.3);
    std::vector<double> p(m.params.begin(), m.params.end());
    for (const ParamSpec& s : m.specs) {
        const bool gain = s.name.size() > 2 && s.name.compare(s.name.size() - 2, 2, ".g") == 0;
        const bool bias = s.name.size() > 2 && s.name.compare(s.name.size() - 2, 2, ".b") == 0;
        for (size_t i = 0; i < s.numel; i++) {
            if (gain) p[s.offset + i] = 1.0 + d(g);
            else if (bias) p[s.offset + i] = d(g);
            else p[s.offset + i] *= 10;  // std 0.2: a less linear regime
        }
    }
    return p;
}

}  // namespace

TEST_CASE("train model: whole-network gradient matches finite differences", "[train][model]") {
    for (bool bias : {false, true}) {
        const ModelConfig cfg = micro_config(bias);
        std::vector<double> p = random_params(cfg, 7);
        const auto tok = random_tokens(cfg.n_ctx(), cfg.vocab, 3);
        Net<double> net(cfg);
        Weights<double> w = bind_weights(cfg, p.data());
        std::vector<double> grad(p.size(), 0.0);
        Weights<double> g = bind_weights(cfg, grad.data());
        net.forward(w, tok.data());
        net.backward(w, tok.data(), 1.0, g);
        double worst = 0;
        std::string worst_name;
        for (const ParamSpec& s : param_layout(cfg)) {
            for (size_t i = 0; i < s.numel; i++) {
                const size_t k = s.offset + i;
                const double x0 = p[k], eps = 1e-5;
                p[k] = x0 + eps;
                const double fp = net.forward(w, tok.data());
                p[k] = x0 - eps;
                const double fm = net.forward(w, tok.data());
                p[k] = x0;
                const double num = (fp - fm) / (2 * eps);
                const double err = std::abs(num - grad[k]) / std::max(1e-3, std::abs(num) + std::abs(grad[k]));
                if (err > worst) {
                    worst = err;
                    worst_name = s.name + "[" + std::to_string(i) + "] analytic " + std::to_string(grad[k]) +
                                 " numeric " + std::to_string(num);
                }
            }
        }
        INFO("bias " << bias << ": worst relative error " << worst << " at " << worst_name);
        CHECK(worst < 1e-5);
    }
}

TEST_CASE("train model: float batch on 2 threads matches the double network", "[train][model]") {
    ModelConfig cfg = micro_config(true);
    cfg.image_h = cfg.image_w = 12;  // T = 144: two attention row blocks
    cfg.width = 16;
    const std::vector<double> pd = random_params(cfg, 11);
    std::vector<float> pf(pd.begin(), pd.end());
    const int32_t B = 3;
    const auto tok = random_tokens(size_t(B) * cfg.n_ctx(), cfg.vocab, 5);
    const double scale = 1.0 / (B * cfg.n_ctx());

    std::vector<double> gd(pd.size(), 0.0), pcopy = pd;
    Net<double> net(cfg);
    Weights<double> w = bind_weights(cfg, pcopy.data()), g = bind_weights(cfg, gd.data());
    double loss_d = 0;
    for (int32_t b = 0; b < B; b++) {
        loss_d += net.forward(w, tok.data() + b * cfg.n_ctx());
        net.backward(w, tok.data() + b * cfg.n_ctx(), scale, g);
    }
    TrainCompute tc(cfg, 2);
    std::vector<float> gf(pf.size(), 0.0f);
    const double loss_f = tc.forward_backward(pf.data(), tok.data(), B, float(scale), gf.data());
    CHECK(loss_f == Approx(loss_d).epsilon(1e-5));
    double num = 0, den = 0;
    for (size_t i = 0; i < gd.size(); i++) {
        num += (gf[i] - gd[i]) * (gf[i] - gd[i]);
        den += gd[i] * gd[i];
    }
    INFO("relative L2 error of the float gradient: " << std::sqrt(num / den));
    CHECK(std::sqrt(num / den) < 1e-4);
    // forward_nll agrees with forward_backward's loss, and repeated calls are bitwise identical
    CHECK(tc.forward_nll(pf.data(), tok.data(), B) == Approx(loss_f).epsilon(1e-6));
    std::vector<float> gf2(pf.size(), 0.0f);
    CHECK(tc.forward_backward(pf.data(), tok.data(), B, float(scale), gf2.data()) == loss_f);
    CHECK(gf2 == gf);
}

TEST_CASE("train model: training loss equals the inference engine's image_nll", "[train][model]") {
    ModelConfig cfg;
    cfg.name = "custom";
    cfg.vocab = 16;
    cfg.width = 32;
    cfg.layers = 2;
    cfg.heads = 4;
    cfg.image_h = cfg.image_w = 8;
    for (bool bias : {false, true}) {
        cfg.bias = bias;
        Model m = init_model(cfg, test_palette(cfg.vocab), 21);
        std::mt19937 gen(4);
        std::normal_distribution<float> d(0.0f, 0.5f);
        for (float& x : m.params) x += 0.1f * d(gen);  // away from init's exact zeros and ones
        const int32_t n = 3;
        const auto tok = random_tokens(size_t(n) * cfg.n_ctx(), cfg.vocab, 9);
        auto backend = make_cpu_backend(m, 1);
        NllResult ref = image_nll(m, *backend, tok, n, 2);
        TrainCompute tc(cfg, 2);
        std::vector<float> pix(size_t(n) * cfg.n_ctx());
        const double nats = tc.forward_nll(m.params.data(), tok.data(), n, pix.data());
        const double bpp = nats / (double(n) * cfg.n_ctx()) / std::log(2.0);
        INFO("bias " << bias << ": trainer " << bpp << " bpp, image_nll " << ref.bits_per_pixel << " bpp");
        CHECK(bpp == Approx(ref.bits_per_pixel).epsilon(1e-5));
        REQUIRE(ref.pixel_bits.size() == pix.size());
        double worst = 0;
        for (size_t i = 0; i < pix.size(); i++)
            worst = std::max(worst, std::abs(pix[i] / std::log(2.0) - ref.pixel_bits[i]));
        INFO("largest per-pixel difference (bits): " << worst);
        CHECK(worst < 1e-3);
    }
}

TEST_CASE("train optim: AdamW, schedule and clipping follow their definitions", "[train][optim]") {
    // one AdamW step from zero moments: update = lr * g / (|g| + eps) (bias-corrected), plus decoupled decay
    std::vector<float> p = {1.0f, -2.0f}, g = {0.5f, -0.25f}, m(2, 0.0f), v(2, 0.0f);
    const std::vector<uint8_t> mask = {1, 0};
    AdamWParams ap;
    ap.weight_decay = 0.1f;
    adamw_step(p.data(), g.data(), m.data(), v.data(), mask.data(), 2, 1, 0.01f, ap);
    CHECK(p[0] == Approx(1.0 - 0.01 * 0.1 * 1.0 - 0.01 * 0.5 / (0.5 + 1e-8)).epsilon(1e-6));
    CHECK(p[1] == Approx(-2.0 + 0.01).epsilon(1e-6));  // no decay on unmasked entries
    // a second step with the same gradient: m/v bias correction keeps the step at lr
    adamw_step(p.data(), g.data(), m.data(), v.data(), mask.data(), 2, 2, 0.01f, ap);
    CHECK(p[1] == Approx(-2.0 + 0.02).epsilon(1e-5));

    LrSchedule s;
    s.lr = 1.0f;
    s.min_lr = 0.1f;
    s.warmup = 10;
    s.total = 110;
    CHECK(s.at(0) == Approx(0.1));
    CHECK(s.at(9) == Approx(1.0));
    CHECK(s.at(10) == Approx(1.0));
    CHECK(s.at(60) == Approx(0.55));  // half-way through the cosine
    CHECK(s.at(110) == Approx(0.1));
    CHECK(s.at(500) == Approx(0.1));

    std::vector<float> gg = {3.0f, 4.0f};
    CHECK(clip_grad_norm(gg.data(), 2, 1.0) == Approx(5.0));
    CHECK(std::hypot(gg[0], gg[1]) == Approx(1.0).epsilon(1e-5));
    std::vector<float> small = {0.3f, 0.4f};
    clip_grad_norm(small.data(), 2, 1.0);
    CHECK(small[0] == 0.3f);

    ModelConfig cfg = micro_config(true);
    const auto specs = param_layout(cfg);
    const auto dm = decay_mask(specs);
    for (const ParamSpec& s2 : specs) CHECK(dm[s2.offset] == (s2.shape.size() == 2 ? 1 : 0));
}
