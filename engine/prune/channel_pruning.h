#pragma once
// Structured pruning of SwiGLU hidden channels: the lowest-saliency channels of every FFN
// removed (gate_proj and up_proj rows, down_proj columns). Every routed expert loses the same
// number of channels, so moe_intermediate_size shrinks for all of them and the checkpoint stays
// in the HF layout; the shared experts (one SwiGLU of n_shared_experts x moe_intermediate_size)
// lose n_shared_experts times that, the dense FFNs the same fraction of intermediate_size.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/model.h"
#include "prune/channel_saliency.h"

namespace moe {

struct ChannelPrunePlan {
    double fraction = 0.0;
    int64_t expert_removed = 0;                       // channels per routed expert
    int64_t dense_removed = 0;                        // channels per dense FFN
    ChannelSaliency saliency;                         // what the plan was made from
    std::vector<std::vector<int64_t>> kept, removed;  // per saliency.ffns entry, ascending
    ModelConfig config;                               // the pruned model's
};

// Removes round(fraction x width) channels (0 <= fraction < 1, at least one channel left).
// Error naming the fraction or the FFN otherwise, or when the saliency does not match the config.
ChannelPrunePlan plan_channel_pruning(const ModelConfig& config, const ChannelSaliency& saliency,
                                      double fraction);

// The pruned model on `backend`, its weights taken from `model` by the plan.
std::unique_ptr<Model> prune_channels(const Model& model, const ChannelPrunePlan& plan,
                                      Backend& backend);

}  // namespace moe
