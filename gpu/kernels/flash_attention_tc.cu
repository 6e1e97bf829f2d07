// Fused causal attention on tensor cores (bf16 WMMA 16x16x16, fp32 accumulation), forward and
// backward: Backend::fused_attention_* with AttentionMath::Bf16.
//
// Tiles of 64 queries (forward, dq) or 64 keys (dk, dv) per block of 4 warps, 16 rows a warp.
// The block's tile and the tiles it walks over are converted from fp32 to bf16 once, in shared
// memory, and reused by all 4 warps; every product (Q K^T, P V, dO V^T, dS K, P^T dO, dS^T Q)
// is a WMMA loop over 16-wide slices. Softmax statistics, the running output and the gradient
// accumulators stay fp32 in shared memory (the output needs a per-row rescale that WMMA
// fragments do not expose). As in FlashAttention-2 the probabilities P and score gradients dS
// are rounded to bf16 for their products; the host default with AttentionMath::Bf16 rounds the
// same operands (engine/backend/fused_attention.cpp), the reference this is tested against.
//
// The backward is two passes like the SIMT kernels (dq per query tile; dk and dv per key tile),
// so nothing is written by two blocks and no float atomics are used: deterministic.
// Shared memory grows with the head widths (about 170 KB for DeepSeek-V3's 192/128 in the dq
// pass, 210 KB in the dk/dv pass): fused_attention_tc_smem says how much, and the backend uses
// these kernels only where the device allows that much per block (Hopper: 227 KB), else the
// SIMT kernels.
#include <cuda_bf16.h>
#include <mma.h>

#include <algorithm>
#include <cmath>

#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kTile = 64;    // queries or keys per block
constexpr int kTcWarps = 4;  // 16 rows each
constexpr int kTcThreads = kTcWarps * 32;
constexpr unsigned kMask = 0xffffffffu;

__host__ __device__ inline int64_t pad16(int64_t n) {
    return (n + 15) / 16 * 16;
}

__device__ inline float tc_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kMask, v, o);
    return v;
}

__device__ inline float tc_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kMask, v, o));
    return v;
}

// Rows [first, first + 64) of x [B, T, H, width] for head (b, h), as bf16 [64][ld] with zeros
// past T and past width. All threads of the block call it.
__device__ inline void load_tile(const float* x, int64_t b, int64_t h, int64_t first, int64_t T,
                                 int64_t H, int64_t width, int64_t ld, bf16* dst) {
    for (int64_t idx = threadIdx.x; idx < kTile * ld; idx += blockDim.x) {
        const int64_t r = idx / ld, d = idx % ld, t = first + r;
        const float v = (t < T && d < width) ? x[((b * T + t) * H + h) * width + d] : 0.0f;
        dst[idx] = __float2bfloat16(v);
    }
}

// Whether query i sees key j.
__device__ inline bool visible(int64_t i, int64_t j, int64_t T, int64_t window) {
    return i < T && j <= i && (window <= 0 || j > i - window);
}

// Byte sizes of each pass's shared memory (see the kernels' layouts).
struct TcSizes {
    int64_t fwd, dq, dkdv;
};

TcSizes tc_sizes(int64_t dk, int64_t dv) {
    const int64_t dkp = pad16(dk), dvp = pad16(dv);
    const int64_t rows = kTcWarps * 16;  // = kTile
    TcSizes s;
    // Q, K, V (bf16); S (f32), P (bf16), O (f32) per warp; m, l.
    s.fwd = 2 * (kTile * dkp * 2 + kTile * dvp) + rows * kTile * 4 + rows * kTile * 2 +
            rows * dvp * 4 + 2 * kTile * 4;
    // Q, dO, K, V (bf16); S, dP (f32), dS (bf16), dQ (f32) per warp; L, D.
    s.dq = 2 * (kTile * dkp * 2 + kTile * dvp * 2) + 2 * rows * kTile * 4 + rows * kTile * 2 +
           rows * dkp * 4 + 2 * kTile * 4;
    // K, V, Q, dO (bf16); S^T, dP^T (f32), P^T, dS^T (bf16), dK, dV (f32) per warp; L, D.
    s.dkdv = 2 * (kTile * dkp * 2 + kTile * dvp * 2) + 2 * rows * kTile * 4 + 2 * rows * kTile * 2 +
             rows * (dkp + dvp) * 4 + 2 * kTile * 4;
    return s;
}

