#include "cuda_allocator.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "core/error.h"

namespace moe::gpu {

namespace {

std::string gib(size_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f GiB", double(bytes) / double(1ull << 30));
    return buf;
}

void check(cudaError_t e, const char* call) {
    if (e != cudaSuccess)
        throw Error(std::string("CUDA memory: ") + call + " failed: " + cudaGetErrorString(e));
}

}  // namespace

void* CudaAllocator::allocate(size_t bytes, const char* what) {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, bytes == 0 ? 256 : bytes);
    if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();  // clear the sticky-free error so later calls work
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        throw Error("out of GPU memory on cuda:" + std::to_string(device_) + " allocating " +
                    (what ? what : "a buffer") + " (" + gib(bytes) + "): " + gib(free_b) +
                    " free of " + gib(total_b) +
                    "; reduce training.batch_size or training.seq_len, or the model's size "
                    "(hidden_size, n_routed_experts, num_hidden_layers)");
    }
    check(e, "cudaMalloc");
    return p;
}

void CudaAllocator::deallocate(void* p) noexcept {
    if (p) cudaFree(p);
}

void CudaAllocator::zero(void* p, size_t bytes) {
    if (bytes) check(cudaMemset(p, 0, bytes), "cudaMemset");
}

CudaAllocator::~CudaAllocator() {
    for (void* e : events_)
        if (e) cudaEventDestroy(static_cast<cudaEvent_t>(e));
    if (pinned_) cudaFreeHost(pinned_);
}

bool CudaAllocator::staged_upload(void* dst, const void* src, size_t bytes) {
    if (bytes > kSlotBytes || staging_failed_) return false;
    if (!pinned_) {
        if (cudaHostAlloc(reinterpret_cast<void**>(&pinned_), kSlots * kSlotBytes,
                          cudaHostAllocDefault) != cudaSuccess) {
            cudaGetLastError();
            pinned_ = nullptr;
            staging_failed_ = true;  // pinned memory is a speed-up, not a requirement
            return false;
        }
        for (void*& e : events_) {
            cudaEvent_t ev = nullptr;
            check(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming), "cudaEventCreate");
            e = ev;
        }
    }
    const int slot = next_slot_;
    next_slot_ = (next_slot_ + 1) % kSlots;
    auto* ev = static_cast<cudaEvent_t>(events_[slot]);
    // The slot's previous copy must have left it (kSlots uploads ago: normally long done).
    check(cudaEventSynchronize(ev), "cudaEventSynchronize");
    char* stage = pinned_ + size_t(slot) * kSlotBytes;
    std::memcpy(stage, src, bytes);
    check(cudaMemcpyAsync(dst, stage, bytes, cudaMemcpyHostToDevice, 0), "cudaMemcpyAsync");
    check(cudaEventRecord(ev, 0), "cudaEventRecord");
    return true;
}

void CudaAllocator::copy(void* dst, const void* src, size_t bytes, CopyKind kind) {
    if (!bytes || dst == src) return;
    if (kind == CopyKind::HostToDevice && staged_upload(dst, src, bytes)) return;
    const cudaMemcpyKind k = kind == CopyKind::HostToDevice   ? cudaMemcpyHostToDevice
                             : kind == CopyKind::DeviceToHost ? cudaMemcpyDeviceToHost
                                                              : cudaMemcpyDeviceToDevice;
    check(cudaMemcpy(dst, src, bytes, k), "cudaMemcpy");
}

void CudaAllocator::memory_info(size_t& free_bytes, size_t& total_bytes) const {
    check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
}

}  // namespace moe::gpu
