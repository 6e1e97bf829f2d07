#include "train/bias_balancer.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace moe {

void BiasBalancer::accumulate(const std::vector<MoeLayer*>& layers) {
    if (counts_.empty()) {
        counts_.resize(layers.size());
        for (size_t l = 0; l < layers.size(); ++l)
            counts_[l].assign(static_cast<size_t>(layers[l]->n_experts()), 0);
    }
    if (counts_.size() != layers.size())
        throw Error("BiasBalancer: " + std::to_string(layers.size()) + " MoE layers, expected " +
                    std::to_string(counts_.size()));
    for (size_t l = 0; l < layers.size(); ++l) {
        const std::vector<int64_t>& c = layers[l]->expert_counts();
        if (c.size() != counts_[l].size())
            throw Error("BiasBalancer: layer " + std::to_string(layers[l]->layer_index()) +
                        " has " + std::to_string(c.size()) + " experts, expected " +
                        std::to_string(counts_[l].size()));
        for (size_t e = 0; e < c.size(); ++e) counts_[l][e] += c[e];
    }
    ++micro_;
}

void BiasBalancer::update(std::vector<MoeLayer*>& layers, Backend& backend) {
    if (counts_.empty()) return;  // no forward since the last update: nothing is known
    if (counts_.size() != layers.size())
        throw Error("BiasBalancer: " + std::to_string(layers.size()) + " MoE layers, expected " +
                    std::to_string(counts_.size()));
    for (size_t l = 0; l < layers.size(); ++l) {
        MoeLayer& layer = *layers[l];
        if (!layer.has_bias()) continue;
        backend.balance_bias_update(layer.bias().value.data(), counts_[l].data(),
                                    layer.n_experts(), static_cast<float>(gamma_));
    }
    last_ = std::move(counts_);
    reset();
}

void BiasBalancer::all_reduce(Communicator& comm) {
    std::vector<int64_t> flat;
    for (const auto& c : counts_) flat.insert(flat.end(), c.begin(), c.end());
    if (flat.empty()) return;
    comm.all_reduce_sum(flat.data(), static_cast<int64_t>(flat.size()));
    size_t at = 0;
    for (auto& c : counts_)
        for (auto& v : c) v = flat[at++];
}

void BiasBalancer::reset() {
    counts_.clear();
    micro_ = 0;
}

double max_violation(const std::vector<int64_t>& counts) {
    if (counts.empty()) return 0.0;
    double sum = 0.0;
    for (int64_t c : counts) sum += double(c);
    const double mean = sum / double(counts.size());
    if (mean <= 0.0) return 0.0;
    const int64_t top = *std::max_element(counts.begin(), counts.end());
    return (double(top) - mean) / mean;
}

int64_t dead_experts(const std::vector<int64_t>& counts) {
    return std::count(counts.begin(), counts.end(), int64_t{0});
}

}  // namespace moe
