// Runs CUDA kernels on the CPU, so that the hand-written kernels of the CUDA trainer (flash attention, the
// trainer's own kernels, and the trainer around them) and of the CUDA inference backend (the fused decode
// step, attention, sampling, and the backend around them, through cuda_runtime_api.h and cublas_v2.h
// stand-ins) are tested on every machine, CI included, and not only when a GPU is lent. A source compiled
// with IGPT_CUDA_EMU includes this header instead of the CUDA ones and builds with the host compiler.
//
// Each CUDA thread of a block is a fiber on the calling thread: __syncthreads and the warp-level operations
// switch between them, in a fixed order, so a run is deterministic. Built with
// IGPT_CUDA_EMU_THREADS (the ThreadSanitizer run, scripts/test_sanitize.sh emu), each CUDA thread is an OS
// thread instead, and a missing __syncthreads becomes a reported data race.
//
// What it gives: threadIdx / blockIdx / blockDim / gridDim; __syncthreads and __syncwarp; __shfl_xor_sync,
// __shfl_sync and __shfl_up_sync (every lane of the warp takes part, as in the kernels here); atomicAdd;
// dynamic shared memory (IGPT_DYNAMIC_SHARED in common.cuh); float2 / float4 / uint2 / uint4; __half and
// __nv_bfloat16 (the bits, converted by src/half.h); the cache-hint loads and stores as plain ones; the
// grid-wide barrier of a cooperative launch (cooperative_groups::this_grid().sync(), see launch_cooperative);
// and the tensor-core instruction the kernels use, mma.sync.m16n8k16 with bf16 or f16 inputs and f32
// accumulators, computed from the register fragments of all 32 lanes in the layout the PTX ISA documents
// (emu_mma_16816). A barrier that not every thread reaches is reported as a deadlock (an exception), not a
// hang.
//
// Limits, by design: one block runs at a time (so `__shared__` may be a function-level static: one copy
// serves each block in turn). In a cooperative launch the blocks take turns between grid barriers, so a
// kernel must not keep data in static shared memory across grid.sync() (dynamic shared memory is the
// block's own and is kept); a kernel that did would fail its tests here while being right on a GPU, never
// the other way round. Streams, copies and cuBLAS (cuda_emu_runtime.h) are synchronous; a stream being
// captured records them into the graph instead.
#pragma once
#include <algorithm>
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
#include <tuple>
#include <type_traits>
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
struct alignas(16) uint4 {
    uint32_t x, y, z, w;
};
inline uint2 make_uint2(uint32_t x, uint32_t y) { return {x, y}; }
inline uint4 make_uint4(uint32_t x, uint32_t y, uint32_t z, uint32_t w) { return {x, y, z, w}; }
// The 16-bit element types, as their bits.
struct __half {
    uint16_t bits;
};
struct __nv_bfloat16 {
    uint16_t bits;
};
inline float __half2float(__half h) { return igpt::half_to_float(h.bits); }
inline __half __float2half_rn(float f) { return {igpt::float_to_half(f)}; }
inline float __bfloat162float(__nv_bfloat16 h) { return igpt::bf16_to_float(h.bits); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {igpt::float_to_bf16(f)}; }

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
inline uint32_t __umulhi(uint32_t a, uint32_t b) { return uint32_t((uint64_t(a) * b) >> 32); }
// The device's min / max overloads (the kernels call them unqualified, on ints). Global, as CUDA's own are.
template <typename T> inline T min(T a, T b) { return b < a ? b : a; }
template <typename T> inline T max(T a, T b) { return a < b ? b : a; }
// Loads through the read-only or L2-only paths, stores that skip L1, and fences: plain here.
template <typename T> inline T __ldg(const T* p) { return *p; }
template <typename T> inline T __ldcg(const T* p) { return *p; }
template <typename T> inline void __stcg(T* p, T v) { *p = v; }
inline void __threadfence() {}

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
    explicit Warp(unsigned lanes) : bar(lanes) {}
    Barrier bar;
    uint64_t slot[32][6] = {};     // mma operands
    uint64_t xchg[2][32] = {};     // shuffles, two buffers used in turn
    unsigned char turn[32] = {};   // per lane: the buffer of its last shuffle
};
struct Block {  // n threads; a last, partial warp has n % 32 lanes
    explicit Block(unsigned n) : bar(n), warps((n + 31) / 32) {
        for (size_t w = 0; w < warps.size(); ++w)
            warps[w] = std::make_unique<Warp>(std::min(32u, n - 32 * unsigned(w)));
    }
    Barrier bar;
    std::vector<std::unique_ptr<Warp>> warps;
};
inline Block* g_block = nullptr;
inline std::map<const void*, bool> g_barrier_free;  // per kernel: its first launch reached no barrier
inline std::vector<float4> g_smem_store;  // the dynamic shared memory of a launch's blocks (one at a time)
inline float4* g_smem = nullptr;          // the current block's

