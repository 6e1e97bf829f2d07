// Fused (flash-style) causal attention with an optional sliding window, forward and backward,
// without the [B, H, T, T] probabilities: Backend::fused_attention_*.
//
// One warp per query row (forward, dq) or per key row (dk, dv). The forward keeps the online
// softmax state (running max m, sum l, the output accumulator spread over the lanes) while it
// walks the visible keys 32 at a time, one key per lane for the scores; it writes the output
// and lse = m + log l. The backward recomputes p = exp(scale q.k - lse) and, with
// D_t = dout_t . out_t: dq in one pass over each query's keys, then dk and dv in a second pass
// over each key's queries, so no output is written by two warps and no float atomics are used
// (fixed summation order: deterministic). Head widths up to 256 (DeepSeek-V3: q/k 192, v 128).
//
// This is the fp32 SIMT baseline: the memory of the fused form (no T x T tensor) and one
// launch per pass; tensor-core tiles (shared-memory K/V tiles reused by a block of queries)
// are the next step for speed.
#include <cfloat>
#include <cmath>

#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

constexpr int kWarps = 4;           // warps (rows) per block
constexpr int kMaxDim = 256;        // head width limit
constexpr int kPer = kMaxDim / 32;  // values of a row per lane
constexpr unsigned kFull = 0xffffffffu;

__device__ inline float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
    return v;
}

__device__ inline float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
    return v;
}

__device__ inline float dot_shared(const float* a_shared, const float* b, int64_t n) {
    float s = 0.0f;
    for (int64_t d = 0; d < n; ++d) s = fmaf(a_shared[d], b[d], s);
    return s;
}

struct Row {
    int64_t b, h, t;
};

__device__ inline bool warp_row(int64_t B, int64_t H, int64_t T, Row& r) {
    const int64_t id = int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
    if (id >= B * H * T) return false;
    r.t = id % T;
    const int64_t bh = id / T;
    r.h = bh % H;
    r.b = bh / H;
    return true;
}

__global__ void fwd_k(const float* q, const float* k, const float* v, int64_t B, int64_t T,
                      int64_t H, int64_t dk, int64_t dv, float scale, int64_t window, float* lse,
                      float* out) {
    __shared__ float qs[kWarps][kMaxDim];
    Row r;
    if (!warp_row(B, H, T, r)) return;
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t row = (r.b * T + r.t) * H + r.h;
    for (int64_t d = lane; d < dk; d += 32) qs[w][d] = q[row * dk + d];
    __syncwarp();
    float m = -INFINITY, l = 0.0f, acc[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) acc[i] = 0.0f;
    const int64_t lo = window > 0 ? max(int64_t(0), r.t - window + 1) : 0;
    for (int64_t j0 = lo; j0 <= r.t; j0 += 32) {
        const int64_t j = j0 + lane;
        float s = -INFINITY;
        if (j <= r.t) s = scale * dot_shared(qs[w], k + ((r.b * T + j) * H + r.h) * dk, dk);
        const float m_new = fmaxf(m, warp_max(s));
        const float c = expf(m - m_new);
        const float p = j <= r.t ? expf(s - m_new) : 0.0f;
        l = l * c + warp_sum(p);
#pragma unroll
        for (int i = 0; i < kPer; ++i) acc[i] *= c;
        const int count = int(min(int64_t(32), r.t - j0 + 1));
        for (int jj = 0; jj < count; ++jj) {
            const float pj = __shfl_sync(kFull, p, jj);
            const float* vj = v + ((r.b * T + j0 + jj) * H + r.h) * dv;
#pragma unroll
            for (int i = 0; i < kPer; ++i) {
                const int64_t d = lane + 32 * i;
                if (d < dv) acc[i] = fmaf(pj, vj[d], acc[i]);
            }
        }
        m = m_new;
    }
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
        const int64_t d = lane + 32 * i;
        if (d < dv) out[row * dv + d] = acc[i] / l;
    }
    if (lane == 0) lse[(r.b * H + r.h) * T + r.t] = m + logf(l);
}

