// Block scaling, integer quantization and error metrics (engine/quant): known scales and tile
// grids, fake_quantize against the stored codes of the bit-exact encoder, error bounds, the
// outlier comparison that motivates fine-grained scaling, and the promotion rule of the
// block-scaled GEMM. The figures printed with qInfo are the ones in docs/precision.md.
#include <QtTest>

#include <omp.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "quant/block_scaling.h"
#include "quant/element_format.h"
#include "quant/error_metrics.h"
#include "quant/int_quant.h"
#include "quant/number_formats.h"

using moe::BlockQuantSpec;
using moe::ElementFormat;
using moe::IntQuantSpec;
using moe::TileShape;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> gaussian(int64_t n, uint64_t seed, double sigma = 1.0) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i)
        v[i] = static_cast<float>(sigma * moe::random_normal(seed, 0, i));
    return v;
}

// Same bits, or both NaN (a NaN's payload and sign are not part of the contract).
bool same_value(float a, float b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b);
}

int64_t first_difference(const std::vector<float>& a, const std::vector<float>& b) {
    for (size_t i = 0; i < a.size(); ++i)
        if (!same_value(a[i], b[i])) return static_cast<int64_t>(i);
    return -1;
}

std::vector<float> fake(const std::vector<float>& x, int64_t rows, int64_t cols,
                        const BlockQuantSpec& spec, std::vector<float>* scales = nullptr,
                        moe::CastCounts* counts = nullptr) {
    std::vector<float> out(x.size());
    if (scales)
        scales->assign(static_cast<size_t>(moe::tile_grid_rows(rows, spec.tile) *
                                           moe::tile_grid_cols(cols, spec.tile)),
                       -1.0f);
    const moe::CastCounts c = moe::fake_quantize(x.data(), rows, cols, cols, spec, out.data(), cols,
                                                 scales ? scales->data() : nullptr);
    if (counts) *counts = c;
    return out;
}

BlockQuantSpec spec_of(ElementFormat format, TileShape tile, bool pow2 = false,
                       bool scaled = true) {
    BlockQuantSpec s;
    s.format = format;
    s.tile = tile;
    s.pow2_scales = pow2;
    s.scaled = scaled;
    return s;
}

// Spacing of the format's grid at magnitude v (v already divided by the scale).
double format_quantum(double v, ElementFormat format) {
    int mantissa_bits = 3, min_exponent = -6;
    if (format == ElementFormat::E5M2) mantissa_bits = 2, min_exponent = -14;
    if (format == ElementFormat::FP16) mantissa_bits = 10, min_exponent = -14;
    if (format == ElementFormat::BF16) mantissa_bits = 7, min_exponent = -126;
    const int exponent =
        v > 0 ? std::max(static_cast<int>(std::floor(std::log2(v))), min_exponent) : min_exponent;
    return std::ldexp(1.0, exponent - mantissa_bits);
}

}  // namespace

class TestQuantScaling : public QObject {
    Q_OBJECT

private slots:
    void tileGridSizes();
    void knownScales();
    void partialEdgeTilesUseOnlyTheirElements();
    void fakeQuantizeMatchesStoredCodes();
    void unscaledCastMatchesRoundToFormat();
    void elementErrorWithinHalfQuantum();
    void pow2ScalesMakeQuantizationIdempotent();
    void castCountsSaturationAndFlush();
    void nanPropagatesWithoutPoisoningItsTile();
    void inPlaceEqualsOutOfPlace();
    void resultsDoNotDependOnThreadCount();
    void invalidArgumentsThrow();

    void fineGrainedScalingBeatsPerTensorWithOutliers();
    void roundToMantissaBits();
    void promotionReducesAccumulationError();
    void gemmReferenceValidatesTiles();

    void intKnownAnswers();
    void intErrorWithinHalfScale();
    void int4PackingRoundTrips();
    void intBytesPerWeight();
    void intInvalidSpecsThrow();

    void errorMetricsKnownAnswers();
    void histogramBinPlacement();
    void tileRelErrors();

    void elementFormatNamesAndLimits();
};

void TestQuantScaling::tileGridSizes() {
    QCOMPARE(moe::tile_grid_rows(256, moe::kTile1x128), 256);
    QCOMPARE(moe::tile_grid_cols(512, moe::kTile1x128), 4);
    QCOMPARE(moe::tile_grid_rows(256, moe::kTile128x128), 2);
    QCOMPARE(moe::tile_grid_cols(512, moe::kTile128x128), 4);
    // Partial edge tiles count.
    QCOMPARE(moe::tile_grid_rows(300, moe::kTile128x128), 3);
    QCOMPARE(moe::tile_grid_cols(200, moe::kTile128x128), 2);
    QCOMPARE(moe::tile_grid_cols(129, moe::kTile1x128), 2);
    QCOMPARE(moe::tile_grid_rows(300, moe::kTile128x1), 3);
    QCOMPARE(moe::tile_grid_cols(200, moe::kTile128x1), 200);
    // 0 = the whole extent; an empty dimension has no tiles.
    QCOMPARE(moe::tile_grid_rows(300, moe::kPerTensor), 1);
    QCOMPARE(moe::tile_grid_cols(7, moe::kPerTensor), 1);
    QCOMPARE(moe::tile_grid_rows(0, moe::kTile128x128), 0);
    QCOMPARE(moe::tile_grid_cols(0, moe::kPerTensor), 0);
}

void TestQuantScaling::knownScales() {
    // Four 1x128 tiles in a 2x256 matrix with amax 448, 896, 500 and 0 (all-zero tile).
    std::vector<float> x(2 * 256, 0.0f);
    for (int c = 0; c < 128; ++c) x[c] = 0.25f * static_cast<float>(c % 7);
    x[5] = -448.0f;
    x[128 + 3] = 896.0f;
    x[256 + 100] = 500.0f;
    x[256 + 1] = -3.0f;
    std::vector<float> scales;
    fake(x, 2, 256, spec_of(ElementFormat::E4M3, moe::kTile1x128), &scales);
    QCOMPARE(scales.size(), size_t{4});
    QCOMPARE(scales[0], 1.0f);
    QCOMPARE(scales[1], 2.0f);
    QCOMPARE(scales[2], 500.0f / 448.0f);
    QCOMPARE(scales[3], 1.0f);
    fake(x, 2, 256, spec_of(ElementFormat::E4M3, moe::kTile1x128, /*pow2=*/true), &scales);
    QCOMPARE(scales[0], 1.0f);
    QCOMPARE(scales[1], 2.0f);
    QCOMPARE(scales[2], 2.0f);  // 500/448 = 1.116 -> next power of two
    QCOMPARE(scales[3], 1.0f);
    // Per tensor: one scale from the global amax; E5M2's max is 57344.
    fake(x, 2, 256, spec_of(ElementFormat::E4M3, moe::kPerTensor), &scales);
    QCOMPARE(scales.size(), size_t{1});
    QCOMPARE(scales[0], 2.0f);
    fake(x, 2, 256, spec_of(ElementFormat::E5M2, moe::kPerTensor), &scales);
    QCOMPARE(scales[0], 896.0f / 57344.0f);
    fake(x, 2, 256, spec_of(ElementFormat::E5M2, moe::kPerTensor, true), &scales);
    QCOMPARE(scales[0], 0x1p-6f);  // 896/57344 = 2^-6 exactly
    // Just above a power of two times the max rounds the pow2 scale up.
    const float above = std::nextafter(448.0f * 4.0f, kInf);
    std::vector<float> y(128, 1.0f);
    y[0] = above;
    fake(y, 1, 128, spec_of(ElementFormat::E4M3, moe::kTile1x128, true), &scales);
    QCOMPARE(scales[0], 8.0f);
    QVERIFY(448.0f * scales[0] >= above);
}

