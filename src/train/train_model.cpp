// Image GPT written plainly for training: forward keeps every activation, backward walks it in reverse.
#include "train_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "cpu/thread_pool.h"
#include "error.h"
#include "grad_ops.h"

namespace igpt::train {

template <typename F>
Weights<F> bind_weights(const ModelConfig& cfg, F* base) {
    std::map<std::string, F*> at;
    for (const ParamSpec& s : param_layout(cfg)) at[s.name] = base + s.offset;
    auto get = [&](const std::string& name, bool required) -> F* {
        auto it = at.find(name);
        if (it == at.end()) {
            if (required) throw Error("trainer: parameter layout has no tensor '" + name + "'");
            return nullptr;
        }
        return it->second;
    };
    Weights<F> w;
    w.sos = get("sos", true);
    w.wte = get("wte", true);
    w.wpe = get("wpe", true);
    w.lnf_g = get("ln_f.g", true);
    w.head_w = get("head.w", true);
    for (int32_t i = 0; i < cfg.layers; i++) {
        const std::string p = "h." + std::to_string(i) + ".";
        LayerWeights<F> l;
        l.ln1_g = get(p + "ln_1.g", true);
        l.qkv_w = get(p + "attn.qkv.w", true);
        l.qkv_b = get(p + "attn.qkv.b", cfg.bias);
        l.proj_w = get(p + "attn.proj.w", true);
        l.proj_b = get(p + "attn.proj.b", cfg.bias);
        l.ln2_g = get(p + "ln_2.g", true);
        l.fc_w = get(p + "mlp.fc.w", true);
        l.fc_b = get(p + "mlp.fc.b", cfg.bias);
        l.mproj_w = get(p + "mlp.proj.w", true);
        l.mproj_b = get(p + "mlp.proj.b", cfg.bias);
        if (!cfg.bias) l.qkv_b = l.proj_b = l.fc_b = l.mproj_b = nullptr;
        w.layers.push_back(l);
    }
    return w;
}

template <typename F>
Net<F>::Net(const ModelConfig& cfg) : cfg_(cfg) {
    const size_t T = cfg.n_ctx(), C = cfg.width, H = cfg.hidden(), NH = cfg.heads, V = cfg.vocab;
    acts.res.assign(cfg.layers + 1, Buf<F>(T * C));
    acts.layers.resize(cfg.layers);
    for (LayerActs<F>& a : acts.layers) {
        a.ln1.resize(T * C);
        a.rstd1.resize(T);
        a.qkv.resize(T * 3 * C);
        a.att.resize(attention_probs_size(T, NH));
        a.atty.resize(T * C);
        a.res_mid.resize(T * C);
        a.ln2.resize(T * C);
        a.rstd2.resize(T);
        a.fc.resize(T * H);
        a.fc_act.resize(T * H);
    }
    acts.lnf.resize(T * C);
    acts.rstdf.resize(T);
    acts.logits.resize(T * V);
    scratch.resize(attention_scratch(T, C / NH));
}

template <typename F>
double Net<F>::forward(const Weights<F>& w, const int32_t* tokens, float* pixel_nats) {
    const int64_t T = cfg_.n_ctx(), C = cfg_.width, H = cfg_.hidden(), NH = cfg_.heads, V = cfg_.vocab;
    const F eps = F(cfg_.norm_eps);
    for (int64_t p = 0; p < T; p++)
        if (tokens[p] < 0 || tokens[p] >= V) throw Error("trainer: token out of range of the palette");

    embedding_forward(tokens, w.sos, w.wte, w.wpe, T, C, acts.res[0].data());  // (T, C)
    for (int32_t l = 0; l < cfg_.layers; l++) {
        const LayerWeights<F>& lw = w.layers[l];
        LayerActs<F>& a = acts.layers[l];
        const F* x = acts.res[l].data();
        // x = x + attn(norm(x))
        rmsnorm_forward(x, lw.ln1_g, eps, T, C, a.ln1.data(), a.rstd1.data());             // (T, C)
        linear_forward(a.ln1.data(), lw.qkv_w, lw.qkv_b, T, C, 3 * C, a.qkv.data());      // (T, 3C)
        attention_forward(a.qkv.data(), T, C, NH, a.att.data(), a.atty.data(), scratch.data());  // (T, C)
        linear_forward(a.atty.data(), lw.proj_w, lw.proj_b, T, C, C, a.res_mid.data());   // (T, C)
        for (int64_t i = 0; i < T * C; i++) a.res_mid[i] += x[i];
        // x = x + mlp(norm(x))
        rmsnorm_forward(a.res_mid.data(), lw.ln2_g, eps, T, C, a.ln2.data(), a.rstd2.data());  // (T, C)
        linear_forward(a.ln2.data(), lw.fc_w, lw.fc_b, T, C, H, a.fc.data());                  // (T, H)
        gelu_forward(a.fc.data(), T * H, a.fc_act.data());                                     // (T, H)
        F* out = acts.res[l + 1].data();
        linear_forward(a.fc_act.data(), lw.mproj_w, lw.mproj_b, T, H, C, out);                  // (T, C)
        for (int64_t i = 0; i < T * C; i++) out[i] += a.res_mid[i];
    }
    rmsnorm_forward(acts.res[cfg_.layers].data(), w.lnf_g, eps, T, C, acts.lnf.data(), acts.rstdf.data());
    linear_forward(acts.lnf.data(), w.head_w, (const F*)nullptr, T, C, V, acts.logits.data());  // (T, V)
    return cross_entropy(acts.logits.data(), tokens, T, V, F(0), (F*)nullptr, pixel_nats);
}

template <typename F>
void Net<F>::pooled_lnf(F* out) const {
    const int64_t T = cfg_.n_ctx(), C = cfg_.width;
    std::fill(out, out + C, F(0));
    for (int64_t p = 0; p < T; p++)
        for (int64_t c = 0; c < C; c++) out[c] += acts.lnf[p * C + c];
    for (int64_t c = 0; c < C; c++) out[c] /= F(T);
}

template <typename F>
void Net<F>::backward(const Weights<F>& w, const int32_t* tokens, F scale, const Weights<F>& g, const F* dpooled) {
    const int64_t T = cfg_.n_ctx(), C = cfg_.width, H = cfg_.hidden(), NH = cfg_.heads, V = cfg_.vocab;
    dres.assign(T * C, F(0));
    dln.resize(T * C);
    dqkv.resize(T * 3 * C);
    datty.resize(T * C);
    dfc.resize(T * H);

    // loss -> logits (in place) -> final norm -> residual stream
    F* dlogits = acts.logits.data();
    cross_entropy(acts.logits.data(), tokens, T, V, scale, dlogits);
    linear_backward(dlogits, acts.lnf.data(), w.head_w, T, C, V, dln.data(), g.head_w, (F*)nullptr);
    if (dpooled)  // pooled = mean over positions: each position gets 1/T of its gradient
        for (int64_t p = 0; p < T; p++)
            for (int64_t c = 0; c < C; c++) dln[p * C + c] += dpooled[c] / F(T);
    rmsnorm_backward(dln.data(), acts.res[cfg_.layers].data(), w.lnf_g, acts.rstdf.data(), T, C, dres.data(),
                     g.lnf_g);
    for (int32_t l = cfg_.layers - 1; l >= 0; l--) {
        const LayerWeights<F>& lw = w.layers[l];
        const LayerWeights<F>& lg = g.layers[l];
        LayerActs<F>& a = acts.layers[l];
        // dres holds d(res[l+1]); the MLP branch: res[l+1] = res_mid + mproj(gelu(fc(norm(res_mid))))
        linear_backward(dres.data(), a.fc_act.data(), lw.mproj_w, T, H, C, dfc.data(), lg.mproj_w, lg.mproj_b);
        gelu_backward(dfc.data(), a.fc.data(), T * H, dfc.data());
        linear_backward(dfc.data(), a.ln2.data(), lw.fc_w, T, C, H, dln.data(), lg.fc_w, lg.fc_b);
        rmsnorm_backward(dln.data(), a.res_mid.data(), lw.ln2_g, a.rstd2.data(), T, C, dres.data(), lg.ln2_g);
        // dres now holds d(res_mid); the attention branch: res_mid = res[l] + proj(attn(qkv(norm(res[l]))))
        linear_backward(dres.data(), a.atty.data(), lw.proj_w, T, C, C, datty.data(), lg.proj_w, lg.proj_b);
        attention_backward(datty.data(), a.qkv.data(), a.att.data(), T, C, NH, dqkv.data(), scratch.data());
        linear_backward(dqkv.data(), a.ln1.data(), lw.qkv_w, T, C, 3 * C, dln.data(), lg.qkv_w, lg.qkv_b);
        rmsnorm_backward(dln.data(), acts.res[l].data(), lw.ln1_g, a.rstd1.data(), T, C, dres.data(), lg.ln1_g);
    }
    embedding_backward(dres.data(), tokens, T, C, g.sos, g.wte, g.wpe);
}

template <typename F>
double clf_head(const F* pooled, const F* W, const F* b, int32_t K, int64_t C, int32_t label, F scale, F* dW, F* db,
                F* dpooled, int32_t* pred) {
    std::vector<F> z(static_cast<size_t>(K));
    for (int32_t k = 0; k < K; k++) {
        F s = b[k];
        for (int64_t c = 0; c < C; c++) s += W[k * C + c] * pooled[c];
        z[size_t(k)] = s;
    }
    const int32_t arg = int32_t(std::max_element(z.begin(), z.end()) - z.begin());
    if (pred) *pred = arg;
    const F m = z[size_t(arg)];
    const double zl = double(z[size_t(label)] - m);
    F sum = 0;
    for (F& v : z) sum += (v = std::exp(v - m));
    const double nll = std::log(double(sum)) - zl;
    if (dW) {
        std::fill(dpooled, dpooled + C, F(0));
        for (int32_t k = 0; k < K; k++) {
            const F d = (z[size_t(k)] / sum - (k == label ? F(1) : F(0))) * scale;  // dlogit_k
            db[k] += d;
            for (int64_t c = 0; c < C; c++) {
                dW[k * C + c] += d * pooled[c];
                dpooled[c] += d * W[k * C + c];
            }
        }
    }
    return nll;
}

double train_flops_per_image(const ModelConfig& cfg) {
    const double T = cfg.n_ctx(), C = cfg.width, H = cfg.hidden(), V = cfg.vocab, L = cfg.layers;
    const double matmul_params = L * (3 * C * C + C * C + 2 * C * H) + V * C;  // weights used in GEMMs
    const double attn = L * 2.0 * (T * (T + 1) / 2) * C;                        // q·k and p·v, lower triangle
    const double fwd = 2.0 * T * matmul_params + 2.0 * attn;
    return 3.0 * fwd;  // backward = 2x forward
}

template struct LayerWeights<float>;
template struct LayerWeights<double>;
template Weights<float> bind_weights<float>(const ModelConfig&, float*);
template Weights<double> bind_weights<double>(const ModelConfig&, double*);
template class Net<float>;
template class Net<double>;
template double clf_head<float>(const float*, const float*, const float*, int32_t, int64_t, int32_t, float, float*,
                                float*, float*, int32_t*);
template double clf_head<double>(const double*, const double*, const double*, int32_t, int64_t, int32_t, double,
                                 double*, double*, double*, int32_t*);

// --- TrainCompute ------------------------------------------------------------------------------------------
// Checked here, on the caller's thread: an exception must not escape a pool worker.
static void check_tokens(const int32_t* tokens, int64_t n, int32_t V) {
    for (int64_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            throw Error("trainer: token " + std::to_string(tokens[i]) + " out of range of the palette (" +
                        std::to_string(V) + " colours)");
}

TrainCompute::TrainCompute(const ModelConfig& cfg, int32_t threads)
    : cfg_(cfg), n_params_(param_count(param_layout(cfg))), pool_(std::make_unique<ThreadPool>(threads)) {
    nets_.resize(pool_->size());
    grads_.resize(pool_->size());
    head_grads_.resize(pool_->size());
}

TrainCompute::~TrainCompute() = default;

int32_t TrainCompute::threads() const { return pool_->size(); }

std::string TrainCompute::describe() const { return "cpu, " + std::to_string(threads()) + " threads"; }

double TrainCompute::forward_backward(const float* params, const int32_t* tokens, int32_t B, float scale,
                                      float* grads) {
    const int64_t T = cfg_.n_ctx();
    check_tokens(tokens, int64_t(B) * T, cfg_.vocab);
    Weights<float> w = bind_weights(cfg_, const_cast<float*>(params));
    std::vector<double> nll(B, 0.0);
    // Images are split into fixed lanes (one per thread), each with its own gradient buffer, and the lanes
    // are summed in order: the result does not depend on which pool thread ran which lane.
    const int32_t lanes = std::min<int32_t>(B, int32_t(grads_.size()));
    pool_->parallel_for(lanes, 1, [&](int64_t l0, int64_t l1, int32_t) {
        for (int64_t l = l0; l < l1; l++) {
            if (!nets_[l]) nets_[l] = std::make_unique<Net<float>>(cfg_);
            Net<float>& net = *nets_[l];
            grads_[l].assign(n_params_, 0.0f);
            Weights<float> g = bind_weights(cfg_, grads_[l].data());
            for (int64_t b = l * B / lanes; b < (l + 1) * B / lanes; b++) {
                nll[b] = net.forward(w, tokens + b * T, nullptr);
                net.backward(w, tokens + b * T, scale, g);
            }
        }
    });
    // reduce the lanes' gradients in lane order, parallel over parameters
    pool_->parallel_for(int64_t(n_params_), 4096, [&](int64_t i0, int64_t i1, int32_t) {
        for (int32_t l = 0; l < lanes; l++) {
            const float* gt = grads_[l].data();
            for (int64_t i = i0; i < i1; i++) grads[i] += gt[i];
        }
    });
    double total = 0;
    for (double v : nll) total += v;
    return total;
}

TrainCompute::ClfStats TrainCompute::forward_backward_clf(const float* params, const float* head, int32_t K,
                                                          const int32_t* tokens, const int32_t* labels, int32_t B,
                                                          float gen_scale, float clf_scale, float* grads,
                                                          float* head_grads) {
    const int64_t T = cfg_.n_ctx(), C = cfg_.width;
    check_tokens(tokens, int64_t(B) * T, cfg_.vocab);
    for (int32_t b = 0; b < B; b++)
        if (labels[b] < 0 || labels[b] >= K)
            throw Error("trainer: label " + std::to_string(labels[b]) + " out of range of " + std::to_string(K) +
                        " classes");
    Weights<float> w = bind_weights(cfg_, const_cast<float*>(params));
    const size_t n_head = size_t(K) * size_t(C) + size_t(K);
    std::vector<double> nll(B, 0.0), cnll(B, 0.0);
    std::vector<int32_t> pred(B, -1);
    const int32_t lanes = std::min<int32_t>(B, int32_t(grads_.size()));
    pool_->parallel_for(lanes, 1, [&](int64_t l0, int64_t l1, int32_t) {
        std::vector<float> pooled(static_cast<size_t>(C)), dpooled(static_cast<size_t>(C));
        for (int64_t l = l0; l < l1; l++) {
            if (!nets_[l]) nets_[l] = std::make_unique<Net<float>>(cfg_);
            Net<float>& net = *nets_[l];
            grads_[l].assign(n_params_, 0.0f);
            head_grads_[l].assign(n_head, 0.0f);
            Weights<float> g = bind_weights(cfg_, grads_[l].data());
            float* hg = head_grads_[l].data();
            for (int64_t b = l * B / lanes; b < (l + 1) * B / lanes; b++) {
                nll[b] = net.forward(w, tokens + b * T, nullptr);
                net.pooled_lnf(pooled.data());
                cnll[b] = clf_head(pooled.data(), head, head + size_t(K) * C, K, C, labels[b], clf_scale, hg,
                                   hg + size_t(K) * C, dpooled.data(), &pred[b]);
                net.backward(w, tokens + b * T, gen_scale, g, dpooled.data());
            }
        }
    });
    pool_->parallel_for(int64_t(n_params_), 4096, [&](int64_t i0, int64_t i1, int32_t) {
        for (int32_t l = 0; l < lanes; l++) {
            const float* gt = grads_[l].data();
            for (int64_t i = i0; i < i1; i++) grads[i] += gt[i];
        }
    });
    for (int32_t l = 0; l < lanes; l++)
        for (size_t i = 0; i < n_head; i++) head_grads[i] += head_grads_[l][i];
    ClfStats st;
    for (int32_t b = 0; b < B; b++) {
        st.gen_nll += nll[b];
        st.clf_nll += cnll[b];
        st.correct += pred[b] == labels[b];
    }
    return st;
}

double TrainCompute::forward_nll(const float* params, const int32_t* tokens, int32_t B, float* pixel_nats) {
    const int64_t T = cfg_.n_ctx();
    check_tokens(tokens, int64_t(B) * T, cfg_.vocab);
    Weights<float> w = bind_weights(cfg_, const_cast<float*>(params));
    std::vector<double> nll(B, 0.0);
    const int32_t lanes = std::min<int32_t>(B, int32_t(nets_.size()));
    pool_->parallel_for(lanes, 1, [&](int64_t l0, int64_t l1, int32_t) {
        for (int64_t l = l0; l < l1; l++) {
            if (!nets_[l]) nets_[l] = std::make_unique<Net<float>>(cfg_);
            for (int64_t b = l * B / lanes; b < (l + 1) * B / lanes; b++)
                nll[b] = nets_[l]->forward(w, tokens + b * T, pixel_nats ? pixel_nats + b * T : nullptr);
        }
    });
    double total = 0;
    for (double v : nll) total += v;
    return total;
}

}  // namespace igpt::train
