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
// 2: /quant and /sparsity; 3: /parallel (readers accept 1 and 2).
inline constexpr int64_t kRunFormatVersion = 3;

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

    // Precision (format version 2). "fp32", "bf16", "fp16" or "fp8" for the linear layers.
    std::string precision = "fp32";
    // The quantized tensors whose error /quant records, Q = quant_tensors.size(). Key of a tensor:
    // "<parameter name>" for a weight, "<parameter name>@input" for the activation multiplied by
    // it, "<parameter name>@grad" for the output gradient of that linear layer.
    std::vector<std::string> quant_tensors;
    std::vector<std::string> quant_roles;  // [Q] "weight", "activation" or "gradient"
    // Tensors whose block scales /quant/scales records, with their scale-grid shapes.
    std::vector<std::string> scale_tensors;
    std::vector<int64_t> scale_grid_rows, scale_grid_cols;  // [S]

    // Sparsity (format version 2): FFN layers (HF layer index of every decoder layer and MTP
    // layer) whose SwiGLU outputs are counted, and the threshold for "near zero".
    std::vector<int64_t> ffn_layer_indices;
    double near_zero_threshold = 1e-3;

    int64_t n_layers() const { return static_cast<int64_t>(moe_layer_indices.size()); }
    int64_t n_labels() const { return static_cast<int64_t>(label_names.size()); }
    int64_t n_probe() const { return static_cast<int64_t>(probe_tokens.size()); }
    int64_t n_quant() const { return static_cast<int64_t>(quant_tensors.size()); }
    int64_t n_scale_values() const {
        int64_t n = 0;
        for (size_t i = 0; i < scale_grid_rows.size(); ++i) n += scale_grid_rows[i] * scale_grid_cols[i];
        return n;
    }
    int64_t n_ffn_layers() const { return static_cast<int64_t>(ffn_layer_indices.size()); }

    // Several processes (format version 3): the ranks and how they share the work
    // ("ep=1,dp=2"); a run of one process has world_size 1 and no /parallel rows.
    int64_t world_size = 1;
    std::string parallel_layout = "ep=1,dp=1";
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

// Quantization error of every quantized tensor at one step: /quant/*[Q_rows]. Written only by
// runs whose precision quantizes something (not fp32). Histograms: Log2Histogram bins
// (quant/error_metrics.h): values of x / (its tile's scale), errors of |xq - x| / amax.
inline constexpr int64_t kQuantHistogramBins = 160;  // = Log2Histogram::kBins

struct QuantRow {
    int64_t step = 0;
    std::vector<float> rel_error;        // [Q] relative Frobenius error
    std::vector<float> snr_db;           // [Q]
    std::vector<float> amax;             // [Q]
    std::vector<float> frac_saturated;   // [Q]
    std::vector<float> frac_flushed;     // [Q]
    std::vector<uint32_t> value_hist;    // [Q * kQuantHistogramBins]
    std::vector<uint32_t> value_zeros;   // [Q]
    std::vector<uint32_t> error_hist;    // [Q * kQuantHistogramBins]
    std::vector<float> scales;           // [n_scale_values()] the scale grids, concatenated
};

// Per-rank figures of a run with several ranks at one logged step, each per training step
// since the previous row: /parallel/<column>[P_rows, world_size].
inline constexpr int kParallelColumns = 7;
const std::vector<std::string>& run_parallel_columns();  // step_s, all_reduce_bytes, ...
struct ParallelRow {
    int64_t step = 0;
    std::vector<double> values;  // [world_size * kParallelColumns], rank-major
};

// Sparsity at one logged step: /sparsity/*[S_rows].
struct SparsityRow {
    int64_t step = 0;
    std::vector<float> near_zero;       // [n_ffn_layers] share of SwiGLU outputs |a| < threshold
    std::vector<float> unused_experts;  // [L] share of routed experts that got no token this step
};

}  // namespace moe