void TestQuantScaling::partialEdgeTilesUseOnlyTheirElements() {
    // 3x5 with 2x2 tiles: grid 2x3; the edge tiles are 2x1, 1x2 and 1x1.
    const std::vector<float> x = {1,  2,  3,  4,  5,   //
                                  6,  7,  8,  9,  10,  //
                                  11, 12, 13, 14, 15};
    std::vector<float> scales;
    fake(x, 3, 5, spec_of(ElementFormat::E4M3, TileShape{2, 2}), &scales);
    const float expected_amax[] = {7, 9, 10, 12, 14, 15};
    QCOMPARE(scales.size(), size_t{6});
    for (int i = 0; i < 6; ++i) QCOMPARE(scales[i], expected_amax[i] / 448.0f);
    // 128x1 tiles: one scale per column per 128-row band.
    std::vector<float> tall(130 * 3);
    for (int r = 0; r < 130; ++r)
        for (int c = 0; c < 3; ++c)
            tall[r * 3 + c] = static_cast<float>((c + 1) * (r < 128 ? r : 1000 + r));
    fake(tall, 130, 3, spec_of(ElementFormat::E4M3, moe::kTile128x1), &scales);
    QCOMPARE(scales.size(), size_t{6});
    for (int c = 0; c < 3; ++c) {
        QCOMPARE(scales[c], static_cast<float>((c + 1) * 127) / 448.0f);
        QCOMPARE(scales[3 + c], static_cast<float>((c + 1) * 1129) / 448.0f);
    }
}

void TestQuantScaling::fakeQuantizeMatchesStoredCodes() {
    // Magnitudes over many binades, exact zeros, both signs, subnormal-range values after
    // scaling, and non-finite elements: fake_quantize (value-grid rounding) against
    // dequantize_blocks(quantize_blocks) (the bit-exact encoder), bit for bit.
    const int64_t rows = 200, cols = 300;
    std::vector<float> x(rows * cols);
    for (int64_t i = 0; i < rows * cols; ++i) {
        const double u = moe::random_uniform(7, 1, i);
        x[i] = static_cast<float>(moe::random_normal(7, 0, i) * std::pow(2.0, 40.0 * u - 20.0));
        if (i % 97 == 0) x[i] = 0.0f;
        if (i % 101 == 0) x[i] = -0.0f;
    }
    x[1234] = kNaN;
    x[4321] = kInf;
    x[5555] = -kInf;
    for (ElementFormat format : {ElementFormat::E4M3, ElementFormat::E5M2})
        for (TileShape tile : {moe::kTile1x128, moe::kTile128x128, moe::kTile128x1, moe::kPerTensor,
                               TileShape{3, 7}})
            for (bool pow2 : {false, true})
                for (bool scaled : {true, false}) {
                    const BlockQuantSpec spec = spec_of(format, tile, pow2, scaled);
                    std::vector<float> scales;
                    const std::vector<float> fq = fake(x, rows, cols, spec, &scales);
                    const moe::BlockQuantized q =
                        moe::quantize_blocks(x.data(), rows, cols, cols, spec);
                    std::vector<float> dq(x.size());
                    moe::dequantize_blocks(q, dq.data(), cols);
                    const int64_t diff = first_difference(fq, dq);
                    if (diff >= 0)
                        qWarning(
                            "%s tile %lldx%lld pow2 %d scaled %d: element %lld x=%g fake=%g "
                            "stored=%g",
                            moe::format_name(format), static_cast<long long>(tile.rows),
                            static_cast<long long>(tile.cols), pow2, scaled,
                            static_cast<long long>(diff), x[diff], fq[diff], dq[diff]);
                    QCOMPARE(diff, int64_t{-1});
                    QVERIFY(scales == q.scales);
                }
}

void TestQuantScaling::unscaledCastMatchesRoundToFormat() {
    // Every 4099th float bit pattern (~1M values over all binades, subnormals, Inf and NaN) cast
    // without scales equals round_to_format, the encoder's cast, for every format.
    std::vector<float> x;
    for (uint64_t bits = 0; bits <= 0xFFFFFFFFull; bits += 4099)
        x.push_back(std::bit_cast<float>(static_cast<uint32_t>(bits)));
    // Every FP16 midpoint region and the E4M3 boundary values too.
    for (float v : {464.0f, 464.0001f, 463.999f, 480.0f, 65519.0f, 65520.0f, 61440.0f, 0x1p-10f,
                    0x1p-25f, 0x1.8p-25f, 0x1p-17f, 0x1.0p-134f})
        x.push_back(v), x.push_back(-v);
    const int64_t n = static_cast<int64_t>(x.size());
    for (ElementFormat format : {ElementFormat::E4M3, ElementFormat::E5M2, ElementFormat::FP16,
                                 ElementFormat::BF16, ElementFormat::FP32}) {
        const std::vector<float> out =
            fake(x, 1, n, spec_of(format, moe::kPerTensor, false, false));
        for (int64_t i = 0; i < n; ++i) {
            const float expected = moe::round_to_format(x[i], format);
            if (!same_value(out[i], expected))
                QFAIL(qPrintable(QString("%1: x=%2 cast=%3 round_to_format=%4")
                                     .arg(moe::format_name(format))
                                     .arg(double(x[i]), 0, 'g', 9)
                                     .arg(double(out[i]), 0, 'g', 9)
                                     .arg(double(expected), 0, 'g', 9)));
        }
    }
}

