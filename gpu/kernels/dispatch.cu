// Token dispatch by expert. The route plan is a stable counting sort done the simple way: one
// thread per expert walks all routed rows in order, counting (pass 1) and then placing its rows
// (pass 2), so tokens ascend within an expert exactly as on the CPU. O(E * n * K) reads, fine
// for the sizes of this workbench; a radix sort would replace it at scale.
// Permute / unpermute gather per output row, so each output element has one writer.
#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

__global__ void check_experts_k(const int32_t* idx, int64_t rows, int64_t E, int* bad) {
    MOE_GRID_LOOP(i, rows)
    if (idx[i] < 0 || idx[i] >= E) atomicMin(bad, static_cast<int>(i));
}

__global__ void count_k(const int32_t* idx, int64_t rows, int64_t E, int64_t* counts) {
    MOE_GRID_LOOP(e, E) {
        int64_t c = 0;
        for (int64_t i = 0; i < rows; ++i) c += idx[i] == e;
        counts[e + 1] = c;
    }
}

__global__ void scan_k(int64_t* offsets, int64_t E) {
    offsets[0] = 0;
    for (int64_t e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
}

__global__ void place_k(const int32_t* idx, int64_t rows, int64_t K, int64_t E,
                        const int64_t* offsets, int32_t* row_token, int32_t* slot_row) {
    MOE_GRID_LOOP(e, E) {
        int64_t cur = offsets[e];
        for (int64_t i = 0; i < rows; ++i) {
            if (idx[i] != e) continue;
            row_token[cur] = static_cast<int32_t>(i / K);
            slot_row[i] = static_cast<int32_t>(cur);
            ++cur;
        }
    }
}

__global__ void permute_k(const float* x, const int32_t* row_token, int64_t rows, int64_t dim,
                          float* xp) {
    MOE_GRID_LOOP(i, rows * dim) xp[i] = x[int64_t(row_token[i / dim]) * dim + i % dim];
}

__global__ void permute_backward_k(const float* dxp, const int32_t* slot_row, int64_t n,
                                   int64_t K, int64_t dim, float* dx) {
    MOE_GRID_LOOP(i, n * dim) {
        const int64_t t = i / dim, j = i % dim;
        float d = dx[i];
        for (int64_t k = 0; k < K; ++k) d += dxp[int64_t(slot_row[t * K + k]) * dim + j];
        dx[i] = d;
    }
}

__global__ void unpermute_k(const float* yp, const float* w, const int32_t* slot_row, int64_t n,
                            int64_t K, int64_t dim, float* y) {
    MOE_GRID_LOOP(i, n * dim) {
        const int64_t t = i / dim, j = i % dim;
        float acc = y[i];
        for (int64_t k = 0; k < K; ++k)
            acc += w[t * K + k] * yp[int64_t(slot_row[t * K + k]) * dim + j];
        y[i] = acc;
    }
}

// One block per (token, slot): dyp row += w dy; dw += dot(dy, yp row) in a fixed double tree.
__global__ void unpermute_backward_k(const float* dy, const float* yp, const float* w,
                                     const int32_t* slot_row, int64_t K, int64_t dim, float* dyp,
                                     float* dw) {
    __shared__ double sh[kThreads];
    const int64_t tk = blockIdx.x, t = tk / K;
    const int64_t r = slot_row[tk];
    const float wk = w[tk];
    const float* dyt = dy + t * dim;
    const float* ypr = yp + r * dim;
    float* dypr = dyp + r * dim;
    double dot = 0.0;
    for (int64_t j = threadIdx.x; j < dim; j += kThreads) {
        dypr[j] += wk * dyt[j];
        dot += double(dyt[j]) * ypr[j];
    }
    dot = block_sum(dot, sh);
    if (threadIdx.x == 0) dw[tk] += static_cast<float>(dot);
}

}  // namespace

cudaError_t route_plan(const int32_t* topk_idx, int64_t n, int64_t K, int64_t E,
                       int64_t* offsets, int32_t* row_token, int32_t* slot_row, int* bad) {
    const int64_t rows = n * K;
    if (rows > 0) check_experts_k<<<grid_for(rows), kThreads>>>(topk_idx, rows, E, bad);
    count_k<<<grid_for(E, 64), 64>>>(topk_idx, rows, E, offsets);
    scan_k<<<1, 1>>>(offsets, E);
    place_k<<<grid_for(E, 64), 64>>>(topk_idx, rows, K, E, offsets, row_token, slot_row);
    return launched();
}

cudaError_t permute(const float* x, const int32_t* row_token, int64_t rows, int64_t dim,
                    float* xp) {
    if (rows <= 0 || dim <= 0) return cudaSuccess;
    permute_k<<<grid_for(rows * dim), kThreads>>>(x, row_token, rows, dim, xp);
    return launched();
}

cudaError_t permute_backward(const float* dxp, const int32_t* slot_row, int64_t n, int64_t K,
                             int64_t dim, float* dx) {
    if (n <= 0 || dim <= 0) return cudaSuccess;
    permute_backward_k<<<grid_for(n * dim), kThreads>>>(dxp, slot_row, n, K, dim, dx);
    return launched();
}

cudaError_t unpermute(const float* yp, const float* w, const int32_t* slot_row, int64_t n,
                      int64_t K, int64_t dim, float* y) {
    if (n <= 0 || dim <= 0) return cudaSuccess;
    unpermute_k<<<grid_for(n * dim), kThreads>>>(yp, w, slot_row, n, K, dim, y);
    return launched();
}

cudaError_t unpermute_backward(const float* dy, const float* yp, const float* w,
                               const int32_t* slot_row, int64_t n, int64_t K, int64_t dim,
                               float* dyp, float* dw) {
    if (n <= 0 || K <= 0) return cudaSuccess;
    unpermute_backward_k<<<static_cast<unsigned>(n * K), kThreads>>>(dy, yp, w, slot_row, K, dim,
                                                                     dyp, dw);
    return launched();
}

}  // namespace moe::gpu::kern
