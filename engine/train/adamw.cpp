#include "train/adamw.h"

#include <algorithm>

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
    if (comm_) {
        // This rank's slice only ([decayed | vectors] split inside it), then everyone's.
        float* p = store_.value_arena().data();
        float* g = store_.grad_arena().data();
        const int64_t nd = store_.decayed_numel();
        const auto update = [&](int64_t begin, int64_t end, float decay) {
            if (end <= begin) return;
            be_.adamw_update(p + begin, g + begin, m_arena_.data() + (begin - begin_),
                             v_arena_.data() + (begin - begin_), end - begin, static_cast<float>(lr),
                             static_cast<float>(settings_.beta1), static_cast<float>(settings_.beta2),
                             static_cast<float>(settings_.eps), decay, static_cast<float>(grad_scale), step_);
        };
        update(begin_, std::min(end_, nd), static_cast<float>(settings_.weight_decay));
        update(std::max(begin_, nd), end_, 0.0f);
        comm_->all_gather_blocks(p, counts_.data());
        return;
    }
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
    if (comm_ && m_full_.numel() == 0)
        throw Error("AdamW: the moments are sharded over the ranks; gather_state() first");
    std::vector<std::pair<std::string, Tensor*>> out;
    out.reserve(slots_.size() * 2);
    for (Slot& s : slots_) out.emplace_back("optimizer.m." + s.param->name, &s.m);
    for (Slot& s : slots_) out.emplace_back("optimizer.v." + s.param->name, &s.v);
    return out;
}

void AdamW::reset() {
    if (comm_) {
        m_arena_.zero();
        v_arena_.zero();
    } else {
        for (Slot& s : slots_) {
            s.m.zero();
            s.v.zero();
        }
    }
    step_ = 0;
}

void AdamW::copy(const float* src, float* dst, int64_t n) {
    if (n > 0) be_.copy_2d(src, n, dst, n, 1, n);
}

void AdamW::point_slots_at(Tensor& m, Tensor& v) {
    Allocator& alloc = be_.allocator();
    for (Slot& s : slots_) {
        const int64_t off = s.param->grad.data() - store_.grad_arena().data();
        s.m = Tensor::view(m.data() + off, s.param->value.shape(), alloc);
        s.v = Tensor::view(v.data() + off, s.param->value.shape(), alloc);
    }
}

void AdamW::shard(Communicator& comm) {
    if (!store_.packed()) throw Error("AdamW: sharding the moments needs a packed parameter store");
    const int64_t n = store_.grad_arena().numel(), ranks = comm.size();
    const int64_t per = (n + ranks - 1) / ranks;
    counts_.assign(static_cast<size_t>(ranks), 0);
    for (int64_t r = 0; r < ranks; ++r)
        counts_[size_t(r)] = std::min(n, (r + 1) * per) - std::min(n, r * per);
    begin_ = std::min(n, comm.rank() * per);
    end_ = std::min(n, begin_ + per);
    // The whole moments as they are now become this rank's slice of them.
    m_full_ = std::move(m_arena_);
    v_full_ = std::move(v_arena_);
    point_slots_at(m_full_, v_full_);
    comm_ = &comm;
    m_arena_ = Tensor({std::max<int64_t>(end_ - begin_, 1)}, be_.allocator());
    v_arena_ = Tensor({std::max<int64_t>(end_ - begin_, 1)}, be_.allocator());
    release_full_state();
}

void AdamW::gather_state() {
    if (!comm_) return;
    const int64_t n = store_.grad_arena().numel();
    Allocator& alloc = be_.allocator();
    require_memory(alloc, 2 * sizeof(float) * static_cast<size_t>(n),
                   "the whole AdamW moments for a checkpoint (2 x " + std::to_string(n) + " values)");
    m_full_ = Tensor({n}, alloc);
    v_full_ = Tensor({n}, alloc);
    copy(m_arena_.data(), m_full_.data() + begin_, end_ - begin_);
    copy(v_arena_.data(), v_full_.data() + begin_, end_ - begin_);
    comm_->all_gather_blocks(m_full_.data(), counts_.data());
    comm_->all_gather_blocks(v_full_.data(), counts_.data());
    point_slots_at(m_full_, v_full_);
}

void AdamW::release_full_state() {
    if (!comm_ || m_full_.numel() == 0) return;
    copy(m_full_.data() + begin_, m_arena_.data(), end_ - begin_);
    copy(v_full_.data() + begin_, v_arena_.data(), end_ - begin_);
    for (Slot& s : slots_) {  // no views into freed memory
        s.m = Tensor();
        s.v = Tensor();
    }
    m_full_ = Tensor();
    v_full_ = Tensor();
}

}  // namespace moe