using namespace nvcuda;
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// out[16][64] (f32, ld 64) = A[16][kdim] (bf16 row-major, lda) x B^T where B is [64][kdim]
// (bf16 row-major, ldb): the scores of 16 rows against 64 rows.
__device__ inline void rows_times_rows_t(const bf16* A, int64_t lda, const bf16* Bm, int64_t ldb,
                                         int64_t kdim, float* out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    for (int n = 0; n < kTile / 16; ++n) {
        FragC acc;
        wmma::fill_fragment(acc, 0.0f);
        for (int64_t kk = 0; kk < kdim; kk += 16) {
            FragA a;
            FragBCol bt;
            wmma::load_matrix_sync(a, A + kk, unsigned(lda));
            wmma::load_matrix_sync(bt, Bm + n * 16 * ldb + kk, unsigned(ldb));
            wmma::mma_sync(acc, a, bt, acc);
        }
        wmma::store_matrix_sync(out + n * 16, acc, kTile, wmma::mem_row_major);
    }
#endif
}

// acc[16][width] (f32 row-major, ld) += P[16][64] (bf16, ld 64) x M[64][width] (bf16 row-major,
// ldm): the 64-wide product of probabilities (or score gradients) with values / keys / queries.
__device__ inline void accumulate_p_times(const bf16* P, const bf16* M, int64_t ldm, int64_t width,
                                          float* acc_rows, int64_t ld) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    for (int64_t n = 0; n < width; n += 16) {
        FragC acc;
        wmma::load_matrix_sync(acc, acc_rows + n, unsigned(ld), wmma::mem_row_major);
        for (int kk = 0; kk < kTile; kk += 16) {
            FragA a;
            FragBRow b;
            wmma::load_matrix_sync(a, P + kk, kTile);
            wmma::load_matrix_sync(b, M + kk * ldm + n, unsigned(ldm));
            wmma::mma_sync(acc, a, b, acc);
        }
        wmma::store_matrix_sync(acc_rows + n, acc, unsigned(ld), wmma::mem_row_major);
    }
#endif
}

// ---------------------------------------------------------------------------------- forward
__global__ void __launch_bounds__(kTcThreads)
    fwd_tc_k(const float* q, const float* k, const float* v, int64_t T, int64_t H, int64_t dk,
             int64_t dv, float scale, int64_t window, float* lse, float* out) {
    extern __shared__ __align__(128) unsigned char smem[];
    const int64_t dkp = pad16(dk), dvp = pad16(dv);
    const int64_t bh = blockIdx.y, b = bh / H, h = bh % H, q0 = int64_t(blockIdx.x) * kTile;
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    bf16* Qs = reinterpret_cast<bf16*>(smem);
    bf16* Ks = Qs + kTile * dkp;
    bf16* Vs = Ks + kTile * dkp;
    float* Ss = reinterpret_cast<float*>(Vs + kTile * dvp);  // [64][64], warp w: rows 16w..
    bf16* Ps = reinterpret_cast<bf16*>(Ss + kTile * kTile);
    float* Os = reinterpret_cast<float*>(Ps + kTile * kTile);  // [64][dvp]
    float* M = Os + kTile * dvp;
    float* L = M + kTile;

    load_tile(q, b, h, q0, T, H, dk, dkp, Qs);
    for (int64_t i = threadIdx.x; i < kTile * dvp; i += blockDim.x) Os[i] = 0.0f;
    for (int64_t i = threadIdx.x; i < kTile; i += blockDim.x) M[i] = -INFINITY, L[i] = 0.0f;
    const int64_t q_last = min(T - 1, q0 + kTile - 1);
    const int64_t lo = window > 0 ? max(int64_t(0), q0 - window + 1) : 0;
    float* S_w = Ss + w * 16 * kTile;
    bf16* P_w = Ps + w * 16 * kTile;
    float* O_w = Os + w * 16 * dvp;
    for (int64_t j0 = lo; j0 <= q_last; j0 += kTile) {
        __syncthreads();  // the previous tiles are used up
        load_tile(k, b, h, j0, T, H, dk, dkp, Ks);
        load_tile(v, b, h, j0, T, H, dv, dvp, Vs);
        __syncthreads();
        rows_times_rows_t(Qs + w * 16 * dkp, dkp, Ks, dkp, dkp, S_w);
        __syncwarp();
        for (int r = 0; r < 16; ++r) {
            const int64_t row = w * 16 + r, i = q0 + row;
            float s[2], p[2];
            for (int c = 0; c < 2; ++c) {
                const int64_t j = j0 + lane + 32 * c;
                s[c] = visible(i, j, T, window) && j < T ? S_w[r * kTile + lane + 32 * c] * scale
                                                         : -INFINITY;
            }
            const float m_old = M[row];
            const float m_new = fmaxf(m_old, tc_warp_max(fmaxf(s[0], s[1])));
            const bool any = m_new != -INFINITY;
            const float corr = any ? expf(m_old - m_new) : 1.0f;
            for (int c = 0; c < 2; ++c) p[c] = any && s[c] != -INFINITY ? expf(s[c] - m_new) : 0.0f;
            const float sum = tc_warp_sum(p[0] + p[1]);
            for (int c = 0; c < 2; ++c) P_w[r * kTile + lane + 32 * c] = __float2bfloat16(p[c]);
            for (int64_t d = lane; d < dvp; d += 32) O_w[r * dvp + d] *= corr;
            __syncwarp();
            if (lane == 0) {
                L[row] = L[row] * corr + sum;
                M[row] = m_new;
            }
        }
        __syncwarp();
        accumulate_p_times(P_w, Vs, dvp, dvp, O_w, dvp);
    }
    __syncthreads();
    for (int r = 0; r < 16; ++r) {
        const int64_t row = w * 16 + r, i = q0 + row;
        if (i >= T) break;
        const float l = L[row];
        for (int64_t d = lane; d < dv; d += 32)
            out[((b * T + i) * H + h) * dv + d] = O_w[r * dvp + d] / l;
        if (lane == 0) lse[bh * T + i] = M[row] + logf(l);
    }
}