void TestQuantScaling::elementErrorWithinHalfQuantum() {
    const int64_t rows = 256, cols = 384;
    std::vector<float> x = gaussian(rows * cols, 11, 3.0);
    for (int64_t i = 0; i < rows * cols; i += 1009) x[i] *= 1000.0f;  // outliers in some tiles
    for (ElementFormat format : {ElementFormat::E4M3, ElementFormat::E5M2, ElementFormat::FP16})
        for (TileShape tile :
             {moe::kTile1x128, moe::kTile128x128, moe::kTile128x1, moe::kPerTensor})
            for (bool pow2 : {false, true}) {
                const BlockQuantSpec spec = spec_of(format, tile, pow2);
                std::vector<float> scales;
                const std::vector<float> xq = fake(x, rows, cols, spec, &scales);
                const int64_t gc = moe::tile_grid_cols(cols, tile);
                const int64_t th = tile.rows ? tile.rows : rows, tw = tile.cols ? tile.cols : cols;
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t c = 0; c < cols; ++c) {
                        const double s = scales[(r / th) * gc + c / tw];
                        const double v = x[r * cols + c];
                        // Half the quantum at |v/s| times s, plus the float rounding of v/s
                        // and of the final product.
                        const double bound = 0.5 * format_quantum(std::fabs(v / s), format) * s +
                                             std::fabs(v) * 1e-6;
                        const double err = std::fabs(static_cast<double>(xq[r * cols + c]) - v);
                        if (err > bound)
                            QFAIL(qPrintable(QString("%1 at (%2,%3): x=%4 xq=%5 scale=%6")
                                                 .arg(moe::format_name(format))
                                                 .arg(r)
                                                 .arg(c)
                                                 .arg(v)
                                                 .arg(double(xq[r * cols + c]))
                                                 .arg(s)));
                    }
            }
}

void TestQuantScaling::pow2ScalesMakeQuantizationIdempotent() {
    const int64_t rows = 256, cols = 256;
    std::vector<float> x = gaussian(rows * cols, 12);
    x[77] = 3000.0f;
    for (ElementFormat format : {ElementFormat::E4M3, ElementFormat::E5M2})
        for (TileShape tile :
             {moe::kTile1x128, moe::kTile128x128, moe::kTile128x1, moe::kPerTensor}) {
            const BlockQuantSpec spec = spec_of(format, tile, true);
            const std::vector<float> once = fake(x, rows, cols, spec);
            const std::vector<float> twice = fake(once, rows, cols, spec);
            QCOMPARE(first_difference(once, twice), int64_t{-1});
            QVERIFY(first_difference(once, x) >= 0);  // it did quantize
        }
}

void TestQuantScaling::castCountsSaturationAndFlush() {
    // Unscaled E4M3 saturates: 1000, -1e6 and 465 round past 448 (464 ties down to 448);
    // 1e-5 is below half the smallest subnormal (2^-10) and flushes. Inf is clamped but, not
    // being a finite value the cast pushed out of range, is not counted.
    const std::vector<float> e4m3_in = {1000.0f, -1e6f, 448.0f, 465.0f, 464.0f,
                                        1e-5f,   0.0f,  kInf,   1.0f};
    moe::CastCounts counts;
    std::vector<float> out =
        fake(e4m3_in, 1, 9, spec_of(ElementFormat::E4M3, moe::kPerTensor, false, false), nullptr,
             &counts);
    QCOMPARE(counts.saturated, int64_t{3});
    QCOMPARE(counts.flushed_to_zero, int64_t{1});
    QCOMPARE(out[0], 448.0f);
    QCOMPARE(out[1], -448.0f);
    QCOMPARE(out[4], 448.0f);
    QCOMPARE(out[5], 0.0f);
    QCOMPARE(out[7], 448.0f);
    // Unscaled FP16 overflows to Inf like the hardware cast; that counts as saturated too.
    const std::vector<float> fp16_in = {1e5f, 65519.0f, 65520.0f, -7e4f, 1e-8f, 3e-8f, 1.0f};
    out = fake(fp16_in, 1, 7, spec_of(ElementFormat::FP16, moe::kPerTensor, false, false), nullptr,
               &counts);
    QCOMPARE(out[0], kInf);
    QCOMPARE(out[1], 65504.0f);
    QCOMPARE(out[2], kInf);
    QCOMPARE(out[3], -kInf);
    QCOMPARE(out[4], 0.0f);
    QCOMPARE(out[5], 0x1p-24f);  // 3e-8 is just above half of 2^-24
    QCOMPARE(counts.saturated, int64_t{3});
    QCOMPARE(counts.flushed_to_zero, int64_t{1});
    // Scaled: a scale never saturates, but small elements next to a large one flush. amax 1e4
    // gives scale 22.3; 1e-3 / 22.3 = 4.5e-5 is below 2^-10, 0.03 / 22.3 = 1.3e-3 is not.
    std::vector<float> tile(128, 0.0f);
    tile[0] = 1e4f;
    tile[1] = 1e-3f;
    tile[2] = -2e-3f;
    tile[3] = 0.03f;
    out = fake(tile, 1, 128, spec_of(ElementFormat::E4M3, moe::kTile1x128), nullptr, &counts);
    QCOMPARE(counts.saturated, int64_t{0});
    QCOMPARE(counts.flushed_to_zero, int64_t{2});
    QCOMPARE(out[0], 1e4f / 448.0f * 448.0f);
    QVERIFY(out[3] != 0.0f);
    QVERIFY(std::signbit(out[2]));  // flushed to -0
}

void TestQuantScaling::nanPropagatesWithoutPoisoningItsTile() {
    std::vector<float> x(256);
    for (int i = 0; i < 256; ++i) x[i] = static_cast<float>(i % 13) - 6.0f;
    x[3] = kNaN;
    x[130] = kInf;
    std::vector<float> scales;
    moe::CastCounts counts;
    const std::vector<float> out =
        fake(x, 1, 256, spec_of(ElementFormat::E4M3, moe::kTile1x128), &scales, &counts);
    QVERIFY(std::isnan(out[3]));
    QCOMPARE(scales[0], 6.0f / 448.0f);  // the finite amax
    QCOMPARE(scales[1], 6.0f / 448.0f);
    QCOMPARE(out[130], 448.0f * scales[1]);  // Inf saturates
    for (int i = 0; i < 256; ++i)
        if (i != 3 && i != 130) QVERIFY(std::fabs(out[i] - x[i]) <= 0.0625f * std::fabs(x[i]));
    QCOMPARE(counts.saturated, int64_t{0});
}

void TestQuantScaling::inPlaceEqualsOutOfPlace() {
    const int64_t rows = 300, cols = 260, ld = 270;
    std::vector<float> strided(rows * ld, 99.0f);
    const std::vector<float> x = gaussian(rows * cols, 13);
    for (int64_t r = 0; r < rows; ++r)
        std::copy(x.begin() + r * cols, x.begin() + (r + 1) * cols, strided.begin() + r * ld);
    for (TileShape tile : {moe::kTile1x128, moe::kTile128x128, moe::kPerTensor}) {
        const BlockQuantSpec spec = spec_of(ElementFormat::E4M3, tile);
        const std::vector<float> expected = fake(x, rows, cols, spec);
        std::vector<float> in_place = strided;
        moe::fake_quantize(in_place.data(), rows, cols, ld, spec, in_place.data(), ld);
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t c = 0; c < cols; ++c)
                QVERIFY(same_value(in_place[r * ld + c], expected[r * cols + c]));
            for (int64_t c = cols; c < ld; ++c)
                QCOMPARE(in_place[r * ld + c], 99.0f);  // padding untouched
        }
    }
}

