#pragma once
// Plain data for QuantizationView: what a run file's /quant group holds, per run. The
// per-step arrays are large (two 160-bin histograms per tensor), so a run hands them out one
// logged row at a time, from memory (`rows`, tests and small runs) or through a loader that
// reads the row from its file when asked (`load_row`, the workbench).
#include <QString>
#include <QStringList>

#include <cstdint>
#include <functional>
#include <vector>

namespace moe::views {

enum class QuantRole { Weight, Activation, Gradient };

// A quantized tensor. Keys as in the run file: "<param name>" (weight), "<param name>@input"
// (the activation multiplied by it), "<param name>@grad" (the layer's output gradient).
struct QuantTensor {
    QString key;
    QuantRole role = QuantRole::Weight;
};

// A block-scale grid: rows x cols scales of one tensor.
struct ScaleGrid {
    QString tensor;
    int rows = 0;
    int cols = 0;
    int size() const { return rows * cols; }
};

// The histogram bins shared by both histograms: bin i covers log2 magnitudes
// [lo + i * width, lo + (i + 1) * width); out-of-range values land in the first or last bin.
struct Log2Bins {
    double lo = -24.0;
    double hi = 16.0;
    int count = 160;
    double width() const { return (hi - lo) / count; }
    double binLo(int i) const { return lo + i * width(); }
};

// One logged /quant row: every tensor's error at that step.
struct QuantRowData {
    double step = 0;
    std::vector<float> rel_error;       // [Q] ||xq - x|| / ||x||
    std::vector<float> snr_db;          // [Q]
    std::vector<float> amax;            // [Q] max |x|
    std::vector<float> frac_saturated;  // [Q] share of values clipped to the format's max
    std::vector<float> frac_flushed;    // [Q] share of non-zero values rounded to zero
    std::vector<uint32_t> value_hist;   // [Q * bins] log2 |x / tile scale|
    std::vector<uint32_t> value_zeros;  // [Q] exact zeros, not in value_hist
    std::vector<uint32_t> error_hist;   // [Q * bins] log2 (|xq - x| / amax)
    std::vector<float> scales;          // the scale grids, concatenated row-major
};

// One tensor over all logged rows ("error over training").
struct QuantSeries {
    std::vector<double> step;
    std::vector<double> rel_error, snr_db;
};

struct QuantRunData {
    QString run_name;
    QString precision = QStringLiteral("fp32");  // "fp32", "bf16", "fp16", "fp8"
    bool live = false;                            // still being written
    std::vector<QuantTensor> tensors;             // [Q]
    std::vector<ScaleGrid> scale_grids;
    Log2Bins bins;
    std::vector<double> steps;                    // [R] logged /quant steps, ascending

    // Rows in memory; when empty, load_row reads row r (0 <= r < steps.size()) on demand and
    // load_series one tensor over all rows (falling back to load_row row by row).
    std::vector<QuantRowData> rows;
    std::function<QuantRowData(int row)> load_row;
    std::function<QuantSeries(int tensor)> load_series;

    int tensorCount() const { return static_cast<int>(tensors.size()); }
    int rowCount() const { return static_cast<int>(steps.size()); }
    bool quantizes() const { return precision != QLatin1String("fp32") && !precision.isEmpty(); }
    // "run-a (fp8)"
    QString label() const { return QStringLiteral("%1 (%2)").arg(run_name, precision); }
    int tensorIndex(const QString& key) const {
        for (int i = 0; i < tensorCount(); ++i)
            if (tensors[size_t(i)].key == key) return i;
        return -1;
    }
    QuantRowData row(int r) const {
        if (r < 0 || r >= rowCount()) return {};
        if (size_t(r) < rows.size()) return rows[size_t(r)];
        return load_row ? load_row(r) : QuantRowData{};
    }
    QuantSeries series(int tensor) const {
        if (load_series && rows.empty()) return load_series(tensor);
        QuantSeries s;
        for (int r = 0; r < rowCount(); ++r) {
            const QuantRowData d = row(r);
            if (size_t(tensor) >= d.rel_error.size()) continue;
            s.step.push_back(steps[size_t(r)]);
            s.rel_error.push_back(d.rel_error[size_t(tensor)]);
            s.snr_db.push_back(size_t(tensor) < d.snr_db.size() ? d.snr_db[size_t(tensor)] : 0.0);
        }
        return s;
    }
};

// The runs shown together: the first quantized one is shown in detail, all are overlaid in
// "error over training".
struct QuantizationData {
    std::vector<QuantRunData> runs;
};

// Role from the run file's role string ("weight", "activation", "gradient"), else from the key.
inline QuantRole quant_role_from(const QString& role, const QString& key) {
    if (role == QLatin1String("activation")) return QuantRole::Activation;
    if (role == QLatin1String("gradient")) return QuantRole::Gradient;
    if (role == QLatin1String("weight")) return QuantRole::Weight;
    if (key.endsWith(QLatin1String("@input"))) return QuantRole::Activation;
    if (key.endsWith(QLatin1String("@grad"))) return QuantRole::Gradient;
    return QuantRole::Weight;
}

}  // namespace moe::views
