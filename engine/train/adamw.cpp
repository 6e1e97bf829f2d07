#include "train/adamw.h"

#include "core/error.h"

namespace moe {

AdamW::AdamW(ParameterStore& store, Backend& backend, const OptimizerSettings& settings)
    : be_(backend), store_(store), settings_(settings) {
    Allocator& alloc = backend.allocator();
    if (store.packed()) {
        require_memory(alloc, 2 * sizeof(float) * static_cast<size_t>(store.grad_arena().numel()),
                       "the AdamW moments (2 x " + std::to_string(store.grad_arena().numel()) +
                           " values)");
        m_arena_ = Tensor({store.grad_arena().numel()}, alloc);
        v_arena_ = Tensor({store.grad_arena().numel()}, alloc);
    }
    for (Parameter* p : store.all()) {
        if (!p->trainable) continue;
        if (p->grad.numel() != p->value.numel())
            throw Error("AdamW: parameter " + p->name + " has no gradient of its shape " +
                        shape_to_string(p->value.shape()));
        if (store.packed()) {
            // Same offset as the parameter's gradient in the gradient arena.
            const int64_t off = p->grad.data() - store.grad_arena().data();
            slots_.push_back({p, Tensor::view(m_arena_.data() + off, p->value.shape(), alloc),
                              Tensor::view(v_arena_.data() + off, p->value.shape(), alloc)});
        } else {
            slots_.push_back({p, Tensor(p->value.shape(), alloc), Tensor(p->value.shape(), alloc)});
        }
    }
}

float AdamW::decay_for(const Parameter& p) const {
    return p.value.rank() >= 2 ? static_cast<float>(settings_.weight_decay) : 0.0f;
}

void AdamW::step(double lr, double grad_scale) {
    ++step_;
    if (store_.packed()) {
        // Trainable values and gradients share offsets: [decayed matrices | vectors].
        float* p = store_.value_arena().data();
        float* g = store_.grad_arena().data();
        const int64_t n = store_.grad_arena().numel(), nd = store_.decayed_numel();
        const auto update = [&](int64_t begin, int64_t count, float decay) {
            if (count <= 0) return;
            be_.adamw_update(p + begin, g + begin, m_arena_.data() + begin,
                             v_arena_.data() + begin, count, static_cast<float>(lr),
                             static_cast<float>(settings_.beta1),
                             static_cast<float>(settings_.beta2),
                             static_cast<float>(settings_.eps), decay,
                             static_cast<float>(grad_scale), step_);
        };
        update(0, nd, static_cast<float>(settings_.weight_decay));
        update(nd, n - nd, 0.0f);
        return;
    }
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