void TestQuantScaling::resultsDoNotDependOnThreadCount() {
    // Large enough to run parallel; the per-tensor and 128x128 shapes here take the path that
    // splits a band's rows between threads.
    const int64_t rows = 300, cols = 1000;
    std::vector<float> x = gaussian(rows * cols, 14);
    x[rows * cols / 2] = 5000.0f;
    const int saved = omp_get_max_threads();
    for (TileShape tile : {moe::kTile1x128, moe::kTile128x128, moe::kTile128x1, moe::kPerTensor}) {
        const BlockQuantSpec spec = spec_of(ElementFormat::E4M3, tile);
        omp_set_num_threads(1);
        std::vector<float> scales_1, scales_n;
        moe::CastCounts counts_1, counts_n;
        const std::vector<float> one = fake(x, rows, cols, spec, &scales_1, &counts_1);
        for (int threads : {3, 8}) {
            omp_set_num_threads(threads);
            const std::vector<float> many = fake(x, rows, cols, spec, &scales_n, &counts_n);
            QCOMPARE(first_difference(one, many), int64_t{-1});
            QVERIFY(scales_1 == scales_n);
            QCOMPARE(counts_n.flushed_to_zero, counts_1.flushed_to_zero);
        }
    }
    omp_set_num_threads(saved);
}

void TestQuantScaling::invalidArgumentsThrow() {
    std::vector<float> x(16, 1.0f), out(16);
    BlockQuantSpec bf16 = spec_of(ElementFormat::BF16, moe::kTile1x128);
    QVERIFY_THROWS_EXCEPTION(moe::ConfigError, moe::quantize_blocks(x.data(), 4, 4, 4, bf16));
    QVERIFY_THROWS_EXCEPTION(
        moe::ConfigError,
        moe::fake_quantize(x.data(), 4, 4, 3, spec_of(ElementFormat::E4M3, moe::kTile1x128),
                           out.data(), 4));
    QVERIFY_THROWS_EXCEPTION(
        moe::ConfigError,
        moe::fake_quantize(x.data(), 4, 4, 4, spec_of(ElementFormat::E4M3, TileShape{-1, 4}),
                           out.data(), 4));
    try {
        moe::quantize_blocks(x.data(), 4, 4, 4, bf16);
        QFAIL("no error");
    } catch (const moe::ConfigError& e) {
        QCOMPARE(QString(e.what()),
                 QString("format: stored block quantization needs e4m3 or e5m2, got bf16"));
    }
}

// ---- fine-grained vs per-tensor scaling -------------------------------------------------------

namespace {

struct ScalingFigures {
    moe::QuantErrorStats all;   // every element
    moe::QuantErrorStats bulk;  // the elements that are not outliers
};

ScalingFigures scaling_figures(const std::vector<float>& x, const std::vector<bool>& outlier,
                               int64_t rows, int64_t cols, const BlockQuantSpec& spec) {
    moe::CastCounts counts;
    const std::vector<float> xq = fake(x, rows, cols, spec, nullptr, &counts);
    ScalingFigures f;
    f.all = moe::quant_error(x.data(), xq.data(), rows * cols, counts.saturated,
                             counts.flushed_to_zero);
    std::vector<float> bx, bq;
    for (size_t i = 0; i < x.size(); ++i)
        if (!outlier[i]) bx.push_back(x[i]), bq.push_back(xq[i]);
    f.bulk = moe::quant_error(bx.data(), bq.data(), static_cast<int64_t>(bx.size()));
    return f;
}

}  // namespace

namespace {

// A 256x512 N(0, 1) activation-like matrix with `count` outliers of magnitude in
// [magnitude, 10 * magnitude), random signs and places (count 0: none).
std::vector<float> with_outliers(const std::vector<float>& clean, int count, double magnitude,
                                 std::vector<bool>* outlier) {
    std::vector<float> x = clean;
    outlier->assign(x.size(), false);
    for (int i = 0; i < count; ++i) {
        const int64_t at = static_cast<int64_t>(moe::random_bits(21, 1, i) % x.size());
        const double m = magnitude * std::pow(10.0, moe::random_uniform(21, 2, i));
        x[at] = static_cast<float>(moe::random_uniform(21, 3, i) < 0.5 ? -m : m);
        (*outlier)[at] = true;
    }
    return x;
}

}  // namespace

void TestQuantScaling::fineGrainedScalingBeatsPerTensorWithOutliers() {
    // E4M3 with one scale per tensor, per 1x128 tile and per 128x128 block, on a 256x512 N(0, 1)
    // matrix with 16 outliers. Two figures: the whole tensor (dominated by the outliers' own
    // energy) and the non-outlier elements (the bulk, which pays for a scale set by an outlier).
    const int64_t rows = 256, cols = 512, n = rows * cols;
    const std::vector<float> clean = gaussian(n, 21);
    struct Scheme {
        const char* name;
        TileShape tile;
    };
    const Scheme schemes[] = {{"per-tensor", moe::kPerTensor},
                              {"1x128", moe::kTile1x128},
                              {"128x128", moe::kTile128x128}};
    const double magnitudes[] = {0, 1e3, 1e5};  // outliers in [m, 10m); 0: none
    ScalingFigures f[3][3];                     // [magnitude][scheme]
    qInfo(
        "E4M3, 256x512 N(0,1), 16 outliers | scaling    | rel. Frobenius error | SNR (dB) | "
        "non-outlier rel. error | non-outlier SNR (dB) | flushed to 0");
    for (int m = 0; m < 3; ++m) {
        std::vector<bool> outlier;
        const std::vector<float> x =
            with_outliers(clean, magnitudes[m] > 0 ? 16 : 0, magnitudes[m], &outlier);
        for (int s = 0; s < 3; ++s) {
            f[m][s] = scaling_figures(x, outlier, rows, cols,
                                      spec_of(ElementFormat::E4M3, schemes[s].tile));
            const QString label = magnitudes[m] > 0 ? QString("outliers %1..%2")
                                                          .arg(magnitudes[m], 0, 'g', 1)
                                                          .arg(10 * magnitudes[m], 0, 'g', 1)
                                                    : QString("no outliers");
            qInfo("%-33s | %-10s | %20.5f | %8.2f | %22.5f | %20.2f | %.3f%%", qPrintable(label),
                  schemes[s].name, f[m][s].all.rel_fro_error, f[m][s].all.snr_db,
                  f[m][s].bulk.rel_fro_error, f[m][s].bulk.snr_db,
                  100.0 * f[m][s].all.frac_flushed);
        }
    }
    // Without outliers every scheme sees the same distribution: errors within 10%.
    for (int s = 1; s < 3; ++s)
        QVERIFY(std::fabs(f[0][s].all.rel_fro_error / f[0][0].all.rel_fro_error - 1.0) < 0.10);
    // Outliers 1e3..1e4: whole-tensor error several times smaller with fine-grained scales (an
    // outlier that sets its own tile's scale is cast exactly; per tensor only the largest one
    // is). E4M3's 2^-9..448 range still holds the bulk next to a 1e4 outlier, so the bulk error
    // barely moves with the per-tensor scale (it does flush ~1.7% of the elements to zero).
    QVERIFY(f[1][0].all.rel_fro_error > 10.0 * f[1][1].all.rel_fro_error);
    QVERIFY(f[1][0].all.rel_fro_error > 1.5 * f[1][2].all.rel_fro_error);
    QVERIFY(f[1][0].all.snr_db < f[1][1].all.snr_db - 20.0);
    QVERIFY(f[1][0].all.frac_flushed > 10.0 * f[1][1].all.frac_flushed);
    // Outliers 1e5..1e6: the per-tensor scale pushes the bulk into E4M3's subnormals and below
    // (97% flushed). 1x128 tiles confine the damage to the 16 tiles with an outlier: several
    // times less error, whole tensor and bulk. A 128x128 block holds 16384 elements and this
    // matrix only has 8 blocks, so 16 outliers reach most of them: better than per tensor, far
    // from 1x128 (that shape is meant for weights, where outliers are rare).
    QVERIFY(f[2][0].bulk.rel_fro_error > 3.0 * f[2][1].bulk.rel_fro_error);
    QVERIFY(f[2][0].bulk.snr_db < f[2][1].bulk.snr_db - 10.0);
    QVERIFY(f[2][0].all.rel_fro_error > 3.0 * f[2][1].all.rel_fro_error);
    QVERIFY(f[2][1].bulk.rel_fro_error < 0.1);
    QVERIFY(f[2][0].bulk.rel_fro_error > f[2][2].bulk.rel_fro_error);
    QVERIFY(f[2][0].all.frac_flushed > f[2][2].all.frac_flushed + 0.2);
}

