// Host defaults of Backend's fused attention: per query, an online softmax over its visible keys
// (the flash-attention recurrence) in double, the probabilities never stored. AttentionMath::Bf16
// rounds the operands of each product to bf16 as the tensor-core kernels do (q, k, v, dout once;
// p and ds where they are multiplied; D from the fp32 dout). They are the
// reference for the device kernels (gpu/kernels/flash_attention.cu) and are checked against
// attention_forward / _backward and finite differences in tests/tst_backend_ops.cpp; the CPU
// backend keeps its own blocked attention for training (it does not prefer these).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/error.h"
#include "quant/number_formats.h"

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

// With AttentionMath::Bf16, the inputs rounded to bf16 once (the tensor cores' operands);
// with Fp32, the caller's pointer.
const float* operand(const float* x, int64_t n, AttentionMath math, std::vector<float>& copy) {
    if (math == AttentionMath::Fp32) return x;
    copy.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) copy[size_t(i)] = round_to_bf16(x[i]);
    return copy.data();
}

// A probability or score gradient as the second product sees it.
double product_operand(double x, AttentionMath math) {
    return math == AttentionMath::Fp32 ? x : double(round_to_bf16(float(x)));
}

void check_window(const char* op, int64_t window) {
    if (window < 0)
        throw Error(std::string(op) + ": window must be >= 0, got " + std::to_string(window));
}

}  // namespace

void Backend::fused_attention_forward(const float* q_in, const float* k_in, const float* v_in,
                                      int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv,
                                      float scale, int64_t window, float* lse, float* out,
                                      AttentionMath math) {
    check_window("fused_attention_forward", window);
    std::vector<float> qc, kc, vc;
    const float* q = operand(q_in, B * T * H * dk, math, qc);
    const float* k = operand(k_in, B * T * H * dk, math, kc);
    const float* v = operand(v_in, B * T * H * dv, math, vc);
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
                    const double pv = product_operand(p, math);
                    const float* vs = v + ((b * T + s) * H + h) * dv;
                    for (int64_t j = 0; j < dv; ++j) acc[j] = acc[j] * c + pv * vs[j];
                    m = m_new;
                }
                float* ot = out + ((b * T + t) * H + h) * dv;
                for (int64_t j = 0; j < dv; ++j) ot[j] = static_cast<float>(acc[j] / l);
                lse[(b * H + h) * T + t] = static_cast<float>(m + std::log(l));
            }
}

void Backend::fused_attention_backward(const float* dout_in, const float* q_in,
                                       const float* k_in, const float* v_in, const float* out,
                                       const float* lse, int64_t B, int64_t T, int64_t H,
                                       int64_t dk, int64_t dv, float scale, int64_t window,
                                       float* dq, float* dk_, float* dv_, AttentionMath math) {
    check_window("fused_attention_backward", window);
    std::vector<float> qc, kc, vc, dc;
    const float* q = operand(q_in, B * T * H * dk, math, qc);
    const float* k = operand(k_in, B * T * H * dk, math, kc);
    const float* v = operand(v_in, B * T * H * dv, math, vc);
    const float* dout = operand(dout_in, B * T * H * dv, math, dc);
    for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t t = 0; t < T; ++t) {
                const int64_t row = (b * T + t) * H + h;
                const float* qt = q + row * dk;
                const float* dot_ = dout + row * dv;
                // D from the fp32 dout, as the kernels compute it.
                const double D = dot(dout_in + row * dv, out + row * dv, dv);
                const double L = lse[(b * H + h) * T + t];
                for (int64_t s = first_key(t, window); s <= t; ++s) {
                    const int64_t key = (b * T + s) * H + h;
                    const double p = std::exp(double(scale) * dot(qt, k + key * dk, dk) - L);
                    const double dp = dot(dot_, v + key * dv, dv);
                    const double ds = product_operand(p * (dp - D) * double(scale), math);
                    const double pp = product_operand(p, math);
                    for (int64_t j = 0; j < dv; ++j) dv_[key * dv + j] += float(pp * dot_[j]);
                    for (int64_t j = 0; j < dk; ++j) {
                        dq[row * dk + j] += float(ds * k[key * dk + j]);
                        dk_[key * dk + j] += float(ds * qt[j]);
                    }
                }
            }
}

}  // namespace moe
