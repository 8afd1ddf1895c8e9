// The linear probe: multinomial logistic regression with an L2 penalty on the weights, solved by L-BFGS
// (LBFGS++), on standardised features; the penalty is chosen on a seeded validation split of the training
// features, then the probe is refit on all of them and scored on the test features.
//
//   loss(W, b) = 1/n sum_i [ logsumexp(W x_i + b) - (W x_i + b)_{y_i} ] + l2/2 * ||W||^2
#pragma once
#include <cstdint>
#include <vector>

namespace igpt {
class ThreadPool;
}

namespace igpt::probe {

// Per-feature mean and 1/std of the training features (a constant feature gets 1/std = 1).
struct Standardizer {
    std::vector<float> mean, inv_std;
    void fit(const float* X, int64_t n, int64_t D);
    void apply(float* X, int64_t n) const;  // in place, (n, D)
};

// The loss above and its gradient for theta = [W (K, D) row-major, b (K)]; X (n, D) row-major, labels in
// [0, K). Partial sums run over fixed row blocks (on `pool` when given) and are added in block order, so
// the result does not depend on the thread count. grad may be null. Double instantiation for the tests.
template <typename F>
double logreg_loss(const F* X, const int32_t* y, int64_t n, int64_t D, int32_t K, const double* theta, double l2,
                   double* grad, ThreadPool* pool);

struct LogRegFit {
    int32_t K = 0;
    int64_t D = 0;
    std::vector<double> theta;  // [W (K, D), b (K)]
    double loss = 0;
    int32_t iterations = 0;
};
struct LogRegParams {
    double l2 = 1e-3;
    int32_t max_iterations = 500;
    double epsilon_rel = 1e-5;  // stop when |grad| <= epsilon_rel * max(1, |theta|)
};
LogRegFit fit_logreg(const float* X, const int32_t* y, int64_t n, int64_t D, int32_t K, const LogRegParams& p,
                     ThreadPool* pool);
// argmax class per row
std::vector<int32_t> predict_logreg(const LogRegFit& f, const float* X, int64_t n);
double accuracy(const std::vector<int32_t>& pred, const int32_t* y);

struct ProbeOptions {
    std::vector<double> l2_grid = {1e-5, 1e-4, 1e-3, 1e-2, 1e-1};
    double val_fraction = 0.2;  // of the training features, to choose l2
    uint64_t seed = 1;
    int32_t max_iterations = 500;
    int32_t threads = 0;
};
struct ProbeResult {
    std::vector<std::pair<double, double>> grid;  // (l2, validation accuracy)
    double l2 = 0;                                // chosen
    double val_acc = 0, train_acc = 0, test_acc = 0;
    int32_t iterations = 0;                       // of the final fit
    Standardizer standardizer;                    // of the training features
    LogRegFit fit;                                // the final probe, on standardised features
};
// Standardises with the training statistics, chooses l2, refits, scores. Labels in [0, K). Copies the
// features (the caller's stay unchanged). nte may be 0 (no test set: test_acc stays 0).
ProbeResult linear_probe(const float* Xtr, const int32_t* ytr, int64_t ntr, const float* Xte, const int32_t* yte,
                         int64_t nte, int64_t D, int32_t K, const ProbeOptions& o);

}  // namespace igpt::probe
