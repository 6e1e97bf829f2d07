#pragma once
// Plain data for RoutingInspectorView: the routing of one text through one checkpoint (and
// optionally a second one for comparison), plus the probe's label x expert specialization.
// Filled by the workbench from the engine's Inspection, or by tests with synthetic values.
#include <QString>
#include <QStringList>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "plot_data.h"

namespace moe::views {

// What the gate of one MoE layer decided for each of the T tokens.
struct RoutingLayer {
    std::vector<float> scores;    // [T*E] affinity scores (sigmoid/softmax), unbiased
    std::vector<int32_t> topk;    // [T*K] chosen experts, best selection score first
    std::vector<float> weights;   // [T*K] gate weights of the chosen experts
    std::vector<float> bias;      // [E] selection bias; empty when the model has none
};

// One checkpoint's routing of the text: layers parallel to RoutingInspectionData::layer_names.
struct RoutingSnapshot {
    QString checkpoint;  // shown in titles, e.g. "step-00000400"
    std::vector<RoutingLayer> layers;
};

// Share of routing decisions that stayed the same between the two snapshots (NaN = unknown).
struct RoutingAgreementData {
    double overlap = std::numeric_limits<double>::quiet_NaN();  // mean |A ∩ B| / K
    double exact = std::numeric_limits<double>::quiet_NaN();    // identical top-k sets
    std::vector<double> layer_overlap;  // per layer
    std::vector<double> layer_exact;
};

struct RoutingInspectionData {
    QStringList tokens;       // [T] display form of each token ("␠" for a space, "\n", ...)
    QStringList layer_names;  // [L] e.g. "layer 1" (HF index)
    int experts = 0;          // E
    int top_k = 0;            // K
    int n_group = 1;          // expert groups; > 1 means group-limited routing
    int topk_group = 1;       // groups each token may use
    QString note;             // e.g. "Text cut to 64 tokens"; shown under the controls

    RoutingSnapshot primary;
    bool has_comparison = false;
    RoutingSnapshot comparison;      // same tokens and layers, another checkpoint
    RoutingAgreementData agreement;  // primary vs comparison

    // Label (task or language) x expert share of the probe's routing slots, per layer
    // (rows: label_names, cols: experts, rows sum to 1). Empty when there is no probe data.
    QStringList label_names;
    std::vector<Matrix> specialization;  // [L], each [labels x E]
    QString specialization_source;       // e.g. "probe text at step 400"

    int n_tokens() const { return static_cast<int>(tokens.size()); }
    int n_layers() const { return static_cast<int>(layer_names.size()); }
};

}  // namespace moe::views
