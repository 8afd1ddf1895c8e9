// Persistent worker threads with dynamic chunk claiming and a spin-then-sleep wait (see thread_pool.h).
#include "thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define IGPT_PAUSE() _mm_pause()
#else
#define IGPT_PAUSE() ((void)0)
#endif

namespace igpt {

namespace {
// Workers spin this long for the next job (the gap between two ops of one decode step), then sleep. The
// caller spins as long for the job's last chunks, then sleeps until they are done. (A longer spin in the
// browser build, 0.3 or 1 ms, made no difference measurable under node; in a page it would take a core
// from the drawing.)
constexpr auto kSpin = std::chrono::microseconds(50);
#ifdef __EMSCRIPTEN__
constexpr int kPollsPerClockRead = 64;  // a clock read is a call into JavaScript here (~1 us)
#else
constexpr int kPollsPerClockRead = 1;
#endif
inline uint32_t gen_of(uint64_t s) { return uint32_t(s >> 32); }

// Polls `ready` for up to kSpin; whether it became true.
template <typename Ready>
bool spin_until(Ready ready) {
    if (ready()) return true;
    const auto until = std::chrono::steady_clock::now() + kSpin;
    while (std::chrono::steady_clock::now() < until)
        for (int poll = 0; poll < kPollsPerClockRead; ++poll) {
            if (ready()) return true;
            for (int i = 0; i < 16; ++i) IGPT_PAUSE();
        }
    return ready();
}
constexpr uint64_t kClosed = 0x7fffffff;  // a chunk index no job reaches: "nothing to claim yet"
}  // namespace

ThreadPool::ThreadPool(int32_t threads) {
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
    threads = 1;  // WebAssembly without threads: the caller runs every job, no std::thread is ever made
#endif
    if (threads <= 0) threads = int32_t(std::max(1u, std::thread::hardware_concurrency()));
    n_ = threads;
    for (int32_t i = 1; i < n_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lk(mu_);
        stop_.store(true);
        state_.fetch_add(uint64_t(1) << 32);
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

bool ThreadPool::run_chunks(uint32_t gen, int32_t idx) {
    bool any = false;
    for (;;) {
        uint64_t s = state_.load(std::memory_order_acquire);
        if (gen_of(s) != gen) return any;
        const uint32_t chunk = uint32_t(s);
        if (int32_t(chunk) >= job_chunks_.load(std::memory_order_relaxed)) return any;
        if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) continue;
        // The claim succeeded for generation `gen`, whose job fields stay put until its chunks are done.
        const int64_t n = job_n_.load(std::memory_order_relaxed);
        const int32_t chunks = job_chunks_.load(std::memory_order_relaxed);
        const int64_t b = n * chunk / chunks, e = n * (chunk + 1) / chunks;
        (*job_.load(std::memory_order_relaxed))(b, e, idx);
        if (done_.fetch_add(1) + 1 == chunks && caller_waits_.load()) {
            { std::lock_guard<std::mutex> lk(mu_); }
            done_cv_.notify_one();
        }
        any = true;
    }
}

void ThreadPool::worker(int32_t idx) {
    uint32_t seen = 0;
    for (;;) {
        const auto next = [&] { return gen_of(state_.load(std::memory_order_acquire)) != seen; };
        if (!spin_until(next)) {
            std::unique_lock<std::mutex> lk(mu_);
            sleepers_.fetch_add(1);
            cv_.wait(lk, next);
            sleepers_.fetch_sub(1);
        }
        const uint32_t g = gen_of(state_.load(std::memory_order_acquire));
        seen = g;
        if (stop_.load()) return;
        run_chunks(g, idx);
    }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int32_t)>& fn,
                              int32_t chunks_per_thread) {
    if (n <= 0) return;
    grain = std::max<int64_t>(1, grain);
    const int64_t max_chunks = (n + grain - 1) / grain;
    if (n_ == 1 || max_chunks <= 1) {
        fn(0, n, 0);
        return;
    }
    // A few chunks per thread: balances a thread that starts late (or streams memory more slowly) without
    // many tiny calls.
    const int32_t chunks = int32_t(std::min<int64_t>(max_chunks, std::max(1, chunks_per_thread) * int64_t(n_)));
    // Three steps, so that a worker still inside run_chunks() of the previous job can never claim a chunk
    // against this job's fields: (1) close the old generation with a new one whose chunks are all taken,
    // (2) write the job, (3) open it at chunk 0. A stale claim's compare-exchange then fails.
    uint32_t gen;
    {
        std::lock_guard<std::mutex> lk(mu_);
        gen = gen_of(state_.load()) + 1;
        state_.store((uint64_t(gen) << 32) | kClosed, std::memory_order_release);
    }
    job_.store(&fn, std::memory_order_relaxed);
    job_n_.store(n, std::memory_order_relaxed);
    job_chunks_.store(chunks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    state_.store(uint64_t(gen) << 32, std::memory_order_release);  // open: chunk 0
    if (sleepers_.load() > 0) cv_.notify_all();
    run_chunks(gen, 0);
    // The other threads' last chunks: spin a little (they usually finish together), then sleep until the
    // thread that finishes the last one wakes this one -- a thread that the OS has preempted (more runnable
    // threads than cores, as in a browser drawing its page) may take a whole time slice to come back, and
    // spinning meanwhile would take a core from it.
    const auto finished = [&] { return done_.load(std::memory_order_acquire) == chunks; };
    if (!spin_until(finished)) {
        std::unique_lock<std::mutex> lk(mu_);
        caller_waits_.store(true);
        done_cv_.wait(lk, [&] { return done_.load() == chunks; });
        caller_waits_.store(false);
    }
}

}  // namespace igpt
