// Runs CUDA kernels on the CPU, so that the hand-written kernels of the CUDA trainer (flash attention, the
// trainer's own kernels, and the trainer around them, through cuda_runtime_api.h and cublas_v2.h stand-ins)
// are tested on every machine, CI included, and not only when a GPU is lent. A source compiled with
// IGPT_CUDA_EMU includes this header instead of the CUDA ones and builds with the host compiler.
//
// Each CUDA thread of a block is a fiber (ucontext) on the calling thread: __syncthreads and the warp-level
// operations switch between them, in a fixed order, so a run is deterministic. Built with
// IGPT_CUDA_EMU_THREADS (the ThreadSanitizer run, scripts/test_sanitize.sh emu), each CUDA thread is an OS
// thread instead, and a missing __syncthreads becomes a reported data race.
//
// What it gives: threadIdx / blockIdx / blockDim / gridDim; __syncthreads and __syncwarp; __shfl_xor_sync
// (every lane of the warp takes part, as in the kernels here); atomicAdd on float and double; dynamic shared
// memory (IGPT_DYNAMIC_SHARED in common.cuh); float2 / float4 / uint2; rsqrtf; and the one tensor-core
// instruction the kernels use, mma.sync.m16n8k16 with bf16 inputs and f32 accumulators, computed from the
// register fragments of all 32 lanes in the layout the PTX ISA documents (emu_mma_bf16_16816). A warp-level
// operation that not every lane reaches is reported as a deadlock (an exception), not a hang.
//
// Limits, by design: blocks run one after another (so `__shared__` may be a function-level static: one copy
// serves each block in turn), no grid-wide synchronisation, blockDim a multiple of 32. Streams, copies and
// cuBLAS (cuda_emu_runtime.h) are synchronous.
#pragma once
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "half.h"

#if !defined(IGPT_CUDA_EMU_THREADS) && !defined(__x86_64__)
#include <ucontext.h>
#endif

struct uint3 {
    unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
    unsigned x = 1, y = 1, z = 1;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) uint2 {
    uint32_t x, y;
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline dim3 blockDim, gridDim;

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }

