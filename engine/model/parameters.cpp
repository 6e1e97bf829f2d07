#include "model/parameters.h"

#include "core/error.h"

namespace moe {

Parameter& ParameterStore::add(const std::string& name, const Shape& shape, bool trainable) {
    if (by_name_.count(name)) throw Error("parameter '" + name + "' is defined twice");
    if (packed_) throw Error("parameter '" + name + "' added after the store was packed");
    auto p = std::make_unique<Parameter>();
    p->name = name;
    p->value = deferred_ ? Tensor::unallocated(shape) : Tensor(shape, host_allocator());
    if (trainable) p->grad = deferred_ ? Tensor::unallocated(shape) : Tensor(shape, host_allocator());
    p->trainable = trainable;
    Parameter* raw = p.get();
    owned_.push_back(std::move(p));
    order_.push_back(raw);
    by_name_[name] = raw;
    return *raw;
}

Parameter* ParameterStore::find(const std::string& name) {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

const Parameter* ParameterStore::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

Parameter& ParameterStore::at(const std::string& name) {
    if (Parameter* p = find(name)) return *p;
    throw Error("no parameter named '" + name + "'");
}

const Parameter& ParameterStore::at(const std::string& name) const {
    if (const Parameter* p = find(name)) return *p;
    throw Error("no parameter named '" + name + "'");
}

void ParameterStore::pack(Allocator& allocator) {
    if (packed_) throw Error("the parameter store is packed already");
    // Arena order: trainable matrices (weight decay), trainable vectors, buffers.
    std::vector<Parameter*> order;
    for (Parameter* p : order_)
        if (p->trainable && p->value.rank() >= 2) order.push_back(p);
    for (Parameter* p : order_)
        if (p->trainable && p->value.rank() < 2) order.push_back(p);
    for (Parameter* p : order_)
        if (!p->trainable) order.push_back(p);
    int64_t total = 0, trainable = 0;
    decayed_numel_ = 0;
    for (const Parameter* p : order) {
        total += p->value.numel();
        if (p->trainable) trainable += p->value.numel();
        if (p->trainable && p->value.rank() >= 2) decayed_numel_ += p->value.numel();
    }
    require_memory(allocator, sizeof(float) * static_cast<size_t>(total + trainable),
                   "the model's parameters and gradients (" + std::to_string(total) + " + " +
                       std::to_string(trainable) + " values)");
    values_ = Tensor({total}, allocator);
    grads_ = Tensor({trainable}, allocator);
    int64_t off = 0;
    for (Parameter* p : order) {
        Tensor v = Tensor::view(values_.data() + off, p->value.shape(), allocator);
        if (p->value.data()) v.copy_from(p->value);
        p->value = std::move(v);
        if (p->trainable) {
            Tensor g = Tensor::view(grads_.data() + off, p->grad.shape(), allocator);
            if (p->grad.data()) g.copy_from(p->grad);
            p->grad = std::move(g);
        }
        off += p->value.numel();
    }
    packed_ = true;
}

void ParameterStore::zero_grads() {
    if (packed_) {
        grads_.zero();
        return;
    }
    for (Parameter* p : order_)
        if (p->trainable) p->grad.zero();
}

int64_t ParameterStore::count_trainable() const {
    int64_t n = 0;
    for (const Parameter* p : order_)
        if (p->trainable) n += p->value.numel();
    return n;
}

int64_t ParameterStore::count_all() const {
    int64_t n = 0;
    for (const Parameter* p : order_) n += p->value.numel();
    return n;
}

}  // namespace moe