// ---- promotion in the block-scaled GEMM -------------------------------------------------------

void TestQuantScaling::roundToMantissaBits() {
    QCOMPARE(moe::round_to_mantissa_bits(1.0f + 0x1p-13f, 13), 1.0f + 0x1p-13f);
    QCOMPARE(moe::round_to_mantissa_bits(1.0f + 0x1p-14f, 13), 1.0f);  // tie to even
    QCOMPARE(moe::round_to_mantissa_bits(1.0f + 3 * 0x1p-14f, 13),
             1.0f + 0x1p-12f);  // tie up to even
    QCOMPARE(moe::round_to_mantissa_bits(-(1.0f + 0x1.8p-14f), 13), -(1.0f + 0x1p-13f));
    QCOMPARE(moe::round_to_mantissa_bits(2.0f - 0x1p-20f, 13), 2.0f);  // carry into exponent
    QCOMPARE(moe::round_to_mantissa_bits(0.1f, 23), 0.1f);
    QCOMPARE(moe::round_to_mantissa_bits(0.1f, 7), moe::round_to_format(0.1f, ElementFormat::BF16));
    QVERIFY(std::isnan(moe::round_to_mantissa_bits(kNaN, 10)));
    QCOMPARE(moe::round_to_mantissa_bits(-kInf, 10), -kInf);
    // Agrees with BF16 (7 bits) on random normal floats.
    for (int i = 0; i < 10000; ++i) {
        const float v =
            static_cast<float>(moe::random_normal(31, 0, i) *
                               std::pow(2.0, 60.0 * moe::random_uniform(31, 1, i) - 30.0));
        QCOMPARE(moe::round_to_mantissa_bits(v, 7), moe::round_to_format(v, ElementFormat::BF16));
        if (std::fabs(v) >= 0x1p-14f && std::fabs(v) < 65504.0f)  // FP16's normal range
            QCOMPARE(moe::round_to_mantissa_bits(v, 10),
                     moe::round_to_format(v, ElementFormat::FP16));
    }
    QVERIFY_THROWS_EXCEPTION(moe::ConfigError, moe::round_to_mantissa_bits(1.0f, 0));
    QVERIFY_THROWS_EXCEPTION(moe::ConfigError, moe::round_to_mantissa_bits(1.0f, 24));
}

namespace {

double rel_fro(const std::vector<float>& c, const std::vector<double>& ref) {
    double err = 0, sig = 0;
    for (size_t i = 0; i < c.size(); ++i)
        err += (c[i] - ref[i]) * (c[i] - ref[i]), sig += ref[i] * ref[i];
    return std::sqrt(err / sig);
}

}  // namespace

void TestQuantScaling::promotionReducesAccumulationError() {
    // K = 4096: activations A [M, K] with 1x128 tiles, weights B [N, K] with 128x128 blocks,
    // E4M3. The reference is the double-precision GEMM of the same dequantized operands, so the
    // figures are the accumulation error alone.
    const int64_t M = 32, N = 64, K = 4096;
    struct Data {
        const char* name;
        bool positive;
    };
    qInfo(
        "E4M3 GEMM, M=%lld N=%lld K=%lld      | accumulator bits | promote every | rel. error vs "
        "double",
        static_cast<long long>(M), static_cast<long long>(N), static_cast<long long>(K));
    for (const Data& data : {Data{"N(0,1) operands", false}, Data{"|N(0,1)| operands", true}}) {
        std::vector<float> A = gaussian(M * K, 41), B = gaussian(N * K, 42, 0.02);
        if (data.positive)
            for (float* v : {A.data(), B.data()})
                for (int64_t i = 0; i < (v == A.data() ? M * K : N * K); ++i)
                    v[i] = std::fabs(v[i]);
        const BlockQuantSpec a_spec = spec_of(ElementFormat::E4M3, moe::kTile1x128);
        const BlockQuantSpec b_spec = spec_of(ElementFormat::E4M3, moe::kTile128x128);
        const std::vector<float> Aq = fake(A, M, K, a_spec), Bq = fake(B, N, K, b_spec);
        std::vector<double> ref(M * N, 0.0);
        std::vector<float> fp32(M * N, 0.0f);
        for (int64_t m = 0; m < M; ++m)
            for (int64_t n = 0; n < N; ++n) {
                double acc = 0;
                float acc32 = 0;
                for (int64_t k = 0; k < K; ++k) {
                    acc += static_cast<double>(Aq[m * K + k]) * Bq[n * K + k];
                    acc32 += Aq[m * K + k] * Bq[n * K + k];
                }
                ref[m * N + n] = acc;
                fp32[m * N + n] = acc32;
            }
        double err[2][2];  // [bits 13, 23][promote 128, 0]
        const int bits[] = {13, 23}, every[] = {128, 0};
        for (int b = 0; b < 2; ++b)
            for (int p = 0; p < 2; ++p) {
                std::vector<float> C(M * N);
                moe::gemm_block_scaled_reference(A.data(), B.data(), M, N, K, a_spec, b_spec,
                                                 every[p], bits[b], C.data());
                err[b][p] = rel_fro(C, ref);
                qInfo("%-30s | %16d | %13s | %.3e", data.name, bits[b],
                      every[p] ? "128" : "never (0)", err[b][p]);
            }
        qInfo("%-30s | %16s | %13s | %.3e", data.name, "fp32 loop", "-", rel_fro(fp32, ref));
        // A 13-bit accumulator over 4096 products: promotion every 128 cuts the error many times.
        QVERIFY(err[0][1] > 5.0 * err[0][0]);
        QVERIFY(err[0][1] > 1e-4);
        // fp32 accumulation: both close to the exact GEMM of the dequantized operands.
        QVERIFY(err[1][0] < 1e-5);
        QVERIFY(err[1][1] < 1e-5);
    }
}