namespace cuda_emu {

#ifdef IGPT_CUDA_EMU_THREADS
// A reusable barrier for n OS threads (the project is C++17: no std::barrier).
class Barrier {
public:
    explicit Barrier(unsigned n) : n_(n) {}
    void arrive_and_wait() {
        std::unique_lock<std::mutex> lock(m_);
        const uint64_t gen = gen_;
        if (++waiting_ == n_) {
            waiting_ = 0;
            ++gen_;
            cv_.notify_all();
            return;
        }
        cv_.wait(lock, [&] { return gen_ != gen; });
    }

private:
    std::mutex m_;
    std::condition_variable cv_;
    unsigned n_, waiting_ = 0;
    uint64_t gen_ = 0;
};
#else
void wait_fiber(const uint64_t* gen, uint64_t seen);
inline uint64_t g_events = 0;  // barriers released and fibers finished: the scheduler's progress
inline bool g_synced = false;  // the launch being run reached a barrier
inline bool g_plain = false;   // the launch runs its threads as plain calls, one after another (see launch)
// The same barrier for fibers: the last to arrive releases the others, who wait (not resumed by the
// scheduler) until it has.
class Barrier {
public:
    explicit Barrier(unsigned n) : n_(n) {}
    void arrive_and_wait() {
        if (g_plain)
            throw std::logic_error("cuda_emu: a kernel that ran without barriers before reached one (launch)");
        g_synced = true;
        const uint64_t gen = gen_;
        if (++waiting_ == n_) {
            waiting_ = 0;
            ++gen_;
            ++g_events;
            return;
        }
        wait_fiber(&gen_, gen);
    }

private:
    unsigned n_, waiting_ = 0;
    uint64_t gen_ = 0;
};
#endif

// The state of the block being run: one barrier for the block, one per warp, per warp the slots the lanes
// exchange registers through, and the dynamic shared memory.
struct Warp {
    Warp() : bar(32) {}
    Barrier bar;
    uint64_t slot[32][6] = {};
};
struct Block {
    explicit Block(unsigned n) : bar(n), warps(n / 32) {
        for (auto& w : warps) w = std::make_unique<Warp>();
    }
    Barrier bar;
    std::vector<std::unique_ptr<Warp>> warps;
};
inline Block* g_block = nullptr;
inline std::map<const void*, bool> g_barrier_free;  // per kernel: its first launch reached no barrier
inline std::vector<float4> g_dynamic_smem;

inline unsigned flat_thread() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
inline Warp& my_warp() { return *g_block->warps[flat_thread() / 32]; }
inline unsigned my_lane() { return flat_thread() % 32; }
inline void* dynamic_smem() { return g_dynamic_smem.data(); }
inline uint3 thread_index(unsigned i, const dim3& b) { return {i % b.x, (i / b.x) % b.y, i / (b.x * b.y)}; }

#ifndef IGPT_CUDA_EMU_THREADS
// Fibers: one stack each, kept between launches; the scheduler resumes them round robin. On x86-64 a switch
// is the few instructions below (the callee-saved registers and the stack pointer; nothing here changes the
// floating-point control words, so they are not switched); elsewhere ucontext's swapcontext, which also
// saves the signal mask (a system call each time: slower).
#ifdef __x86_64__
extern "C" void cuda_emu_switch(void** save_sp, void* next_sp);
// .weak: this header is in several sources; the linker keeps one copy.
asm(R"(
    .text
    .weak cuda_emu_switch
    .type cuda_emu_switch, @function
cuda_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuda_emu_switch, .-cuda_emu_switch
)");
struct Context {
    void* sp = nullptr;
};
#else
using Context = ucontext_t;
#endif

struct Fibers {
    static constexpr size_t kStack = 256 * 1024;
    Context main{};
    std::vector<Context> ctx;
    std::vector<std::unique_ptr<char[]>> stacks;
    std::vector<char> done;
    std::vector<const uint64_t*> wait_gen;  // per fiber: the barrier generation it waits to see change
    std::vector<uint64_t> wait_seen;
    unsigned current = 0;
    const std::function<void()>* body = nullptr;
    std::exception_ptr error;
};
inline Fibers g_fibers;

inline void switch_to(Context& save, Context& next) {
#ifdef __x86_64__
    cuda_emu_switch(&save.sp, next.sp);
#else
    swapcontext(&save, &next);
#endif
}

inline void wait_fiber(const uint64_t* gen, uint64_t seen) {
    Fibers& f = g_fibers;
    f.wait_gen[f.current] = gen;
    f.wait_seen[f.current] = seen;
    switch_to(f.ctx[f.current], f.main);  // resumed once *gen != seen
    f.wait_gen[f.current] = nullptr;
}

inline void fiber_entry() {
    try {
        (*g_fibers.body)();
    } catch (...) {
        if (!g_fibers.error) g_fibers.error = std::current_exception();
    }
    g_fibers.done[g_fibers.current] = 1;
    ++g_events;
#ifdef __x86_64__
    switch_to(g_fibers.ctx[g_fibers.current], g_fibers.main);  // never resumed
    std::abort();
#endif
}  // (ucontext: returns to uc_link, the scheduler)

// A fresh context that starts in fiber_entry on stack i.
inline void make_fiber(unsigned i) {
    Fibers& f = g_fibers;
#ifdef __x86_64__
    // The frame cuda_emu_switch pops: r15 .. r12, rbx, rbp, then fiber_entry as the return address; above
    // it a zero "return address" of fiber_entry's own (it never returns), at a 16-byte boundary, so that
    // fiber_entry starts as if called.
    auto* top = reinterpret_cast<uint64_t*>(
        (reinterpret_cast<uintptr_t>(f.stacks[i].get()) + Fibers::kStack) & ~uintptr_t(15));
    uint64_t* sp = top - 8;
    for (int r = 0; r < 6; ++r) sp[r] = 0;
    sp[6] = reinterpret_cast<uint64_t>(&fiber_entry);
    sp[7] = 0;
    f.ctx[i].sp = sp;
#else
    getcontext(&f.ctx[i]);
    f.ctx[i].uc_stack.ss_sp = f.stacks[i].get();
    f.ctx[i].uc_stack.ss_size = Fibers::kStack;
    f.ctx[i].uc_link = &f.main;
    makecontext(&f.ctx[i], fiber_entry, 0);
#endif
}

inline void run_block(unsigned n, const dim3& block, const std::function<void()>& body) {
    Fibers& f = g_fibers;
    if (f.ctx.size() < n) {
        f.ctx.resize(n);
        while (f.stacks.size() < n) f.stacks.emplace_back(new char[Fibers::kStack]);  // untouched until used
    }
    f.done.assign(n, 0);
    f.wait_gen.assign(n, nullptr);
    f.wait_seen.assign(n, 0);
    f.body = &body;
    f.error = nullptr;
    for (unsigned i = 0; i < n; ++i) make_fiber(i);
    unsigned live = n;
    while (live > 0) {
        const uint64_t before = g_events;
        live = 0;
        for (unsigned i = 0; i < n; ++i) {
            if (f.done[i]) continue;
            if (f.wait_gen[i] && *f.wait_gen[i] == f.wait_seen[i]) {  // its barrier has not released yet
                ++live;
                continue;
            }
            f.current = i;
            threadIdx = thread_index(i, block);
            switch_to(f.main, f.ctx[i]);
            if (!f.done[i]) ++live;
        }
        if (f.error) std::rethrow_exception(f.error);  // a fiber threw: leave the others where they are
        if (live > 0 && g_events == before)
            throw std::runtime_error("cuda_emu: deadlock (threads wait at a barrier that some never reach)");
    }
}
#endif

// Runs body() as every thread of every block of the grid; blocks one at a time, in order. smem: bytes of
// dynamic shared memory. key: the kernel, when known: a kernel whose first launch reached no barrier (an
// elementwise one) runs its threads as plain calls from then on, without fibers, much faster; should it
// reach a barrier after all, the launch throws rather than run wrong.
template <typename F> void launch(dim3 grid, dim3 block, size_t smem, F&& kernel_call, const void* key = nullptr) {
    const unsigned n = block.x * block.y * block.z;
    if (n == 0 || n % 32 != 0) throw std::runtime_error("cuda_emu: blockDim must be a multiple of 32");
    gridDim = grid;
    blockDim = block;
    g_dynamic_smem.assign((smem + 15) / 16, float4{0, 0, 0, 0});
#ifndef IGPT_CUDA_EMU_THREADS
    const auto known = key ? g_barrier_free.find(key) : g_barrier_free.end();
    const bool plain = known != g_barrier_free.end() && known->second;
    g_plain = plain;
    g_synced = false;
#else
    (void)key;
#endif
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                Block state(n);
                g_block = &state;
#ifdef IGPT_CUDA_EMU_THREADS
                std::vector<std::thread> threads;
                threads.reserve(n);
                for (unsigned i = 0; i < n; ++i)
                    threads.emplace_back([&, i] {
                        threadIdx = thread_index(i, block);
                        blockIdx = {bx, by, bz};
                        kernel_call();
                    });
                for (auto& t : threads) t.join();
#else
                blockIdx = {bx, by, bz};
                if (plain) {
                    for (unsigned i = 0; i < n; ++i) {
                        threadIdx = thread_index(i, block);
                        kernel_call();
                    }
                } else {
                    const std::function<void()> body = [&] { kernel_call(); };
                    run_block(n, block, body);
                }
#endif
                g_block = nullptr;
            }
#ifndef IGPT_CUDA_EMU_THREADS
    if (key && !plain) g_barrier_free[key] = !g_synced;
    g_plain = false;
#endif
}
template <typename F> void launch(dim3 grid, dim3 block, F&& kernel_call) {
    launch(grid, block, 0, std::forward<F>(kernel_call));
}

