#pragma once
// The GPU test programs' first step: without a usable CUDA device they print
// "SKIP: no CUDA device (...)" (ctest's SKIP_REGULAR_EXPRESSION) and the caller exits 0.
#include <cuda_runtime.h>

#include <cstdio>

namespace moe::gpu::test {

inline bool skip_without_cuda() {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaSuccess && count > 0) return false;
    std::printf("SKIP: no CUDA device (cudaGetDeviceCount: %s)\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return true;
}

}  // namespace moe::gpu::test
