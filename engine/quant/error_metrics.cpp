#include "quant/error_metrics.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace moe {

namespace {

constexpr double kSnrCapDb = 300.0;  // "no error at all", kept finite for plots and HDF5
constexpr int64_t kBlock = 4096;     // fixed reduction blocks: same sums for any thread count

struct ErrorSums {
    double signal = 0, error = 0, max_abs_error = 0;
    float amax = 0;
};

ErrorSums sums_of(const float* x, const float* xq, int64_t n) {
    ErrorSums s;
    for (int64_t i = 0; i < n; ++i) {
        const double v = x[i], d = static_cast<double>(xq[i]) - v;
        s.signal += v * v;
        s.error += d * d;
        s.max_abs_error = std::max(s.max_abs_error, std::fabs(d));
        s.amax = std::max(s.amax, std::fabs(x[i]));
    }
    return s;
}

double snr_db(double signal, double error) {
    if (error == 0) return kSnrCapDb;
    if (signal == 0) return -kSnrCapDb;
    return std::clamp(10.0 * std::log10(signal / error), -kSnrCapDb, kSnrCapDb);
}

}  // namespace

QuantErrorStats quant_error(const float* x, const float* xq, int64_t n, int64_t saturated,
                            int64_t flushed_to_zero) {
    QuantErrorStats stats;
    stats.count = std::max<int64_t>(n, 0);
    stats.snr_db = kSnrCapDb;
    if (n <= 0) return stats;
    const int64_t blocks = (n + kBlock - 1) / kBlock;
    std::vector<ErrorSums> part(static_cast<size_t>(blocks));
    const int nt = n >= (1 << 16) ? omp_get_max_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t b = 0; b < blocks; ++b)
        part[b] =
            sums_of(x + b * kBlock, xq + b * kBlock, std::min(n, (b + 1) * kBlock) - b * kBlock);
    ErrorSums total;
    for (const ErrorSums& p : part) {  // in block order: deterministic
        total.signal += p.signal;
        total.error += p.error;
        total.max_abs_error = std::max(total.max_abs_error, p.max_abs_error);
        total.amax = std::max(total.amax, p.amax);
    }
    stats.rel_fro_error = total.signal > 0 ? std::sqrt(total.error / total.signal) : 0.0;
    stats.snr_db = snr_db(total.signal, total.error);
    stats.amax = total.amax;
    stats.max_abs_error = total.max_abs_error;
    stats.frac_saturated = static_cast<double>(saturated) / static_cast<double>(n);
    stats.frac_flushed = static_cast<double>(flushed_to_zero) / static_cast<double>(n);
    return stats;
}

void add_to_histogram(Log2Histogram& h, const float* v, int64_t n, float divisor) {
    if (h.counts.size() != static_cast<size_t>(Log2Histogram::kBins))
        h.counts.assign(Log2Histogram::kBins, 0);
    const double bins_per_unit = Log2Histogram::kBins / (Log2Histogram::kHi - Log2Histogram::kLo);
    for (int64_t i = 0; i < n; ++i) {
        const double a = std::fabs(static_cast<double>(v[i]) / divisor);
        if (std::isnan(a)) continue;  // no magnitude to place
        if (a == 0) {
            ++h.zeros;
            continue;
        }
        if (std::isinf(a)) {
            ++h.counts[Log2Histogram::kBins - 1];
            continue;
        }
        // log2 as exponent + log2(mantissa in [1, 2)): exact for powers of two, so 2^k lands at
        // the start of its bin rather than a rounding error below it.
        int exponent = 0;
        const double mantissa = std::frexp(a, &exponent);  // a = mantissa * 2^exponent
        const double log2a = (exponent - 1) + std::log2(2.0 * mantissa);
        const double position = std::floor((log2a - Log2Histogram::kLo) * bins_per_unit);
        const int bin = static_cast<int>(std::clamp(position, 0.0, Log2Histogram::kBins - 1.0));
        ++h.counts[bin];
    }
}

std::vector<float> tile_rel_errors(const float* x, const float* xq, int64_t rows, int64_t cols,
                                   int64_t ld, int64_t tile_rows, int64_t tile_cols) {
    if (rows < 0 || cols < 0 || ld < cols)
        throw ConfigError("shape", "need rows, cols >= 0 and ld >= cols, got " +
                                       std::to_string(rows) + "x" + std::to_string(cols) + " ld " +
                                       std::to_string(ld));
    if (tile_rows < 0 || tile_cols < 0)
        throw ConfigError("tile", "extents must be >= 0, got " + std::to_string(tile_rows) + "x" +
                                      std::to_string(tile_cols));
    if (rows == 0 || cols == 0) return {};
    const int64_t th = tile_rows == 0 ? rows : tile_rows, tw = tile_cols == 0 ? cols : tile_cols;
    const int64_t gr = (rows + th - 1) / th, gc = (cols + tw - 1) / tw;
    std::vector<double> signal(static_cast<size_t>(gr * gc), 0.0), error(signal.size(), 0.0);
    const int nt = rows * cols >= (1 << 16) ? omp_get_max_threads() : 1;
    // Parallel over tile bands; within a band rows are added in order (deterministic).
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t tr = 0; tr < gr; ++tr)
        for (int64_t r = tr * th; r < std::min(rows, (tr + 1) * th); ++r)
            for (int64_t c = 0; c < cols; ++c) {
                const double v = x[r * ld + c], d = static_cast<double>(xq[r * ld + c]) - v;
                signal[tr * gc + c / tw] += v * v;
                error[tr * gc + c / tw] += d * d;
            }
    std::vector<float> rel(signal.size());
    for (size_t i = 0; i < rel.size(); ++i)
        rel[i] = signal[i] > 0 ? static_cast<float>(std::sqrt(error[i] / signal[i])) : 0.0f;
    return rel;
}

}  // namespace moe
