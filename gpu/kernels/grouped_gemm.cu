// Grouped linear layers for the routed experts (Backend::grouped_linear_*): every expert of a
// projection in one launch, with the route plan's offsets read on the device.
//
// Why our own kernel: cuBLAS's grouped GEMM (cublasGemmGroupedBatchedEx) takes each group's
// m, n, k as HOST arrays, so the routing would have to be copied to the host inside the step;
// CUTLASS's grouped GEMM reads problem sizes on the device but is a large template dependency
// Debian does not package. This kernel is the fp32 SIMT baseline of that design (one launch,
// device-side tile schedule, fixed summation order per output, no atomics), plus a bf16
// tensor-core tile (WMMA, sm_80+) for the bf16 precision mode.
//
// Tiles: 64 x 64 outputs per block of 256 threads, 4 x 4 per thread, K in steps of 16 through
// shared memory. Forward and dgrad have a varying M per group: a one-thread kernel writes the
// prefix of each group's M-tile count, and each block finds its group by binary search, so a
// launch covers ceil(rows / 64) + groups tiles along M at most. Wgrad has a fixed [out, in]
// output per group and a varying K (the group's rows); empty groups leave dW untouched.
#include <cuda_bf16.h>
#include <mma.h>

#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

constexpr int kBM = 64, kBN = 64, kBK = 16;

struct Gemm {
    int64_t M = 0, N = 0, K = 0;
    const float* A = nullptr;  // A(m, k) = A[m * sam + k * sak]
    int64_t sam = 0, sak = 0;
    const float* B = nullptr;  // B(k, n) = B[k * sbk + n * sbn]
    int64_t sbk = 0, sbn = 0;
    float* C = nullptr;  // C[m * ldc + n]
    int64_t ldc = 0;
    bool accumulate = false;
    int64_t m0 = 0, n0 = 0;  // this block's tile
};

__global__ void tile_prefix_k(const int64_t* offsets, int64_t groups, int64_t* tile_start) {
    int64_t acc = 0;
    tile_start[0] = 0;
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t m = offsets[g + 1] - offsets[g];
        acc += (m + kBM - 1) / kBM;
        tile_start[g + 1] = acc;
    }
}

// Loads the A (64 x BK) and B (BK x 64) tiles at k0, zero outside the matrices, through put_a
// (mm, kk, value) and put_b (kk, nn, value); consecutive threads walk the unit stride.
template <int BK, int Threads, class PutA, class PutB>
__device__ inline void load_tiles(const Gemm& p, int64_t k0, PutA put_a, PutB put_b) {
    for (int i = 0; i < kBM * BK / Threads; ++i) {
        const int idx = threadIdx.x + i * Threads;
        int mm, kk;
        if (p.sak == 1) {
            mm = idx / BK;
            kk = idx % BK;
        } else {
            kk = idx / kBM;
            mm = idx % kBM;
        }
        const int64_t m = p.m0 + mm, k = k0 + kk;
        put_a(mm, kk, (m < p.M && k < p.K) ? p.A[m * p.sam + k * p.sak] : 0.0f);
        int nn;
        if (p.sbn == 1) {
            kk = idx / kBN;
            nn = idx % kBN;
        } else {
            nn = idx / BK;
            kk = idx % BK;
        }
        const int64_t n = p.n0 + nn, k2 = k0 + kk;
        put_b(kk, nn, (n < p.N && k2 < p.K) ? p.B[k2 * p.sbk + n * p.sbn] : 0.0f);
    }
}

