// Training ops: the forward pass of every op of the model and its hand-written backward, for one
// sequence of T positions (llm.c style). Templated on the scalar type only so that the tests can check
// every backward against finite differences in double precision; the trainer uses float.
//
// Conventions: row-major, matrices [out, in]. A backward *accumulates* into parameter gradients (dW += ...)
// and into the input gradient where the comment says so (residual streams add up); otherwise it overwrites.
#pragma once
#include <cstdint>

namespace igpt::train {

// --- embedding: h = [sos, wte[x0], ..., wte[x(T-2)]] + wpe[0:T] --------------------------------------------
// tokens: (T) the image's tokens (targets); the input at position p > 0 is tokens[p-1].
template <typename F>
void embedding_forward(const int32_t* tokens, const F* sos, const F* wte, const F* wpe, int64_t T, int64_t C,
                       F* out /* (T, C) */);
// dsos += dout[0]; dwte[tokens[p-1]] += dout[p]; dwpe[p] += dout[p]
template <typename F>
void embedding_backward(const F* dout, const int32_t* tokens, int64_t T, int64_t C, F* dsos, F* dwte, F* dwpe);

// --- RMS norm with gain: out = x * rstd * g, rstd = 1 / sqrt(mean(x^2) + eps) ------------------------------
template <typename F>
void rmsnorm_forward(const F* x, const F* g, F eps, int64_t M, int64_t C, F* out /* (M, C) */, F* rstd /* (M) */);
// dx += d(out)/dx · dout; dg += sum over rows of dout * x * rstd
template <typename F>
void rmsnorm_backward(const F* dout, const F* x, const F* g, const F* rstd, int64_t M, int64_t C, F* dx, F* dg);

// --- linear: Y (M, N) = X (M, K) · W (N, K)^T + b (N) ----------------------------------------------------
template <typename F>
void linear_forward(const F* X, const F* W, const F* b, int64_t M, int64_t K, int64_t N, F* Y);
// dX = dY · W (overwritten; skipped when dX is null); dW += dY^T · X; db += column sums of dY (if db)
template <typename F>
void linear_backward(const F* dY, const F* X, const F* W, int64_t M, int64_t K, int64_t N, F* dX, F* dW, F* db);

// --- quick GELU: y = x * sigmoid(1.702 x) ----------------------------------------------------------------
template <typename F>
void gelu_forward(const F* x, int64_t n, F* y);
// dx = dy * gelu'(x) (overwritten)
template <typename F>
void gelu_backward(const F* dy, const F* x, int64_t n, F* dx);

// --- causal multi-head self-attention on fused qkv (T, 3C) (columns q | k | v, head h at h*hd) --------------
// att: (NH, T, attention_ld(T)) softmax probabilities, row t holding keys [0, t] (the rest of the row up to
// its causal block's end is zero; beyond it, never written). out: (T, C) heads concatenated.
// The work is done in row blocks so that the masked upper triangle is (mostly) never computed.
// scratch: at least attention_scratch(T, C / NH) elements, for both directions.
template <typename F>
void attention_forward(const F* qkv, int64_t T, int64_t C, int64_t NH, F* att, F* out, F* scratch);
// dqkv (T, 3C) is overwritten.
template <typename F>
void attention_backward(const F* dout, const F* qkv, const F* att, int64_t T, int64_t C, int64_t NH, F* dqkv,
                        F* scratch);
// Row stride of att: T plus 64 bytes, so that rows are not 4 KiB apart (a walk down a column of such rows
// maps to one L1 set; the backward's P^T products walk columns).
int64_t attention_ld(int64_t T);
int64_t attention_probs_size(int64_t T, int64_t NH);
int64_t attention_scratch(int64_t T, int64_t hd);

// --- softmax cross-entropy over V classes for M rows -----------------------------------------------------
// Returns sum over rows of -ln p(target). pixel_nats (optional, (M)): each row's -ln p.
// If dlogits is non-null it receives (softmax - onehot) * scale; it may alias logits.
template <typename F>
double cross_entropy(F* logits, const int32_t* targets, int64_t M, int64_t V, F scale, F* dlogits,
                     float* pixel_nats = nullptr);

}  // namespace igpt::train
