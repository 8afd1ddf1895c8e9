// Stepped completion sessions (the browser's single-threaded build drives them once per frame): the same
// tokens as the worker thread for the same seed, cancel, errors, and budgets that are honoured.
#include <catch2/catch.hpp>
#include <chrono>

#include "error.h"
#include "session.h"
#include "test_util.h"

using namespace igpt;

namespace {
using igpt_test::random_tokens;
struct Out {
    std::vector<int32_t> tokens;
    std::vector<float> entropy;
    int32_t steps = 0;
};
Out collect(const CompletionSession& s, int32_t n) {
    Out o;
    for (int32_t i = 0; i < n; ++i) {
        o.tokens.insert(o.tokens.end(), s.tokens(i), s.tokens(i) + s.n_ctx());
        o.entropy.insert(o.entropy.end(), s.entropy(i), s.entropy(i) + s.n_ctx());
    }
    return o;
}
Out threaded(std::shared_ptr<const Model> m, const std::vector<int32_t>& tok, const CompletionParams& p) {
    CompletionSession s(m);
    s.start(tok, p);
    s.wait();
    REQUIRE(s.filled() == m->cfg.n_ctx());
    return collect(s, p.n_samples);
}
Out stepped(std::shared_ptr<const Model> m, const std::vector<int32_t>& tok, const CompletionParams& p,
            double budget_ms) {
    CompletionSession s(m);
    s.start_stepped(tok, p);
    CHECK(s.stepped());
    CHECK(!s.done());
    int32_t steps = 0, last = s.filled();
    while (!s.step(budget_ms)) {
        CHECK(s.filled() >= last);  // progress is monotonic between steps
        last = s.filled();
        ++steps;
        REQUIRE(steps < 100000);
    }
    s.wait();
    REQUIRE(s.filled() == m->cfg.n_ctx());
    Out o = collect(s, p.n_samples);
    o.steps = steps;
    return o;
}
}  // namespace

TEST_CASE("stepped completion gives exactly the worker thread's tokens for a seed", "[session][step]") {
    auto m = std::make_shared<const Model>(igpt_test::small_model(5));
    auto tok = random_tokens(*m, 3);
    CompletionParams p;
    p.n_samples = 3;
    p.rows_kept = 3;
    p.seed = 1234;
    p.prefill_chunk = 7;  // several prefill units
    // 1 thread: the worker steps through forward() like step() does. 2 and 3: the CPU backend's generate()
    // runs the samples split across its threads ([0, 1) and [1, 3) with 2 threads), sampling included.
    for (int32_t threads : {1, 2, 3}) {
        p.threads = threads;
        const Out a = threaded(m, tok, p);
        const Out b = stepped(m, tok, p, 0.0);  // budget 0: one unit of work per step()
        CHECK(b.tokens == a.tokens);
        CHECK(b.entropy == a.entropy);
        // 25 kept positions (+ sos) in chunks of 7 = 4 prefill units, then 63 - 24 = 39 decode positions.
        CHECK(b.steps == 4 + 39 - 1);
        const Out c = stepped(m, tok, p, 1000.0);  // a large budget: all in one call
        CHECK(c.tokens == a.tokens);
        CHECK(c.steps == 0);
    }
    // The prefill chunk size does not change the samples either.
    p.threads = 1;
    const Out a = threaded(m, tok, p);
    p.prefill_chunk = 128;
    CHECK(stepped(m, tok, p, 0.0).tokens == a.tokens);
    // Unconditional sampling (no rows kept) and every row kept.
    p.rows_kept = 0;
    CHECK(stepped(m, tok, p, 0.0).tokens == threaded(m, tok, p).tokens);
    p.rows_kept = m->cfg.image_h;
    const Out all = stepped(m, tok, p, 0.0);
    CHECK(std::equal(tok.begin(), tok.end(), all.tokens.begin()));
}

