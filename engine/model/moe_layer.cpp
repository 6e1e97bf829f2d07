#include "model/moe_layer.h"

#include <algorithm>

#include "model/linear.h"

namespace moe {

MoeLayer::MoeLayer(ParameterStore& store, const std::string& prefix, int64_t layer_index,
                   const ModelConfig& cfg, const PrecisionContext* precision)
    : layer_(layer_index),
      D_(cfg.hidden_size),
      E_(cfg.n_routed_experts),
      K_(cfg.num_experts_per_tok),
      F_(cfg.moe_intermediate_size),
      cfg_(cfg) {
    gate_ = &store.add(prefix + ".gate.weight", {E_, D_});
    if (cfg.has_selection_bias())
        bias_ = &store.add(prefix + ".gate.e_score_correction_bias", {E_}, /*trainable=*/false);
    experts_.reserve(static_cast<size_t>(E_));
    for (int64_t e = 0; e < E_; ++e)
        experts_.push_back(SwiGluWeights::create(store, prefix + ".experts." + std::to_string(e),
                                                 D_, F_, precision));
    if (cfg.n_shared_experts > 0)
        shared_ = std::make_unique<SwiGluFfn>(store, prefix + ".shared_experts", D_,
                                              cfg.n_shared_experts * F_, precision);
    counts_.assign(static_cast<size_t>(E_), 0);
    counts_current_ = true;
}

const std::vector<int64_t>& MoeLayer::expert_counts() const {
    if (!counts_current_) {
        offsets_.to_host(host_offsets_);
        for (int64_t e = 0; e < E_; ++e) counts_[e] = host_offsets_[e + 1] - host_offsets_[e];
        counts_current_ = true;
    }
    return counts_;
}

bool MoeLayer::grouped() const {
    const PrecisionContext* pc = experts_.empty() ? nullptr : experts_.front().precision;
    return !pc || !pc->recorder;  // a recorded step measures each expert's casts by name
}

MoeLayer::Casts MoeLayer::casts() const {
    Casts c;
    const PrecisionContext* pc = experts_.empty() ? nullptr : experts_.front().precision;
    if (!pc || !pc->recipe.quantized()) return c;
    c.activation = pc->recipe.activation();
    c.weight = pc->recipe.weight();
    c.wgrad = pc->recipe.wgrad_operand();
    c.quantized = true;
    return c;
}

namespace {

// Uploads table[i] = pointer(i), i < n, when it differs from what was uploaded last (host).
// Compared in place first: the tables change only after pack() or a move, and a steady-state
// step allocates nothing.
template <class Ptr, class Pointer>
void refresh_table(int64_t n, Pointer pointer, std::vector<Ptr>& host, DeviceArray<Ptr>& table) {
    bool same = int64_t(host.size()) == n;
    for (int64_t i = 0; same && i < n; ++i) same = host[i] == pointer(i);
    if (same) return;
    host.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) host[i] = pointer(i);
    table.upload(host);
}

}  // namespace

// Entry i of the tables: expert i % E's gate (i < E), up (i < 2E) or down projection.
Parameter* MoeLayer::table_entry(int64_t i) const {
    const SwiGluWeights& x = experts_[static_cast<size_t>(i % E_)];
    return i < E_ ? x.gate : (i < 2 * E_ ? x.up : x.down);
}

void MoeLayer::refresh_weight_tables() {
    refresh_table<const float*>(
        3 * E_, [this](int64_t i) -> const float* { return table_entry(i)->value.data(); }, host_w_,
        w_table_);
}

void MoeLayer::refresh_grad_tables() {
    refresh_table<float*>(
        3 * E_, [this](int64_t i) { return table_entry(i)->grad.data(); }, host_dw_, dw_table_);
}

GateParams MoeLayer::gate_params() const {
    GateParams p;
    p.n_experts = E_;
    p.top_k = K_;
    p.n_group = cfg_.n_group;
    p.topk_group = cfg_.topk_group;
    p.scoring = cfg_.scoring_func == "softmax" ? ScoringFunc::Softmax : ScoringFunc::Sigmoid;
    p.norm_topk_prob = cfg_.norm_topk_prob;
    p.routed_scaling_factor = static_cast<float>(cfg_.routed_scaling_factor);
    p.bias = bias_ ? bias_->value.data() : nullptr;
    return p;
}

std::pair<int64_t, int64_t> MoeLayer::aux_shape() const {
    return cfg_.seq_aux ? std::pair{B_, T_} : std::pair{int64_t{1}, B_ * T_};
}

