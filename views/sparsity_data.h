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
// diagonal (key after query) are masked by the causal mask, and with a sliding window W so are
// keys more than W - 1 before the query; the stored value of a masked entry is ignored.
struct AttentionData {
    int layers = 0;
    int heads = 0;
    int T = 0;
    std::vector<float> weights;  // [layers * heads * T * T]: [l][h][query][key]
    QStringList tokens;          // [T]
    int window = 0;              // sliding window W (the model's sliding_window); 0 = none
    // Dynamic top-k sparse attention (the model's index_topk; 0 = none): the keys the indexer
    // chose for each query, shared by the heads, [layers * T * T] (1 = chosen); `weights` then
    // hold the dense attention the chosen keys replace.
    int topk = 0;
    std::vector<uint8_t> chosen;

    bool hasChosen() const { return topk > 0 && chosen.size() == static_cast<size_t>(layers) * T * T; }
    bool isChosen(int l, int q, int k) const
    {
        return chosen[(static_cast<size_t>(l) * T + q) * T + k] != 0;
    }
    // Share of the causal (query, key) pairs the indexer kept in layer l.
    double keptShare(int l) const
    {
        if (!hasChosen() || T <= 0)
            return 0.0;
        double kept = 0;
        for (int q = 0; q < T; ++q)
            for (int k = 0; k <= q; ++k)
                kept += isChosen(l, q, k);
        return kept / (0.5 * T * (T + 1.0));
    }
    // Mean over queries of the dense attention weight head h puts on the chosen keys: how much
    // of what dense attention would read the sparse attention keeps (1 = all of it).
    double chosenMass(int l, int h) const
    {
        if (!hasChosen() || T <= 0)
            return 0.0;
        double mass = 0;
        for (int q = 0; q < T; ++q)
            for (int k = 0; k <= q; ++k)
                if (isChosen(l, q, k))
                    mass += at(l, h, q, k);
        return mass / T;
    }

    float at(int l, int h, int q, int k) const
    {
        return weights[((static_cast<size_t>(l) * heads + h) * T + q) * T + k];
    }
    // Query q sees key k: k <= q, and within the window when there is one.
    bool causal(int q, int k) const { return k <= q; }
    bool visible(int q, int k) const { return k <= q && (window <= 0 || k > q - window); }
    // Share of the causal (query, key) pairs the window removes, which is the share of the
    // attention score and value FLOPs it saves at this T.
    double windowSaving() const
    {
        if (window <= 0 || window >= T)
            return 0.0;
        const double causal_pairs = 0.5 * T * (T + 1.0);
        const double band_pairs = 0.5 * window * (window + 1.0) + double(T - window) * window;
        return 1.0 - band_pairs / causal_pairs;
    }
};

// Sparsity over training, one Series per layer (x = step, y = fraction in [0, 1]).
struct SparsityOverTraining {
    std::vector<Series> never_chosen;  // fraction of routed experts that got no token
    std::vector<Series> near_zero;     // fraction of FFN activations with |a| < threshold
    double near_zero_threshold = 1e-3; // for the axis title
};

}  // namespace moe::views
