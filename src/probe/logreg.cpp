// Multinomial logistic regression by L-BFGS (see logreg.h).
#include "logreg.h"

#include <Eigen/Core>
#include <LBFGS.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "cpu/thread_pool.h"
#include "dataset.h"  // mix_seed
#include "error.h"
#include "sampler.h"

namespace igpt::probe {

namespace {
template <typename F>
using Mat = Eigen::Matrix<F, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
constexpr int64_t kRowBlock = 512;  // rows per partial sum: fixed, so sums do not depend on threads
}  // namespace

void Standardizer::fit(const float* X, int64_t n, int64_t D) {
    std::vector<double> s(size_t(D), 0.0), ss(size_t(D), 0.0);
    for (int64_t i = 0; i < n; i++)
        for (int64_t d = 0; d < D; d++) {
            const double v = X[i * D + d];
            s[size_t(d)] += v;
            ss[size_t(d)] += v * v;
        }
    mean.resize(size_t(D));
    inv_std.resize(size_t(D));
    for (int64_t d = 0; d < D; d++) {
        const double m = n ? s[size_t(d)] / double(n) : 0.0;
        const double var = n ? std::max(0.0, ss[size_t(d)] / double(n) - m * m) : 0.0;
        mean[size_t(d)] = float(m);
        inv_std[size_t(d)] = var > 1e-12 ? float(1.0 / std::sqrt(var)) : 1.0f;
    }
}

void Standardizer::apply(float* X, int64_t n) const {
    const int64_t D = int64_t(mean.size());
    for (int64_t i = 0; i < n; i++)
        for (int64_t d = 0; d < D; d++) X[i * D + d] = (X[i * D + d] - mean[size_t(d)]) * inv_std[size_t(d)];
}

template <typename F>
double logreg_loss(const F* X, const int32_t* y, int64_t n, int64_t D, int32_t K, const double* theta, double l2,
                   double* grad, ThreadPool* pool) {
    if (n <= 0) throw Error("logistic regression needs at least one example");
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= K)
            throw Error("label " + std::to_string(y[i]) + " out of range of " + std::to_string(K) + " classes");
    const Mat<F> W = Eigen::Map<const Mat<double>>(theta, K, D).template cast<F>();
    const Eigen::Matrix<F, 1, Eigen::Dynamic> b =
        Eigen::Map<const Eigen::Matrix<double, 1, Eigen::Dynamic>>(theta + K * D, K).template cast<F>();
    const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
    std::vector<double> nll(size_t(blocks), 0.0);
    std::vector<Mat<double>> gW(grad ? size_t(blocks) : 0);
    std::vector<Eigen::Matrix<double, 1, Eigen::Dynamic>> gb(grad ? size_t(blocks) : 0);
    auto run = [&](int64_t k0, int64_t k1, int32_t) {
        for (int64_t k = k0; k < k1; k++) {
            const int64_t r0 = k * kRowBlock, rows = std::min(kRowBlock, n - r0);
            Eigen::Map<const Mat<F>> x(X + r0 * D, rows, D);
            Mat<F> z = x * W.transpose();  // (rows, K)
            z.rowwise() += b;
            double s = 0;
            for (int64_t i = 0; i < rows; i++) {
                auto zi = z.row(i);
                const int32_t t = y[r0 + i];
                const F m = zi.maxCoeff();
                const double zt = double(zi[t] - m);
                zi.array() = (zi.array() - m).exp();
                const F sum = zi.sum();
                s += std::log(double(sum)) - zt;  // -ln p(t)
                if (grad) {
                    zi /= sum;  // softmax
                    zi[t] -= F(1);
                }
            }
            nll[size_t(k)] = s;
            if (grad) {
                gW[size_t(k)] = (z.transpose() * x).template cast<double>();  // (K, D)
                gb[size_t(k)] = z.colwise().sum().template cast<double>();
            }
        }
    };
    if (pool) pool->parallel_for(blocks, 1, run);
    else run(0, blocks, 0);
    double loss = 0;
    for (double v : nll) loss += v;
    loss /= double(n);
    Eigen::Map<const Eigen::VectorXd> wv(theta, K * D);
    loss += 0.5 * l2 * wv.squaredNorm();
    if (grad) {
        Eigen::Map<Mat<double>> GW(grad, K, D);
        Eigen::Map<Eigen::Matrix<double, 1, Eigen::Dynamic>> GB(grad + K * D, K);
        GW.setZero();
        GB.setZero();
        for (int64_t k = 0; k < blocks; k++) {
            GW += gW[size_t(k)];
            GB += gb[size_t(k)];
        }
        GW /= double(n);
        GB /= double(n);
        GW += l2 * Eigen::Map<const Mat<double>>(theta, K, D);
    }
    return loss;
}

template double logreg_loss<float>(const float*, const int32_t*, int64_t, int64_t, int32_t, const double*, double,
                                   double*, ThreadPool*);
template double logreg_loss<double>(const double*, const int32_t*, int64_t, int64_t, int32_t, const double*, double,
                                    double*, ThreadPool*);

