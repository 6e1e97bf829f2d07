#pragma once
// Pure functions that turn logged curves into what is drawn: smoothing, downsampling that keeps
// spikes, x-axis conversions and number formatting. No Qt widgets, so they are unit-tested alone.
#include <QString>

#include <cstddef>
#include <span>
#include <vector>

namespace moe::views {

// Running state of the de-biased EMA, so a live curve is smoothed incrementally: appending rows
// continues from here instead of re-smoothing the whole history.
struct EmaState {
    double weight = 0.0;
    double last = 0.0;     // biased accumulator
    double w_pow = 1.0;    // weight^count, for the de-bias factor 1 - weight^count
    std::size_t count = 0; // finite points seen
};

// TensorBoard's smoothing: ema_t = w * ema_{t-1} + (1 - w) * y_t, divided by 1 - w^t where t
// counts finite points only. Non-finite points pass through unchanged and do not update the
// state, so gaps stay gaps. w is clamped to [0, 0.999999].
std::vector<double> ema_smooth(std::span<const double> y, double weight);
// Appends the smoothed values of `y` to `out`, continuing from `state`.
void ema_smooth_append(std::span<const double> y, EmaState& state, std::vector<double>& out);

struct XY {
    std::vector<double> x;
    std::vector<double> y;
};

// Min/max-preserving downsampling of the points with x in [x_lo, x_hi] (x ascending), plus one
// neighbour on each side so the line runs to the plot edge. The range is cut into `buckets`
// equal x intervals; each keeps its minimum and maximum point in x order, so no spike vanishes.
// The first and last points of the range are always kept. A bucket holding a non-finite y also
// emits one NaN point, so gaps survive. Without NaNs the output has at most 2 * buckets + 2
// points; ranges small enough are copied unchanged.
XY downsample_minmax(std::span<const double> x, std::span<const double> y, double x_lo, double x_hi,
                     std::size_t buckets);
// Whole-series convenience.
XY downsample_minmax(std::span<const double> x, std::span<const double> y, std::size_t buckets);

// Index of the point whose x is nearest to `x` (x ascending); -1 when empty.
long nearest_index(std::span<const double> x, double value);

// Linear interpolation of (xs, ys) at `at` (xs ascending), extrapolating linearly beyond the
// ends; used to place evaluation rows (logged by step) on the tokens or wall-time axis.
std::vector<double> interpolate_at(std::span<const double> xs, std::span<const double> ys,
                                   std::span<const double> at);

// Finite min and max of y over the x interval [x_lo, x_hi]; positive_only skips y <= 0 (log
// axes). Returns false when no such point exists.
bool y_range_in(std::span<const double> x, std::span<const double> y, double x_lo, double x_hi,
                bool positive_only, double& y_min, double& y_max);

enum class XAxisKind { Step, Tokens, WallTime };

QString x_axis_title(XAxisKind kind);
// "1.25M", "320k", "12" (SI prefixes k, M, G, T, P).
QString si_format(double value, int precision = 3);
// "0:42", "12:05", "3:04:10" (hours:minutes:seconds); "2d 03:04:10" past a day.
QString duration_format(double seconds);
QString x_value_format(XAxisKind kind, double value);

}  // namespace moe::views