inline unsigned flat_thread() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
inline Warp& my_warp() { return *g_block->warps[flat_thread() / 32]; }
inline unsigned my_lane() { return flat_thread() % 32; }
inline void* dynamic_smem() { return g_smem; }
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
    std::vector<uint3> tid;                 // per fiber: its threadIdx
    unsigned current = 0, finished = 0;
    unsigned first = 0, count = 0;          // the fibers of the block being run
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

inline bool runnable(unsigned i) {
    const Fibers& f = g_fibers;
    return !f.done[i] && !(f.wait_gen[i] && *f.wait_gen[i] == f.wait_seen[i]);
}

// From fiber `cur`, which waits or has finished, straight to the next fiber of its block that can run (the
// lanes of a warp at a shuffle hand over to each other without a trip through the scheduler); to the
// scheduler when none can, or when a fiber has thrown.
inline void pass_on(unsigned cur) {
    Fibers& f = g_fibers;
    if (!f.error)
        for (unsigned k = 1; k < f.count; ++k) {
            const unsigned j = f.first + (cur - f.first + k) % f.count;
            if (!runnable(j)) continue;
            f.current = j;
            threadIdx = f.tid[j];
            switch_to(f.ctx[cur], f.ctx[j]);
            return;
        }
    switch_to(f.ctx[cur], f.main);
}

inline void wait_fiber(const uint64_t* gen, uint64_t seen) {
    Fibers& f = g_fibers;
    const unsigned me = f.current;
    f.wait_gen[me] = gen;
    f.wait_seen[me] = seen;
    pass_on(me);  // resumed once *gen != seen
    f.wait_gen[me] = nullptr;
}

inline void fiber_entry() {
    try {
        (*g_fibers.body)();
    } catch (...) {
        if (!g_fibers.error) g_fibers.error = std::current_exception();
    }
    g_fibers.done[g_fibers.current] = 1;
    ++g_fibers.finished;
    pass_on(g_fibers.current);  // never resumed
    std::abort();
}

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

// Runs fibers [0, nblocks * n) to the end: fiber i is thread i % n of block i / n, and enter(b) makes block b
// the current one (its barriers, warps, index and shared memory). One block at a time: its fibers round
// robin until each has finished or waits at a barrier that has not released (in a cooperative launch, the
// grid's); then the next block. A round over all blocks in which no fiber could run is a deadlock.
template <typename Enter>
void run_fibers(unsigned nblocks, unsigned n, const dim3& block, const std::function<void()>& body, Enter&& enter) {
    Fibers& f = g_fibers;
    const unsigned total = nblocks * n;
    if (f.ctx.size() < total) {
        f.ctx.resize(total);
        while (f.stacks.size() < total) f.stacks.emplace_back(new char[Fibers::kStack]);  // untouched until used
    }
    f.done.assign(total, 0);
    f.wait_gen.assign(total, nullptr);
    f.wait_seen.assign(total, 0);
    f.tid.resize(total);
    f.body = &body;
    f.error = nullptr;
    f.finished = 0;
    for (unsigned i = 0; i < total; ++i) {
        f.tid[i] = thread_index(i % n, block);
        make_fiber(i);
    }
    while (f.finished < total) {
        bool ran = false;
        for (unsigned b = 0; b < nblocks; ++b) {
            enter(b);
            f.first = b * n;
            f.count = n;
            for (unsigned i = f.first; i < f.first + n; ++i) {
                if (!runnable(i)) continue;
                f.current = i;
                threadIdx = f.tid[i];
                switch_to(f.main, f.ctx[i]);  // back when no fiber of the block can run
                ran = true;
                if (f.error) std::rethrow_exception(f.error);  // a fiber threw: leave the others where they are
            }
        }
        if (!ran) throw std::runtime_error("cuda_emu: deadlock (threads wait at a barrier that some never reach)");
    }
}
#endif

