// CpuBackend: MoE router (gate forward/backward), sequence-wise balance loss, and token
// dispatch (route plan, permute, unpermute).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_math.h"
#include "core/error.h"

namespace moe {

using cpu::sigmoid;

namespace {

// Index of the largest value among candidates (cand[i] != 0); ties go to the lower index.
// The first candidate seeds the search so a NaN can never leave the result undefined.
int64_t argmax_candidates(const float* v, const uint8_t* cand, int64_t n) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; ++i)
        if (cand[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

}  // namespace

// logits [n, E] -> scores [n, E], topk_idx [n, K], topk_weight [n, K]; see backend.h.
void CpuBackend::moe_gate_forward(const float* logits, int64_t n, const GateParams& p,
                                  float* scores, int32_t* topk_idx, float* topk_weight) {
    validate_gate_params(p);
    const int64_t E = p.n_experts, K = p.top_k;
    const bool grouped = p.n_group > 1;
    const int64_t G = grouped ? p.n_group : 1, Eg = E / G;
    // Per thread: sel [E] and group scores [G] as floats; eligibility [E] and kept groups [G].
    const int nt = team(n * E * (K + 4));
    float* fscratch = grow(row_scratch_, static_cast<size_t>(nt) * (E + G));
    uint8_t* bscratch = grow(flags_, static_cast<size_t>(nt) * (E + G));
#pragma omp parallel num_threads(nt)
    {
        const int tid = omp_get_thread_num();
        float* sel = fscratch + tid * (E + G);
        float* gscore = sel + E;
        uint8_t* cand = bscratch + tid * (E + G);
        uint8_t* gcand = cand + E;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n; ++t) {
            const float* l = logits + t * E;
            float* s = scores + t * E;
            if (p.scoring == ScoringFunc::Sigmoid) {
                for (int64_t e = 0; e < E; ++e) s[e] = sigmoid(l[e]);
            } else {
                float mx = l[0];
                for (int64_t e = 1; e < E; ++e) mx = std::max(mx, l[e]);
                double se = 0.0;
                for (int64_t e = 0; e < E; ++e) {
                    s[e] = std::exp(l[e] - mx);
                    se += s[e];
                }
                const float inv = static_cast<float>(1.0 / se);
                for (int64_t e = 0; e < E; ++e) s[e] *= inv;
            }
            for (int64_t e = 0; e < E; ++e) sel[e] = s[e] + (p.bias ? p.bias[e] : 0.0f);
            std::memset(cand, 1, static_cast<size_t>(E));

            if (grouped) {
                // Group score: sum of the top-2 sel with a bias, the max without one.
                for (int64_t g = 0; g < G; ++g) {
                    const float* sg = sel + g * Eg;
                    float m1 = -INFINITY, m2 = -INFINITY;
                    for (int64_t j = 0; j < Eg; ++j) {
                        if (sg[j] > m1) {
                            m2 = m1;
                            m1 = sg[j];
                        } else if (sg[j] > m2) {
                            m2 = sg[j];
                        }
                    }
                    // A one-expert group has no second value; its score is its only value.
                    gscore[g] = (p.bias && Eg >= 2) ? m1 + m2 : m1;
                }
                // Keep the topk_group best groups; the experts of the others are ineligible.
                for (int64_t g = 0; g < G; ++g) gcand[g] = 1;
                for (int64_t i = 0; i < p.topk_group; ++i)
                    gcand[argmax_candidates(gscore, gcand, G)] = 0;  // 0 now means "kept"
                for (int64_t g = 0; g < G; ++g)
                    if (gcand[g])
                        for (int64_t j = 0; j < Eg; ++j) cand[g * Eg + j] = 0;
            }

            // Top-k by sel, descending, ties to the lower index; weights from unbiased scores.
            int32_t* idx = topk_idx + t * K;
            float* w = topk_weight + t * K;
            double wsum = 0.0;
            for (int64_t k = 0; k < K; ++k) {
                const int64_t e = argmax_candidates(sel, cand, E);
                cand[e] = 0;
                idx[k] = static_cast<int32_t>(e);
                w[k] = s[e];
                wsum += s[e];
            }
            if (p.norm_topk_prob) {
                const float denom = static_cast<float>(wsum) + 1e-20f;
                for (int64_t k = 0; k < K; ++k) w[k] = w[k] / denom * p.routed_scaling_factor;
            } else {
                for (int64_t k = 0; k < K; ++k) w[k] *= p.routed_scaling_factor;
            }
        }
    }
}

// With c_k = scores at the chosen experts, S = sum_k c_k, r = routed_scaling_factor:
//   norm:    w_k = r c_k / (S + eps)  ->  dc_j = (r dw_j - sum_k dw_k w_k) / (S + eps)
//   no norm: w_k = r c_k              ->  dc_j = r dw_j
// Then ds += d_scores_extra, and through the scoring function:
//   sigmoid: dl = ds s (1 - s);   softmax: dl = s (ds - sum_e s_e ds_e).
void CpuBackend::moe_gate_backward(const float* d_topk_weight, const float* d_scores_extra,
                                   const float* scores, const int32_t* topk_idx,
                                   const float* topk_weight, int64_t n, const GateParams& p,
                                   float* dlogits) {
    validate_gate_params(p);
    const int64_t E = p.n_experts, K = p.top_k;
    const float r = p.routed_scaling_factor;
    const int nt = team(n * E * 4);
    float* scratch = grow(row_scratch_, static_cast<size_t>(nt) * E);
#pragma omp parallel num_threads(nt)
    {
        float* ds = scratch + static_cast<int64_t>(omp_get_thread_num()) * E;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n; ++t) {
            const float* s = scores + t * E;
            const int32_t* idx = topk_idx + t * K;
            if (d_scores_extra) {
                std::memcpy(ds, d_scores_extra + t * E, sizeof(float) * E);
            } else {
                std::memset(ds, 0, sizeof(float) * E);
            }
            if (d_topk_weight) {
                const float* dw = d_topk_weight + t * K;
                if (p.norm_topk_prob) {
                    // Recompute S and w from scores so the result does not hinge on the
                    // caller's topk_weight rounding.
                    double S = 0.0;
                    for (int64_t k = 0; k < K; ++k) S += s[idx[k]];
                    const double denom = S + 1e-20;
                    double dot = 0.0;  // sum_k dw_k w_k
                    for (int64_t k = 0; k < K; ++k)
                        dot += static_cast<double>(dw[k]) * r * s[idx[k]] / denom;
                    for (int64_t k = 0; k < K; ++k)
                        ds[idx[k]] +=
                            static_cast<float>((r * static_cast<double>(dw[k]) - dot) / denom);
                } else {
                    for (int64_t k = 0; k < K; ++k) ds[idx[k]] += r * dw[k];
                }
            }
            float* dl = dlogits + t * E;
            if (p.scoring == ScoringFunc::Sigmoid) {
                for (int64_t e = 0; e < E; ++e) dl[e] += ds[e] * s[e] * (1.0f - s[e]);
            } else {
                double dot = 0.0;
                for (int64_t e = 0; e < E; ++e) dot += static_cast<double>(s[e]) * ds[e];
                const float d = static_cast<float>(dot);
                for (int64_t e = 0; e < E; ++e) dl[e] += s[e] * (ds[e] - d);
            }
        }
    }
    (void)topk_weight;
}

