// MoE router and the sequence-wise balance loss. The gate runs one thread per token with the
// CPU's exact selection procedure (repeated argmax with ties to the lower index, group limit
// first), so the chosen experts match the CPU's whenever the scores match. Scores are
// computed with the same formulas; float exp may differ from the host's in the last bit.
#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

// Largest v[i] among cand[i] != 0, ties to the lower index; the first candidate seeds it.
__device__ int64_t argmax_candidates(const float* v, const uint8_t* cand, int64_t n) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; ++i)
        if (cand[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

__global__ void gate_forward_k(const float* logits, int64_t n, GateArgs a, float* scores,
                               int32_t* topk_idx, float* topk_weight, uint8_t* flags,
                               float* gscore_all) {
    const int64_t E = a.E, K = a.K, G = a.G, Eg = E / G;
    MOE_GRID_LOOP(t, n) {
        const float* l = logits + t * E;
        float* s = scores + t * E;
        uint8_t* cand = flags + t * (E + G);
        uint8_t* gcand = cand + E;
        if (!a.softmax) {
            for (int64_t e = 0; e < E; ++e) s[e] = sigmoidf_stable(l[e]);
        } else {
            float mx = l[0];
            for (int64_t e = 1; e < E; ++e) mx = fmaxf(mx, l[e]);
            double se = 0.0;
            for (int64_t e = 0; e < E; ++e) {
                s[e] = expf(l[e] - mx);
                se += s[e];
            }
            const float inv = static_cast<float>(1.0 / se);
            for (int64_t e = 0; e < E; ++e) s[e] *= inv;
        }
        // sel = s + bias, evaluated where needed (the same float sum the CPU stores).
        auto sel = [&](int64_t e) { return s[e] + (a.bias ? a.bias[e] : 0.0f); };
        for (int64_t e = 0; e < E; ++e) cand[e] = 1;
        if (G > 1) {
            float* gscore = gscore_all + t * G;
            for (int64_t g = 0; g < G; ++g) {
                float m1 = -INFINITY, m2 = -INFINITY;
                for (int64_t j = 0; j < Eg; ++j) {
                    const float x = sel(g * Eg + j);
                    if (x > m1) {
                        m2 = m1;
                        m1 = x;
                    } else if (x > m2) {
                        m2 = x;
                    }
                }
                gscore[g] = (a.bias && Eg >= 2) ? m1 + m2 : m1;
                gcand[g] = 1;
            }
            for (int64_t i = 0; i < a.topk_group; ++i)
                gcand[argmax_candidates(gscore, gcand, G)] = 0;  // 0 now means "kept"
            for (int64_t g = 0; g < G; ++g)
                if (gcand[g])
                    for (int64_t j = 0; j < Eg; ++j) cand[g * Eg + j] = 0;
        }
        int32_t* idx = topk_idx + t * K;
        float* w = topk_weight + t * K;
        double wsum = 0.0;
        for (int64_t k = 0; k < K; ++k) {
            int64_t best = -1;
            float bv = 0.0f;
            for (int64_t e = 0; e < E; ++e) {
                if (!cand[e]) continue;
                const float x = sel(e);
                if (best < 0 || x > bv) {
                    best = e;
                    bv = x;
                }
            }
            cand[best] = 0;
            idx[k] = static_cast<int32_t>(best);
            w[k] = s[best];
            wsum += s[best];
        }
        if (a.norm_topk_prob) {
            const float denom = static_cast<float>(wsum) + 1e-20f;
            for (int64_t k = 0; k < K; ++k) w[k] = w[k] / denom * a.routed_scaling_factor;
        } else {
            for (int64_t k = 0; k < K; ++k) w[k] *= a.routed_scaling_factor;
        }
    }
}

// ds_e = d_scores_extra_e + the top-k terms at e (see CpuBackend::moe_gate_backward).
__device__ float gate_ds(int64_t e, const float* dw, const float* extra, const float* s,
                         const int32_t* idx, int64_t K, bool norm, float r, double denom,
                         double dot) {
    float ds = extra ? extra[e] : 0.0f;
    for (int64_t k = 0; k < K; ++k) {
        if (idx[k] != e) continue;
        ds += norm ? static_cast<float>((r * static_cast<double>(dw[k]) - dot) / denom)
                   : r * dw[k];
    }
    return ds;
}

__global__ void gate_backward_k(const float* d_topk_weight, const float* d_scores_extra,
                                const float* scores, const int32_t* topk_idx, int64_t n,
                                GateArgs a, float* dlogits) {
    const int64_t E = a.E, K = a.K;
    const float r = a.routed_scaling_factor;
    MOE_GRID_LOOP(t, n) {
        const float* s = scores + t * E;
        const int32_t* idx = topk_idx + t * K;
        const float* dw = d_topk_weight ? d_topk_weight + t * K : nullptr;
        const float* extra = d_scores_extra ? d_scores_extra + t * E : nullptr;
        double denom = 1.0, dot = 0.0;
        if (dw && a.norm_topk_prob) {
            double sum = 0.0;
            for (int64_t k = 0; k < K; ++k) sum += s[idx[k]];
            denom = sum + 1e-20;
            for (int64_t k = 0; k < K; ++k) dot += static_cast<double>(dw[k]) * r * s[idx[k]] / denom;
        }
        const float* dwk = dw;
        float* dl = dlogits + t * E;
        auto ds_at = [&](int64_t e) {
            if (!dwk) return extra ? extra[e] : 0.0f;
            return gate_ds(e, dwk, extra, s, idx, K, a.norm_topk_prob, r, denom, dot);
        };
        if (!a.softmax) {
            for (int64_t e = 0; e < E; ++e) dl[e] += ds_at(e) * s[e] * (1.0f - s[e]);
        } else {
            double d = 0.0;
            for (int64_t e = 0; e < E; ++e) d += static_cast<double>(s[e]) * ds_at(e);
            const float df = static_cast<float>(d);
            for (int64_t e = 0; e < E; ++e) dl[e] += s[e] * (ds_at(e) - df);
        }
    }
}

// f [B, E]: E / (K T) * how often expert e was chosen in sequence b. One thread per (b, e).
__global__ void seq_counts_k(const int32_t* topk_idx, int64_t B, int64_t T, int64_t E, int64_t K,
                             float* f) {
    MOE_GRID_LOOP(i, B * E) {
        const int64_t b = i / E, e = i % E;
        float c = 0.0f;
        for (int64_t j = b * T * K; j < (b + 1) * T * K; ++j) c += topk_idx[j] == e ? 1.0f : 0.0f;
        f[i] = c * (static_cast<float>(E) / static_cast<float>(K * T));
    }
}

__global__ void seq_terms_k(const float* scores, const float* f, int64_t n, int64_t T, int64_t E,
                            double* terms) {
    MOE_GRID_LOOP(t, n) {
        const float* s = scores + t * E;
        const float* fb = f + (t / T) * E;
        double z = 0.0, fs = 0.0;
        for (int64_t e = 0; e < E; ++e) {
            z += s[e];
            fs += static_cast<double>(fb[e]) * s[e];
        }
        terms[t] = fs / z;
    }
}

__global__ void seq_backward_k(const float* scores, const float* f, int64_t n, int64_t T,
                               int64_t E, double c, float* d_scores) {
    MOE_GRID_LOOP(t, n) {
        const float* s = scores + t * E;
        const float* fb = f + (t / T) * E;
        double z = 0.0, fs = 0.0;
        for (int64_t e = 0; e < E; ++e) {
            z += s[e];
            fs += static_cast<double>(fb[e]) * s[e];
        }
        const double mean_f = fs / z;
        float* d = d_scores + t * E;
        for (int64_t e = 0; e < E; ++e) d[e] += static_cast<float>(c * (fb[e] - mean_f) / z);
    }
}

}  // namespace

cudaError_t gate_forward(const float* logits, int64_t n, const GateArgs& a, float* scores,
                         int32_t* topk_idx, float* topk_weight, uint8_t* flags, float* gscore) {
    if (n <= 0) return cudaSuccess;
    gate_forward_k<<<grid_for(n, 64), 64>>>(logits, n, a, scores, topk_idx, topk_weight, flags,
                                            gscore);
    return launched();
}

cudaError_t gate_backward(const float* d_topk_weight, const float* d_scores_extra,
                          const float* scores, const int32_t* topk_idx, int64_t n,
                          const GateArgs& a, float* dlogits) {
    if (n <= 0) return cudaSuccess;
    gate_backward_k<<<grid_for(n, 64), 64>>>(d_topk_weight, d_scores_extra, scores, topk_idx, n,
                                             a, dlogits);
    return launched();
}

cudaError_t seq_aux_terms(const float* scores, const int32_t* topk_idx, int64_t B, int64_t T,
                          int64_t E, int64_t K, float* f, double* terms) {
    seq_counts_k<<<grid_for(B * E), kThreads>>>(topk_idx, B, T, E, K, f);
    cudaError_t e = launched();
    if (e != cudaSuccess) return e;
    seq_terms_k<<<grid_for(B * T), kThreads>>>(scores, f, B * T, T, E, terms);
    return launched();
}

cudaError_t seq_aux_backward(const float* scores, const int32_t* topk_idx, int64_t B, int64_t T,
                             int64_t E, int64_t K, double c, float* f, float* d_scores) {
    seq_counts_k<<<grid_for(B * E), kThreads>>>(topk_idx, B, T, E, K, f);
    cudaError_t e = launched();
    if (e != cudaSuccess) return e;
    seq_backward_k<<<grid_for(B * T), kThreads>>>(scores, f, B * T, T, E, c, d_scores);
    return launched();
}

}  // namespace moe::gpu::kern
