#pragma once
// CpuBackend::blocked_reduce (declared in cpu_backend.h), for the backend's own .cpp files.
#include <algorithm>

#include "backend/cpu/cpu_backend.h"

namespace moe {

template <class BlockSum>
double CpuBackend::blocked_reduce(const float* x, int64_t n, BlockSum block_sum) {
    constexpr int64_t kBlock = 4096;
    if (n <= 0) return 0.0;
    const int64_t nb = (n + kBlock - 1) / kBlock;
    double* part = grow(blocks_, static_cast<size_t>(nb));
    const int nt = team(n);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t b = 0; b < nb; ++b)
        part[b] = block_sum(x + b * kBlock, std::min(n, (b + 1) * kBlock) - b * kBlock);
    double total = 0.0;
    for (int64_t b = 0; b < nb; ++b) total += part[b];
    return total;
}

}  // namespace moe
