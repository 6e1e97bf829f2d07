// Cross-entropy, one block per token row: the row max (exact in any order), the sum of
// exp(x - max) in double over a fixed tree, logsumexp = max + log(sum).
#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

// Returns max and sum of exp(x - max) for the row; every thread gets both.
__device__ void row_max_sumexp(const float* x, int64_t vocab, float* fsh, double* dsh, float& mx,
                               double& se) {
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < vocab; j += kThreads) m = fmaxf(m, x[j]);
    mx = block_max(m, fsh);
    double s = 0.0;
    for (int64_t j = threadIdx.x; j < vocab; j += kThreads) s += exp(double(x[j] - mx));
    se = block_sum(s, dsh);
}

__global__ void ce_forward_k(const float* logits, const int32_t* targets, int64_t vocab,
                             float* losses, int* bad) {
    __shared__ double dsh[kThreads];
    __shared__ float fsh[kThreads];
    const int64_t t = blockIdx.x;
    const int32_t target = targets[t];
    if (target >= vocab) {
        if (threadIdx.x == 0) atomicMin(bad, static_cast<int>(t));
        return;
    }
    if (target < 0) {
        if (threadIdx.x == 0) losses[t] = 0.0f;
        return;
    }
    const float* x = logits + t * vocab;
    float mx;
    double se;
    row_max_sumexp(x, vocab, fsh, dsh, mx, se);
    if (threadIdx.x == 0) losses[t] = static_cast<float>(mx + log(se) - x[target]);
}

__global__ void ce_backward_k(const float* logits, const int32_t* targets, int64_t vocab,
                              float scale, float* dlogits, int* bad) {
    __shared__ double dsh[kThreads];
    __shared__ float fsh[kThreads];
    const int64_t t = blockIdx.x;
    const int32_t target = targets[t];
    if (target >= vocab) {
        if (threadIdx.x == 0) atomicMin(bad, static_cast<int>(t));
        return;
    }
    if (target < 0) return;
    const float* x = logits + t * vocab;
    float mx;
    double se;
    row_max_sumexp(x, vocab, fsh, dsh, mx, se);
    const double inv = 1.0 / se;
    float* d = dlogits + t * vocab;
    for (int64_t j = threadIdx.x; j < vocab; j += kThreads) {
        const float g = scale * static_cast<float>(exp(double(x[j] - mx)) * inv);
        // The target's -scale is added by its owner thread after its softmax term, as on the CPU.
        d[j] = j == target ? (d[j] + g) - scale : d[j] + g;
    }
}

}  // namespace

cudaError_t cross_entropy_forward(const float* logits, const int32_t* targets, int64_t n,
                                  int64_t vocab, float* losses, int* bad) {
    if (n <= 0) return cudaSuccess;
    ce_forward_k<<<static_cast<unsigned>(n), kThreads>>>(logits, targets, vocab, losses, bad);
    return launched();
}

cudaError_t cross_entropy_backward(const float* logits, const int32_t* targets, int64_t n,
                                   int64_t vocab, float scale, float* dlogits, int* bad) {
    if (n <= 0) return cudaSuccess;
    ce_backward_k<<<static_cast<unsigned>(n), kThreads>>>(logits, targets, vocab, scale, dlogits,
                                                          bad);
    return launched();
}

}  // namespace moe::gpu::kern
