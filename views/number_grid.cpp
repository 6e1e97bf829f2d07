#include "number_grid.h"

#include <cmath>

namespace moe::views {

FloatLayout float_layout(GridFormat format) {
    switch (format) {
    // OCP FP8 E4M3 ("FN"): no infinities; exponent field 15 is finite except mantissa 111 (NaN).
    case GridFormat::E4M3: return {4, 3, 7, 15, 448.0};
    case GridFormat::E5M2: return {5, 2, 15, 30, 57344.0};
    case GridFormat::FP16: return {5, 10, 15, 30, 65504.0};
    case GridFormat::BF16: return {8, 7, 127, 254, std::ldexp(2.0 - std::ldexp(1.0, -7), 127)};
    }
    return {};
}

QString grid_format_name(GridFormat format) {
    switch (format) {
    case GridFormat::E4M3: return QStringLiteral("E4M3");
    case GridFormat::E5M2: return QStringLiteral("E5M2");
    case GridFormat::FP16: return QStringLiteral("FP16");
    case GridFormat::BF16: return QStringLiteral("BF16");
    }
    return {};
}

QStringList grid_format_names() {
    return {grid_format_name(GridFormat::E4M3), grid_format_name(GridFormat::E5M2),
            grid_format_name(GridFormat::FP16), grid_format_name(GridFormat::BF16)};
}

GridFormat grid_format_for_precision(const QString& precision) {
    const QString p = precision.trimmed().toLower();
    if (p == QLatin1String("bf16")) return GridFormat::BF16;
    if (p == QLatin1String("fp16")) return GridFormat::FP16;
    return GridFormat::E4M3;
}

NumberGrid number_grid(GridFormat format) {
    NumberGrid g;
    g.format = format;
    g.name = grid_format_name(format);
    g.layout = float_layout(format);
    const FloatLayout& f = g.layout;
    const int steps = 1 << f.mantissa_bits;
    g.log2_values.reserve(size_t(f.max_exponent_field + 1) * size_t(steps));
    // Exponent field 0 holds the subnormals m * 2^(1 - bias - M); field e > 0 the normals
    // (1 + m / 2^M) * 2^(e - bias). Walking fields and mantissas in order gives ascending values.
    for (int e = 0; e <= f.max_exponent_field; ++e) {
        for (int m = 0; m < steps; ++m) {
            const double v = e == 0 ? std::ldexp(double(m), 1 - f.bias - f.mantissa_bits)
                                    : std::ldexp(1.0 + double(m) / steps, e - f.bias);
            if (v <= 0.0 || v > f.max_finite) continue;
            g.log2_values.push_back(std::log2(v));
        }
    }
    g.max_finite = f.max_finite;
    g.min_subnormal = std::ldexp(1.0, 1 - f.bias - f.mantissa_bits);
    g.min_normal = std::ldexp(1.0, 1 - f.bias);
    return g;
}

}  // namespace moe::views
