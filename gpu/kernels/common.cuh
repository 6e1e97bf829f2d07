#pragma once
// Launch helpers shared by the kernels (internal to gpu/kernels).
#include <cstdint>

#include <cuda_runtime.h>

namespace moe::gpu::kern {

constexpr int kThreads = 256;  // block size of every reduction (the trees assume it)

inline unsigned grid_for(int64_t n, int threads = kThreads) {
    const int64_t blocks = (n + threads - 1) / threads;
    return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 1048576 ? 1048576 : blocks));
}

// Grid-stride loop index range, 64-bit.
#define MOE_GRID_LOOP(i, n)                                                           \
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);        \
         i += int64_t(gridDim.x) * blockDim.x)

// Sum of v over a kThreads block in a fixed tree (same shape every call: deterministic).
// All threads must call it; every thread gets the total. sh: kThreads doubles of shared memory.
__device__ inline double block_sum(double v, double* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    const double total = sh[0];
    __syncthreads();
    return total;
}

// Max over the block (max is exact, so any order gives the same value).
__device__ inline float block_max(float v, float* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    const float total = sh[0];
    __syncthreads();
    return total;
}

// Sigmoid written like the CPU's (exp only of non-positive arguments).
__device__ inline float sigmoidf_stable(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}

inline cudaError_t launched() { return cudaGetLastError(); }

}  // namespace moe::gpu::kern
