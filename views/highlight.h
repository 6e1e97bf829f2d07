#pragma once
// What a lesson step (or anyone) asks a view to point at. Plain data; each view understands the
// fields that make sense for it and reports the ones it cannot find.
#include <QString>

#include <cmath>

namespace moe::views {

struct Highlight {
    QString part;  // a named part of the view (a plot, a table, a panel): its object name
    QString
        curve;  // training curves: "loss", "mtp", "eval", "aux", "lr", "grad_norm", "throughput"
    double step_from = std::nan("");  // a step range to shade (curves, expert load)
    double step_to = std::nan("");
    int layer = -1;  // HF layer index ("layer 3")
    int expert = -1;
    int token = -1;  // position in the inspected text
    int head = -1;   // attention head
    QString tensor;  // quantization: a tensor key or a unique part of it
                     // ("layers.1.mlp.gate_proj@input")
    QString row;     // model view: a part's row ("routed experts"), "kv cache", "calculator"

    bool hasSteps() const { return std::isfinite(step_from) && std::isfinite(step_to); }
    bool empty() const {
        return part.isEmpty() && curve.isEmpty() && !hasSteps() && layer < 0 && expert < 0 &&
               token < 0 && head < 0 && tensor.isEmpty() && row.isEmpty();
    }
};

}  // namespace moe::views