// C tile (+)= A B over K, in a fixed order per output (k ascending).
__device__ void gemm_tile(const Gemm& p) {
    __shared__ float As[kBK][kBM + 4];
    __shared__ float Bs[kBK][kBN + 4];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < p.K; k0 += kBK) {
        load_tiles<kBK, 256>(
            p, k0, [&](int mm, int kk, float v) { As[kk][mm] = v; },
            [&](int kk, int nn, float v) { Bs[kk][nn] = v; });
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kBK; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = As[kk][ty * 4 + i];
#pragma unroll
            for (int j = 0; j < 4; ++j) b[j] = Bs[kk][tx * 4 + j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        const int64_t m = p.m0 + ty * 4 + i;
        if (m >= p.M) continue;
        for (int j = 0; j < 4; ++j) {
            const int64_t n = p.n0 + tx * 4 + j;
            if (n >= p.N) continue;
            float* c = p.C + m * p.ldc + n;
            *c = p.accumulate ? *c + acc[i][j] : acc[i][j];
        }
    }
}

// The same tile on bf16 tensor cores (sm_80+): operands rounded to bf16 on load (round to
// nearest even, as the CPU's unscaled bf16 cast), fp32 accumulation. 4 warps of 32 x 32.
constexpr int kBK16 = 32;