TEST_CASE("the CPU backend's generate() splits the samples across its threads and matches forward()",
          "[session][step]") {
    auto m = std::make_shared<const Model>(igpt_test::small_model(8));
    auto tok = random_tokens(*m, 9);
    CompletionParams p;
    p.n_samples = 8;
    p.rows_kept = 2;
    p.seed = 77;
    p.top_n = 3;
    p.sampler.top_k = 40;
    for (int32_t threads : {1, 2, 4}) {
        for (int32_t rows : {2, 0}) {  // 0: unconditional samples (the shared "prompt" is the sos position)
            p.rows_kept = rows;
            // The reference: the same backend stepped one position of every sample per forward(). (Eigen's
            // prefill GEMM splits its columns by thread count, so the last bits may differ between counts.)
            p.threads = threads;
            const Out ref = stepped(m, tok, p, 1000.0);
            auto backend = make_cpu_backend(*m, threads);
            const int32_t T = m->cfg.n_ctx(), k = p.rows_kept * m->cfg.image_w;
            std::vector<int32_t> out(size_t(p.n_samples) * size_t(T), -5);
            std::vector<float> ent(out.size(), -1.0f);
            std::vector<TokenChoice> top(out.size() * 3);
            std::vector<int32_t> reported;
            GenerateRequest rq;
            rq.prompt = tok.data();
            rq.n_kept = k;
            rq.n_samples = p.n_samples;
            rq.sampler = p.sampler;
            rq.seed = p.seed;
            rq.top_n = 3;
            rq.tokens = out.data();
            rq.entropy = ent.data();
            rq.choices = top.data();
            rq.progress_every = 5;
            rq.on_progress = [&](int32_t filled) { reported.push_back(filled); };
            const bool ran = backend->generate(rq);
            CHECK(ran == (threads > 1));  // one thread: nothing to split, the caller steps through forward()
            if (!ran) continue;
            for (int32_t s = 0; s < p.n_samples; ++s)
                for (int32_t pos = k; pos < T; ++pos) {
                    const size_t at = size_t(s) * T + size_t(pos);
                    INFO("threads " << threads << ", sample " << s << ", position " << pos << " (" << k << " kept)");
                    REQUIRE(out[at] == ref.tokens[at]);
                    REQUIRE(ent[at] == ref.entropy[at]);
                }
            // Progress: the first sampled position, then every 5 positions, then the end.
            REQUIRE(!reported.empty());
            CHECK(reported.front() == k + 1);
            CHECK(reported.back() == T);
            for (size_t i = 1; i < reported.size(); ++i)
                CHECK(reported[i] - reported[i - 1] == std::min(5, T - reported[i - 1]));
        }
    }
}

TEST_CASE("a stepped completion stops on cancel and keeps what it made", "[session][step]") {
    auto m = std::make_shared<const Model>(igpt_test::small_model(6));
    auto tok = random_tokens(*m, 4);
    CompletionParams p;
    p.n_samples = 2;
    p.rows_kept = 2;
    CompletionSession s(m);
    s.start_stepped(tok, p);
    for (int i = 0; i < 5; ++i) CHECK(!s.step(0.0));
    const int32_t f = s.filled();
    CHECK(f > 2 * m->cfg.image_w);
    CHECK(f < m->cfg.n_ctx());
    s.cancel();
    CHECK(s.cancelled());
    CHECK(s.step(0.0));  // the next step ends it without more work
    CHECK(s.done());
    CHECK(s.filled() == f);
    CHECK_NOTHROW(s.wait());
    CHECK(s.step(10.0));  // stepping a finished session does nothing
    CHECK(s.filled() == f);
    // Cancelled before the first step: done at once, nothing generated.
    CompletionSession t(m);
    t.start_stepped(tok, p);
    t.cancel();
    CHECK(t.step(10.0));
    CHECK(t.filled() == 2 * m->cfg.image_w);
    // A session can start again after a cancel, and destroying an unfinished stepped session is fine.
    t.start_stepped(tok, p);
    CHECK(!t.done());
    CHECK(!t.step(0.0));
}

TEST_CASE("a stepped completion returns within its budget (plus one unit)", "[session][step]") {
    auto m = std::make_shared<const Model>(igpt_test::small_model(7));
    auto tok = random_tokens(*m, 5);
    CompletionParams p;
    p.n_samples = 4;
    p.rows_kept = 1;
    p.threads = 1;
    CompletionSession s(m);
    s.start_stepped(tok, p);
    const auto t0 = std::chrono::steady_clock::now();
    s.step(2.0);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    CHECK(ms < 500.0);  // a unit of this small model takes well under a millisecond; generous for a busy machine
    CHECK(s.prefill_seconds() > 0.0);
    while (!s.step(50.0)) {
    }
    CHECK(s.decode_tokens_per_second() > 0.0);
    CHECK(s.tokens_per_second() > 0.0);
    // Bad parameters are refused as in start().
    CompletionParams bad = p;
    bad.prefill_chunk = 0;
    CHECK_THROWS_AS(s.start_stepped(tok, bad), Error);
}