double MoeLayer::forward(Backend& be, const float* h, int64_t B, int64_t T, RoutingRecord* probe,
                         float* y) {
    const int64_t n = B * T, rows = n * K_;
    h_ = h;
    B_ = B;
    T_ = T;
    const GateParams gp = gate_params();

    // Router: fp32 logits, scores, top-k choice and weights.
    logits_.resize({n, E_});
    scores_.resize({n, E_});
    weights_.resize({n, K_});
    topk_idx_.resize(rows);
    linear_forward(be, h, n, D_, gate_->value.data(), E_, logits_.data());
    be.moe_gate_forward(logits_.data(), n, gp, scores_.data(), topk_idx_.data(), weights_.data());

    if (probe) {
        probe->layer = layer_;
        probe->tokens = n;
        probe->top_k = K_;
        probe->n_experts = E_;
        // The probe reads the routing back to the host (weights_ and scores_ hold exactly
        // n * K and n * E values after the resizes above).
        probe->topk_idx = topk_idx_.to_host();
        probe->topk_weight = weights_.to_host();
        probe->scores = scores_.to_host();
        probe->selection_scores = probe->scores;
        if (bias_) {
            const std::vector<float> bias = bias_->value.to_host();
            for (int64_t t = 0; t < n; ++t)
                for (int64_t e = 0; e < E_; ++e)
                    probe->selection_scores[static_cast<size_t>(t * E_ + e)] += bias[e];
        }
    }

    // Dispatch: group the (token, slot) pairs by expert and gather their inputs.
    row_token_.resize(rows);
    slot_row_.resize(rows);
    offsets_.resize(E_ + 1);
    be.moe_route_plan(topk_idx_.data(), n, K_, E_, offsets_.data(), row_token_.data(),
                      slot_row_.data());
    counts_current_ = false;
    xp_.resize({rows, D_});
    be.moe_permute(h, row_token_.data(), rows, D_, xp_.data());

    // Expert parallelism: the rows go to the ranks that hold their experts.
    const float* ex = xp_.data();
    int64_t erows = rows, egroups = E_, e0 = 0;
    const int64_t* eoff = offsets_.data();
    if (ep_) {
        offsets_.to_host(host_offsets_);
        ep_->plan(host_offsets_);
        ep_->to_owners(be, xp_.data(), D_, xe_);
        ex = xe_.data();
        erows = ep_->received_rows();
        egroups = ep_->local_experts();
        e0 = ep_->first_expert();
        eoff = ep_->local_offsets_device().data();
    }
    expert_rows_ = erows;

    // Each expert on its own tokens only.
    g_.resize({erows, F_});
    u_.resize({erows, F_});
    a_.resize({erows, F_});
    Tensor& ey = ep_ ? ye_ : yp_;
    ey.resize({erows, D_});
    if (grouped()) {
        refresh_weight_tables();
        const float* const* w = w_table_.data() + e0;
        const Casts c = casts();
        const GroupedCasts fc = c.forward();
        be.grouped_linear_forward(ex, eoff, egroups, erows, w, D_, F_, g_.data(), fc);
        be.grouped_linear_forward(ex, eoff, egroups, erows, w + E_, D_, F_, u_.data(), fc);
        be.swiglu_forward(g_.data(), u_.data(), erows * F_, a_.data());
        be.grouped_linear_forward(a_.data(), eoff, egroups, erows, w + 2 * E_, F_, D_, ey.data(), fc);
    } else {
        if (!ep_) offsets_.to_host(host_offsets_);
        const std::vector<int64_t>& off = ep_ ? ep_->local_offsets() : host_offsets_;
        for (int64_t e = 0; e < egroups; ++e) {
            const int64_t r0 = off[e], m = off[e + 1] - off[e];
            if (m == 0) continue;
            swiglu_ffn_forward(be, experts_[e0 + e], ex + r0 * D_, m,
                               {g_.data() + r0 * F_, u_.data() + r0 * F_, a_.data() + r0 * F_},
                               ey.data() + r0 * D_);
        }
    }
    if (ep_) {  // the outputs back to the ranks whose tokens they are, in their row order
        yp_.resize({rows, D_});
        ep_->back(be, ye_.data(), D_, yp_.data());
    }

    // Combine: shared experts, then the weighted routed outputs.
    if (shared_)
        shared_->forward(be, h, n, y);
    else
        be.zero(y, n * D_);
    be.moe_unpermute(yp_.data(), weights_.data(), slot_row_.data(), n, K_, D_, y);

    aux_on_ = cfg_.aux_loss_alpha > 0.0;
    if (!aux_on_) return 0.0;
    // seq_aux == false: the batch-wise loss is the same formula with the whole batch as one
    // sequence of B*T tokens.
    const auto [aux_b, aux_t] = aux_shape();
    return be.seq_aux_loss_forward(scores_.data(), topk_idx_.data(), aux_b, aux_t, E_, K_,
                                   static_cast<float>(cfg_.aux_loss_alpha));
}