void TestQuantScaling::gemmReferenceValidatesTiles() {
    // Small known answer: per-tensor scales, K = 4, exact values: C = A B^T.
    const std::vector<float> A = {1, 2, 3, 4, -1, 0.5f, 0, 2};
    const std::vector<float> B = {1, 1, 1, 1, 2, 0, -2, 0.25f, 0, 0, 0, 0};
    std::vector<float> C(6);
    const BlockQuantSpec per_tensor = spec_of(ElementFormat::E4M3, moe::kPerTensor, true);
    moe::gemm_block_scaled_reference(A.data(), B.data(), 2, 3, 4, per_tensor, per_tensor, 2, 13,
                                     C.data());
    const float expected[] = {10, -3, 0, 1.5f, -1.5f, 0};
    for (int i = 0; i < 6; ++i) QCOMPARE(C[i], expected[i]);
    // A tile along K of 128 cannot promote every 96 (one chunk would straddle two scales).
    std::vector<float> big(4 * 256, 1.0f), out(16);
    QVERIFY_THROWS_EXCEPTION(moe::ConfigError, moe::gemm_block_scaled_reference(
                                                   big.data(), big.data(), 4, 4, 256,
                                                   spec_of(ElementFormat::E4M3, moe::kTile1x128),
                                                   per_tensor, 96, 13, out.data()));
    QVERIFY_THROWS_EXCEPTION(moe::ConfigError, moe::gemm_block_scaled_reference(
                                                   big.data(), big.data(), 4, 4, 256, per_tensor,
                                                   per_tensor, 128, 24, out.data()));
    // Promoting every 64 inside 128-wide tiles is fine, and exact here.
    moe::gemm_block_scaled_reference(
        big.data(), big.data(), 4, 4, 256, spec_of(ElementFormat::E4M3, moe::kTile1x128),
        spec_of(ElementFormat::E4M3, moe::kTile128x128), 64, 13, out.data());
    for (float v : out) QCOMPARE(v, 256.0f);
}

// ---- integer quantization ---------------------------------------------------------------------

void TestQuantScaling::intKnownAnswers() {
    {  // INT8 symmetric per channel: scale = amax / 127, ties to even.
        const std::vector<float> w = {1, -2, 0.5f, 127, -254, 2, 3, 1};
        const moe::IntQuantized q = moe::quantize_int(w.data(), 2, 4, IntQuantSpec{8, 0, true});
        QCOMPARE(q.scales, (std::vector<float>{1.0f, 2.0f}));
        QCOMPARE(q.data, (std::vector<uint8_t>{1, 0xFE, 0, 127, 0x81, 1, 2, 0}));
        QVERIFY(q.zeros.empty());
        std::vector<float> back(8);
        moe::dequantize_int(q, back.data());
        QCOMPARE(back, (std::vector<float>{1, -2, 0, 127, -254, 2, 4, 0}));
    }
    {  // INT4 symmetric, groups of 2: scales 7/7 and 1/7; -3.5 ties to -4; packed low nibble first.
        const std::vector<float> w = {7, -3.5f, 1, 0.25f};
        const moe::IntQuantized q = moe::quantize_int(w.data(), 1, 4, IntQuantSpec{4, 2, true});
        QCOMPARE(q.groups_per_row(), int64_t{2});
        QCOMPARE(q.scales, (std::vector<float>{1.0f, 1.0f / 7.0f}));
        QCOMPARE(q.data, (std::vector<uint8_t>{0xC7, 0x27}));
        std::vector<float> back(4);
        moe::dequantize_int(q, back.data());
        QCOMPARE(back[0], 7.0f);
        QCOMPARE(back[1], -4.0f);
        QCOMPARE(back[2], 1.0f);
        QCOMPARE(back[3], 2.0f / 7.0f);
    }
    {  // INT4 asymmetric per row: [-1, 3.5] -> scale 0.3, zero 3; an all-positive row's range
       // starts at 0 (zero point 0).
        const std::vector<float> w = {-1, 2, 0.5f, 3.5f, 1, 3, 0, 3};
        const moe::IntQuantized q = moe::quantize_int(w.data(), 2, 4, IntQuantSpec{4, 0, false});
        QCOMPARE(q.scales[0], 4.5f / 15.0f);
        QCOMPARE(q.scales[1], 3.0f / 15.0f);
        QCOMPARE(q.zeros, (std::vector<uint8_t>{3, 0}));
        QCOMPARE(moe::unpack_int4(q.data, 8), (std::vector<uint8_t>{0, 10, 5, 15, 5, 15, 0, 15}));
        std::vector<float> back(8);
        moe::dequantize_int(q, back.data());
        const float expected[] = {-0.9f, 2.1f, 0.6f, 3.6f, 1, 3, 0, 3};
        for (int i = 0; i < 8; ++i)
            QVERIFY2(std::fabs(back[i] - expected[i]) < 1e-6f, qPrintable(QString::number(i)));
    }
    {  // INT8 asymmetric with an odd number of columns; INT4 rows start on a byte.
        const std::vector<float> w = {-2, 0, 1, 4, 5, 6};
        const moe::IntQuantized q8 = moe::quantize_int(w.data(), 2, 3, IntQuantSpec{8, 0, false});
        QCOMPARE(q8.zeros, (std::vector<uint8_t>{170, 0}));  // -(-2) / (3/255) = 170
        const moe::IntQuantized q4 = moe::quantize_int(w.data(), 2, 3, IntQuantSpec{4, 0, true});
        QCOMPARE(q4.data.size(), size_t{4});
        QCOMPARE(q4.data[1] >> 4, 0);
        QCOMPARE(q4.data[3] >> 4, 0);
    }
}

