#include "quant/quant_recorder.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace moe {

const char* to_string(QuantRole role) {
    switch (role) {
        case QuantRole::Weight: return "weight";
        case QuantRole::Activation: return "activation";
        case QuantRole::Gradient: return "gradient";
    }
    return "?";
}

QuantRecorder::QuantRecorder(std::vector<std::string> keys, std::vector<std::string> scale_keys,
                             std::vector<int64_t> scale_grid_rows,
                             std::vector<int64_t> scale_grid_cols)
    : keys_(std::move(keys)),
      scale_keys_(std::move(scale_keys)),
      grid_rows_(std::move(scale_grid_rows)),
      grid_cols_(std::move(scale_grid_cols)) {
    if (grid_rows_.size() != scale_keys_.size() || grid_cols_.size() != scale_keys_.size())
        throw std::invalid_argument("QuantRecorder: scale keys and grid shapes differ in length");
    for (size_t i = 0; i < keys_.size(); ++i) index_[keys_[i]] = i;
    acc_.resize(keys_.size());
    scales_.resize(scale_keys_.size());
    begin();
}

void QuantRecorder::begin() {
    for (auto& a : acc_) a = Accumulator{};
    for (size_t i = 0; i < scales_.size(); ++i)
        scales_[i].assign(static_cast<size_t>(grid_rows_[i] * grid_cols_[i]), 0.0f);
}

int64_t QuantRecorder::observed() const {
    return std::count_if(acc_.begin(), acc_.end(),
                         [](const Accumulator& a) { return a.count > 0; });
}

namespace {

int log2_bin(double magnitude) {
    const double width = (Log2Histogram::kHi - Log2Histogram::kLo) / Log2Histogram::kBins;
    const double b = std::floor((std::log2(magnitude) - Log2Histogram::kLo) / width);
    return static_cast<int>(std::clamp(b, 0.0, double(Log2Histogram::kBins - 1)));
}

}  // namespace

void QuantRecorder::observe(const std::string& key, const float* x, int64_t rows, int64_t cols,
                            int64_t ld, const BlockQuantSpec& spec) {
    const auto it = index_.find(key);
    if (it == index_.end() || rows <= 0 || cols <= 0) return;
    Accumulator& a = acc_[it->second];

    const int64_t gr = tile_grid_rows(rows, spec.tile), gc = tile_grid_cols(cols, spec.tile);
    cast_.resize(static_cast<size_t>(rows * cols));
    tile_scales_.resize(static_cast<size_t>(gr * gc));
    const CastCounts counts = fake_quantize(x, rows, cols, ld, spec, cast_.data(), cols,
                                            spec.scaled ? tile_scales_.data() : nullptr);
    if (!spec.scaled) std::fill(tile_scales_.begin(), tile_scales_.end(), 1.0f);
    a.saturated += counts.saturated;
    a.flushed += counts.flushed_to_zero;
    a.count += rows * cols;

    // Tile of element (r, c): extents 0 mean the whole dimension.
    const int64_t tr = spec.tile.rows > 0 ? spec.tile.rows : rows;
    const int64_t tc = spec.tile.cols > 0 ? spec.tile.cols : cols;
    float amax = 0;
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(x[r * ld + c]));
    a.amax = std::max(a.amax, amax);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
            const float v = x[r * ld + c], q = cast_[static_cast<size_t>(r * cols + c)];
            const double e = double(q) - double(v);
            a.sum_x2 += double(v) * double(v);
            a.sum_e2 += e * e;
            const float s = tile_scales_[static_cast<size_t>((r / tr) * gc + c / tc)];
            if (v == 0.0f) {
                ++a.values.zeros;
            } else {
                ++a.values.counts[static_cast<size_t>(log2_bin(std::fabs(double(v) / s)))];
            }
            if (e == 0.0 || amax == 0.0f)
                ++a.errors.zeros;
            else
                ++a.errors.counts[static_cast<size_t>(log2_bin(std::fabs(e) / amax))];
        }
    }

    for (size_t i = 0; i < scale_keys_.size(); ++i)
        if (scale_keys_[i] == key && grid_rows_[i] == gr && grid_cols_[i] == gc)
            scales_[i].assign(tile_scales_.begin(), tile_scales_.end());
}

QuantRow QuantRecorder::row(int64_t step) const {
    QuantRow r;
    r.step = step;
    const size_t Q = keys_.size(), B = static_cast<size_t>(kQuantHistogramBins);
    static_assert(Log2Histogram::kBins == kQuantHistogramBins);
    r.rel_error.resize(Q);
    r.snr_db.resize(Q);
    r.amax.resize(Q);
    r.frac_saturated.resize(Q);
    r.frac_flushed.resize(Q);
    r.value_zeros.resize(Q);
    r.value_hist.resize(Q * B);
    r.error_hist.resize(Q * B);
    for (size_t q = 0; q < Q; ++q) {
        const Accumulator& a = acc_[q];
        if (a.count == 0) continue;
        r.rel_error[q] = a.sum_x2 > 0 ? static_cast<float>(std::sqrt(a.sum_e2 / a.sum_x2)) : 0.0f;
        r.snr_db[q] = a.sum_e2 > 0 && a.sum_x2 > 0
                          ? static_cast<float>(10.0 * std::log10(a.sum_x2 / a.sum_e2))
                          : 300.0f;
        r.amax[q] = a.amax;
        r.frac_saturated[q] = static_cast<float>(double(a.saturated) / double(a.count));
        r.frac_flushed[q] = static_cast<float>(double(a.flushed) / double(a.count));
        r.value_zeros[q] = a.values.zeros;
        std::copy(a.values.counts.begin(), a.values.counts.end(), r.value_hist.begin() + q * B);
        std::copy(a.errors.counts.begin(), a.errors.counts.end(), r.error_hist.begin() + q * B);
    }
    for (const auto& s : scales_) r.scales.insert(r.scales.end(), s.begin(), s.end());
    return r;
}

}  // namespace moe
