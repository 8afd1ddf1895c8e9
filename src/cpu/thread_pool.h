// A small persistent thread pool for the CPU backend. parallel_for splits [0, n) into contiguous chunks
// that every thread, the caller included, claims dynamically: a worker that the OS has not scheduled
// simply claims nothing, so a busy machine slows a step down instead of stalling it. Workers spin for a
// few tens of microseconds between jobs, then sleep, so the dozens of small GEMVs of one decode step do
// not each pay a thread wake-up. The caller, its share done, spins as long for the others' last chunks,
// then sleeps until the thread finishing the last one wakes it: a worker preempted mid-chunk (more threads
// than cores, as in a browser drawing its page on the CPU) gets the core back sooner. With one thread (and always in a WebAssembly build without threads) no
// thread is started and parallel_for runs fn(0, n, 0) on the caller.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace igpt {

class ThreadPool {
public:
    explicit ThreadPool(int32_t threads);  // total threads including the caller; <= 0 = hardware
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    int32_t size() const { return n_; }
    // fn(begin, end, thread_index) over a partition of [0, n) into at most chunks_per_thread * size() chunks;
    // `grain` = smallest chunk worth a thread. thread_index < size() identifies the executing thread (for
    // per-thread scratch buffers). Memory-bound work that splits evenly (the decode GEMVs) balances better
    // with more, smaller chunks; work with a fixed cost per call (Eigen packs its operands) with fewer.
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t, int32_t)>& fn,
                      int32_t chunks_per_thread = 2);

private:
    void worker(int32_t idx);
    bool run_chunks(uint32_t gen, int32_t idx);  // claims and runs chunks of job `gen`; false if none left

    int32_t n_;
    std::vector<std::thread> threads_;
    std::mutex mu_;
    std::condition_variable cv_;       // workers sleeping between jobs
    std::condition_variable done_cv_;  // the caller sleeping until the job's last chunk is done
    // The current job. `state_` packs (generation << 32 | next chunk); a claim is a CAS on it, so a
    // worker waking late can never claim a chunk of a finished job.
    std::atomic<const std::function<void(int64_t, int64_t, int32_t)>*> job_{nullptr};
    std::atomic<int64_t> job_n_{0};
    std::atomic<int32_t> job_chunks_{0};
    std::atomic<uint64_t> state_{0};
    std::atomic<int32_t> done_{0};
    std::atomic<int32_t> sleepers_{0};
    std::atomic<bool> caller_waits_{false};
    std::atomic<bool> stop_{false};
};

}  // namespace igpt
