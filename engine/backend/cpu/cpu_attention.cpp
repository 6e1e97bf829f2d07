// CpuBackend: causal softmax attention (probabilities saved for backward).
//
// Each (sequence, head) pair is a chain of small GEMMs on strided views of q, k, v (rows of one
// head are H*dk apart), run by OpenBLAS on the calling thread: the pairs are spread over the
// OpenMP team, and a BLAS call inside a parallel region stays single-threaded. Queries go in
// blocks of kQueryBlock rows, and a block only multiplies against the keys 0..t1-1 it can see,
// so the causal half of the T x T products is mostly skipped. Per element, the reduction order
// depends only on the shapes, never on the thread count: results are bitwise reproducible.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_math.h"

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

}  // namespace

// q, k [B*T, H, dk]; v [B*T, H, dv]; probs [B, H, T, T]; out [B*T, H, dv].
// Per pair and query block [t0, t1): S = scale * Q K[0:t1]^T, causal softmax row by row
// (max trick, sum in double), O = P[:, 0:t1] V[0:t1].
void CpuBackend::attention_forward(const float* q, const float* k, const float* v, int64_t B,
                                   int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                   float* probs, float* out) {
    const int64_t pairs = B * H, ldk = H * dk, ldv = H * dv;
    const int nt = pair_team(team(B * H * T * T * (dk + dv) / 2), pairs);
    // The OpenBLAS thread count is process-global: keep a lone caller's BLAS calls serial too,
    // so the result never depends on whether the loop below ran in a team or not.
    if (nt == 1 && openblas_get_num_threads() != 1) openblas_set_num_threads(1);
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
            sgemm(false, true, m, t1, dk, scale, qb + t0 * ldk, ldk, kb, ldk, 0.0f, P + t0 * T, T);
            for (int64_t t = t0; t < t1; ++t) {
                float* p = P + t * T;
                float mx = p[0];
                for (int64_t s = 1; s <= t; ++s) mx = std::max(mx, p[s]);
                // exp in its own loop so it vectorizes; the sum stays in order, in double.
                for (int64_t s = 0; s <= t; ++s) p[s] = cpu::exp_vec(p[s] - mx);
                double se = 0.0;
                for (int64_t s = 0; s <= t; ++s) se += p[s];
                const float inv = static_cast<float>(1.0 / se);
                for (int64_t s = 0; s <= t; ++s) p[s] *= inv;
                std::fill(p + t + 1, p + T, 0.0f);
            }
            sgemm(false, false, m, dv, t1, 1.0f, P + t0 * T, T, vb, ldv, 0.0f, ob + t0 * ldv, ldv);
        }
    }
    if (nt == 1) openblas_set_num_threads(threads_);
}

// For query t:  dP_ts = dout_t . v_s;  dS_ts = P_ts (dP_ts - sum_s' P_ts' dP_ts') * scale;
//   dq_t += sum_s dS_ts k_s;  dk_s += sum_t dS_ts q_t;  dv_s += sum_t P_ts dout_t.
// Per pair and query block [t0, t1), keys [0, t1): dP = dO V^T; dS row by row;
// dQ += dS K; dK += dS^T Q; dV += P^T dO. One thread owns a pair, blocks go in order.
void CpuBackend::attention_backward(const float* dout, const float* q, const float* k,
                                    const float* v, const float* probs, int64_t B, int64_t T,
                                    int64_t H, int64_t dk, int64_t dv, float scale, float* dq,
                                    float* dk_, float* dv_) {
    const int64_t pairs = B * H, ldk = H * dk, ldv = H * dv;
    const int nt = pair_team(team(B * H * T * T * (dk + dv)), pairs);
    const int64_t block = std::min(T, kQueryBlock);
    float* scratch = grow(row_scratch_, static_cast<size_t>(nt) * block * T);
    if (nt == 1 && openblas_get_num_threads() != 1) openblas_set_num_threads(1);
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
                // dP into the scratch, then dS in place.
                sgemm(false, true, m, t1, dv, 1.0f, dout + vo + t0 * ldv, ldv, v + vo, ldv, 0.0f,
                      dS, T);
                for (int64_t t = t0; t < t1; ++t) {
                    const float* p = P + t * T;
                    float* d = dS + (t - t0) * T;
                    double dsum = 0.0;
                    for (int64_t s = 0; s <= t; ++s) dsum += static_cast<double>(p[s]) * d[s];
                    const float D = static_cast<float>(dsum);
                    for (int64_t s = 0; s <= t; ++s) d[s] = p[s] * (d[s] - D) * scale;
                    std::fill(d + t + 1, d + t1, 0.0f);  // masked keys inside the block
                }
                sgemm(false, false, m, dk, t1, 1.0f, dS, T, k + qo, ldk, 1.0f, dq + qo + t0 * ldk,
                      ldk);
                sgemm(true, false, t1, dk, m, 1.0f, dS, T, q + qo + t0 * ldk, ldk, 1.0f, dk_ + qo,
                      ldk);
                sgemm(true, false, t1, dv, m, 1.0f, P + t0 * T, T, dout + vo + t0 * ldv, ldv, 1.0f,
                      dv_ + vo, ldv);
            }
        }
    }
    if (nt == 1) openblas_set_num_threads(threads_);
}

}  // namespace moe
