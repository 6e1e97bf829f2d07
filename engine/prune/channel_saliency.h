#pragma once
// First-order saliency of the hidden channels of every SwiGLU in a model (dense FFNs, shared
// experts, routed experts): channel c of an FFN with gate_proj, up_proj [F, D] and down_proj
// [D, F] scores
//   S_c = sum over batches of ( sum_d |W_gate[c,d] dL/dW_gate[c,d]| + |W_up[c,d] dL/dW_up[c,d]|
//                              + sum_d |W_down[d,c] dL/dW_down[d,c]| )
// the first-order estimate of the loss change when the channel's weights go to zero, with
// |.| taken per batch so that opposite-signed batches do not cancel. L is the training loss
// (Model::backward's: main + MTP + balance loss).
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace moe {

// The kinds of FFN a channel belongs to.
enum class FfnKind { Dense, Shared, Routed };

struct FfnSaliency {
    std::string prefix;  // "model.layers.3.mlp.experts.5." (the projections follow)
    int64_t layer = 0;   // HF layer index
    FfnKind kind = FfnKind::Routed;
    int64_t expert = -1;           // routed expert id; -1 for dense and shared
    std::vector<double> saliency;  // [F]
};

struct ChannelSaliency {
    int64_t batches = 0;
    std::vector<FfnSaliency> ffns;  // the store's order
};

// Every SwiGLU of the model (found by name: "...gate_proj.weight"), saliency zero.
ChannelSaliency empty_channel_saliency(const Model& model);
// Adds the saliency of one forward and backward over each batch. Gradients are zeroed before
// and after each batch (the model's grads hold nothing afterwards).
void accumulate_channel_saliency(Model& model, const std::vector<Batch>& batches, double mtp_lambda,
                                 ChannelSaliency& saliency);
// empty + accumulate.
ChannelSaliency measure_channel_saliency(Model& model, const std::vector<Batch>& batches,
                                         double mtp_lambda);

}  // namespace moe