void MoeLayer::backward(Backend& be, const float* dy, float* dh) {
    const int64_t n = B_ * T_, rows = n * K_;
    const GateParams gp = gate_params();

    if (shared_) shared_->backward(be, dy, dh);

    // Through the weighted combine: gradients for each routed row and for each weight.
    d_yp_.resize({rows, D_});
    d_weights_.resize({n, K_});
    d_yp_.zero();
    d_weights_.zero();
    be.moe_unpermute_backward(dy, yp_.data(), weights_.data(), slot_row_.data(), n, K_, D_,
                              d_yp_.data(), d_weights_.data());

    // Each expert's backward on its own rows (with expert parallelism, the rows' gradients
    // travel to the experts' ranks and the input gradients come back).
    const float* ex = ep_ ? xe_.data() : xp_.data();
    const float* edy = d_yp_.data();
    int64_t erows = rows, egroups = E_, e0 = 0;
    const int64_t* eoff = offsets_.data();
    if (ep_) {
        ep_->to_owners(be, d_yp_.data(), D_, d_ye_);
        edy = d_ye_.data();
        erows = ep_->received_rows();
        egroups = ep_->local_experts();
        e0 = ep_->first_expert();
        eoff = ep_->local_offsets_device().data();
    }
    Tensor& edx = ep_ ? d_xe_ : d_xp_;
    edx.resize({erows, D_});
    edx.zero();
    d_g_.resize({erows, F_});
    d_u_.resize({erows, F_});
    d_a_.resize({erows, F_});
    if (grouped()) {
        // The per-expert chain of swiglu_ffn_backward, each step for all experts at once.
        refresh_weight_tables();
        refresh_grad_tables();
        const float* const* w = w_table_.data() + e0;
        float* const* dw = dw_table_.data() + e0;
        be.zero(d_a_.data(), erows * F_);
        be.zero(d_g_.data(), erows * F_);
        be.zero(d_u_.data(), erows * F_);
        const Casts c = casts();
        const GroupedCasts dc = c.forward(), wc = c.weight_grad();
        be.grouped_linear_backward_data(edy, eoff, egroups, erows, w + 2 * E_, F_, D_, d_a_.data(), dc);
        be.grouped_linear_backward_weight(edy, a_.data(), eoff, egroups, erows, dw + 2 * E_, F_, D_, wc);
        be.swiglu_backward(d_a_.data(), g_.data(), u_.data(), erows * F_, d_g_.data(), d_u_.data());
        be.grouped_linear_backward_data(d_g_.data(), eoff, egroups, erows, w, D_, F_, edx.data(), dc);
        be.grouped_linear_backward_weight(d_g_.data(), ex, eoff, egroups, erows, dw, D_, F_, wc);
        be.grouped_linear_backward_data(d_u_.data(), eoff, egroups, erows, w + E_, D_, F_, edx.data(), dc);
        be.grouped_linear_backward_weight(d_u_.data(), ex, eoff, egroups, erows, dw + E_, D_, F_, wc);
    } else {
        if (!ep_) offsets_.to_host(host_offsets_);  // a recorded step: one copy more does not matter
        const std::vector<int64_t>& off = ep_ ? ep_->local_offsets() : host_offsets_;
        for (int64_t e = 0; e < egroups; ++e) {
            const int64_t r0 = off[e], m = off[e + 1] - off[e];
            if (m == 0) continue;
            swiglu_ffn_backward(
                be, experts_[e0 + e], ex + r0 * D_, m,
                {g_.data() + r0 * F_, u_.data() + r0 * F_, a_.data() + r0 * F_},
                edy + r0 * D_, edx.data() + r0 * D_,
                {d_g_.data() + r0 * F_, d_u_.data() + r0 * F_, d_a_.data() + r0 * F_});
        }
    }
    if (ep_) {
        d_xp_.resize({rows, D_});
        ep_->back(be, d_xe_.data(), D_, d_xp_.data());
    }
    be.moe_permute_backward(d_xp_.data(), slot_row_.data(), n, K_, D_, dh);

    // Router: weights (and the balance loss through the scores) back to the gate logits.
    const float* d_scores_extra = nullptr;
    if (aux_on_) {
        d_scores_.resize({n, E_});
        d_scores_.zero();
        const auto [aux_b, aux_t] = aux_shape();  // (1, B*T) for the batch-wise loss
        be.seq_aux_loss_backward(scores_.data(), topk_idx_.data(), aux_b, aux_t, E_, K_,
                                 static_cast<float>(cfg_.aux_loss_alpha), aux_grad_scale_,
                                 d_scores_.data());
        d_scores_extra = d_scores_.data();
    }
    d_logits_.resize({n, E_});
    d_logits_.zero();
    be.moe_gate_backward(d_weights_.data(), d_scores_extra, scores_.data(), topk_idx_.data(),
                         weights_.data(), n, gp, d_logits_.data());
    linear_backward(be, d_logits_.data(), h_, n, D_, gate_->value.data(), E_, dh,
                    gate_->grad.data());
}

void MoeLayer::set_expert_parallel(Communicator* comm) {
    ep_ = comm ? std::make_unique<ExpertDispatch>(*comm, E_) : nullptr;
}

NearZeroCount MoeLayer::near_zero(float threshold) const {
    NearZeroCount c = count_near_zero(a_, std::min(expert_rows_ * F_, a_.numel()), threshold);
    if (shared_) c += count_near_zero(shared_->hidden(), shared_->hidden().numel(), threshold);
    return c;
}

}  // namespace moe