// --- sequence-wise balance loss ---
// f [B, E]: f_i = E / (K T) * #{t in sequence b : i in topk_t}. Computed per sequence in token
// order, so it is exact (counts) and deterministic.
static void seq_counts(const int32_t* topk_idx, int64_t B, int64_t T, int64_t E, int64_t K,
                       int nt, float* f) {
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t b = 0; b < B; ++b) {
        float* fb = f + b * E;
        std::memset(fb, 0, sizeof(float) * E);
        for (int64_t t = b * T; t < (b + 1) * T; ++t)
            for (int64_t k = 0; k < K; ++k) {
                const int32_t e = topk_idx[t * K + k];
                if (e >= 0 && e < E) fb[e] += 1.0f;
            }
        const float c = static_cast<float>(E) / static_cast<float>(K * T);
        for (int64_t e = 0; e < E; ++e) fb[e] *= c;
    }
}

// loss = alpha / B * sum_b sum_i f_i P_i, P_i = mean_t s_{i,t} / sum_j s_{j,t}.
// Per-token terms sum_i f_i s'_{i,t} go to a per-token buffer, then are added in token order.
double CpuBackend::seq_aux_loss_forward(const float* scores, const int32_t* topk_idx, int64_t B,
                                        int64_t T, int64_t E, int64_t K, float alpha) {
    if (B <= 0 || T <= 0) return 0.0;
    const int64_t n = B * T;
    const int nt = team(n * E * 3);
    float* f = grow(seq_f_, static_cast<size_t>(B * E));
    seq_counts(topk_idx, B, T, E, K, nt, f);
    double* term = grow(blocks_, static_cast<size_t>(n));
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < n; ++t) {
        const float* s = scores + t * E;
        const float* fb = f + (t / T) * E;
        double z = 0.0, fs = 0.0;
        for (int64_t e = 0; e < E; ++e) {
            z += s[e];
            fs += static_cast<double>(fb[e]) * s[e];
        }
        term[t] = fs / z;
    }
    double total = 0.0;
    for (int64_t t = 0; t < n; ++t) total += term[t];
    return alpha * total / (static_cast<double>(B) * T);
}