void TestQuantScaling::intErrorWithinHalfScale() {
    const int64_t rows = 64, cols = 256;
    std::vector<float> w = gaussian(rows * cols, 51, 0.02);
    w[5] = 0.5f;  // an outlier in one group
    for (int bits : {4, 8})
        for (int64_t group : {int64_t{0}, int64_t{32}, int64_t{128}})
            for (bool symmetric : {true, false}) {
                const IntQuantSpec spec{bits, group, symmetric};
                const moe::IntQuantized q = moe::quantize_int(w.data(), rows, cols, spec);
                std::vector<float> back(w.size()), fake_out(w.size());
                moe::dequantize_int(q, back.data());
                moe::fake_quantize_int(w.data(), rows, cols, spec, fake_out.data());
                QCOMPARE(first_difference(back, fake_out), int64_t{-1});
                const int64_t width = group ? group : cols, groups = cols / width;
                for (int64_t r = 0; r < rows; ++r)
                    for (int64_t c = 0; c < cols; ++c) {
                        const double scale = q.scales[r * groups + c / width];
                        const double err =
                            std::fabs(back[r * cols + c] - static_cast<double>(w[r * cols + c]));
                        QVERIFY(err <= 0.5 * scale * (1 + 1e-5) + 1e-9);
                    }
                // In place.
                std::vector<float> in_place = w;
                moe::fake_quantize_int(in_place.data(), rows, cols, spec, in_place.data());
                QCOMPARE(first_difference(in_place, back), int64_t{-1});
            }
}

void TestQuantScaling::int4PackingRoundTrips() {
    std::vector<uint8_t> all(256);
    for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
    const std::vector<uint8_t> nibbles = moe::unpack_int4(all, 512);
    for (int i = 0; i < 256; ++i) {
        QCOMPARE(nibbles[2 * i], static_cast<uint8_t>(i & 0x0F));
        QCOMPARE(nibbles[2 * i + 1], static_cast<uint8_t>(i >> 4));
    }
    QCOMPARE(moe::pack_int4(nibbles), all);
    // Odd count: the last high nibble is 0.
    QCOMPARE(moe::pack_int4({1, 2, 3}), (std::vector<uint8_t>{0x21, 0x03}));
    QCOMPARE(moe::unpack_int4({0x21, 0x03}, 3), (std::vector<uint8_t>{1, 2, 3}));
    QVERIFY_THROWS_EXCEPTION(moe::ConfigError, moe::unpack_int4({0x21}, 3));
}

void TestQuantScaling::intBytesPerWeight() {
    // A 256x1024 weight of N(0, 0.02): bytes per format and the error each one makes.
    const int64_t rows = 256, cols = 1024, n = rows * cols;
    const std::vector<float> w = gaussian(n, 61, 0.02);
    struct Case {
        const char* name;
        IntQuantSpec spec;
        double bits_per_weight;
    };
    const Case cases[] = {{"int8 per channel, sym", {8, 0, true}, 8.0 + 32.0 / cols},
                          {"int8 per channel, asym", {8, 0, false}, 8.0 + 40.0 / cols},
                          {"int4 per channel, sym", {4, 0, true}, 4.0 + 32.0 / cols},
                          {"int4 group 128, sym", {4, 128, true}, 4.25},
                          {"int4 group 128, asym", {4, 128, false}, 4.3125},
                          {"int4 group 32, sym", {4, 32, true}, 5.0}};
    qInfo("256x1024 N(0,0.02) weight | bytes  | bits/weight | rel. Frobenius error | SNR (dB)");
    double rel[6];
    for (int i = 0; i < 6; ++i) {
        const moe::IntQuantized q = moe::quantize_int(w.data(), rows, cols, cases[i].spec);
        std::vector<float> back(n);
        moe::dequantize_int(q, back.data());
        const moe::QuantErrorStats e = moe::quant_error(w.data(), back.data(), n);
        const double bits = 8.0 * static_cast<double>(q.bytes()) / static_cast<double>(n);
        rel[i] = e.rel_fro_error;
        qInfo("%-25s | %6lld | %11.4f | %20.5f | %8.2f", cases[i].name,
              static_cast<long long>(q.bytes()), bits, e.rel_fro_error, e.snr_db);
        QCOMPARE(bits, cases[i].bits_per_weight);
    }
    // Fewer bits, more error; smaller groups, less error.
    QVERIFY(rel[2] > 10.0 * rel[0]);
    QVERIFY(rel[3] < rel[2]);
    QVERIFY(rel[5] < rel[3]);
    QVERIFY(rel[4] < rel[3]);  // asymmetric uses all 16 levels
}

void TestQuantScaling::intInvalidSpecsThrow() {
    const std::vector<float> w(2 * 256, 1.0f);
    try {
        moe::quantize_int(w.data(), 2, 256, IntQuantSpec{5, 0, true});
        QFAIL("bits 5 accepted");
    } catch (const moe::ConfigError& e) {
        QCOMPARE(QString(e.what()), QString("bits: must be 2, 3, 4 or 8, got 5"));
        QCOMPARE(QString::fromStdString(e.field()), QString("bits"));
    }
    try {
        moe::quantize_int(w.data(), 2, 256, IntQuantSpec{4, 100, true});
        QFAIL("group 100 accepted");
    } catch (const moe::ConfigError& e) {
        QCOMPARE(QString(e.what()), QString("group_size: must divide the 256 columns, got 100"));
    }
    QVERIFY_THROWS_EXCEPTION(moe::ConfigError,
                             moe::quantize_int(w.data(), 2, 256, IntQuantSpec{8, -1, true}));
}

// ---- error metrics ----------------------------------------------------------------------------

void TestQuantScaling::errorMetricsKnownAnswers() {
    const int64_t n = 10000;
    const std::vector<float> x = gaussian(n, 71);
    for (double e : {0.1, 0.01, 0.001}) {
        std::vector<float> xq(n);
        for (int64_t i = 0; i < n; ++i) xq[i] = static_cast<float>(x[i] * (1.0 + e));
        const moe::QuantErrorStats s = moe::quant_error(x.data(), xq.data(), n, 30, 7);
        QCOMPARE(s.count, n);
        QVERIFY(std::fabs(s.rel_fro_error / e - 1.0) < 1e-4);
        QVERIFY(std::fabs(s.snr_db - (-20.0 * std::log10(e))) < 1e-3);
        QCOMPARE(s.frac_saturated, 0.003);
        QCOMPARE(s.frac_flushed, 0.0007);
    }
    std::vector<float> a = {1, -4, 2}, b = {1, -3.5f, 2.25f};
    moe::QuantErrorStats s = moe::quant_error(a.data(), b.data(), 3);
    QCOMPARE(s.amax, 4.0f);
    QCOMPARE(s.max_abs_error, 0.5);
    QCOMPARE(s.rel_fro_error, std::sqrt(0.3125 / 21.0));
    // Zeros: exact copy is +300 dB; an error on an all-zero tensor is -300 dB with rel error 0.
    const std::vector<float> zeros(5, 0.0f), ones(5, 1.0f);
    s = moe::quant_error(x.data(), x.data(), n);
    QCOMPARE(s.rel_fro_error, 0.0);
    QCOMPARE(s.snr_db, 300.0);
    s = moe::quant_error(zeros.data(), zeros.data(), 5);
    QCOMPARE(s.rel_fro_error, 0.0);
    QCOMPARE(s.snr_db, 300.0);
    s = moe::quant_error(zeros.data(), ones.data(), 5);
    QCOMPARE(s.rel_fro_error, 0.0);
    QCOMPARE(s.snr_db, -300.0);
    QCOMPARE(s.max_abs_error, 1.0);
    s = moe::quant_error(nullptr, nullptr, 0);
    QCOMPARE(s.count, int64_t{0});
}

