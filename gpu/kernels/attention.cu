// Causal attention with an optional sliding window: the simple correct form. One block per
// (sequence, head, query) row computes that row's scores over the visible keys [s0, t], its
// softmax in fp32 (max, then exp, then the sum in a fixed double tree) and its output. Work
// outside the band is skipped (only the zeros of probs are written there).
// Backward: a block per query row makes dS and dq; a block per key row makes dk and dv by
// walking the queries that see it, so every gradient element has one writer (no atomics).
#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

__device__ inline int64_t first_key(int64_t t, int64_t window) {
    return window > 0 ? max(int64_t(0), t - window + 1) : 0;
}

// grid (T, B*H); dynamic shared memory: dk floats (the query row).
__global__ void attn_forward_k(const float* q, const float* k, const float* v, int64_t T,
                               int64_t H, int64_t dk, int64_t dv, float scale, int64_t window,
                               float* probs, float* out) {
    extern __shared__ float qs[];
    __shared__ double dsh[kThreads];
    __shared__ float fsh[kThreads];
    const int64_t t = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H;
    const int64_t ldk = H * dk, ldv = H * dv;
    const float* kb = k + b * T * ldk + h * dk;
    const float* vb = v + b * T * ldv + h * dv;
    float* p = probs + (bh * T + t) * T;
    for (int64_t c = threadIdx.x; c < dk; c += blockDim.x) qs[c] = q[(b * T + t) * ldk + h * dk + c];
    __syncthreads();
    const int64_t s0 = first_key(t, window);
    float mx = -INFINITY;
    for (int64_t s = threadIdx.x; s < T; s += blockDim.x) {
        if (s < s0 || s > t) {
            p[s] = 0.0f;
            continue;
        }
        const float* ks = kb + s * ldk;
        float acc = 0.0f;
        for (int64_t c = 0; c < dk; ++c) acc += qs[c] * ks[c];
        p[s] = acc * scale;
        mx = fmaxf(mx, p[s]);
    }
    mx = block_max(mx, fsh);
    double se = 0.0;
    for (int64_t s = s0 + threadIdx.x; s <= t; s += blockDim.x) {
        p[s] = expf(p[s] - mx);
        se += p[s];
    }
    se = block_sum(se, dsh);
    const float inv = static_cast<float>(1.0 / se);
    for (int64_t s = s0 + threadIdx.x; s <= t; s += blockDim.x) p[s] *= inv;
    __syncthreads();  // the row of probs is read by every thread below
    float* o = out + (b * T + t) * ldv + h * dv;
    for (int64_t c = threadIdx.x; c < dv; c += blockDim.x) {
        float acc = 0.0f;
        for (int64_t s = s0; s <= t; ++s) acc += p[s] * vb[s * ldv + c];
        o[c] = acc;
    }
}

// grid (T, B*H): dP_s = dout_t . v_s, D = sum_s P_s dP_s, dS_s = P_s (dP_s - D) scale, then
// dq_t += sum_s dS_s k_s. Shared: dv floats (the dout row).
__global__ void attn_dq_k(const float* dout, const float* k, const float* v, const float* probs,
                          int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                          int64_t window, float* dS, float* dq) {
    extern __shared__ float ds_row[];
    __shared__ double dsh[kThreads];
    const int64_t t = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H;
    const int64_t ldk = H * dk, ldv = H * dv;
    const float* vb = v + b * T * ldv + h * dv;
    const float* kb = k + b * T * ldk + h * dk;
    const float* p = probs + (bh * T + t) * T;
    float* d = dS + (bh * T + t) * T;
    for (int64_t c = threadIdx.x; c < dv; c += blockDim.x)
        ds_row[c] = dout[(b * T + t) * ldv + h * dv + c];
    __syncthreads();
    const int64_t s0 = first_key(t, window);
    double dsum = 0.0;
    for (int64_t s = s0 + threadIdx.x; s <= t; s += blockDim.x) {
        const float* vs = vb + s * ldv;
        float acc = 0.0f;
        for (int64_t c = 0; c < dv; ++c) acc += ds_row[c] * vs[c];
        d[s] = acc;
        dsum += double(p[s]) * acc;
    }
    const float D = static_cast<float>(block_sum(dsum, dsh));
    for (int64_t s = s0 + threadIdx.x; s <= t; s += blockDim.x) d[s] = p[s] * (d[s] - D) * scale;
    __syncthreads();
    float* dqt = dq + (b * T + t) * ldk + h * dk;
    for (int64_t c = threadIdx.x; c < dk; c += blockDim.x) {
        float acc = 0.0f;
        for (int64_t s = s0; s <= t; ++s) acc += d[s] * kb[s * ldk + c];
        dqt[c] += acc;
    }
}

// grid (T, B*H), one block per key s: the queries that see s are [s, last], last = T - 1 or
// s + window - 1. dk_s += sum_t dS_ts q_t; dv_s += sum_t P_ts dout_t.
__global__ void attn_dkv_k(const float* dout, const float* q, const float* probs, const float* dS,
                           int64_t T, int64_t H, int64_t dk, int64_t dv, int64_t window,
                           float* dk_, float* dv_) {
    const int64_t s = blockIdx.x, bh = blockIdx.y, b = bh / H, h = bh % H;
    const int64_t ldk = H * dk, ldv = H * dv;
    const int64_t last = window > 0 ? min(T - 1, s + window - 1) : T - 1;
    const float* P = probs + bh * T * T;
    const float* D = dS + bh * T * T;
    for (int64_t c = threadIdx.x; c < dk + dv; c += blockDim.x) {
        float acc = 0.0f;
        if (c < dk) {
            for (int64_t t = s; t <= last; ++t) acc += D[t * T + s] * q[(b * T + t) * ldk + h * dk + c];
            dk_[(b * T + s) * ldk + h * dk + c] += acc;
        } else {
            const int64_t cv = c - dk;
            for (int64_t t = s; t <= last; ++t) acc += P[t * T + s] * dout[(b * T + t) * ldv + h * dv + cv];
            dv_[(b * T + s) * ldv + h * dv + cv] += acc;
        }
    }
}

}  // namespace

cudaError_t attention_forward(const float* q, const float* k, const float* v, int64_t B,
                              int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                              int64_t window, float* probs, float* out) {
    if (B <= 0 || T <= 0 || H <= 0) return cudaSuccess;
    const dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>(B * H));
    attn_forward_k<<<grid, kThreads, dk * sizeof(float)>>>(q, k, v, T, H, dk, dv, scale, window,
                                                           probs, out);
    return launched();
}

cudaError_t attention_backward(const float* dout, const float* q, const float* k,
                               const float* v, const float* probs, int64_t B, int64_t T,
                               int64_t H, int64_t dk, int64_t dv, float scale, int64_t window,
                               float* dS, float* dq, float* dk_, float* dv_) {
    if (B <= 0 || T <= 0 || H <= 0) return cudaSuccess;
    const dim3 grid(static_cast<unsigned>(T), static_cast<unsigned>(B * H));
    attn_dq_k<<<grid, kThreads, dv * sizeof(float)>>>(dout, k, v, probs, T, H, dk, dv, scale,
                                                      window, dS, dq);
    const cudaError_t e = launched();
    if (e != cudaSuccess) return e;
    attn_dkv_k<<<grid, 128>>>(dout, q, probs, dS, T, H, dk, dv, window, dk_, dv_);
    return launched();
}

}  // namespace moe::gpu::kern
