#pragma once
// Reads a run file (HDF5), finished or still being written. A live file is opened for SWMR
// reading and refresh() picks up rows the writer flushed since; a finished file (or one written
// without SWMR) opens plain read-only. Layout: docs/run-format.md.
//
// Reads see a snapshot: row counts change only in refresh(). A group's row count is the
// smallest length among its datasets, because a writer killed between two column writes leaves
// columns of unequal length; only complete rows are presented.
// Errors (not HDF5, truncated, wrong format, newer format_version, missing or misshapen dataset)
// are FileErrors naming the path, the dataset or attribute, and what was expected.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "store/run_layout.h"

namespace moe {

// /metrics as column vectors (what plots want). Rows [first_row, first_row + size()).
struct MetricsColumns {
    int64_t first_row = 0;
    std::vector<int64_t> step, tokens;
    std::vector<double> wall_s, loss, mtp_loss, aux_loss, lr, grad_norm, tokens_per_s, loss_scale;
    std::vector<int32_t> skipped;

    int64_t size() const { return static_cast<int64_t>(step.size()); }
    MetricsRow row(int64_t i) const;  // i counts from first_row's row (0 = first returned row)
};

// Consecutive /experts rows, concatenated: step [n], load and bias [n, L, E], maxvio [n, L].
struct ExpertsRows {
    std::vector<int64_t> step;
    std::vector<float> load, bias, maxvio;
};

// A row-major [rows, cols] float matrix (expert load over logged steps, for heatmaps).
struct FloatMatrix {
    int64_t rows = 0, cols = 0;
    std::vector<float> values;
    float at(int64_t r, int64_t c) const { return values[static_cast<size_t>(r * cols + c)]; }
};

// One quantized tensor's error over the logged /quant rows (for "error over training").
struct QuantErrorSeries {
    std::vector<int64_t> step;
    std::vector<float> rel_error, snr_db, amax;
};

// All /parallel rows: step [n]; per column of run_parallel_columns(), [n, world_size].
struct ParallelRows {
    std::vector<int64_t> step;
    std::vector<std::vector<double>> columns;  // [kParallelColumns][n * world_size]
};

// All /sparsity rows: step [n], near_zero [n, n_ffn_layers], unused_experts [n, L].
struct SparsityRows {
    std::vector<int64_t> step;
    std::vector<float> near_zero, unused_experts;
};

class RunReader {
public:
    explicit RunReader(const std::string& path);
    ~RunReader();
    RunReader(RunReader&&) noexcept;
    RunReader& operator=(RunReader&&) noexcept;
    RunReader(const RunReader&) = delete;
    RunReader& operator=(const RunReader&) = delete;

    const std::string& path() const { return path_; }
    const RunHeader& header() const { return header_; }
    // True when opened for SWMR reading (refresh() can see new rows).
    bool live() const { return live_; }

    // Re-reads the extents of every dataset; true if any group gained complete rows.
    bool refresh();

    int64_t metrics_count() const;
    int64_t eval_count() const;
    int64_t experts_count() const;
    int64_t routing_count() const;

    MetricsColumns metrics() const { return metrics_since(0); }
    // Rows [row, metrics_count()); empty when row >= metrics_count().
    MetricsColumns metrics_since(int64_t row) const;
    std::vector<EvalRow> eval() const;
    ExpertsRow experts(int64_t i) const;
    // Rows [first, first + count) in one read per dataset (opening a long run row by row costs
    // one small HDF5 read per row and dataset).
    // with_load / with_bias false leave those columns empty (a caller that reads them later).
    ExpertsRows experts_rows(int64_t first, int64_t count, bool with_load = true, bool with_bias = true) const;
    // /experts/load[:, layer, :] -> [experts_count(), E]; layer indexes moe_layer_indices.
    FloatMatrix expert_load_matrix(int64_t layer) const;
    RoutingRow routing(int64_t i) const;

    // Format version 2 groups; a version-1 file has 0 rows of each.
    int64_t quant_count() const;
    int64_t sparsity_count() const;
    int64_t parallel_count() const;  // 0 for files before version 3
    QuantRow quant(int64_t i) const;
    // Tensor q (index into header().quant_tensors) over all /quant rows, one read per dataset.
    QuantErrorSeries quant_error_series(int64_t q) const;
    SparsityRows sparsity_rows() const;
    ParallelRows parallel_rows() const;

private:
    struct Impl;
    std::string path_;
    RunHeader header_;
    bool live_ = false;
    std::unique_ptr<Impl> impl_;
};

}  // namespace moe