__device__ void gemm_tile_bf16(const Gemm& p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    using namespace nvcuda;
    __shared__ __align__(32) __nv_bfloat16 As[kBM][kBK16 + 8];
    __shared__ __align__(32) __nv_bfloat16 Bs[kBK16][kBN + 8];
    __shared__ __align__(32) float Cs[kBM][kBN + 4];
    const int tid = threadIdx.x, warp = tid / 32, wm = warp / 2, wn = warp % 2;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
    for (int64_t k0 = 0; k0 < p.K; k0 += kBK16) {
        load_tiles<kBK16, 128>(
            p, k0, [&](int mm, int kk, float v) { As[mm][kk] = __float2bfloat16_rn(v); },
            [&](int kk, int nn, float v) { Bs[kk][nn] = __float2bfloat16_rn(v); });
        __syncthreads();
        for (int kk = 0; kk < kBK16; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b[2];
            for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(a[i], &As[wm * 32 + i * 16][kk], kBK16 + 8);
            for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(b[j], &Bs[kk][wn * 32 + j * 16], kBN + 8);
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&Cs[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], kBN + 4,
                                    wmma::mem_row_major);
    __syncthreads();
    for (int idx = tid; idx < kBM * kBN; idx += 128) {
        const int mm = idx / kBN, nn = idx % kBN;
        const int64_t m = p.m0 + mm, n = p.n0 + nn;
        if (m >= p.M || n >= p.N) continue;
        float* c = p.C + m * p.ldc + n;
        *c = p.accumulate ? *c + Cs[mm][nn] : Cs[mm][nn];
    }
#endif
}

template <bool kBf16>
__device__ inline void run_tile(const Gemm& p) {
    if constexpr (kBf16)
        gemm_tile_bf16(p);
    else
        gemm_tile(p);
}

template <bool kBf16>
constexpr int threads_for() {
    return kBf16 ? 128 : 256;
}

// Forward (dgrad = false): y[r] = x[r] W_g^T.  dgrad: dx[r] += dy[r] W_g.
template <bool kBf16>
__global__ void grouped_rows_k(const float* a, const int64_t* offsets, const int64_t* tile_start,
                               int64_t groups, const float* const* w, int64_t in, int64_t out,
                               float* c, int64_t tiles_n, bool dgrad) {
    const int64_t block = blockIdx.x;
    const int64_t tn = block % tiles_n, t = block / tiles_n;
    if (t >= tile_start[groups]) return;
    int64_t lo = 0, hi = groups - 1;  // the group g with tile_start[g] <= t < tile_start[g+1]
    while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (tile_start[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    const int64_t g = lo, r0 = offsets[g];
    Gemm p;
    p.M = offsets[g + 1] - r0;
    p.m0 = (t - tile_start[g]) * kBM;
    p.n0 = tn * kBN;
    if (!dgrad) {
        p.N = out, p.K = in;
        p.A = a + r0 * in, p.sam = in, p.sak = 1;
        p.B = w[g], p.sbk = 1, p.sbn = in;
        p.C = c + r0 * out, p.ldc = out, p.accumulate = false;
    } else {
        p.N = in, p.K = out;
        p.A = a + r0 * out, p.sam = out, p.sak = 1;
        p.B = w[g], p.sbk = in, p.sbn = 1;
        p.C = c + r0 * in, p.ldc = in, p.accumulate = true;
    }
    if (p.n0 >= p.N) return;
    run_tile<kBf16>(p);
}

// dW_g += dy_g^T x_g: M = out, N = in, K = the group's rows.
template <bool kBf16>
__global__ void grouped_wgrad_k(const float* dy, const float* x, const int64_t* offsets,
                                float* const* dw, int64_t in, int64_t out, int64_t tiles_n,
                                int64_t tiles_m) {
    const int64_t block = blockIdx.x;
    const int64_t tn = block % tiles_n, tm = (block / tiles_n) % tiles_m;
    const int64_t g = block / (tiles_n * tiles_m);
    const int64_t r0 = offsets[g];
    Gemm p;
    p.M = out, p.N = in, p.K = offsets[g + 1] - r0;
    if (p.K <= 0) return;
    p.m0 = tm * kBM, p.n0 = tn * kBN;
    p.A = dy + r0 * out, p.sam = 1, p.sak = out;
    p.B = x + r0 * in, p.sbk = in, p.sbn = 1;
    p.C = dw[g], p.ldc = in, p.accumulate = true;
    run_tile<kBf16>(p);
}

constexpr int64_t kMaxBlocks = 2147483647;

}  // namespace

cudaError_t grouped_linear_rows(const float* a, const int64_t* offsets, int64_t groups,
                                int64_t rows, const float* const* w, int64_t in, int64_t out,
                                float* c, bool dgrad, bool bf16, int64_t* tile_start) {
    if (groups <= 0 || rows <= 0 || in <= 0 || out <= 0) return cudaSuccess;
    tile_prefix_k<<<1, 1>>>(offsets, groups, tile_start);
    const int64_t tiles_n = ((dgrad ? in : out) + kBN - 1) / kBN;
    const int64_t tiles_m = (rows + kBM - 1) / kBM + groups;  // at least the schedule's tiles
    if (tiles_n * tiles_m > kMaxBlocks) return cudaErrorInvalidConfiguration;
    const unsigned blocks = static_cast<unsigned>(tiles_n * tiles_m);
    if (bf16)
        grouped_rows_k<true><<<blocks, threads_for<true>()>>>(a, offsets, tile_start, groups, w, in,
                                                              out, c, tiles_n, dgrad);
    else
        grouped_rows_k<false><<<blocks, threads_for<false>()>>>(a, offsets, tile_start, groups, w,
                                                                in, out, c, tiles_n, dgrad);
    return launched();
}

cudaError_t grouped_linear_wgrad(const float* dy, const float* x, const int64_t* offsets,
                                 int64_t groups, float* const* dw, int64_t in, int64_t out,
                                 bool bf16) {
    if (groups <= 0 || in <= 0 || out <= 0) return cudaSuccess;
    const int64_t tiles_n = (in + kBN - 1) / kBN, tiles_m = (out + kBM - 1) / kBM;
    if (tiles_n * tiles_m * groups > kMaxBlocks) return cudaErrorInvalidConfiguration;
    const unsigned blocks = static_cast<unsigned>(tiles_n * tiles_m * groups);
    if (bf16)
        grouped_wgrad_k<true><<<blocks, threads_for<true>()>>>(dy, x, offsets, dw, in, out, tiles_n,
                                                               tiles_m);
    else
        grouped_wgrad_k<false><<<blocks, threads_for<false>()>>>(dy, x, offsets, dw, in, out,
                                                                 tiles_n, tiles_m);
    return launched();
}

}  // namespace moe::gpu::kern
