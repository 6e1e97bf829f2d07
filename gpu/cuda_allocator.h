#pragma once
// CudaAllocator: the engine's Allocator (core/allocator.h) over one CUDA device's memory:
// cudaMalloc / cudaFree, cudaMemset and cudaMemcpy on the legacy default stream (ordered with
// every CudaBackend op). Out of memory is an Error naming the buffer, its size, the device's
// free and total memory and what to reduce. No CUDA headers here.
#include "core/allocator.h"

namespace moe::gpu {

class CudaAllocator final : public Allocator {
public:
    explicit CudaAllocator(int device) : device_(device) {}
    Device device() const override { return {Device::Kind::Cuda, device_}; }
    void* allocate(size_t bytes, const char* what) override;
    void deallocate(void* p) noexcept override;
    void zero(void* p, size_t bytes) override;
    void copy(void* dst, const void* src, size_t bytes, CopyKind kind) override;
    void memory_info(size_t& free_bytes, size_t& total_bytes) const override;

private:
    int device_ = 0;
};

}  // namespace moe::gpu
