#include "store/run_schema.h"

#include <algorithm>
#include <stdexcept>

namespace moe {

namespace {

int64_t dtype_bytes(RunDtype t) {
    return (t == RunDtype::I32 || t == RunDtype::F32 || t == RunDtype::U32) ? 4 : 8;
}

// Aim for chunks of about 256 KiB: small rows (metrics scalars) get 256 rows per chunk so a
// column is a handful of chunks; big rows (routing scores of a full model) get one row per chunk
// so a flush never rewrites megabytes of earlier rows.
int64_t chunk_rows_for(RunDtype t, const std::vector<int64_t>& inner) {
    int64_t row_bytes = dtype_bytes(t);
    for (int64_t d : inner) row_bytes *= std::max<int64_t>(d, 1);
    return std::clamp<int64_t>((256 * 1024) / row_bytes, 1, 256);
}

RunDatasetSpec spec(const std::string& group, const std::string& name, RunDtype t,
                    std::vector<int64_t> inner) {
    const int64_t chunk = chunk_rows_for(t, inner);
    return RunDatasetSpec{group, name, t, std::move(inner), chunk};
}

}  // namespace

const char* run_dtype_name(RunDtype t) {
    switch (t) {
        case RunDtype::I32: return "int32";
        case RunDtype::I64: return "int64";
        case RunDtype::F32: return "float32";
        case RunDtype::F64: return "float64";
        case RunDtype::U32: return "uint32";
    }
    return "?";
}

int64_t RunDatasetSpec::row_elements() const {
    int64_t n = 1;
    for (int64_t d : inner) n *= d;
    return n;
}

const std::vector<std::string>& run_parallel_columns() {
    static const std::vector<std::string> cols{"step_s",       "all_reduce_bytes", "all_reduce_s",   "all_to_all_bytes",
                                               "all_to_all_s", "tokens_sent",      "tokens_received"};
    return cols;
}

const std::vector<std::string>& run_metrics_columns() {
    static const std::vector<std::string> cols{"step",   "tokens",    "wall_s",       "loss",
                                               "mtp_loss", "aux_loss", "lr",           "grad_norm",
                                               "tokens_per_s", "loss_scale", "skipped"};
    return cols;
}

std::vector<RunDatasetSpec> run_group_datasets(const std::string& group, const RunHeader& h) {
    const int64_t L = h.n_layers(), E = h.n_experts, K = h.top_k, T = h.n_probe(), n = h.n_labels();
    if (group == "metrics") {
        std::vector<RunDatasetSpec> out;
        for (const auto& c : run_metrics_columns()) {
            RunDtype t = RunDtype::F64;
            if (c == "step" || c == "tokens") t = RunDtype::I64;
            if (c == "skipped") t = RunDtype::I32;
            out.push_back(spec(group, c, t, {}));
        }
        return out;
    }
    if (group == "eval")
        return {spec(group, "step", RunDtype::I64, {}), spec(group, "loss", RunDtype::F64, {}),
                spec(group, "label_loss", RunDtype::F64, {n}),
                spec(group, "label_accuracy", RunDtype::F64, {n})};
    if (group == "experts")
        return {spec(group, "step", RunDtype::I64, {}), spec(group, "load", RunDtype::F32, {L, E}),
                spec(group, "bias", RunDtype::F32, {L, E}), spec(group, "maxvio", RunDtype::F32, {L})};
    if (group == "routing")
        return {spec(group, "step", RunDtype::I64, {}), spec(group, "topk", RunDtype::I32, {L, T, K}),
                spec(group, "weights", RunDtype::F32, {L, T, K}),
                spec(group, "scores", RunDtype::F32, {L, T, E})};
    if (group == "quant") {
        const int64_t Q = h.n_quant(), bins = kQuantHistogramBins;
        return {spec(group, "step", RunDtype::I64, {}),
                spec(group, "rel_error", RunDtype::F32, {Q}),
                spec(group, "snr_db", RunDtype::F32, {Q}),
                spec(group, "amax", RunDtype::F32, {Q}),
                spec(group, "frac_saturated", RunDtype::F32, {Q}),
                spec(group, "frac_flushed", RunDtype::F32, {Q}),
                spec(group, "value_hist", RunDtype::U32, {Q, bins}),
                spec(group, "value_zeros", RunDtype::U32, {Q}),
                spec(group, "error_hist", RunDtype::U32, {Q, bins}),
                spec(group, "scales", RunDtype::F32, {h.n_scale_values()})};
    }
    if (group == "parallel") {
        std::vector<RunDatasetSpec> out{spec(group, "step", RunDtype::I64, {})};
        for (const auto& c : run_parallel_columns()) out.push_back(spec(group, c, RunDtype::F64, {h.world_size}));
        return out;
    }
    if (group == "sparsity")
        return {spec(group, "step", RunDtype::I64, {}),
                spec(group, "near_zero", RunDtype::F32, {h.n_ffn_layers()}),
                spec(group, "unused_experts", RunDtype::F32, {L})};
    throw std::invalid_argument("run_group_datasets: unknown group " + group);
}

}  // namespace moe
