// Flash-style prefill attention (see attention_prefill.cuh).
//
// A block of 4 warps takes 16 query rows of one (sequence, head), 4 rows per warp. Per tile of 32 keys:
// lane j scores key j against the warp's 4 queries (queries and keys in shared memory, keys padded to
// stride D+1 so the 32 lanes read 32 banks), the running max / sum per row are updated across the warp
// (base-2 exponentials; the scale and log2(e) are folded into the queries), and lane l accumulates output
// dims l, l+32, ... (DCH = ceil(D/32) of them) from the values tile. Nothing of size (n, keys) is stored.
#include "attention_prefill.cuh"

namespace igpt::cuda {
IGPT_EMU_NAMESPACE_BEGIN  // (common.cuh: the copies tests/cuda_emu compiles get other symbol names)

namespace {

constexpr int kWarps = 4;
constexpr int kRows = 4;                 // query rows per warp
constexpr int kBQ = kWarps * kRows;      // query rows per block
constexpr int kBK = 32;                  // keys per tile: one per lane

size_t smem_bytes(int32_t D) { return size_t(kBQ * D + kBK * (D + 1) + kBK * D) * sizeof(float); }

template <typename T, int DCH>
__global__ void __launch_bounds__(kWarps * 32)
    attn_prefill_kernel(const T* __restrict__ q, int64_t q_stride, const T* __restrict__ kc,
                        const T* __restrict__ vc, T* __restrict__ out, int64_t out_stride, int32_t n, int32_t pos,
                        int32_t NH, int32_t D, int32_t Tctx, float scale_log2) {
    IGPT_DYNAMIC_SHARED(float, smem);
    float* sq = smem;                  // (kBQ, D)    scaled queries
    float* sk = sq + kBQ * D;          // (kBK, D+1)  keys, padded rows
    float* sv = sk + kBK * (D + 1);    // (kBK, D)    values
    const int32_t b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * kBQ;
    const int32_t tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

    for (int32_t e = tid; e < kBQ * D; e += blockDim.x) {
        const int32_t r = e / D, d = e - r * D, qi = q0 + r;
        sq[e] = qi < n ? to_f32(q[(int64_t(b) * n + qi) * q_stride + int64_t(h) * D + d]) * scale_log2 : 0.0f;
    }
    const int64_t head = (int64_t(b) * NH + h) * Tctx * D;
    const T* kb = kc + head;
    const T* vb = vc + head;

    float m[kRows], l[kRows], o[kRows][DCH];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < DCH; ++c) o[r][c] = 0.0f;
    }
    const int32_t last = min(n, q0 + kBQ) - 1;  // last query row of this block
    const int32_t kend = pos + last + 1;        // keys [0, kend) are visible to some row of the block
    const float* qw = sq + warp * kRows * D;