// ------------------------------------------------------------------------------ backward: dq
// Also writes D_i = dout_i . out_i (fp32) for the dk/dv pass.
__global__ void __launch_bounds__(kTcThreads)
    bwd_dq_tc_k(const float* dout, const float* q, const float* k, const float* v, const float* out,
                const float* lse, int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                int64_t window, float* dvec, float* dq) {
    extern __shared__ __align__(128) unsigned char smem[];
    const int64_t dkp = pad16(dk), dvp = pad16(dv);
    const int64_t bh = blockIdx.y, b = bh / H, h = bh % H, q0 = int64_t(blockIdx.x) * kTile;
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    bf16* Qs = reinterpret_cast<bf16*>(smem);
    bf16* dOs = Qs + kTile * dkp;
    bf16* Ks = dOs + kTile * dvp;
    bf16* Vs = Ks + kTile * dkp;
    float* Ss = reinterpret_cast<float*>(Vs + kTile * dvp);
    float* dPs = Ss + kTile * kTile;
    bf16* dSs = reinterpret_cast<bf16*>(dPs + kTile * kTile);
    float* dQs = reinterpret_cast<float*>(dSs + kTile * kTile);
    float* Ls = dQs + kTile * dkp;
    float* Ds = Ls + kTile;

    load_tile(q, b, h, q0, T, H, dk, dkp, Qs);
    load_tile(dout, b, h, q0, T, H, dv, dvp, dOs);
    for (int64_t i = threadIdx.x; i < kTile * dkp; i += blockDim.x) dQs[i] = 0.0f;
    // D and L of the warp's rows, D from the fp32 dout and out.
    for (int r = 0; r < 16; ++r) {
        const int64_t row = w * 16 + r, i = q0 + row;
        float part = 0.0f;
        if (i < T)
            for (int64_t d = lane; d < dv; d += 32) {
                const int64_t at = ((b * T + i) * H + h) * dv + d;
                part = fmaf(dout[at], out[at], part);
            }
        const float D = tc_warp_sum(part);
        if (lane == 0) {
            Ds[row] = D;
            Ls[row] = i < T ? lse[bh * T + i] : 0.0f;
            if (i < T) dvec[bh * T + i] = D;
        }
    }
    const int64_t q_last = min(T - 1, q0 + kTile - 1);
    const int64_t lo = window > 0 ? max(int64_t(0), q0 - window + 1) : 0;
    float* S_w = Ss + w * 16 * kTile;
    float* dP_w = dPs + w * 16 * kTile;
    bf16* dS_w = dSs + w * 16 * kTile;
    float* dQ_w = dQs + w * 16 * dkp;
    for (int64_t j0 = lo; j0 <= q_last; j0 += kTile) {
        __syncthreads();
        load_tile(k, b, h, j0, T, H, dk, dkp, Ks);
        load_tile(v, b, h, j0, T, H, dv, dvp, Vs);
        __syncthreads();
        rows_times_rows_t(Qs + w * 16 * dkp, dkp, Ks, dkp, dkp, S_w);
        rows_times_rows_t(dOs + w * 16 * dvp, dvp, Vs, dvp, dvp, dP_w);
        __syncwarp();
        for (int r = 0; r < 16; ++r) {
            const int64_t row = w * 16 + r, i = q0 + row;
            for (int c = 0; c < 2; ++c) {
                const int col = lane + 32 * c;
                const int64_t j = j0 + col;
                float ds = 0.0f;
                if (j < T && visible(i, j, T, window)) {
                    const float p = expf(S_w[r * kTile + col] * scale - Ls[row]);
                    ds = p * (dP_w[r * kTile + col] - Ds[row]) * scale;
                }
                dS_w[r * kTile + col] = __float2bfloat16(ds);
            }
        }
        __syncwarp();
        accumulate_p_times(dS_w, Ks, dkp, dkp, dQ_w, dkp);
    }
    __syncthreads();
    for (int r = 0; r < 16; ++r) {
        const int64_t row = w * 16 + r, i = q0 + row;
        if (i >= T) break;
        for (int64_t d = lane; d < dk; d += 32)
            dq[((b * T + i) * H + h) * dk + d] += dQ_w[r * dkp + d];
    }
}

