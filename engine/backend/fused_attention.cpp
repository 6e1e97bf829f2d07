// Host defaults of Backend's fused attention: per query, an online softmax over its visible keys
// (the flash-attention recurrence) in double, the probabilities never stored. They are the
// reference for the device kernels (gpu/kernels/flash_attention.cu) and are checked against
// attention_forward / _backward and finite differences in tests/tst_backend_ops.cpp; the CPU
// backend keeps its own blocked attention for training (it does not prefer these).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"

namespace moe {

namespace {

// Query t sees keys [first_key(t), t].
int64_t first_key(int64_t t, int64_t window) {
    return window > 0 ? std::max<int64_t>(0, t - window + 1) : 0;
}

double dot(const float* a, const float* b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(a[i]) * b[i];
    return s;
}

void check_window(const char* op, int64_t window) {
    if (window < 0)
        throw Error(std::string(op) + ": window must be >= 0, got " + std::to_string(window));
}

}  // namespace

void Backend::fused_attention_forward(const float* q, const float* k, const float* v, int64_t B,
                                      int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                      int64_t window, float* lse, float* out) {
    check_window("fused_attention_forward", window);
    std::vector<double> acc(static_cast<size_t>(dv));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t t = 0; t < T; ++t) {
                const float* qt = q + ((b * T + t) * H + h) * dk;
                double m = -INFINITY, l = 0;
                std::fill(acc.begin(), acc.end(), 0.0);
                for (int64_t s = first_key(t, window); s <= t; ++s) {
                    const double x = double(scale) * dot(qt, k + ((b * T + s) * H + h) * dk, dk);
                    const double m_new = std::max(m, x);
                    const double c = std::exp(m - m_new), p = std::exp(x - m_new);
                    l = l * c + p;
                    const float* vs = v + ((b * T + s) * H + h) * dv;
                    for (int64_t j = 0; j < dv; ++j) acc[j] = acc[j] * c + p * vs[j];
                    m = m_new;
                }
                float* ot = out + ((b * T + t) * H + h) * dv;
                for (int64_t j = 0; j < dv; ++j) ot[j] = static_cast<float>(acc[j] / l);
                lse[(b * H + h) * T + t] = static_cast<float>(m + std::log(l));
            }
}

void Backend::fused_attention_backward(const float* dout, const float* q, const float* k,
                                       const float* v, const float* out, const float* lse,
                                       int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv,
                                       float scale, int64_t window, float* dq, float* dk_,
                                       float* dv_) {
    check_window("fused_attention_backward", window);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t t = 0; t < T; ++t) {
                const int64_t row = (b * T + t) * H + h;
                const float* qt = q + row * dk;
                const float* dot_ = dout + row * dv;
                const double D = dot(dot_, out + row * dv, dv);
                const double L = lse[(b * H + h) * T + t];
                for (int64_t s = first_key(t, window); s <= t; ++s) {
                    const int64_t key = (b * T + s) * H + h;
                    const double p = std::exp(double(scale) * dot(qt, k + key * dk, dk) - L);
                    const double dp = dot(dot_, v + key * dv, dv);
                    const double ds = p * (dp - D) * double(scale);
                    for (int64_t j = 0; j < dv; ++j) dv_[key * dv + j] += float(p * dot_[j]);
                    for (int64_t j = 0; j < dk; ++j) {
                        dq[row * dk + j] += float(ds * k[key * dk + j]);
                        dk_[key * dk + j] += float(ds * qt[j]);
                    }
                }
            }
}

}  // namespace moe
