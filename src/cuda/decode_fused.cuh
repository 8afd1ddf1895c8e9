// One decode step of the whole layer stack in a single persistent kernel (cooperative launch, one block
// per SM, grid-wide barriers between phases). The layer-by-layer path launches ~10 kernels a layer; at
// batch 1-16 each of them moves a few hundred KB, so launch gaps and cuBLAS's small-M kernels, not memory,
// set its pace. Here every phase is spread over all SMs:
//   1. attn_norm (each block normalises the B rows itself) + qkv GEMV + bias; q to a buffer, k and v
//      straight into the KV cache at the step's position;
//   2. attention, split over (sequence, head, chunk of keys); the last block of a (sequence, head) to
//      finish merges the chunks (counter in global memory), so no extra barrier is needed;
//   3. x += att · proj^T (+ bias);   4. mlp_norm + fc GEMV + bias + quick-GELU;
//   5. x += h · mproj^T (+ bias); and after the last layer the final norm + head GEMV to f32 logits.
// While a phase runs, each warp asks L2 for the rows of the next layer's matrix it will read.
// IGPT_CUDA_SPLITK=auto splits matrices with fewer rows than the grid has warps (proj, mproj, the head) over K
// between the warps of a block (gemv_split in the .cu); 2/4/8/16 splits every one; 1 (the default until it
// has run on a GPU) never.
// IGPT_CUDA_MMA=1 (read by plan_fused_decode) runs the GEMV phases on tensor cores instead (gemv_mma in the
// .cu: f16/bf16, widths a multiple of 32, sm_80+), a second instantiation of the kernel.
// IGPT_CUDA_ONEPASS=1 (read by plan_fused_decode) runs phase 2 as attention_onepass in the .cu: each thread an
// online softmax of its keys in registers, the chunks' states merged by phase 3's staging, so an item takes
// one trip to memory, two block barriers and no last-block merge (at batch 1 on an H200 the default attention
// was 171 + 83 of 593 us a step).
// Numerics follow the layer-by-layer path: the GEMV inputs (normalised rows, attention output, MLP
// hidden) are rounded to the activation type, and every dot product accumulates in f32.
#pragma once
#include <cstdint>
#include <string>

#include "common.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

// One layer's parameters on the device: matrices of the weight type, vectors f32 (null bias = none).
struct FusedLayerWeights {
    const void *qkv_w = nullptr, *proj_w = nullptr, *fc_w = nullptr, *mproj_w = nullptr;
    const float *ln1_g = nullptr, *qkv_b = nullptr, *proj_b = nullptr, *ln2_g = nullptr, *fc_b = nullptr,
                *mproj_b = nullptr;
};

// Launch shape for a batch; ok = false (with the reason) when the fused kernel does not cover the shape.
struct FusedDecodePlan {
    bool ok = false;
    std::string why;
    int32_t grid = 0, max_batch = 0, nsplit = 1, chunk = 0;
    size_t smem = 0;          // dynamic shared memory per block, bytes
    size_t ws_floats = 0;     // attention partials
    size_t counters = 0;      // ints, zero before the first launch (the kernel leaves them zero; not onepass)
    bool mma = false;         // the GEMV phases on tensor cores (IGPT_CUDA_MMA=1; not measured yet)
    int32_t splitk = 1;       // warps per row in the FMA GEMVs: 0 = per matrix (fused_splitk_from_env)
    bool onepass = false;     // one-pass attention, merged by the proj phase (IGPT_CUDA_ONEPASS=1; not measured yet)
};

// Measured on an H100 (iGPT-S, README): the fused step wins clearly at batch 1 (0.63 vs 1.45 ms a step),
// ties at 8 (1.70 vs 1.74) and loses at 16 (3.6 ms; its GEMV phases grow with the batch), so larger
// batches decode layer by layer with cuBLAS.
constexpr int32_t kFusedMaxBatch = 8;

// IGPT_CUDA_SPLITK: unset or 1 -> 1 (no split), auto -> 0 (per matrix), 2/4/8/16 -> that; else throws
// igpt::Error naming the variable.
int32_t fused_splitk_from_env();

FusedDecodePlan plan_fused_decode(DevType t, int32_t B, int32_t C, int32_t H, int32_t NH, int32_t D, int32_t T);

struct FusedDecodeArgs {
    DevType t = DevType::F16;              // weights, activations and KV cache
    int32_t B = 1, C = 0, H = 0, NH = 0, D = 0, T = 0, L = 0, V = 0;
    float eps = 1e-5f, scale = 1.0f;       // norm epsilon, attention scale 1/sqrt(D)
    int32_t pos = 0;                       // the step's position, or *pos_dev when non-null
    // Keys below shared_len are read from sequence shared_src's cache instead of each sequence's own (the
    // caller guarantees they are the same values: a prompt fanned out to every sample). The blocks of the
    // B sequences then read one copy, mostly from L2, instead of B. 0 = off.
    int32_t shared_len = 0, shared_src = 0;
    const int32_t* pos_dev = nullptr;
    const FusedLayerWeights* layers = nullptr;  // device array (L)
    void* k_cache = nullptr;               // (L, Bmax, NH, T, D)
    void* v_cache = nullptr;
    int64_t layer_cache_elems = 0;         // Bmax * NH * T * D
    float* x = nullptr;                    // (B, C) f32: the embedded inputs on entry; clobbered
    void* q = nullptr;                     // (B, C) scratch
    void* att = nullptr;                   // (B, C) scratch
    void* fch = nullptr;                   // (B, H) scratch
    const float* lnf_g = nullptr;
    const void* head_w = nullptr;          // (V, C)
    float* logits = nullptr;               // (B, V) f32 out
    float* ws = nullptr;                   // plan.ws_floats
    int32_t* counters = nullptr;           // plan.counters, zeroed once
    // Optional (null = off): every block adds its nanoseconds per phase here, kFusedProfileSlots counters a
    // block (plan.grid blocks): [2i] in phase i (qkv, attention, proj, fc, mproj), [2i+1] waiting at the
    // barrier after it, [10] the final norm + head, [11] the number of steps.
    unsigned long long* prof = nullptr;
};
constexpr int kFusedProfileSlots = 12;

// Enqueues the step (capturable in a CUDA graph). a.B must not exceed the batch the plan was made for.
void fused_decode(const FusedDecodeArgs& a, const FusedDecodePlan& plan, cudaStream_t stream);

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
