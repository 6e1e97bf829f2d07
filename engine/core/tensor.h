#pragma once
// Tensor: a contiguous, row-major block of fp32 values with a shape. The engine computes in fp32;
// lower-precision formats (bf16, fp16, fp8) appear only at file boundaries and in quantization.
// Memory is 64-byte aligned so BLAS and vectorized loops see aligned rows.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace moe {

using Shape = std::vector<int64_t>;

std::string shape_to_string(const Shape& shape);
int64_t shape_numel(const Shape& shape);

class Tensor {
public:
    Tensor() = default;
    explicit Tensor(Shape shape);  // zero-filled
    Tensor(const Tensor& other);
    Tensor& operator=(const Tensor& other);
    Tensor(Tensor&&) noexcept = default;
    Tensor& operator=(Tensor&&) noexcept = default;

    const Shape& shape() const { return shape_; }
    int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i < 0 ? i + rank() : i)); }
    int rank() const { return static_cast<int>(shape_.size()); }
    int64_t numel() const { return numel_; }
    bool empty() const { return numel_ == 0; }

    float* data() { return data_.get(); }
    const float* data() const { return data_.get(); }
    float& operator[](int64_t i) { return data_.get()[i]; }
    float operator[](int64_t i) const { return data_.get()[i]; }

    // Reallocates only when the new shape needs more elements than are allocated, so a buffer
    // resized to the same or smaller shape every step costs nothing (no per-step allocation).
    void resize(const Shape& shape);
    // Same, without building a temporary Shape (resize({n, d}) in a step allocates nothing).
    void resize(std::initializer_list<int64_t> dims);
    void zero();
    void fill(float value);

private:
    void resize_to(const int64_t* dims, size_t rank);
    struct FreeDeleter {
        void operator()(float* p) const;
    };
    Shape shape_;
    int64_t numel_ = 0;
    int64_t capacity_ = 0;
    std::unique_ptr<float[], FreeDeleter> data_;
};

}  // namespace moe
