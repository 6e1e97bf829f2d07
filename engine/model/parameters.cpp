#include "model/parameters.h"

#include "core/error.h"

namespace moe {

Parameter& ParameterStore::add(const std::string& name, const Shape& shape, bool trainable) {
    if (by_name_.count(name)) throw Error("parameter '" + name + "' is defined twice");
    auto p = std::make_unique<Parameter>();
    p->name = name;
    p->value = Tensor(shape);
    if (trainable) p->grad = Tensor(shape);
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

void ParameterStore::zero_grads() {
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