LogRegFit fit_logreg(const float* X, const int32_t* y, int64_t n, int64_t D, int32_t K, const LogRegParams& p,
                     ThreadPool* pool) {
    if (n <= 0) throw Error("logistic regression needs at least one example");
    for (int64_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= K)
            throw Error("label " + std::to_string(y[i]) + " out of range of " + std::to_string(K) + " classes");
    LogRegFit f;
    f.K = K;
    f.D = D;
    const int64_t P = int64_t(K) * D + K;
    // The objective remembers the best point it has seen: a line search that gives up (LBFGS++ throws)
    // then still leaves the best parameters found so far.
    double best = std::numeric_limits<double>::infinity();
    Eigen::VectorXd best_x = Eigen::VectorXd::Zero(P);
    auto fun = [&](const Eigen::VectorXd& x, Eigen::VectorXd& g) {
        const double v = logreg_loss<float>(X, y, n, D, K, x.data(), p.l2, g.data(), pool);
        if (v < best) {
            best = v;
            best_x = x;
        }
        return v;
    };
    LBFGSpp::LBFGSParam<double> param;
    param.epsilon = 1e-7;
    param.epsilon_rel = p.epsilon_rel;
    param.max_iterations = p.max_iterations;
    param.past = 5;
    param.delta = 1e-9;
    LBFGSpp::LBFGSSolver<double> solver(param);
    Eigen::VectorXd x = Eigen::VectorXd::Zero(P);
    double fx = 0;
    try {
        f.iterations = solver.minimize(fun, x, fx);
    } catch (const std::exception&) {
        f.iterations = p.max_iterations;  // the line search stalled: keep the best point (near a minimum)
    }
    f.theta.assign(best_x.data(), best_x.data() + P);
    f.loss = best;
    return f;
}

std::vector<int32_t> predict_logreg(const LogRegFit& f, const float* X, int64_t n) {
    std::vector<int32_t> out(static_cast<size_t>(n));
    const Mat<float> W = Eigen::Map<const Mat<double>>(f.theta.data(), f.K, f.D).cast<float>();
    for (int64_t i = 0; i < n; i++) {
        Eigen::Map<const Eigen::Matrix<float, 1, Eigen::Dynamic>> x(X + i * f.D, f.D);
        int32_t arg = 0;
        double bestz = -std::numeric_limits<double>::infinity();
        for (int32_t k = 0; k < f.K; k++) {
            const double z = double(W.row(k).dot(x)) + f.theta[size_t(f.K * f.D + k)];
            if (z > bestz) {
                bestz = z;
                arg = k;
            }
        }
        out[size_t(i)] = arg;
    }
    return out;
}

double accuracy(const std::vector<int32_t>& pred, const int32_t* y) {
    if (pred.empty()) return 0;
    int64_t ok = 0;
    for (size_t i = 0; i < pred.size(); i++) ok += pred[i] == y[i];
    return double(ok) / double(pred.size());
}

ProbeResult linear_probe(const float* Xtr, const int32_t* ytr, int64_t ntr, const float* Xte, const int32_t* yte,
                         int64_t nte, int64_t D, int32_t K, const ProbeOptions& o) {
    if (ntr < 2) throw Error("the probe needs at least 2 training examples (have " + std::to_string(ntr) + ")");
    if (K < 2) throw Error("the probe needs at least 2 classes (have " + std::to_string(K) + ")");
    if (o.l2_grid.empty()) throw Error("empty L2 grid");
    ThreadPool pool(o.threads);
    Standardizer st;
    st.fit(Xtr, ntr, D);
    std::vector<float> tr(Xtr, Xtr + ntr * D), te(Xte, Xte + std::max<int64_t>(nte, 0) * D);
    st.apply(tr.data(), ntr);
    st.apply(te.data(), nte);

    // seeded validation split of the training features
    std::vector<int64_t> perm(static_cast<size_t>(ntr));
    for (int64_t i = 0; i < ntr; i++) perm[size_t(i)] = i;
    Rng rng(train::mix_seed(o.seed, 0x9A0BEull));
    for (int64_t i = ntr - 1; i > 0; i--) std::swap(perm[size_t(i)], perm[size_t(rng.next() % uint64_t(i + 1))]);
    const int64_t nval = std::clamp<int64_t>(int64_t(double(ntr) * o.val_fraction + 0.5), 1, ntr - 1);
    std::vector<float> xa(size_t(ntr - nval) * D), xv(size_t(nval) * D);
    std::vector<int32_t> ya(static_cast<size_t>(ntr - nval)), yv(static_cast<size_t>(nval));
    for (int64_t j = 0; j < ntr; j++) {
        const int64_t i = perm[size_t(j)];
        const bool val = j < nval;
        const int64_t r = val ? j : j - nval;
        std::copy_n(&tr[size_t(i * D)], D, (val ? xv : xa).begin() + ptrdiff_t(r * D));
        (val ? yv : ya)[size_t(r)] = ytr[i];
    }

    ProbeResult res;
    LogRegParams lp;
    lp.max_iterations = o.max_iterations;
    double best_acc = -1;
    for (double l2 : o.l2_grid) {
        lp.l2 = l2;
        const LogRegFit f = fit_logreg(xa.data(), ya.data(), ntr - nval, D, K, lp, &pool);
        const double acc = accuracy(predict_logreg(f, xv.data(), nval), yv.data());
        res.grid.push_back({l2, acc});
        if (acc > best_acc) {  // ties: the first in the grid wins
            best_acc = acc;
            res.l2 = l2;
        }
    }
    res.val_acc = best_acc;
    lp.l2 = res.l2;
    const LogRegFit f = fit_logreg(tr.data(), ytr, ntr, D, K, lp, &pool);
    res.iterations = f.iterations;
    res.train_acc = accuracy(predict_logreg(f, tr.data(), ntr), ytr);
    if (nte > 0) res.test_acc = accuracy(predict_logreg(f, te.data(), nte), yte);
    res.standardizer = st;
    res.fit = f;
    return res;
}

}  // namespace igpt::probe
