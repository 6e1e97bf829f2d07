#pragma once
// Where tensor memory lives. An Allocator owns the memory of one device (the host, or one CUDA
// device in gpu/): it allocates, frees, zeroes and copies, so engine code moves data between
// the host and a device without knowing what the device is. The engine itself has only the
// host allocator; the CUDA backend brings its own (gpu/cuda_allocator.h).
//
// DeviceScope: the allocator new buffers take. Model, optimizer and trainer code open a scope
// with their backend's allocator around the code that sizes buffers (Tensor::resize), so a
// module's scratch lands where the backend computes without every module naming the device.
// A tensor keeps the allocator it was first allocated with.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/device.h"

namespace moe {

enum class CopyKind { HostToDevice, DeviceToHost, DeviceToDevice };

class Allocator {
public:
    virtual ~Allocator() = default;
    virtual Device device() const = 0;
    // Throws moe::Error when the memory is not there; `what` names the buffer in the message.
    virtual void* allocate(size_t bytes, const char* what) = 0;
    virtual void deallocate(void* p) noexcept = 0;
    virtual void zero(void* p, size_t bytes) = 0;
    // Host pointers on the host side of HostToDevice / DeviceToHost; device pointers otherwise.
    virtual void copy(void* dst, const void* src, size_t bytes, CopyKind kind) = 0;
    // Device memory free / total in bytes (the host reports 0 / 0: not tracked).
    virtual void memory_info(size_t& free_bytes, size_t& total_bytes) const {
        free_bytes = total_bytes = 0;
    }

    // Convenience: host -> this allocator's memory, and back.
    void upload(void* dst, const void* host_src, size_t bytes) {
        copy(dst, host_src, bytes,
             device().is_host() ? CopyKind::DeviceToDevice : CopyKind::HostToDevice);
    }
    void download(void* host_dst, const void* src, size_t bytes) {
        copy(host_dst, src, bytes,
             device().is_host() ? CopyKind::DeviceToDevice : CopyKind::DeviceToHost);
    }
};

// Checks before a large allocation that a device has `bytes` free (the host: what this process
// may still allocate, core/system_memory.h); Error naming `what`, the size, the free and total
// memory and what to reduce otherwise.
void require_memory(Allocator& allocator, size_t bytes, const std::string& what);

// 64-byte aligned host memory (BLAS and vectorized loops see aligned rows).
Allocator& host_allocator();

// The allocator that newly allocated buffers take on this thread (the host when no scope is
// open). Scopes nest.
Allocator& current_allocator();

class DeviceScope {
public:
    explicit DeviceScope(Allocator& a);
    ~DeviceScope();
    DeviceScope(const DeviceScope&) = delete;
    DeviceScope& operator=(const DeviceScope&) = delete;

private:
    Allocator* previous_;
};

}  // namespace moe
