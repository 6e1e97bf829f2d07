// Optimizer and load-balancing ops of the CPU backend.
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_blocked_reduce.h"

namespace moe {

namespace {

// sum(x^2) in double over one block, in kLanes interleaved partial sums (added in lane order at
// the end): independent accumulators let the compiler vectorize, and the order is still fixed.
double sum_squares_block(const float* x, int64_t n) {
    constexpr int64_t kLanes = 8;
    double lane[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int64_t j = 0; j < kLanes; ++j) lane[j] += double(x[i + j]) * double(x[i + j]);
    for (; i < n; ++i) lane[i % kLanes] += double(x[i]) * double(x[i]);
    double s = 0.0;
    for (int64_t j = 0; j < kLanes; ++j) s += lane[j];
    return s;
}

}  // namespace

double CpuBackend::sum_squares(const float* x, int64_t n) {
    return blocked_reduce(x, n, sum_squares_block);
}

void CpuBackend::adamw_update(float* p, const float* g, float* m, float* v, int64_t n, float lr,
                              float beta1, float beta2, float eps, float weight_decay,
                              float grad_scale, int64_t step) {
    const float bc1 = 1.0f - static_cast<float>(std::pow(double(beta1), double(step)));
    const float bc2 = 1.0f - static_cast<float>(std::pow(double(beta2), double(step)));
    const int nt = team(n * 8);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t i = 0; i < n; ++i) {
        const float gi = g[i] * grad_scale;
        m[i] = beta1 * m[i] + (1.0f - beta1) * gi;
        v[i] = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        const float update = (m[i] / bc1) / (std::sqrt(v[i] / bc2) + eps);
        p[i] -= lr * (update + weight_decay * p[i]);
    }
}

void CpuBackend::balance_bias_update(float* bias, const int64_t* counts, int64_t n_experts,
                                     float gamma) {
    if (n_experts <= 0) return;
    double mean = 0.0;
    for (int64_t i = 0; i < n_experts; ++i) mean += double(counts[i]);
    mean /= double(n_experts);
    for (int64_t i = 0; i < n_experts; ++i) {
        const double c = double(counts[i]);
        const float sign = c < mean ? 1.0f : (c > mean ? -1.0f : 0.0f);
        bias[i] += gamma * sign;
    }
}

}  // namespace moe
