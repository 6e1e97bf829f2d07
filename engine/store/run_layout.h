#pragma once
// What a run file (HDF5, one per training run) holds, as plain structs. The on-disk layout that
// these map to is specified in docs/run-format.md; RunWriter writes it, RunReader reads it.
// Shapes: L = MoE layers (moe_layer_indices.size(), MTP layers included), E = routed experts,
// K = experts per token, T_p = probe tokens, n_labels = label_names.size().
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

inline constexpr const char* kRunFormat = "moe-workbench-run";
// Bumped on any change a reader of the previous version would misread. Readers refuse newer.
inline constexpr int64_t kRunFormatVersion = 1;

struct RunHeader {
    std::string format = kRunFormat;
    int64_t format_version = kRunFormatVersion;
    std::string created;         // ISO 8601 UTC, e.g. 2025-01-31T12:00:00Z; the writer fills it if empty
    std::string engine_version;  // the writer fills MOE_VERSION if empty
    std::string project_json;    // the project file's JSON text
    std::string config_json;     // the model config's JSON text (HF config.json)
    std::string name;            // run name
    std::string device;          // e.g. "cpu (2 threads)", "cuda:0 NVIDIA H100"

    std::vector<int64_t> moe_layer_indices;  // HF layer index of each MoE layer, MTP ones included
    int64_t n_experts = 0;                   // E
    int64_t top_k = 0;                       // K
    std::vector<std::string> label_names;    // tasks or languages, for per-label eval

    // The routing probe: a fixed text whose routing is logged over training.
    std::vector<int32_t> probe_tokens;  // [T_p]
    std::string probe_text;
    std::vector<int32_t> probe_labels;  // [T_p], index into label_names (or -1)

    int64_t n_layers() const { return static_cast<int64_t>(moe_layer_indices.size()); }
    int64_t n_labels() const { return static_cast<int64_t>(label_names.size()); }
    int64_t n_probe() const { return static_cast<int64_t>(probe_tokens.size()); }
};

// One logged training step: /metrics/<field>[N].
struct MetricsRow {
    int64_t step = 0;
    int64_t tokens = 0;  // tokens seen so far
    double wall_s = 0;
    double loss = 0;
    double mtp_loss = 0;
    double aux_loss = 0;
    double lr = 0;
    double grad_norm = 0;
    double tokens_per_s = 0;
    double loss_scale = 0;
    int32_t skipped = 0;  // 1 = step skipped (NaN/overflow)
};

// One evaluation: /eval/*[M].
struct EvalRow {
    int64_t step = 0;
    double loss = 0;
    std::vector<double> label_loss;      // [n_labels]
    std::vector<double> label_accuracy;  // [n_labels]
};

// Expert statistics at one logged step: /experts/*[S].
struct ExpertsRow {
    int64_t step = 0;
    std::vector<float> load;    // [L*E] tokens routed per expert over the step's global batch
    std::vector<float> bias;    // [L*E] aux-loss-free balancing bias
    std::vector<float> maxvio;  // [L] max violation: max_e load / mean load - 1
};

// Routing of the probe text at one step: /routing/*[R].
struct RoutingRow {
    int64_t step = 0;
    std::vector<int32_t> topk;   // [L*T_p*K] chosen experts
    std::vector<float> weights;  // [L*T_p*K] their gate weights
    std::vector<float> scores;   // [L*T_p*E] affinity scores of every expert
};

}  // namespace moe
