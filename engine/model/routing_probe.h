#pragma once
// What the router decided for every token of one MoE layer in one forward pass. Recorded only
// when the caller asks for it (ForwardOptions::probe_routing), so normal steps pay nothing.
#include <cstdint>
#include <vector>

namespace moe {

struct RoutingRecord {
    int64_t layer = 0;        // HF layer index (MTP layers: num_hidden_layers + k - 1)
    int64_t tokens = 0;       // n = B*T, row-major over (sequence, position)
    int64_t top_k = 0;        // K
    int64_t n_experts = 0;    // E
    std::vector<int32_t> topk_idx;         // [n, K], descending selection score
    std::vector<float> topk_weight;        // [n, K], after renormalization and scaling
    std::vector<float> scores;             // [n, E], sigmoid/softmax of the gate logits
    std::vector<float> selection_scores;   // [n, E], scores + e_score_correction_bias
};

}  // namespace moe
