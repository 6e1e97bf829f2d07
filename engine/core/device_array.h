#pragma once
// DeviceArray<T>: a growable array of plain values in the memory of the device that computes
// with them: int32 indices (IndexBuffer: tokens, targets, positions, top-k expert ids, the
// route plan), int64 offsets, pointer tables. Built on the host, uploaded once; device ops read
// them without the host.
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/allocator.h"

namespace moe {

template <class T>
class DeviceArray {
    static_assert(std::is_trivially_copyable_v<T>);

public:
    DeviceArray() = default;
    ~DeviceArray() { release(); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
    DeviceArray(DeviceArray&& o) noexcept
        : data_(o.data_), size_(o.size_), capacity_(o.capacity_), alloc_(o.alloc_) {
        o.data_ = nullptr;
        o.size_ = o.capacity_ = 0;
    }
    DeviceArray& operator=(DeviceArray&& o) noexcept {
        if (this != &o) {
            release();
            data_ = o.data_;
            size_ = o.size_;
            capacity_ = o.capacity_;
            alloc_ = o.alloc_;
            o.data_ = nullptr;
            o.size_ = o.capacity_ = 0;
        }
        return *this;
    }

    int64_t size() const { return size_; }
    T* data() { return data_; }
    const T* data() const { return data_; }
    Allocator* allocator() const { return alloc_; }

    // Grows only (in current_allocator()'s memory the first time); contents are not kept.
    void resize(int64_t n) {
        if (n > capacity_) {
            if (!alloc_) alloc_ = &current_allocator();
            void* p = alloc_->allocate(sizeof(T) * static_cast<size_t>(n), "an index buffer");
            release();
            data_ = static_cast<T*>(p);
            capacity_ = n;
        }
        size_ = n;
    }
    // Resizes to `values` and copies them in from the host.
    void upload(const std::vector<T>& values) {
        resize(static_cast<int64_t>(values.size()));
        if (size_) alloc_->upload(data_, values.data(), sizeof(T) * static_cast<size_t>(size_));
    }
    // A host copy (one device-to-host copy on a device).
    std::vector<T> to_host() const {
        std::vector<T> out;
        to_host(out);
        return out;
    }
    // The same into `out`, which allocates only when it grows (steady-state steps allocate
    // nothing).
    void to_host(std::vector<T>& out) const {
        out.resize(static_cast<size_t>(size_));
        if (size_) alloc_->download(out.data(), data_, sizeof(T) * static_cast<size_t>(size_));
    }

private:
    void release() noexcept {
        if (data_) alloc_->deallocate(data_);
        data_ = nullptr;
        capacity_ = 0;
    }
    T* data_ = nullptr;
    int64_t size_ = 0;
    int64_t capacity_ = 0;
    Allocator* alloc_ = nullptr;
};

}  // namespace moe
