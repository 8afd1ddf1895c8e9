// Completion sessions: kept pixels stay, the same seed gives the same samples, progress is monotonic,
// cancel stops early, bad parameters are refused; unconditional sampling works.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "error.h"
#include "session.h"
#include "test_util.h"

using namespace igpt;

namespace {
using igpt_test::random_tokens;
std::vector<int32_t> complete(std::shared_ptr<const Model> m, const std::vector<int32_t>& tok, CompletionParams p) {
    CompletionSession s(m);
    s.start(tok, p);
    s.wait();
    REQUIRE(s.filled() == m->cfg.n_ctx());
    std::vector<int32_t> out;
    for (int i = 0; i < p.n_samples; ++i) out.insert(out.end(), s.tokens(i), s.tokens(i) + s.n_ctx());
    return out;
}
}  // namespace

TEST_CASE("completion keeps the given rows and is reproducible for a seed", "[session]") {
    auto m = std::make_shared<const Model>(igpt_test::small_model(3));
    auto tok = random_tokens(*m, 1);
    CompletionParams p;
    p.n_samples = 3;
    p.rows_kept = 5;
    p.seed = 77;
    auto a = complete(m, tok, p);
    for (int s = 0; s < 3; ++s)
        for (int i = 0; i < 5 * 8; ++i) REQUIRE(a[size_t(s) * 64 + i] == tok[size_t(i)]);
    CHECK(complete(m, tok, p) == a);
    p.threads = 1;
    CHECK(complete(m, tok, p) == a);  // thread count does not change the samples
    p.seed = 78;
    CHECK(complete(m, tok, p) != a);
    // Samples within one session differ from each other (different generator streams).
    CHECK(!std::equal(a.begin(), a.begin() + 64, a.begin() + 64));
}

TEST_CASE("greedy completion equals step-by-step argmax of the uncached forward", "[session]") {
    auto m = std::make_shared<const Model>(igpt_test::small_model(4));
    auto tok = random_tokens(*m, 2);
    CompletionParams p;
    p.n_samples = 2;
    p.rows_kept = 6;
    p.sampler.temperature = 0.0f;
    auto out = complete(m, tok, p);
    // Reference: at each position run the whole prefix without a cache and take the argmax.
    auto be = make_cpu_backend(*m, 1);
    std::vector<int32_t> seq(tok.begin(), tok.begin() + 48);
    std::vector<float> logits(size_t(m->cfg.vocab));
    for (int pos = 48; pos < 64; ++pos) {
        std::vector<int32_t> in = {-1};
        in.insert(in.end(), seq.begin(), seq.end());
        be->reset(1);
        be->forward(in.data(), 1, pos + 1, 0, logits.data(), false);
        seq.push_back(int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    }
    for (int s = 0; s < 2; ++s)
        for (int i = 0; i < 64; ++i) REQUIRE(out[size_t(s) * 64 + i] == seq[size_t(i)]);
}

TEST_CASE("progress is published while running and cancel stops the worker", "[session]") {
    // 32x32 positions, so that the completion outlasts the polling below by far (an 8x8 one can finish
    // between two polls).
    igpt::ModelConfig c = igpt_test::small_model(5, false, 64, 4).cfg;
    c.image_h = c.image_w = 32;
    auto m = std::make_shared<const Model>(igpt::init_model(c, igpt_test::random_palette(16, 105), 5));
    CompletionSession s(m);
    CompletionParams p;
    p.n_samples = 2;
    p.rows_kept = 0;
    s.start(random_tokens(*m, 3), p);
    int32_t last = 0;
    while (!s.done()) {
        const int32_t f = s.filled();
        REQUIRE(f >= last);
        last = f;
        if (f >= 10) s.cancel();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    s.wait();
    CHECK(s.cancelled());
    CHECK(s.filled() < m->cfg.n_ctx());
    // Entropy is a valid number of bits for every generated position.
    for (int i = 0; i < s.filled(); ++i) {
        CHECK(s.entropy(0)[i] >= 0.0f);
        CHECK(s.entropy(0)[i] <= 4.0001f);  // log2(16)
    }
    // The session can be restarted after a cancel.
    s.start(random_tokens(*m, 3), p);
    s.wait();
    CHECK(s.filled() == m->cfg.n_ctx());
}

TEST_CASE("bad completion parameters are refused with a message", "[session]") {
    auto m = std::make_shared<const Model>(igpt_test::small_model(6));
    CompletionSession s(m);
    CompletionParams p;
    p.rows_kept = 9;
    CHECK_THROWS_WITH(s.start(random_tokens(*m, 1), p), Catch::Contains("rows to keep"));
    p.rows_kept = 2;
    CHECK_THROWS_WITH(s.start(std::vector<int32_t>(10, 0), p), Catch::Contains("expects 64"));
    std::vector<int32_t> bad(64, 0);
    bad[0] = 99;
    CHECK_THROWS_WITH(s.start(bad, p), Catch::Contains("palette"));
    p.n_samples = 0;
    CHECK_THROWS_AS(s.start(random_tokens(*m, 1), p), Error);
}
