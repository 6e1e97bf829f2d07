#include "core/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>

#include "core/error.h"

namespace moe {

std::string shape_to_string(const Shape& shape) {
    std::ostringstream os;
    os << '[';
    for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
    os << ']';
    return os.str();
}

int64_t shape_numel(const Shape& shape) {
    int64_t n = 1;
    for (int64_t d : shape) {
        if (d < 0) throw Error("negative tensor dimension in shape " + shape_to_string(shape));
        n *= d;
    }
    return n;
}

void Tensor::FreeDeleter::operator()(float* p) const { std::free(p); }

Tensor::Tensor(Shape shape) { resize(shape); }

Tensor::Tensor(const Tensor& other) {
    resize(other.shape_);
    if (numel_) std::memcpy(data(), other.data(), sizeof(float) * static_cast<size_t>(numel_));
}

Tensor& Tensor::operator=(const Tensor& other) {
    if (this != &other) {
        resize(other.shape_);
        if (numel_) std::memcpy(data(), other.data(), sizeof(float) * static_cast<size_t>(numel_));
    }
    return *this;
}

void Tensor::resize(const Shape& shape) { resize_to(shape.data(), shape.size()); }

void Tensor::resize(std::initializer_list<int64_t> dims) { resize_to(dims.begin(), dims.size()); }

void Tensor::resize_to(const int64_t* dims, size_t rank) {
    int64_t n = 1;
    for (size_t i = 0; i < rank; ++i) {
        if (dims[i] < 0) throw Error("negative tensor dimension in shape " + shape_to_string(Shape(dims, dims + rank)));
        n *= dims[i];
    }
    shape_.assign(dims, dims + rank);  // reuses the vector's capacity
    numel_ = n;
    if (n > capacity_) {
        const size_t bytes = ((sizeof(float) * static_cast<size_t>(n) + 63) / 64) * 64;
        void* p = std::aligned_alloc(64, bytes);
        if (!p) throw std::bad_alloc();
        data_.reset(static_cast<float*>(p));
        capacity_ = n;
        zero();
    }
}

void Tensor::zero() {
    if (numel_) std::memset(data(), 0, sizeof(float) * static_cast<size_t>(numel_));
}

void Tensor::fill(float value) { std::fill(data(), data() + numel_, value); }

}  // namespace moe