    for (int32_t k0 = 0; k0 < kend; k0 += kBK) {
        __syncthreads();  // queries written / previous tile consumed
        for (int32_t e = tid; e < kBK * D; e += blockDim.x) {
            const int32_t j = e / D, d = e - j * D, key = k0 + j;
            float kv = 0.0f, vv = 0.0f;
            if (key < kend) {
                kv = to_f32(kb[int64_t(key) * D + d]);
                vv = to_f32(vb[int64_t(key) * D + d]);
            }
            sk[j * (D + 1) + d] = kv;
            sv[j * D + d] = vv;
        }
        __syncthreads();

        // Scores of key k0 + lane against the warp's rows.
        const int32_t key = k0 + lane;
        const float* kr = sk + lane * (D + 1);
        float s[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r) s[r] = 0.0f;
        for (int32_t d = 0; d < D; ++d) {
            const float kv = kr[d];
#pragma unroll
            for (int r = 0; r < kRows; ++r) s[r] += qw[r * D + d] * kv;
        }
        // Online softmax update per row (warp-uniform control flow).
        float p[kRows];
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
            const int32_t qi = q0 + warp * kRows + r;
            const bool valid = qi < n && key <= pos + qi;
            const float sr = valid ? s[r] : -INFINITY;
            const float m_new = fmaxf(m[r], warp_max(sr));
            p[r] = 0.0f;
            if (m_new == -INFINITY) continue;  // no visible key yet for this row
            p[r] = valid ? exp2f(sr - m_new) : 0.0f;
            const float corr = exp2f(m[r] - m_new);  // 0 on the first visible tile
            l[r] = l[r] * corr + warp_sum(p[r]);
#pragma unroll
            for (int c = 0; c < DCH; ++c) o[r][c] *= corr;
            m[r] = m_new;
        }
        // o += P · V for the tile: key j's weight comes from lane j.
        for (int32_t j = 0; j < kBK; ++j) {
            const float* vr = sv + j * D;
            float vj[DCH];
#pragma unroll
            for (int c = 0; c < DCH; ++c) {
                const int32_t d = lane + 32 * c;
                vj[c] = d < D ? vr[d] : 0.0f;
            }
#pragma unroll
            for (int r = 0; r < kRows; ++r) {
                const float pj = __shfl_sync(0xffffffffu, p[r], j);
#pragma unroll
                for (int c = 0; c < DCH; ++c) o[r][c] += pj * vj[c];
            }
        }
    }

#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        const int32_t qi = q0 + warp * kRows + r;
        if (qi >= n) continue;
        const float inv = 1.0f / l[r];
        T* orow = out + (int64_t(b) * n + qi) * out_stride + int64_t(h) * D;
#pragma unroll
        for (int c = 0; c < DCH; ++c) {
            const int32_t d = lane + 32 * c;
            if (d < D) orow[d] = from_f32<T>(o[r][c] * inv);
        }
    }
}

template <typename T, int DCH>
void launch(const void* q, int64_t q_stride, const void* k_cache, const void* v_cache, void* out, int64_t out_stride,
            int32_t B, int32_t n, int32_t pos, int32_t NH, int32_t D, int32_t T_, float scale_log2,
            cudaStream_t stream) {
    const dim3 grid(unsigned((n + kBQ - 1) / kBQ), unsigned(NH), unsigned(B));
    const auto kernel = attn_prefill_kernel<T, DCH>;
    IGPT_LAUNCH(kernel, grid, kWarps * 32, smem_bytes(D), stream)(
        static_cast<const T*>(q), q_stride, static_cast<const T*>(k_cache), static_cast<const T*>(v_cache),
        static_cast<T*>(out), out_stride, n, pos, NH, D, T_, scale_log2);
}

}  // namespace

void attention_prefill(const void* q, int64_t q_stride, const void* k_cache, const void* v_cache, void* out,
                       int64_t out_stride, DevType t, int32_t B, int32_t n, int32_t pos, int32_t NH, int32_t D,
                       int32_t T, float scale, cudaStream_t stream) {
    if (B <= 0 || n <= 0) return;
    if (D < 1 || D > kMaxHeadDim) throw Error("attention: head dim " + std::to_string(D) + " is not supported (max 128)");
    const float scale_log2 = scale * 1.4426950408889634f;
    dispatch_type(t, [&](auto tag) {
        using E = decltype(tag);
        if (D <= 32) launch<E, 1>(q, q_stride, k_cache, v_cache, out, out_stride, B, n, pos, NH, D, T, scale_log2, stream);
        else if (D <= 64) launch<E, 2>(q, q_stride, k_cache, v_cache, out, out_stride, B, n, pos, NH, D, T, scale_log2, stream);
        else if (D <= 96) launch<E, 3>(q, q_stride, k_cache, v_cache, out, out_stride, B, n, pos, NH, D, T, scale_log2, stream);
        else launch<E, 4>(q, q_stride, k_cache, v_cache, out, out_stride, B, n, pos, NH, D, T, scale_log2, stream);
    });
    IGPT_CUDA_LAUNCHED();
}

IGPT_EMU_NAMESPACE_END
}  // namespace igpt::cuda
