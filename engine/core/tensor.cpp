#include "core/tensor.h"

#include <algorithm>
#include <cassert>
#include <sstream>
#include <utility>

#include "core/error.h"

namespace moe {

std::string shape_to_string(const Shape& shape) {
    std::ostringstream os;
    os << '[';
    for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
    os << ']';
    return os.str();
}

namespace {
// Elements of a shape; Error for a negative dimension or a product past 2^60 (a buffer of that
// many floats cannot exist, and the multiplication must not wrap into a small number).
int64_t checked_numel(const int64_t* dims, size_t rank) {
    int64_t n = 1;
    for (size_t i = 0; i < rank; ++i) {
        if (dims[i] < 0)
            throw Error("negative tensor dimension in shape " +
                        shape_to_string(Shape(dims, dims + rank)));
        if (__builtin_mul_overflow(n, dims[i], &n) || n > (int64_t(1) << 60))
            throw Error("a tensor of shape " + shape_to_string(Shape(dims, dims + rank)) +
                        " has more elements than memory can hold");
    }
    return n;
}
}  // namespace

int64_t shape_numel(const Shape& shape) { return checked_numel(shape.data(), shape.size()); }

Tensor::Tensor(Shape shape) {
    resize(shape);
}

Tensor::Tensor(Shape shape, Allocator& allocator) : alloc_(&allocator) {
    resize(shape);
}

Tensor::~Tensor() {
    release();
}

void Tensor::release() noexcept {
    if (owned_ && data_) alloc_->deallocate(data_);
    data_ = nullptr;
    owned_ = false;
    capacity_ = 0;
}

Tensor::Tensor(const Tensor& other) : alloc_(other.alloc_) {
    resize(other.shape_);
    copy_from(other);
}

Tensor& Tensor::operator=(const Tensor& other) {
    if (this != &other) {
        if (!alloc_) alloc_ = other.alloc_;
        resize(other.shape_);
        copy_from(other);
    }
    return *this;
}

Tensor::Tensor(Tensor&& o) noexcept
    : shape_(std::move(o.shape_)),
      numel_(std::exchange(o.numel_, 0)),
      capacity_(std::exchange(o.capacity_, 0)),
      data_(std::exchange(o.data_, nullptr)),
      alloc_(o.alloc_),
      owned_(std::exchange(o.owned_, false)) {}

Tensor& Tensor::operator=(Tensor&& o) noexcept {
    if (this != &o) {
        release();
        shape_ = std::move(o.shape_);
        numel_ = std::exchange(o.numel_, 0);
        capacity_ = std::exchange(o.capacity_, 0);
        data_ = std::exchange(o.data_, nullptr);
        alloc_ = o.alloc_;
        owned_ = std::exchange(o.owned_, false);
    }
    return *this;
}

Tensor Tensor::view(float* data, Shape shape, Allocator& allocator) {
    Tensor t;
    t.numel_ = shape_numel(shape);
    t.shape_ = std::move(shape);
    t.capacity_ = t.numel_;
    t.data_ = data;
    t.alloc_ = &allocator;
    t.owned_ = false;
    return t;
}

Tensor Tensor::unallocated(Shape shape) {
    Tensor t;
    t.numel_ = shape_numel(shape);
    t.shape_ = std::move(shape);
    return t;
}

float* Tensor::host_data() {
    assert(on_host() && "host access to a device tensor");
    return data_;
}

const float* Tensor::host_data() const {
    assert(on_host() && "host access to a device tensor");
    return data_;
}

void Tensor::resize(const Shape& shape) {
    resize_to(shape.data(), shape.size());
}

void Tensor::resize(std::initializer_list<int64_t> dims) {
    resize_to(dims.begin(), dims.size());
}

void Tensor::resize_to(const int64_t* dims, size_t rank) {
    const int64_t n = checked_numel(dims, rank);
    if (n > capacity_) {
        if (data_ && !owned_)
            throw Error("a tensor view of " + std::to_string(capacity_) +
                        " values cannot grow to " + shape_to_string(Shape(dims, dims + rank)));
        if (!alloc_) alloc_ = &current_allocator();
        void* p = alloc_->allocate(
            sizeof(float) * static_cast<size_t>(n),
            ("a tensor of shape " + shape_to_string(Shape(dims, dims + rank))).c_str());
        release();
        data_ = static_cast<float*>(p);
        owned_ = true;
        capacity_ = n;
        shape_.assign(dims, dims + rank);
        numel_ = n;
        zero();
        return;
    }
    shape_.assign(dims, dims + rank);  // reuses the vector's capacity
    numel_ = n;
}

void Tensor::zero() {
    if (numel_ && data_) allocator().zero(data_, bytes());
}

void Tensor::fill(float value) {
    if (!numel_ || !data_) return;
    if (on_host()) {
        std::fill(data_, data_ + numel_, value);
        return;
    }
    const std::vector<float> v(static_cast<size_t>(numel_), value);
    copy_from_host(v.data());
}

std::vector<float> Tensor::to_host() const {
    std::vector<float> out(static_cast<size_t>(numel_));
    copy_to_host(out.data());
    return out;
}

void Tensor::copy_to_host(float* dst) const {
    if (numel_ && data_) allocator().download(dst, data_, bytes());
}

void Tensor::copy_from_host(const float* src) {
    if (numel_ && data_) allocator().upload(data_, src, bytes());
}

void Tensor::copy_from(const Tensor& other) {
    if (other.numel_ != numel_)
        throw Error("copy between tensors of " + std::to_string(other.numel_) + " and " +
                    std::to_string(numel_) + " values");
    if (!numel_ || !data_ || !other.data_) return;
    if (other.on_host()) {
        copy_from_host(other.data_);
    } else if (on_host()) {
        other.copy_to_host(data_);
    } else if (other.device() == device()) {
        allocator().copy(data_, other.data_, bytes(), CopyKind::DeviceToDevice);
    } else {
        copy_from_host(other.to_host().data());  // between two devices, through the host
    }
}

}  // namespace moe
