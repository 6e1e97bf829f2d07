#pragma once
// CudaAllocator: the engine's Allocator (core/allocator.h) over one CUDA device's memory:
// cudaMalloc / cudaFree, cudaMemset and cudaMemcpy on the legacy default stream (ordered with
// every CudaBackend op). Uploads up to 1 MiB (token batches, route tables) go through a ring of
// pinned staging slots with cudaMemcpyAsync: the host copies into the slot and returns without
// waiting for the device (a pageable cudaMemcpy would first wait for every queued kernel), so
// the uploads inside a step - the MTP inputs, the next batch - overlap with the kernels still
// running. Out of memory is an Error naming the buffer, its size, the device's
// free and total memory and what to reduce. No CUDA headers here.
#include "core/allocator.h"

namespace moe::gpu {

class CudaAllocator final : public Allocator {
public:
    explicit CudaAllocator(int device) : device_(device) {}
    ~CudaAllocator() override;
    CudaAllocator(const CudaAllocator&) = delete;
    CudaAllocator& operator=(const CudaAllocator&) = delete;
    Device device() const override { return {Device::Kind::Cuda, device_}; }
    void* allocate(size_t bytes, const char* what) override;
    void deallocate(void* p) noexcept override;
    void zero(void* p, size_t bytes) override;
    void copy(void* dst, const void* src, size_t bytes, CopyKind kind) override;
    void memory_info(size_t& free_bytes, size_t& total_bytes) const override;

private:
    // Staged asynchronous upload; false when it does not fit a slot (plain cudaMemcpy then).
    bool staged_upload(void* dst, const void* src, size_t bytes);
    static constexpr size_t kSlotBytes = size_t(1) << 20;
    static constexpr int kSlots = 8;
    int device_ = 0;
    char* pinned_ = nullptr;          // kSlots * kSlotBytes of pinned host memory
    void* events_[kSlots] = {};       // cudaEvent_t: the slot's last copy
    int next_slot_ = 0;
    bool staging_failed_ = false;     // no pinned memory: every upload is a plain cudaMemcpy
};

}  // namespace moe::gpu
