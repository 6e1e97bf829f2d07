#pragma once
// IndexBuffer: int32 indices (tokens, targets, positions, top-k expert ids, the route plan) in
// the memory of the device that computes with them. Built on the host, uploaded once.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/allocator.h"

namespace moe {

class IndexBuffer {
public:
    IndexBuffer() = default;
    ~IndexBuffer() { release(); }
    IndexBuffer(const IndexBuffer&) = delete;
    IndexBuffer& operator=(const IndexBuffer&) = delete;
    IndexBuffer(IndexBuffer&& o) noexcept
        : data_(o.data_), size_(o.size_), capacity_(o.capacity_), alloc_(o.alloc_) {
        o.data_ = nullptr;
        o.size_ = o.capacity_ = 0;
    }
    IndexBuffer& operator=(IndexBuffer&& o) noexcept {
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
    int32_t* data() { return data_; }
    const int32_t* data() const { return data_; }

    // Grows only (in current_allocator()'s memory the first time); contents are not kept.
    void resize(int64_t n) {
        if (n > capacity_) {
            if (!alloc_) alloc_ = &current_allocator();
            void* p = alloc_->allocate(sizeof(int32_t) * static_cast<size_t>(n), "an index buffer");
            release();
            data_ = static_cast<int32_t*>(p);
            capacity_ = n;
        }
        size_ = n;
    }
    // Resizes to `values` and copies them in from the host.
    void upload(const std::vector<int32_t>& values) {
        resize(static_cast<int64_t>(values.size()));
        if (size_)
            alloc_->upload(data_, values.data(), sizeof(int32_t) * static_cast<size_t>(size_));
    }
    std::vector<int32_t> to_host() const {
        std::vector<int32_t> out(static_cast<size_t>(size_));
        if (size_)
            alloc_->download(out.data(), data_, sizeof(int32_t) * static_cast<size_t>(size_));
        return out;
    }

private:
    void release() noexcept {
        if (data_) alloc_->deallocate(data_);
        data_ = nullptr;
        capacity_ = 0;
    }
    int32_t* data_ = nullptr;
    int64_t size_ = 0;
    int64_t capacity_ = 0;
    Allocator* alloc_ = nullptr;
};

}  // namespace moe