// kernel<<<grid, block, smem, stream>>>(args...) as Launcher(grid, block, smem, kernel)(args...): see
// IGPT_LAUNCH in src/cuda/common.cuh.
template <typename K> struct Launcher {
    dim3 grid, block;
    size_t smem;
    K* kernel;
    template <typename... A> void operator()(A&&... args) const {
        launch(grid, block, smem, [&] { kernel(args...); }, reinterpret_cast<const void*>(kernel));
    }
};
template <typename K> Launcher<K> make_launcher(dim3 grid, dim3 block, size_t smem, K* kernel) {
    return {grid, block, smem, kernel};
}

using igpt::bf16_to_float;  // (src/half.h)
using igpt::float_to_bf16;

}  // namespace cuda_emu

inline void __syncthreads() { cuda_emu::g_block->bar.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { cuda_emu::my_warp().bar.arrive_and_wait(); }

template <typename V> inline V __shfl_xor_sync(unsigned, V v, int lane_mask) {
    static_assert(sizeof(V) <= 8, "cuda_emu: shuffles of up to 8 bytes");
    cuda_emu::Warp& w = cuda_emu::my_warp();
    const unsigned lane = cuda_emu::my_lane();
    uint64_t u = 0;
    std::memcpy(&u, &v, sizeof v);
    w.slot[lane][0] = u;
    w.bar.arrive_and_wait();
    const uint64_t r = w.slot[lane ^ unsigned(lane_mask & 31)][0];
    w.bar.arrive_and_wait();  // nobody overwrites a slot before every lane has read
    V out;
    std::memcpy(&out, &r, sizeof out);
    return out;
}

// Atomic for the thread-per-OS-thread build; plain (one fiber runs at a time) otherwise.
template <typename V> inline V atomicAdd(V* p, V v) {
#ifdef IGPT_CUDA_EMU_THREADS
    static std::mutex m;
    std::lock_guard<std::mutex> lock(m);
#endif
    const V old = *p;
    *p = old + v;
    return old;
}

// d += A (16x16, row-major) · B (16x8, column-major), bf16 inputs, f32 accumulation; the PTX fragment
// layout of mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32. For lane L, g = L / 4 and t = L % 4:
//   a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9]
//   b[0] = B[2t, 2t+1][g], b[1] = B[2t+8, 2t+9][g]
//   d[0] = D[g][2t], d[1] = D[g][2t+1], d[2] = D[g+8][2t], d[3] = D[g+8][2t+1]
// (the lower-numbered element of each pair in the low 16 bits of the register).
inline void emu_mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    cuda_emu::Warp& w = cuda_emu::my_warp();
    const unsigned lane = cuda_emu::my_lane();
    for (int i = 0; i < 4; ++i) w.slot[lane][i] = a[i];
    w.slot[lane][4] = b[0];
    w.slot[lane][5] = b[1];
    w.bar.arrive_and_wait();
    const unsigned g = lane / 4, t = lane % 4;
    // this lane's outputs need A's rows g and g+8 and B's columns 2t and 2t+1, held by other lanes
    auto half = [&](unsigned L, int reg, int hi) {
        return cuda_emu::bf16_to_float(uint16_t(w.slot[L][reg] >> (hi * 16)));
    };
    auto A = [&](unsigned r, unsigned k) {  // lane (r % 8) * 4 + (k % 8) / 2 holds it
        const unsigned L = (r % 8) * 4 + (k % 8) / 2;
        return half(L, (r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0), int(k & 1));
    };
    auto B = [&](unsigned k, unsigned c) {  // lane c * 4 + (k % 8) / 2
        const unsigned L = c * 4 + (k % 8) / 2;
        return half(L, k >= 8 ? 5 : 4, int(k & 1));
    };
    float out[4];
    for (int i = 0; i < 4; ++i) {
        const unsigned r = g + (i >= 2 ? 8 : 0), c = 2 * t + unsigned(i & 1);
        float s = 0.0f;
        for (unsigned k = 0; k < 16; ++k) s += A(r, k) * B(k, c);
        out[i] = s;
    }
    w.bar.arrive_and_wait();  // every lane has read the slots
    for (int i = 0; i < 4; ++i) d[i] += out[i];
}
