// CpuBackend: causal softmax attention with an optional sliding window (probabilities saved
// for backward).
//
// Each (sequence, head) pair is a chain of small GEMMs on strided views of q, k, v (rows of one
// head are H*dk apart), run by OpenBLAS on the calling thread: the pairs are spread over the
// OpenMP team, and a BLAS call inside a parallel region stays single-threaded. Queries go in
// blocks of kQueryBlock rows, and a block only multiplies against the keys [lo, t1) it can see:
// lo = 0 for full causal attention, max(0, t0 - W + 1) with a window W, so the masked part of
// the T x T products is mostly skipped and a window of W costs O(T * W), not O(T^2). Per element,
// the reduction order depends only on the shapes, never on the thread count: results are
// bitwise reproducible.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_math.h"
#include "core/error.h"

namespace moe {

namespace {

constexpr int64_t kQueryBlock = 64;

// C[M,N] = alpha op(A) op(B) + beta C, row-major, single call into OpenBLAS.
inline void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                  int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha,
                A, static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta, C,
                static_cast<blasint>(ldc));
}

// Team size for a loop over `pairs` (sequence, head) pairs doing `work` scalar operations.
inline int pair_team(int team_size, int64_t pairs) {
    return static_cast<int>(std::min<int64_t>(team_size, std::max<int64_t>(1, pairs)));
}

// First key query t may see: 0 without a window, else the oldest of the `window` most recent.
inline int64_t first_key(int64_t t, int64_t window) {
    return window > 0 ? std::max<int64_t>(0, t - window + 1) : 0;
}

// Visible (query, key) pairs of one sequence: sum over t of min(t + 1, window), for the team size.
inline int64_t visible_pairs(int64_t T, int64_t window) {
    if (window <= 0 || window >= T) return T * (T + 1) / 2;
    return window * (window + 1) / 2 + (T - window) * window;
}

}  // namespace

// q, k [B*T, H, dk]; v [B*T, H, dv]; probs [B, H, T, T]; out [B*T, H, dv].
// Per pair and query block [t0, t1) with keys [lo, t1): S = scale * Q K[lo:t1]^T, softmax of
// each row over its visible keys (max trick, sum in double), O = P[:, lo:t1] V[lo:t1].
void CpuBackend::attention_forward(const float* q, const float* k, const float* v, int64_t B,
                                   int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                   int64_t window, float* probs, float* out) {
    if (window < 0) throw Error("attention_forward: window must be >= 0, got " + std::to_string(window));
    const int64_t pairs = B * H, ldk = H * dk, ldv = H * dv;
    const int nt = pair_team(team(B * H * visible_pairs(T, window) * (dk + dv)), pairs);
    // OpenBLAS runs serial (CpuBackend::set_threads): each block is one thread's work.
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t bh = 0; bh < pairs; ++bh) {
        const int64_t b = bh / H, h = bh % H;
        const float* qb = q + b * T * ldk + h * dk;
        const float* kb = k + b * T * ldk + h * dk;
        const float* vb = v + b * T * ldv + h * dv;
        float* ob = out + b * T * ldv + h * dv;
        float* P = probs + bh * T * T;
        for (int64_t t0 = 0; t0 < T; t0 += kQueryBlock) {
            const int64_t t1 = std::min(T, t0 + kQueryBlock), m = t1 - t0;
            const int64_t lo = first_key(t0, window), nk = t1 - lo;
            sgemm(false, true, m, nk, dk, scale, qb + t0 * ldk, ldk, kb + lo * ldk, ldk, 0.0f,
                  P + t0 * T + lo, T);
            for (int64_t t = t0; t < t1; ++t) {
                float* p = P + t * T;
                const int64_t s0 = first_key(t, window);
                float mx = p[s0];
                for (int64_t s = s0 + 1; s <= t; ++s) mx = std::max(mx, p[s]);
                // exp in its own loop so it vectorizes; the sum stays in order, in double.
                for (int64_t s = s0; s <= t; ++s) p[s] = cpu::exp_vec(p[s] - mx);
                double se = 0.0;
                for (int64_t s = s0; s <= t; ++s) se += p[s];
                const float inv = static_cast<float>(1.0 / se);
                for (int64_t s = s0; s <= t; ++s) p[s] *= inv;
                std::fill(p, p + s0, 0.0f);  // outside the window (never computed left of lo)
                std::fill(p + t + 1, p + T, 0.0f);
            }
            sgemm(false, false, m, dv, nk, 1.0f, P + t0 * T + lo, T, vb + lo * ldv, ldv, 0.0f,
                  ob + t0 * ldv, ldv);
        }
    }
}

