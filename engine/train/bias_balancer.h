#pragma once
// The auxiliary-loss-free load balancer (spec section 4). After every optimizer step each MoE
// layer's selection bias moves by gamma * sign(c_mean - c_i), where c counts the tokens routed
// to each expert over the whole global batch: with gradient accumulation, accumulate() after
// each micro-batch's forward sums the counts, update() applies them and starts a new batch.
// Layers without a selection bias (topk_method other than "noaux_tc") are counted but not
// updated.
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "model/moe_layer.h"
#include "parallel/communicator.h"

namespace moe {

class BiasBalancer {
public:
    explicit BiasBalancer(double gamma) : gamma_(gamma) {}

    // Adds each layer's expert_counts() of the last forward. The layer list must be the same
    // (same order) on every call; a different count of layers or experts throws Error.
    void accumulate(const std::vector<MoeLayer*>& layers);
    // bias += gamma * sign(mean - count) per layer with the accumulated counts, then resets them.
    // The counts that were applied stay readable in last_counts() (for MaxVio logging).
    void update(std::vector<MoeLayer*>& layers, Backend& backend);

    const std::vector<std::vector<int64_t>>& counts() const { return counts_; }  // pending
    const std::vector<std::vector<int64_t>>& last_counts() const { return last_; }
    int64_t pending_micro_batches() const { return micro_; }
    void reset();  // drops the pending counts
    // Sums the pending counts over the ranks of `comm` (each rank counted its own tokens), so
    // every rank applies the global load. Collective.
    void all_reduce(Communicator& comm);

    double gamma() const { return gamma_; }
    void set_gamma(double gamma) { gamma_ = gamma; }

private:
    double gamma_;
    std::vector<std::vector<int64_t>> counts_, last_;
    int64_t micro_ = 0;
};

// MaxVio = max_i (c_i - mean) / mean (0 when the mean is 0): 0 is perfectly balanced.
double max_violation(const std::vector<int64_t>& counts);
// Experts that received no token.
int64_t dead_experts(const std::vector<int64_t>& counts);

}  // namespace moe
