#pragma once
// Plain data for ModelView: parameter counts and cost per part of a model.
#include <QString>

#include <vector>

namespace moe::views {

struct ModelSummaryData {
    // One row of the table: a part of the model (possibly one of many identical ones).
    struct Part {
        QString name;                // "attention (MLA)", "routed experts", ...
        double params = 0;           // stored parameters
        double active_params = 0;    // parameters a single token passes through
        double flops_per_token = 0;  // forward FLOPs per token (2 per multiply-add)
        QString note;                // shapes, counts, remarks
        QString group;               // rows with the same group nest under it; empty = top level
    };
    enum class LayerKind { Dense, Moe, Mtp };
    // One block of the stack, for the diagram.
    struct Layer {
        QString name;  // "layer 1", "MTP 1"
        LayerKind kind = LayerKind::Dense;
        double params = 0;
        double active_params = 0;
    };

    QString name;
    std::vector<Part> parts;
    std::vector<Layer> layers;  // bottom (first after the embedding) to top; MTP modules last
    // Totals as the model counts them (shared tensors once). NaN or < 0: the sum of the parts.
    double total_params = -1;
    double total_active_params = -1;
    double total_flops_per_token = -1;
    // Forward and backward (and MTP) per training token, for the cost calculator; <= 0: 3x the
    // forward total.
    double train_flops_per_token = -1;
    // Generation's KV cache per token (all layers, values; 0 = not shown): MLA's, and plain
    // multi-head attention's with the same heads.
    double kv_cache_values_per_token = 0;
    double mha_kv_values_per_token = 0;
    QString config_text;  // config.json as text
};

}  // namespace moe::views