// For query t:  dP_ts = dout_t . v_s;  dS_ts = P_ts (dP_ts - sum_s' P_ts' dP_ts') * scale;
//   dq_t += sum_s dS_ts k_s;  dk_s += sum_t dS_ts q_t;  dv_s += sum_t P_ts dout_t.
// Per pair and query block [t0, t1), keys [lo, t1): dP = dO V[lo:t1]^T; dS row by row;
// dQ += dS K[lo:t1]; dK[lo:t1] += dS^T Q; dV[lo:t1] += P^T dO. One thread owns a pair, blocks go
// in order. Column c of the scratch dS is key lo + c.
void CpuBackend::attention_backward(const float* dout, const float* q, const float* k,
                                    const float* v, const float* probs, int64_t B, int64_t T,
                                    int64_t H, int64_t dk, int64_t dv, float scale,
                                    int64_t window, float* dq, float* dk_, float* dv_) {
    if (window < 0) throw Error("attention_backward: window must be >= 0, got " + std::to_string(window));
    const int64_t pairs = B * H, ldk = H * dk, ldv = H * dv;
    const int nt = pair_team(team(2 * B * H * visible_pairs(T, window) * (dk + dv)), pairs);
    const int64_t block = std::min(T, kQueryBlock);
    float* scratch = grow(row_scratch_, static_cast<size_t>(nt) * block * T);
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
#pragma omp parallel num_threads(nt)
    {
        float* dS = scratch + static_cast<int64_t>(omp_get_thread_num()) * block * T;  // [block, T]
#pragma omp for schedule(static)
        for (int64_t bh = 0; bh < pairs; ++bh) {
            const int64_t b = bh / H, h = bh % H;
            const int64_t qo = b * T * ldk + h * dk, vo = b * T * ldv + h * dv;
            const float* P = probs + bh * T * T;
            for (int64_t t0 = 0; t0 < T; t0 += kQueryBlock) {
                const int64_t t1 = std::min(T, t0 + kQueryBlock), m = t1 - t0;
                const int64_t lo = first_key(t0, window), nk = t1 - lo;
                // dP into the scratch, then dS in place.
                sgemm(false, true, m, nk, dv, 1.0f, dout + vo + t0 * ldv, ldv, v + vo + lo * ldv,
                      ldv, 0.0f, dS, T);
                for (int64_t t = t0; t < t1; ++t) {
                    const float* p = P + t * T + lo;
                    float* d = dS + (t - t0) * T;
                    const int64_t c0 = first_key(t, window) - lo, c1 = t - lo;  // visible [c0, c1]
                    double dsum = 0.0;
                    for (int64_t c = c0; c <= c1; ++c) dsum += static_cast<double>(p[c]) * d[c];
                    const float D = static_cast<float>(dsum);
                    for (int64_t c = c0; c <= c1; ++c) d[c] = p[c] * (d[c] - D) * scale;
                    // Masked keys inside the block's key range.
                    std::fill(d, d + c0, 0.0f);
                    std::fill(d + c1 + 1, d + nk, 0.0f);
                }
                sgemm(false, false, m, dk, nk, 1.0f, dS, T, k + qo + lo * ldk, ldk, 1.0f,
                      dq + qo + t0 * ldk, ldk);
                sgemm(true, false, nk, dk, m, 1.0f, dS, T, q + qo + t0 * ldk, ldk, 1.0f,
                      dk_ + qo + lo * ldk, ldk);
                sgemm(true, false, nk, dv, m, 1.0f, P + t0 * T + lo, T, dout + vo + t0 * ldv, ldv,
                      1.0f, dv_ + vo + lo * ldv, ldv);
            }
        }
    }
}

}  // namespace moe
