#pragma once
// The representable positive magnitudes of the low-precision element formats, derived from
// their bit layouts, for drawing a format's grid over a histogram of log2 magnitudes. Plain
// numbers computed here rather than taken from the engine, so views stay free of engine types.
#include <QString>
#include <QStringList>

#include <vector>

namespace moe::views {

enum class GridFormat { E4M3, E5M2, FP16, BF16 };

// A binary floating-point layout: 1 sign bit, exponent_bits, mantissa_bits, with subnormals.
struct FloatLayout {
    int exponent_bits = 0;
    int mantissa_bits = 0;
    int bias = 0;
    // The largest exponent field that holds finite numbers (IEEE formats reserve all-ones for
    // Inf/NaN; E4M3 keeps it and only the all-ones mantissa there is NaN).
    int max_exponent_field = 0;
    double max_finite = 0;  // values above are not representable (E4M3: 448, not 480)
};

struct NumberGrid {
    GridFormat format = GridFormat::E4M3;
    QString name;               // "E4M3", "E5M2", "FP16", "BF16"
    FloatLayout layout;
    double max_finite = 0;      // largest finite magnitude
    double min_normal = 0;
    double min_subnormal = 0;   // smallest positive magnitude
    std::vector<double> log2_values;  // log2 of every positive finite value, ascending

    // Values in one binade of normals: 2^mantissa_bits.
    int valuesPerBinade() const { return 1 << layout.mantissa_bits; }
    // Magnitudes below this round to zero (round to nearest even: half the smallest subnormal).
    double flushBelow() const { return min_subnormal / 2; }
};

FloatLayout float_layout(GridFormat format);
NumberGrid number_grid(GridFormat format);
QString grid_format_name(GridFormat format);
QStringList grid_format_names();  // in enum order, for a chooser
// The format the run's linear layers see for its precision: "fp8" -> E4M3 (forward; the
// gradients use E5M2), "bf16" -> BF16, "fp16" -> FP16; anything else -> E4M3.
GridFormat grid_format_for_precision(const QString& precision);

}  // namespace moe::views