// dq (accumulated) and D_t = dout_t . out_t (written to dvec for the dk/dv pass).
__global__ void bwd_dq_k(const float* dout, const float* q, const float* k, const float* v,
                         const float* out, const float* lse, int64_t B, int64_t T, int64_t H,
                         int64_t dk, int64_t dv, float scale, int64_t window, float* dvec,
                         float* dq) {
    __shared__ float qs[kWarps][kMaxDim];
    __shared__ float gs[kWarps][kMaxDim];
    Row r;
    if (!warp_row(B, H, T, r)) return;
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t row = (r.b * T + r.t) * H + r.h;
    float part = 0.0f;
    for (int64_t d = lane; d < dk; d += 32) qs[w][d] = q[row * dk + d];
    for (int64_t d = lane; d < dv; d += 32) {
        gs[w][d] = dout[row * dv + d];
        part = fmaf(dout[row * dv + d], out[row * dv + d], part);
    }
    __syncwarp();
    const float D = warp_sum(part);
    const int64_t stat = (r.b * H + r.h) * T + r.t;
    if (lane == 0) dvec[stat] = D;
    const float L = lse[stat];
    float acc[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) acc[i] = 0.0f;
    const int64_t lo = window > 0 ? max(int64_t(0), r.t - window + 1) : 0;
    for (int64_t j0 = lo; j0 <= r.t; j0 += 32) {
        const int64_t j = j0 + lane;
        float ds = 0.0f;
        if (j <= r.t) {
            const int64_t key = (r.b * T + j) * H + r.h;
            const float p = expf(scale * dot_shared(qs[w], k + key * dk, dk) - L);
            const float dp = dot_shared(gs[w], v + key * dv, dv);
            ds = p * (dp - D) * scale;
        }
        const int count = int(min(int64_t(32), r.t - j0 + 1));
        for (int jj = 0; jj < count; ++jj) {
            const float dsj = __shfl_sync(kFull, ds, jj);
            const float* kj = k + ((r.b * T + j0 + jj) * H + r.h) * dk;
#pragma unroll
            for (int i = 0; i < kPer; ++i) {
                const int64_t d = lane + 32 * i;
                if (d < dk) acc[i] = fmaf(dsj, kj[d], acc[i]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
        const int64_t d = lane + 32 * i;
        if (d < dk) dq[row * dk + d] += acc[i];
    }
}

// dk and dv of key s (accumulated), over the queries that see it: [s, s + window - 1].
__global__ void bwd_dkdv_k(const float* dout, const float* q, const float* k, const float* v,
                           const float* lse, const float* dvec, int64_t B, int64_t T, int64_t H,
                           int64_t dk, int64_t dv, float scale, int64_t window, float* dk_,
                           float* dv_) {
    __shared__ float ks[kWarps][kMaxDim];
    __shared__ float vs[kWarps][kMaxDim];
    Row r;  // r.t is the key's position here
    if (!warp_row(B, H, T, r)) return;
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int64_t key = (r.b * T + r.t) * H + r.h;
    for (int64_t d = lane; d < dk; d += 32) ks[w][d] = k[key * dk + d];
    for (int64_t d = lane; d < dv; d += 32) vs[w][d] = v[key * dv + d];
    __syncwarp();
    const int64_t hi = window > 0 ? min(T - 1, r.t + window - 1) : T - 1;
    float ak[kPer], av[kPer];
#pragma unroll
    for (int i = 0; i < kPer; ++i) ak[i] = av[i] = 0.0f;
    for (int64_t i0 = r.t; i0 <= hi; i0 += 32) {
        const int64_t qi = i0 + lane;
        float p = 0.0f, ds = 0.0f;
        if (qi <= hi) {
            const int64_t row = (r.b * T + qi) * H + r.h;
            const int64_t stat = (r.b * H + r.h) * T + qi;
            p = expf(scale * dot_shared(ks[w], q + row * dk, dk) - lse[stat]);
            const float dp = dot_shared(vs[w], dout + row * dv, dv);
            ds = p * (dp - dvec[stat]) * scale;
        }
        const int count = int(min(int64_t(32), hi - i0 + 1));
        for (int ii = 0; ii < count; ++ii) {
            const float pi = __shfl_sync(kFull, p, ii), dsi = __shfl_sync(kFull, ds, ii);
            const int64_t row = (r.b * T + i0 + ii) * H + r.h;
#pragma unroll
            for (int i = 0; i < kPer; ++i) {
                const int64_t d = lane + 32 * i;
                if (d < dv) av[i] = fmaf(pi, dout[row * dv + d], av[i]);
                if (d < dk) ak[i] = fmaf(dsi, q[row * dk + d], ak[i]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < kPer; ++i) {
        const int64_t d = lane + 32 * i;
        if (d < dk) dk_[key * dk + d] += ak[i];
        if (d < dv) dv_[key * dv + d] += av[i];
    }
}

unsigned blocks_for(int64_t rows) {
    return static_cast<unsigned>((rows + kWarps - 1) / kWarps);
}

}  // namespace

int64_t fused_attention_max_dim() {
    return kMaxDim;
}

cudaError_t fused_attention_forward(const float* q, const float* k, const float* v, int64_t B,
                                    int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                    int64_t window, float* lse, float* out) {
    const int64_t rows = B * H * T;
    if (rows <= 0) return cudaSuccess;
    fwd_k<<<blocks_for(rows), kWarps * 32>>>(q, k, v, B, T, H, dk, dv, scale, window, lse, out);
    return launched();
}

cudaError_t fused_attention_backward(const float* dout, const float* q, const float* k,
                                     const float* v, const float* out, const float* lse, int64_t B,
                                     int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                     int64_t window, float* dvec, float* dq, float* dk_,
                                     float* dv_) {
    const int64_t rows = B * H * T;
    if (rows <= 0) return cudaSuccess;
    bwd_dq_k<<<blocks_for(rows), kWarps * 32>>>(dout, q, k, v, out, lse, B, T, H, dk, dv, scale,
                                                window, dvec, dq);
    bwd_dkdv_k<<<blocks_for(rows), kWarps * 32>>>(dout, q, k, v, lse, dvec, B, T, H, dk, dv, scale,
                                                  window, dk_, dv_);
    return launched();
}

}  // namespace moe::gpu::kern