// Runs body() as every thread of every block of the grid; blocks one at a time, in order. smem: bytes of
// dynamic shared memory. key: the kernel, when known: a kernel whose first launch reached no barrier (an
// elementwise one) runs its threads as plain calls from then on, without fibers, much faster; should it
// reach a barrier after all, the launch throws rather than run wrong.
template <typename F> void launch(dim3 grid, dim3 block, size_t smem, F&& kernel_call, const void* key = nullptr) {
    const unsigned n = block.x * block.y * block.z;
    if (n == 0) throw std::runtime_error("cuda_emu: an empty block");
    gridDim = grid;
    blockDim = block;
    g_smem_store.assign((smem + 15) / 16, float4{0, 0, 0, 0});
    g_smem = g_smem_store.data();
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
                    run_fibers(1, n, block, body, [](unsigned) {});
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

// A cooperative launch (cudaLaunchKernelEx with cudaLaunchAttributeCooperative): every block is resident at
// once, so the kernel may wait at the grid-wide barrier. Each block has its own barriers and dynamic shared
// memory; they take turns, each running until all its threads wait at the grid barrier (or have finished).
inline Barrier* g_grid_barrier = nullptr;
template <typename F> void launch_cooperative(dim3 grid, dim3 block, size_t smem, F&& kernel_call) {
#ifdef IGPT_CUDA_EMU_THREADS
    (void)grid, (void)block, (void)smem, (void)kernel_call;
    throw std::runtime_error("cuda_emu: a cooperative launch needs fibers (not IGPT_CUDA_EMU_THREADS)");
#else
    const unsigned n = block.x * block.y * block.z, nblocks = grid.x * grid.y * grid.z;
    if (n == 0) throw std::runtime_error("cuda_emu: an empty block");
    gridDim = grid;
    blockDim = block;
    std::vector<std::unique_ptr<Block>> blocks(nblocks);
    std::vector<std::vector<float4>> shared(nblocks);
    for (unsigned b = 0; b < nblocks; ++b) {
        blocks[b] = std::make_unique<Block>(n);
        shared[b].assign((smem + 15) / 16, float4{0, 0, 0, 0});
    }
    Barrier grid_barrier(nblocks * n);
    struct Scope {
        ~Scope() {
            g_grid_barrier = nullptr;
            g_block = nullptr;
            g_smem = nullptr;
        }
    } scope;
    g_grid_barrier = &grid_barrier;
    g_plain = false;
    const std::function<void()> body = [&] { kernel_call(); };
    run_fibers(nblocks, n, block, body, [&](unsigned b) {
        g_block = blocks[b].get();
        g_smem = shared[b].data();
        blockIdx = thread_index(b, grid);
    });
#endif
}

// Stream capture (cuda_emu_runtime.h): while a stream is being captured, launches, copies and GEMMs are
// recorded here, to run when the graph is launched.
inline thread_local std::vector<std::function<void()>>* g_capture = nullptr;

// kernel<<<grid, block, smem, stream>>>(args...) as Launcher(grid, block, smem, kernel)(args...): see
// IGPT_LAUNCH in src/cuda/common.cuh.
template <typename K> struct Launcher {
    dim3 grid, block;
    size_t smem;
    K* kernel;
    template <typename... A> void operator()(A&&... args) const {
        if (g_capture) {  // the arguments by value, as a launch takes them
            g_capture->push_back([self = *this, saved = std::make_tuple(std::decay_t<A>(args)...)] {
                std::apply([&](const auto&... a) { self(a...); }, saved);
            });
            return;
        }
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

namespace cuda_emu {
// Every lane of the warp offers v and gets the value lane from(lane) offered. The values go through one of
// two buffers, in turn, so that one barrier is enough: a lane writes a buffer again only two shuffles later,
// after a barrier that every lane reaches only once it has read that buffer.
template <typename V, typename From> V shuffle(V v, From from) {
    static_assert(sizeof(V) <= 8, "cuda_emu: shuffles of up to 8 bytes");
    Warp& w = my_warp();
    const unsigned lane = my_lane();
    const unsigned buf = w.turn[lane] ^= 1u;
    uint64_t u = 0;
    std::memcpy(&u, &v, sizeof v);
    w.xchg[buf][lane] = u;
    w.bar.arrive_and_wait();
    const uint64_t r = w.xchg[buf][from(lane)];
    V out;
    std::memcpy(&out, &r, sizeof out);
    return out;
}
}  // namespace cuda_emu

template <typename V> inline V __shfl_xor_sync(unsigned, V v, int lane_mask) {
    return cuda_emu::shuffle(v, [&](unsigned lane) { return lane ^ unsigned(lane_mask & 31); });
}
// Lane src_lane's value.
template <typename V> inline V __shfl_sync(unsigned, V v, int src_lane) {
    return cuda_emu::shuffle(v, [&](unsigned) { return unsigned(src_lane) & 31u; });
}
// Lane (lane - delta)'s value; lanes below delta keep their own.
template <typename V> inline V __shfl_up_sync(unsigned, V v, unsigned delta) {
    return cuda_emu::shuffle(v, [&](unsigned lane) { return lane >= delta ? lane - delta : lane; });
}

// The grid of a cooperative launch (cuda_emu::launch_cooperative); sync() is its barrier.
namespace cooperative_groups {
struct grid_group {
    void sync() const {
        if (!cuda_emu::g_grid_barrier) throw std::logic_error("cuda_emu: grid.sync() outside a cooperative launch");
        cuda_emu::g_grid_barrier->arrive_and_wait();
    }
};
inline grid_group this_grid() { return {}; }
}  // namespace cooperative_groups

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

// d += A (16x16, row-major) · B (16x8, column-major), bf16 (or, F16, f16) inputs, f32 accumulation; the PTX
// fragment layout of mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32. For lane L,
// g = L / 4 and t = L % 4:
//   a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9]
//   b[0] = B[2t, 2t+1][g], b[1] = B[2t+8, 2t+9][g]
//   d[0] = D[g][2t], d[1] = D[g][2t+1], d[2] = D[g+8][2t], d[3] = D[g+8][2t+1]
// (the lower-numbered element of each pair in the low 16 bits of the register).
template <bool F16 = false>
inline void emu_mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    cuda_emu::Warp& w = cuda_emu::my_warp();
    const unsigned lane = cuda_emu::my_lane();
    for (int i = 0; i < 4; ++i) w.slot[lane][i] = a[i];
    w.slot[lane][4] = b[0];
    w.slot[lane][5] = b[1];
    w.bar.arrive_and_wait();
    const unsigned g = lane / 4, t = lane % 4;
    // this lane's outputs need A's rows g and g+8 and B's columns 2t and 2t+1, held by other lanes
    auto half = [&](unsigned L, int reg, int hi) {
        const uint16_t bits = uint16_t(w.slot[L][reg] >> (hi * 16));
        return F16 ? igpt::half_to_float(bits) : igpt::bf16_to_float(bits);
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
