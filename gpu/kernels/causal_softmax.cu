// Backend::causal_softmax on the GPU (see kernels.h).
#include <cfloat>

#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

// One block per row: max, then the sum of exponentials (a fixed tree), then the scaled row.
__global__ void causal_softmax_k(float* s, int64_t H, int64_t cols, int64_t start, int64_t window,
                                 float scale) {
    __shared__ double shd[kThreads];
    __shared__ float shf[kThreads];
    const int64_t r = blockIdx.x;
    float* row = s + r * cols;
    const int64_t pos = start + r / H;
    const int64_t lo = window > 0 ? max(int64_t(0), pos - window + 1) : 0;
    float mx = -FLT_MAX;
    for (int64_t t = lo + threadIdx.x; t <= pos; t += blockDim.x) mx = fmaxf(mx, scale * row[t]);
    mx = block_max(mx, shf);
    double part = 0.0;
    for (int64_t t = lo + threadIdx.x; t <= pos; t += blockDim.x) {
        const float e = expf(scale * row[t] - mx);
        row[t] = e;
        part += e;
    }
    const float inv = static_cast<float>(1.0 / block_sum(part, shd));
    for (int64_t t = threadIdx.x; t < cols; t += blockDim.x)
        row[t] = (t >= lo && t <= pos) ? row[t] * inv : 0.0f;
}

}  // namespace

cudaError_t causal_softmax(float* s, int64_t n, int64_t H, int64_t cols, int64_t start,
                           int64_t window, float scale) {
    if (n <= 0) return cudaSuccess;
    causal_softmax_k<<<static_cast<unsigned>(n * H), kThreads>>>(s, H, cols, start, window, scale);
    return launched();
}

}  // namespace moe::gpu::kern
