#include "train/adamw.h"

#include "core/error.h"

namespace moe {

AdamW::AdamW(ParameterStore& store, Backend& backend, const OptimizerSettings& settings)
    : be_(backend), settings_(settings) {
    for (Parameter* p : store.all()) {
        if (!p->trainable) continue;
        if (p->grad.numel() != p->value.numel())
            throw Error("AdamW: parameter " + p->name + " has no gradient of its shape " +
                        shape_to_string(p->value.shape()));
        slots_.push_back({p, Tensor(p->value.shape()), Tensor(p->value.shape())});
    }
}

float AdamW::decay_for(const Parameter& p) const {
    return p.value.rank() >= 2 ? static_cast<float>(settings_.weight_decay) : 0.0f;
}

void AdamW::step(double lr, double grad_scale) {
    ++step_;
    for (Slot& s : slots_) {
        Parameter& p = *s.param;
        be_.adamw_update(p.value.data(), p.grad.data(), s.m.data(), s.v.data(), p.value.numel(),
                         static_cast<float>(lr), static_cast<float>(settings_.beta1),
                         static_cast<float>(settings_.beta2), static_cast<float>(settings_.eps),
                         decay_for(p), static_cast<float>(grad_scale), step_);
    }
}

std::vector<std::pair<std::string, Tensor*>> AdamW::state_tensors() {
    std::vector<std::pair<std::string, Tensor*>> out;
    out.reserve(slots_.size() * 2);
    for (Slot& s : slots_) out.emplace_back("optimizer.m." + s.param->name, &s.m);
    for (Slot& s : slots_) out.emplace_back("optimizer.v." + s.param->name, &s.v);
    return out;
}

void AdamW::reset() {
    for (Slot& s : slots_) {
        s.m.zero();
        s.v.zero();
    }
    step_ = 0;
}

}  // namespace moe