// d/ds_{j,t} = alpha / (B T) * (f_j - sum_i f_i s_{i,t} / Z_t) / Z_t,  Z_t = sum_i s_{i,t};
// f is treated as a constant (the top-k choice is not differentiable).
void CpuBackend::seq_aux_loss_backward(const float* scores, const int32_t* topk_idx, int64_t B,
                                       int64_t T, int64_t E, int64_t K, float alpha,
                                       float dloss, float* d_scores) {
    if (B <= 0 || T <= 0) return;
    const int64_t n = B * T;
    const int nt = team(n * E * 3);
    float* f = grow(seq_f_, static_cast<size_t>(B * E));
    seq_counts(topk_idx, B, T, E, K, nt, f);
    const double c = static_cast<double>(dloss) * alpha / (static_cast<double>(B) * T);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < n; ++t) {
        const float* s = scores + t * E;
        const float* fb = f + (t / T) * E;
        float* d = d_scores + t * E;
        double z = 0.0, fs = 0.0;
        for (int64_t e = 0; e < E; ++e) {
            z += s[e];
            fs += static_cast<double>(fb[e]) * s[e];
        }
        const double mean_f = fs / z;
        for (int64_t e = 0; e < E; ++e) d[e] += static_cast<float>(c * (fb[e] - mean_f) / z);
    }
}

// --- dispatch ---

// Counting sort of the n*K (token, slot) pairs by expert; walking tokens in ascending order
// makes it stable, so tokens ascend within each expert.
void CpuBackend::moe_route_plan(const int32_t* topk_idx, int64_t n, int64_t K, int64_t E,
                                int64_t* offsets, int32_t* row_token, int32_t* slot_row) {
    const int64_t rows = n * K;
    for (int64_t i = 0; i < rows; ++i)
        if (topk_idx[i] < 0 || topk_idx[i] >= E)
            throw Error("moe_route_plan: expert " + std::to_string(topk_idx[i]) + " of token " +
                        std::to_string(i / K) + " is outside [0, " + std::to_string(E) + ")");
    std::fill(offsets, offsets + E + 1, int64_t{0});
    for (int64_t i = 0; i < rows; ++i) ++offsets[topk_idx[i] + 1];
    for (int64_t e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
    int64_t* cur = grow(cursor_, static_cast<size_t>(E));
    std::copy(offsets, offsets + E, cur);
    for (int64_t t = 0; t < n; ++t)
        for (int64_t k = 0; k < K; ++k) {
            const int64_t r = cur[topk_idx[t * K + k]]++;
            row_token[r] = static_cast<int32_t>(t);
            slot_row[t * K + k] = static_cast<int32_t>(r);
        }
}

// xp [rows, dim] = x [n, dim] gathered by row_token.
void CpuBackend::moe_permute(const float* x, const int32_t* row_token, int64_t rows, int64_t dim,
                             float* xp) {
    const int nt = team(rows * dim);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < rows; ++r)
        std::memcpy(xp + r * dim, x + static_cast<int64_t>(row_token[r]) * dim,
                    sizeof(float) * dim);
}

// Gather per token (not scatter per routed row): each dx row has one writer, slots in order.
void CpuBackend::moe_permute_backward(const float* dxp, const int32_t* slot_row, int64_t n,
                                      int64_t K, int64_t dim, float* dx) {
    const int nt = team(n * K * dim);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < n; ++t) {
        float* d = dx + t * dim;
        for (int64_t k = 0; k < K; ++k) {
            const float* src = dxp + static_cast<int64_t>(slot_row[t * K + k]) * dim;
            for (int64_t j = 0; j < dim; ++j) d[j] += src[j];
        }
    }
}

// y [n, dim] += sum_k w[t, k] * yp[slot_row[t*K + k]], slots added in order.
void CpuBackend::moe_unpermute(const float* yp, const float* w, const int32_t* slot_row,
                               int64_t n, int64_t K, int64_t dim, float* y) {
    const int nt = team(n * K * dim * 2);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < n; ++t) {
        float* yt = y + t * dim;
        for (int64_t k = 0; k < K; ++k) {
            const float wk = w[t * K + k];
            const float* src = yp + static_cast<int64_t>(slot_row[t * K + k]) * dim;
            for (int64_t j = 0; j < dim; ++j) yt[j] += wk * src[j];
        }
    }
}

// Each routed row belongs to exactly one (t, k), so the per-token loop writes disjoint rows.
void CpuBackend::moe_unpermute_backward(const float* dy, const float* yp, const float* w,
                                        const int32_t* slot_row, int64_t n, int64_t K,
                                        int64_t dim, float* dyp, float* dw) {
    const int nt = team(n * K * dim * 4);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t t = 0; t < n; ++t) {
        const float* dyt = dy + t * dim;
        for (int64_t k = 0; k < K; ++k) {
            const int64_t r = slot_row[t * K + k];
            const float wk = w[t * K + k];
            const float* ypr = yp + r * dim;
            float* dypr = dyp + r * dim;
            double dot = 0.0;
            for (int64_t j = 0; j < dim; ++j) {
                dypr[j] += wk * dyt[j];
                dot += static_cast<double>(dyt[j]) * ypr[j];
            }
            dw[t * K + k] += static_cast<float>(dot);
        }
    }
}

}  // namespace moe