// ------------------------------------------------------------------------- backward: dk, dv
// Per block 64 keys; walks the query tiles that see them. Transposed scores: rows are keys.
__global__ void __launch_bounds__(kTcThreads)
    bwd_dkdv_tc_k(const float* dout, const float* q, const float* k, const float* v,
                  const float* lse, const float* dvec, int64_t T, int64_t H, int64_t dk, int64_t dv,
                  float scale, int64_t window, float* dk_, float* dv_) {
    extern __shared__ __align__(128) unsigned char smem[];
    const int64_t dkp = pad16(dk), dvp = pad16(dv);
    const int64_t bh = blockIdx.y, b = bh / H, h = bh % H, k0 = int64_t(blockIdx.x) * kTile;
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    bf16* Ks = reinterpret_cast<bf16*>(smem);
    bf16* Vs = Ks + kTile * dkp;
    bf16* Qs = Vs + kTile * dvp;
    bf16* dOs = Qs + kTile * dkp;
    float* St = reinterpret_cast<float*>(dOs + kTile * dvp);
    float* dPt = St + kTile * kTile;
    bf16* Pt = reinterpret_cast<bf16*>(dPt + kTile * kTile);
    bf16* dSt = Pt + kTile * kTile;
    float* dKs = reinterpret_cast<float*>(dSt + kTile * kTile);
    float* dVs = dKs + kTile * dkp;
    float* Ls = dVs + kTile * dvp;
    float* Ds = Ls + kTile;

    if (k0 >= T) return;
    load_tile(k, b, h, k0, T, H, dk, dkp, Ks);
    load_tile(v, b, h, k0, T, H, dv, dvp, Vs);
    for (int64_t i = threadIdx.x; i < kTile * dkp; i += blockDim.x) dKs[i] = 0.0f;
    for (int64_t i = threadIdx.x; i < kTile * dvp; i += blockDim.x) dVs[i] = 0.0f;
    const int64_t k_last = min(T - 1, k0 + kTile - 1);
    // Queries that see a key of the tile: [k0, k_last + window - 1] (all later ones without).
    const int64_t hi = window > 0 ? min(T - 1, k_last + window - 1) : T - 1;
    float* St_w = St + w * 16 * kTile;
    float* dPt_w = dPt + w * 16 * kTile;
    bf16* Pt_w = Pt + w * 16 * kTile;
    bf16* dSt_w = dSt + w * 16 * kTile;
    float* dK_w = dKs + w * 16 * dkp;
    float* dV_w = dVs + w * 16 * dvp;
    for (int64_t i0 = k0; i0 <= hi; i0 += kTile) {
        __syncthreads();
        load_tile(q, b, h, i0, T, H, dk, dkp, Qs);
        load_tile(dout, b, h, i0, T, H, dv, dvp, dOs);
        for (int64_t i = threadIdx.x; i < kTile; i += blockDim.x) {
            const int64_t qi = i0 + i;
            Ls[i] = qi < T ? lse[bh * T + qi] : 0.0f;
            Ds[i] = qi < T ? dvec[bh * T + qi] : 0.0f;
        }
        __syncthreads();
        rows_times_rows_t(Ks + w * 16 * dkp, dkp, Qs, dkp, dkp, St_w);    // S^T: keys x queries
        rows_times_rows_t(Vs + w * 16 * dvp, dvp, dOs, dvp, dvp, dPt_w);  // dP^T
        __syncwarp();
        for (int r = 0; r < 16; ++r) {
            const int64_t j = k0 + w * 16 + r;
            for (int c = 0; c < 2; ++c) {
                const int col = lane + 32 * c;
                const int64_t i = i0 + col;
                float p = 0.0f, ds = 0.0f;
                if (j < T && visible(i, j, T, window)) {
                    p = expf(St_w[r * kTile + col] * scale - Ls[col]);
                    ds = p * (dPt_w[r * kTile + col] - Ds[col]) * scale;
                }
                Pt_w[r * kTile + col] = __float2bfloat16(p);
                dSt_w[r * kTile + col] = __float2bfloat16(ds);
            }
        }
        __syncwarp();
        accumulate_p_times(Pt_w, dOs, dvp, dvp, dV_w, dvp);  // dV += P^T dO
        accumulate_p_times(dSt_w, Qs, dkp, dkp, dK_w, dkp);  // dK += dS^T Q
    }
    __syncthreads();
    for (int r = 0; r < 16; ++r) {
        const int64_t j = k0 + w * 16 + r;
        if (j >= T) break;
        const int64_t key = (b * T + j) * H + h;
        for (int64_t d = lane; d < dk; d += 32) dk_[key * dk + d] += dK_w[r * dkp + d];
        for (int64_t d = lane; d < dv; d += 32) dv_[key * dv + d] += dV_w[r * dvp + d];
    }
}

