#include "series_processing.h"

#include <QLocale>

#include <algorithm>
#include <cmath>
#include <limits>

namespace moe::views {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

void ema_smooth_append(std::span<const double> y, EmaState& s, std::vector<double>& out) {
    const double w = std::clamp(s.weight, 0.0, 0.999999);
    out.reserve(out.size() + y.size());
    for (double v : y) {
        if (!std::isfinite(v)) {
            out.push_back(v);
            continue;
        }
        s.last = w * s.last + (1.0 - w) * v;
        s.w_pow *= w;
        ++s.count;
        // The accumulator starts at 0, which biases early values toward 0; dividing by the
        // total weight given to real points (1 - w^count) removes that bias.
        const double debias = 1.0 - s.w_pow;
        out.push_back(debias > 0.0 ? s.last / debias : v);
    }
}

std::vector<double> ema_smooth(std::span<const double> y, double weight) {
    EmaState s;
    s.weight = weight;
    std::vector<double> out;
    ema_smooth_append(y, s, out);
    return out;
}

XY downsample_minmax(std::span<const double> x, std::span<const double> y, double x_lo, double x_hi,
                     std::size_t buckets) {
    XY out;
    const std::size_t n = std::min(x.size(), y.size());
    if (n == 0) return out;
    if (x_hi < x_lo) std::swap(x_lo, x_hi);
    // Visible index range plus one neighbour each side.
    std::size_t first = static_cast<std::size_t>(std::lower_bound(x.begin(), x.begin() + n, x_lo) - x.begin());
    std::size_t last = static_cast<std::size_t>(std::upper_bound(x.begin(), x.begin() + n, x_hi) - x.begin());
    if (first > 0) --first;
    if (last < n) ++last;  // one past the end
    if (first >= last) return out;
    const std::size_t count = last - first;
    buckets = std::max<std::size_t>(buckets, 1);
    if (count <= 2 * buckets + 2) {
        out.x.assign(x.begin() + first, x.begin() + last);
        out.y.assign(y.begin() + first, y.begin() + last);
        return out;
    }
    out.x.reserve(2 * buckets + 2);
    out.y.reserve(2 * buckets + 2);
    auto keep_point = [&](std::size_t i) {
        out.x.push_back(x[i]);
        out.y.push_back(y[i]);
    };
    // Buckets are equal x intervals over the kept range, so they map to equal pixel columns
    // even when x is uneven (wall time with pauses, tokens with varying batch sizes).
    const double x0 = x[first], x1 = x[last - 1];
    const double scale = x1 > x0 ? static_cast<double>(buckets) / (x1 - x0) : 0.0;
    keep_point(first);
    std::size_t i = first + 1;
    const std::size_t end = last - 1;  // the last point is emitted separately
    while (i < end) {
        // This bucket ends where x reaches its right edge; a binary search finds that index, so
        // the inner loop is a plain min/max scan (this runs over millions of points per redraw).
        const std::size_t b = std::min<std::size_t>(static_cast<std::size_t>((x[i] - x0) * scale), buckets - 1);
        const double edge = b + 1 >= buckets ? std::numeric_limits<double>::infinity()
                                             : x0 + static_cast<double>(b + 1) / scale;
        std::size_t stop = static_cast<std::size_t>(std::lower_bound(x.begin() + i, x.begin() + end, edge) - x.begin());
        if (stop == i) stop = i + 1;  // rounding at the edge: always make progress
        std::size_t i_min = i, i_max = i, i_nan = end;
        double v_min = std::numeric_limits<double>::infinity(), v_max = -v_min;
        for (std::size_t k = i; k < stop; ++k) {
            const double v = y[k];
            if (v < v_min) v_min = v, i_min = k;  // NaN compares false: never picked
            if (v > v_max) v_max = v, i_max = k;
            if (!(std::abs(v) <= std::numeric_limits<double>::max()) && i_nan == end) i_nan = k;
        }
        i = stop;
        // Emit the kept points in x order (an all-NaN bucket leaves i_min on a NaN: skipped).
        std::size_t keep[3];
        std::size_t k = 0;
        if (std::isfinite(y[i_min])) keep[k++] = i_min;
        if (i_max != i_min && std::isfinite(y[i_max])) keep[k++] = i_max;
        if (i_nan != end) keep[k++] = i_nan;
        std::sort(keep, keep + k);
        for (std::size_t j = 0; j < k; ++j) {
            if (keep[j] == i_nan) {
                out.x.push_back(x[i_nan]);
                out.y.push_back(kNaN);
            } else {
                keep_point(keep[j]);
            }
        }
    }
    keep_point(end);
    return out;
}

XY downsample_minmax(std::span<const double> x, std::span<const double> y, std::size_t buckets) {
    if (x.empty()) return {};
    return downsample_minmax(x, y, x.front(), x.back(), buckets);
}

long nearest_index(std::span<const double> x, double value) {
    if (x.empty() || std::isnan(value)) return -1;
    const auto it = std::lower_bound(x.begin(), x.end(), value);
    if (it == x.begin()) return 0;
    if (it == x.end()) return static_cast<long>(x.size()) - 1;
    const long hi = static_cast<long>(it - x.begin());
    return (value - x[hi - 1] <= x[hi] - value) ? hi - 1 : hi;
}

std::vector<double> interpolate_at(std::span<const double> xs, std::span<const double> ys,
                                   std::span<const double> at) {
    std::vector<double> out(at.size(), kNaN);
    const std::size_t n = std::min(xs.size(), ys.size());
    if (n == 0) return out;
    for (std::size_t k = 0; k < at.size(); ++k) {
        const double a = at[k];
        if (n == 1) {
            out[k] = ys[0];
            continue;
        }
        std::size_t hi = static_cast<std::size_t>(std::lower_bound(xs.begin(), xs.begin() + n, a) - xs.begin());
        hi = std::clamp<std::size_t>(hi, 1, n - 1);
        const std::size_t lo = hi - 1;
        const double dx = xs[hi] - xs[lo];
        out[k] = dx != 0.0 ? ys[lo] + (a - xs[lo]) * (ys[hi] - ys[lo]) / dx : ys[hi];
    }
    return out;
}

bool y_range_in(std::span<const double> x, std::span<const double> y, double x_lo, double x_hi,
                bool positive_only, double& y_min, double& y_max) {
    const std::size_t n = std::min(x.size(), y.size());
    const std::size_t first = static_cast<std::size_t>(std::lower_bound(x.begin(), x.begin() + n, x_lo) - x.begin());
    const std::size_t last = static_cast<std::size_t>(std::upper_bound(x.begin(), x.begin() + n, x_hi) - x.begin());
    bool found = false;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (std::size_t i = first; i < last; ++i) {
        const double v = y[i];
        if (!std::isfinite(v) || (positive_only && v <= 0.0)) continue;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
        found = true;
    }
    if (found) y_min = lo, y_max = hi;
    return found;
}

QString x_axis_title(XAxisKind kind) {
    switch (kind) {
    case XAxisKind::Step: return QStringLiteral("Step");
    case XAxisKind::Tokens: return QStringLiteral("Training tokens");
    case XAxisKind::WallTime: return QStringLiteral("Wall time (h:mm:ss)");
    }
    return {};
}

QString si_format(double value, int precision) {
    if (!std::isfinite(value)) return QStringLiteral("–");
    static const char* prefixes[] = {"", "k", "M", "G", "T", "P"};
    double a = std::abs(value);
    int p = 0;
    while (a >= 1000.0 && p < 5) a /= 1000.0, ++p;
    const double shown = std::copysign(a, value);
    return QString::number(shown, 'g', precision) + QLatin1String(prefixes[p]);
}

QString duration_format(double seconds) {
    if (!std::isfinite(seconds)) return QStringLiteral("–");
    const bool negative = seconds < 0;
    long long s = std::llround(std::abs(seconds));
    const long long days = s / 86400;
    s %= 86400;
    const long long h = s / 3600, m = (s % 3600) / 60, sec = s % 60;
    QString text;
    if (days > 0)
        text = QStringLiteral("%1d %2:%3:%4").arg(days).arg(h, 2, 10, QLatin1Char('0')).arg(m, 2, 10, QLatin1Char('0')).arg(sec, 2, 10, QLatin1Char('0'));
    else if (h > 0)
        text = QStringLiteral("%1:%2:%3").arg(h).arg(m, 2, 10, QLatin1Char('0')).arg(sec, 2, 10, QLatin1Char('0'));
    else
        text = QStringLiteral("%1:%2").arg(m).arg(sec, 2, 10, QLatin1Char('0'));
    return negative ? QLatin1Char('-') + text : text;
}

QString x_value_format(XAxisKind kind, double value) {
    switch (kind) {
    case XAxisKind::Step: return QStringLiteral("step ") + QLocale::c().toString(std::llround(value));
    case XAxisKind::Tokens: return si_format(value, 4) + QStringLiteral(" tokens");
    case XAxisKind::WallTime: return duration_format(value);
    }
    return {};
}

}  // namespace moe::views
