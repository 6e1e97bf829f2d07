// Fixed-order reductions in double: sum, sum of squares (gradient norm), and sums of per-token
// double terms (balance loss). Block b sums elements [b*4096, (b+1)*4096): thread i takes
// i, i+256, ... in order, then a fixed tree; a single block then reduces the partials the same
// way. The result depends only on n, never on timing.
#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

constexpr int64_t kBlock = 4096;

template <class T, bool kSquares>
__global__ void block_partials_k(const T* x, int64_t n, double* partials) {
    __shared__ double sh[kThreads];
    const int64_t b0 = int64_t(blockIdx.x) * kBlock, b1 = min(n, b0 + kBlock);
    double s = 0.0;
    for (int64_t i = b0 + threadIdx.x; i < b1; i += kThreads) {
        const double v = static_cast<double>(x[i]);
        s += kSquares ? v * v : v;
    }
    const double total = block_sum(s, sh);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void final_k(const double* partials, int64_t nb, double* result) {
    __shared__ double sh[kThreads];
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < nb; i += kThreads) s += partials[i];
    const double total = block_sum(s, sh);
    if (threadIdx.x == 0) *result = total;
}

template <class T, bool kSquares>
cudaError_t reduce(const T* x, int64_t n, double* partials, double* result) {
    if (n <= 0) return cudaMemsetAsync(result, 0, sizeof(double));
    const int64_t nb = reduce_blocks(n);
    block_partials_k<T, kSquares><<<static_cast<unsigned>(nb), kThreads>>>(x, n, partials);
    final_k<<<1, kThreads>>>(partials, nb, result);
    return launched();
}

}  // namespace

int64_t reduce_blocks(int64_t n) { return n <= 0 ? 1 : (n + kBlock - 1) / kBlock; }

cudaError_t reduce_float(const float* x, int64_t n, bool squares, double* partials,
                         double* result) {
    return squares ? reduce<float, true>(x, n, partials, result)
                   : reduce<float, false>(x, n, partials, result);
}

cudaError_t reduce_double(const double* x, int64_t n, double* partials, double* result) {
    return reduce<double, false>(x, n, partials, result);
}

}  // namespace moe::gpu::kern
