#pragma once
// Plain data for SparsityView: a routing mask, attention weights, sparsity over training.
#include "plot_data.h"

#include <QString>
#include <QStringList>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace moe::views {

// Which experts the gate chose for each token of one batch, in one MoE layer.
struct RoutingMaskData {
    QStringList tokens;         // [T] token text, for the axis labels
    int experts = 0;            // E
    std::vector<uint8_t> mask;  // [T * E] row-major by token: 1 = chosen (top-k), 0 = not
    QString layer_name;         // optional, for the title, e.g. "layer 4"

    int token_count() const { return static_cast<int>(tokens.size()); }
    bool chosen(int t, int e) const { return mask[static_cast<size_t>(t) * experts + e] != 0; }
};

// Softmax attention weights for every layer and head of one sequence. Entries above the
// diagonal (key after query) are masked by the causal mask; their stored value is ignored.
struct AttentionData {
    int layers = 0;
    int heads = 0;
    int T = 0;
    std::vector<float> weights;  // [layers * heads * T * T]: [l][h][query][key]
    QStringList tokens;          // [T]

    float at(int l, int h, int q, int k) const
    {
        return weights[((static_cast<size_t>(l) * heads + h) * T + q) * T + k];
    }
};

// Sparsity over training, one Series per layer (x = step, y = fraction in [0, 1]).
struct SparsityOverTraining {
    std::vector<Series> never_chosen;  // fraction of routed experts that got no token
    std::vector<Series> near_zero;     // fraction of FFN activations with |a| < threshold
    double near_zero_threshold = 1e-3; // for the axis title
};

}  // namespace moe::views
