// CpuBackend: causal softmax attention (naive form, probabilities saved for backward).
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"

namespace moe {

// q, k [B*T, H, dk]; v [B*T, H, dv]; probs [B, H, T, T]; out [B*T, H, dv].
// Every (b, h, t) query row is independent, so the forward parallelizes over all of them.
void CpuBackend::attention_forward(const float* q, const float* k, const float* v, int64_t B,
                                   int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                   float* probs, float* out) {
    const int64_t rows = B * H * T;
    const int nt = team(B * H * T * T * (dk + dv) / 2);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t idx = 0; idx < rows; ++idx) {
        const int64_t t = idx % T;
        const int64_t h = (idx / T) % H;
        const int64_t b = idx / (T * H);
        const float* qt = q + ((b * T + t) * H + h) * dk;
        float* p = probs + idx * T;  // row (b, h, t): [T]
        // scores, causal: keys 0..t only
        float mx = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
            const float* ks = k + ((b * T + s) * H + h) * dk;
            float dot = 0.0f;
            for (int64_t i = 0; i < dk; ++i) dot += qt[i] * ks[i];
            p[s] = dot * scale;
            mx = std::max(mx, p[s]);
        }
        double se = 0.0;
        for (int64_t s = 0; s <= t; ++s) {
            p[s] = std::exp(p[s] - mx);
            se += p[s];
        }
        const float inv = static_cast<float>(1.0 / se);
        for (int64_t s = 0; s <= t; ++s) p[s] *= inv;
        for (int64_t s = t + 1; s < T; ++s) p[s] = 0.0f;
        // out_t = sum_s p_s v_s
        float* ot = out + ((b * T + t) * H + h) * dv;
        for (int64_t i = 0; i < dv; ++i) ot[i] = 0.0f;
        for (int64_t s = 0; s <= t; ++s) {
            const float* vs = v + ((b * T + s) * H + h) * dv;
            const float ps = p[s];
            for (int64_t i = 0; i < dv; ++i) ot[i] += ps * vs[i];
        }
    }
}

// For query t:  dP_ts = dout_t . v_s;  dS_ts = P_ts (dP_ts - sum_s' P_ts' dP_ts');
//   dq_t += scale * sum_s dS_ts k_s;  dk_s += scale * dS_ts q_t;  dv_s += P_ts dout_t.
// dk and dv sum over queries, so one thread owns a whole (b, h) pair and walks t in order.
void CpuBackend::attention_backward(const float* dout, const float* q, const float* k,
                                    const float* v, const float* probs, int64_t B, int64_t T,
                                    int64_t H, int64_t dk, int64_t dv, float scale, float* dq,
                                    float* dk_, float* dv_) {
    const int64_t pairs = B * H;
    const int nt = static_cast<int>(
        std::min<int64_t>(team(B * H * T * T * (dk + dv)), std::max<int64_t>(1, pairs)));
    float* scratch = grow(row_scratch_, static_cast<size_t>(nt) * T);
#pragma omp parallel num_threads(nt)
    {
        float* dp = scratch + static_cast<int64_t>(omp_get_thread_num()) * T;
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < pairs; ++bh) {
            const int64_t b = bh / H, h = bh % H;
            for (int64_t t = 0; t < T; ++t) {
                const float* p = probs + (bh * T + t) * T;
                const float* dot_ = dout + ((b * T + t) * H + h) * dv;
                const float* qt = q + ((b * T + t) * H + h) * dk;
                float* dqt = dq + ((b * T + t) * H + h) * dk;
                double dsum = 0.0;
                for (int64_t s = 0; s <= t; ++s) {
                    const float* vs = v + ((b * T + s) * H + h) * dv;
                    float d = 0.0f;
                    for (int64_t i = 0; i < dv; ++i) d += dot_[i] * vs[i];
                    dp[s] = d;
                    dsum += static_cast<double>(p[s]) * d;
                }
                const float D = static_cast<float>(dsum);
                for (int64_t s = 0; s <= t; ++s) {
                    const float ds = p[s] * (dp[s] - D) * scale;
                    const float* ks = k + ((b * T + s) * H + h) * dk;
                    float* dks = dk_ + ((b * T + s) * H + h) * dk;
                    float* dvs = dv_ + ((b * T + s) * H + h) * dv;
                    for (int64_t i = 0; i < dk; ++i) {
                        dqt[i] += ds * ks[i];
                        dks[i] += ds * qt[i];
                    }
                    const float ps = p[s];
                    for (int64_t i = 0; i < dv; ++i) dvs[i] += ps * dot_[i];
                }
            }
        }
    }
}

}  // namespace moe