// Raises a kernel's dynamic shared memory limit to `bytes` (needed above 48 KB).
template <typename Kernel>
cudaError_t allow_smem(Kernel kernel, int64_t bytes) {
    if (bytes <= 48 * 1024) return cudaSuccess;
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
}

dim3 tc_grid(int64_t B, int64_t T, int64_t H) {
    return dim3(unsigned((T + kTile - 1) / kTile), unsigned(B * H));
}

}  // namespace

int64_t fused_attention_tc_smem(int64_t dk, int64_t dv) {
    const TcSizes s = tc_sizes(dk, dv);
    return std::max(s.fwd, std::max(s.dq, s.dkdv));
}

cudaError_t fused_attention_forward_tc(const float* q, const float* k, const float* v, int64_t B,
                                       int64_t T, int64_t H, int64_t dk, int64_t dv, float scale,
                                       int64_t window, float* lse, float* out) {
    if (B * H * T <= 0) return cudaSuccess;
    const int64_t bytes = tc_sizes(dk, dv).fwd;
    if (cudaError_t e = allow_smem(fwd_tc_k, bytes); e != cudaSuccess) return e;
    fwd_tc_k<<<tc_grid(B, T, H), kTcThreads, size_t(bytes)>>>(q, k, v, T, H, dk, dv, scale, window,
                                                              lse, out);
    return launched();
}

cudaError_t fused_attention_backward_tc(const float* dout, const float* q, const float* k,
                                        const float* v, const float* out, const float* lse,
                                        int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv,
                                        float scale, int64_t window, float* dvec, float* dq,
                                        float* dk_, float* dv_) {
    if (B * H * T <= 0) return cudaSuccess;
    const TcSizes s = tc_sizes(dk, dv);
    if (cudaError_t e = allow_smem(bwd_dq_tc_k, s.dq); e != cudaSuccess) return e;
    if (cudaError_t e = allow_smem(bwd_dkdv_tc_k, s.dkdv); e != cudaSuccess) return e;
    bwd_dq_tc_k<<<tc_grid(B, T, H), kTcThreads, size_t(s.dq)>>>(dout, q, k, v, out, lse, T, H, dk,
                                                                dv, scale, window, dvec, dq);
    bwd_dkdv_tc_k<<<tc_grid(B, T, H), kTcThreads, size_t(s.dkdv)>>>(
        dout, q, k, v, lse, dvec, T, H, dk, dv, scale, window, dk_, dv_);
    return launched();
}

}  // namespace moe::gpu::kern