void TestQuantScaling::histogramBinPlacement() {
    moe::Log2Histogram h;
    QCOMPARE(h.counts.size(), size_t{160});
    QCOMPARE(moe::Log2Histogram::bin_lo(96), 0.0);  // bins are a quarter binade from 2^-24
    const std::vector<float> v = {1.0f,     2.0f,     0.5f,    -1.0f,
                                  0x1p-24f, 0x1p-30f, 0x1p20f, 65536.0f,
                                  0.0f,     -0.0f,    1.5f,    std::nextafter(1.0f, 0.0f),
                                  kNaN,     kInf,     0x1p15f};
    moe::add_to_histogram(h, v.data(), static_cast<int64_t>(v.size()));
    QCOMPARE(h.zeros, 2u);
    QCOMPARE(h.counts[96], 2u);   // 1 and -1: log2 = 0, (0 + 24) * 4
    QCOMPARE(h.counts[100], 1u);  // 2
    QCOMPARE(h.counts[92], 1u);   // 0.5
    QCOMPARE(h.counts[98], 1u);   // 1.5: log2 = 0.585 -> bin 96 + 2
    QCOMPARE(h.counts[95], 1u);   // just below 1
    QCOMPARE(h.counts[0], 2u);    // 2^-24 (the first bin) and 2^-30 (below the range)
    QCOMPARE(h.counts[156], 1u);  // 2^15
    QCOMPARE(h.counts[159], 3u);  // 2^16 (the upper end), 2^20, Inf
    uint32_t total = 0;
    for (uint32_t c : h.counts) total += c;
    QCOMPARE(total, 12u);  // NaN is not placed
    // The divisor: 8 / 2 lands where 4 does.
    moe::Log2Histogram scaled;
    const float eight = 8.0f;
    moe::add_to_histogram(scaled, &eight, 1, 2.0f);
    QCOMPARE(scaled.counts[104], 1u);
}

void TestQuantScaling::tileRelErrors() {
    // 3x5 in 2x2 tiles (grid 2x3): tile t gets relative error 0.01 * (t + 1), tile 4 is all zero.
    const int64_t rows = 3, cols = 5, ld = 6;
    std::vector<float> x(rows * ld, 0.0f), xq(rows * ld, 0.0f);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
            const int64_t tile = (r / 2) * 3 + c / 2;
            x[r * ld + c] = tile == 4 ? 0.0f : static_cast<float>(r + c + 1);
            xq[r * ld + c] = static_cast<float>(x[r * ld + c] * (1.0 + 0.01 * (tile + 1)));
        }
    const std::vector<float> rel = moe::tile_rel_errors(x.data(), xq.data(), rows, cols, ld, 2, 2);
    QCOMPARE(rel.size(), size_t{6});
    for (int t = 0; t < 6; ++t) {
        const double expected = t == 4 ? 0.0 : 0.01 * (t + 1);
        QVERIFY2(std::fabs(rel[t] - expected) < 1e-6,
                 qPrintable(QString("tile %1: %2").arg(t).arg(rel[t])));
    }
    // Whole-extent tiles: one per row / one overall.
    QCOMPARE(moe::tile_rel_errors(x.data(), xq.data(), rows, cols, ld, 1, 0).size(), size_t{3});
    const std::vector<float> whole =
        moe::tile_rel_errors(x.data(), xq.data(), rows, cols, ld, 0, 0);
    QCOMPARE(whole.size(), size_t{1});
    QVERIFY(whole[0] > 0.01f && whole[0] < 0.06f);
    QVERIFY_THROWS_EXCEPTION(moe::ConfigError,
                             moe::tile_rel_errors(x.data(), xq.data(), rows, cols, 4, 2, 2));
}

// ---- element formats --------------------------------------------------------------------------

void TestQuantScaling::elementFormatNamesAndLimits() {
    for (ElementFormat f : {ElementFormat::FP32, ElementFormat::BF16, ElementFormat::FP16,
                            ElementFormat::E4M3, ElementFormat::E5M2})
        QCOMPARE(moe::parse_format(moe::format_name(f), "format"), f);
    QCOMPARE(QString(moe::format_name(ElementFormat::E4M3)), QString("e4m3"));
    try {
        moe::parse_format("fp6", "precision.format");
        QFAIL("fp6 accepted");
    } catch (const moe::ConfigError& e) {
        QCOMPARE(
            QString(e.what()),
            QString("precision.format: must be one of fp32, bf16, fp16, e4m3, e5m2, got 'fp6'"));
    }
    QVERIFY_THROWS_EXCEPTION(moe::ConfigError, moe::parse_format("E4M3", "format"));
    struct Limits {
        ElementFormat format;
        float max, min_subnormal;
    };
    const Limits limits[] = {{ElementFormat::E4M3, 448.0f, 0x1p-9f},
                             {ElementFormat::E5M2, 57344.0f, 0x1p-16f},
                             {ElementFormat::FP16, 65504.0f, 0x1p-24f},
                             {ElementFormat::BF16, 0x1.FEp127f, 0x1p-133f},
                             {ElementFormat::FP32, std::numeric_limits<float>::max(), 0x1p-149f}};
    for (const Limits& l : limits) {
        const ElementFormat f = l.format;
        QCOMPARE(moe::format_max(f), l.max);
        QCOMPARE(moe::format_min_subnormal(f), l.min_subnormal);
        // The limits are values of the cast: max and the smallest subnormal are representable,
        // half the smallest subnormal ties to 0, three quarters of it rounds up to it.
        QCOMPARE(moe::round_to_format(l.max, f), l.max);
        QCOMPARE(moe::round_to_format(-l.min_subnormal, f), -l.min_subnormal);
        if (f != ElementFormat::FP32) {
            QCOMPARE(moe::round_to_format(0.5f * l.min_subnormal, f), 0.0f);
            QCOMPARE(moe::round_to_format(0.75f * l.min_subnormal, f), l.min_subnormal);
            // Past the max: FP8 saturates, FP16/BF16 overflow to Inf.
            const float past = l.max * 1.25f;
            const float expected =
                (f == ElementFormat::E4M3 || f == ElementFormat::E5M2) ? l.max : kInf;
            QCOMPARE(moe::round_to_format(past, f), expected);
            QCOMPARE(moe::round_to_format(-past, f), -expected);
        }
    }
    QCOMPARE(moe::round_to_format(0.1f, ElementFormat::FP32), 0.1f);
    QCOMPARE(moe::round_to_format(0.1f, ElementFormat::BF16), moe::bf16_decode(0x3DCD));
    QCOMPARE(moe::round_to_format(0.1f, ElementFormat::E4M3), 0.1015625f);
    QVERIFY(std::isnan(moe::round_to_format(kNaN, ElementFormat::E4M3)));
}

QTEST_APPLESS_MAIN(TestQuantScaling)
#include "tst_quant_scaling.moc"
