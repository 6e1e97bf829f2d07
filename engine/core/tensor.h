#pragma once
// Tensor: a contiguous, row-major block of fp32 values with a shape, in the memory of one
// device (core/allocator.h). The engine computes in fp32; lower-precision formats (bf16, fp16,
// fp8) appear only at file boundaries, in quantization and inside a backend's GEMM.
//
// data() is a pointer into the tensor's device memory, for backend ops. Host code reads or
// writes elements only through operator[] / host_data(), which are a programming error on a
// device tensor (an assert in debug builds); to_host() / copy_from_host() move values across.
// A tensor either owns its memory (allocated by its allocator on the first resize that needs
// it) or is a view into memory someone else owns (the parameter arena, ParameterStore).
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/allocator.h"

namespace moe {

using Shape = std::vector<int64_t>;

std::string shape_to_string(const Shape& shape);
int64_t shape_numel(const Shape& shape);

class Tensor {
public:
    Tensor() = default;
    explicit Tensor(Shape shape);  // zero-filled, in current_allocator()'s memory
    Tensor(Shape shape, Allocator& allocator);
    ~Tensor();
    Tensor(const Tensor& other);  // same device as `other`
    Tensor& operator=(const Tensor& other);
    Tensor(Tensor&& other) noexcept;
    Tensor& operator=(Tensor&& other) noexcept;

    // A view of `numel(shape)` floats at `data` owned by someone else, in `allocator`'s memory.
    static Tensor view(float* data, Shape shape, Allocator& allocator);
    // A shape with no memory yet (ParameterStore before its arena is made).
    static Tensor unallocated(Shape shape);

    const Shape& shape() const { return shape_; }
    int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i < 0 ? i + rank() : i)); }
    int rank() const { return static_cast<int>(shape_.size()); }
    int64_t numel() const { return numel_; }
    bool empty() const { return numel_ == 0; }
    size_t bytes() const { return sizeof(float) * static_cast<size_t>(numel_); }

    Device device() const { return alloc_ ? alloc_->device() : Device{}; }
    bool on_host() const { return device().is_host(); }
    Allocator& allocator() const { return alloc_ ? *alloc_ : host_allocator(); }

    float* data() { return data_; }
    const float* data() const { return data_; }
    // Element access from host code: host tensors only.
    float* host_data();
    const float* host_data() const;
    float& operator[](int64_t i) { return host_data()[i]; }
    float operator[](int64_t i) const { return host_data()[i]; }

    // Reallocates only when the new shape needs more elements than are allocated, so a buffer
    // resized to the same or smaller shape every step costs nothing (no per-step allocation).
    // New memory is zeroed; contents are not kept across a reallocation. A view cannot grow.
    void resize(const Shape& shape);
    // Same, without building a temporary Shape (resize({n, d}) in a step allocates nothing).
    void resize(std::initializer_list<int64_t> dims);
    void zero();
    void fill(float value);  // any device (through a host copy when on a device)

    // Values across devices: the whole tensor to / from host memory of numel() floats.
    std::vector<float> to_host() const;
    void copy_to_host(float* dst) const;
    void copy_from_host(const float* src);
    // Values from another tensor of the same numel on any device.
    void copy_from(const Tensor& other);

private:
    void resize_to(const int64_t* dims, size_t rank);
    void release() noexcept;
    Shape shape_;
    int64_t numel_ = 0;
    int64_t capacity_ = 0;
    float* data_ = nullptr;
    Allocator* alloc_ = nullptr;
    bool owned_ = false;
};

}  // namespace moe
