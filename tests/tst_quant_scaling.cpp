// Block scaling, integer quantization and error metrics (engine/quant): known scales and tile
// grids, fake_quantize against the stored codes of the bit-exact encoder, error bounds, the
// outlier comparison that motivates fine-grained scaling, and the promotion rule of the
// block-scaled GEMM. The figures printed with qInfo are the ones in docs/precision.md.
#include <QtTest>

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
#include "quant/number_formats.h"

using moe::BlockQuantSpec;
using moe::ElementFormat;
using moe::TileShape;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> gaussian(int64_t n, uint64_t seed, double sigma = 1.0) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(sigma * moe::random_normal(seed, 0, i));
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
                                           moe::tile_grid_cols(cols, spec.tile)), -1.0f);
    const moe::CastCounts c = moe::fake_quantize(x.data(), rows, cols, cols, spec, out.data(), cols,
                                                 scales ? scales->data() : nullptr);
    if (counts) *counts = c;
    return out;
}

BlockQuantSpec spec_of(ElementFormat format, TileShape tile, bool pow2 = false, bool scaled = true) {
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
    const int exponent = v > 0 ? std::max(static_cast<int>(std::floor(std::log2(v))), min_exponent)
                               : min_exponent;
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
    void invalidArgumentsThrow();
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
    const std::vector<float> x = {1, 2, 3, 4, 5,      //
                                  6, 7, 8, 9, 10,     //
                                  11, 12, 13, 14, 15};
    std::vector<float> scales;
    fake(x, 3, 5, spec_of(ElementFormat::E4M3, TileShape{2, 2}), &scales);
    const float expected_amax[] = {7, 9, 10, 12, 14, 15};
    QCOMPARE(scales.size(), size_t{6});
    for (int i = 0; i < 6; ++i) QCOMPARE(scales[i], expected_amax[i] / 448.0f);
    // 128x1 tiles: one scale per column per 128-row band.
    std::vector<float> tall(130 * 3);
    for (int r = 0; r < 130; ++r)
        for (int c = 0; c < 3; ++c) tall[r * 3 + c] = static_cast<float>((c + 1) * (r < 128 ? r : 1000 + r));
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
                    const moe::BlockQuantized q = moe::quantize_blocks(x.data(), rows, cols, cols, spec);
                    std::vector<float> dq(x.size());
                    moe::dequantize_blocks(q, dq.data(), cols);
                    const int64_t diff = first_difference(fq, dq);
                    if (diff >= 0)
                        qWarning("%s tile %lldx%lld pow2 %d scaled %d: element %lld x=%g fake=%g stored=%g",
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
        const std::vector<float> out = fake(x, 1, n, spec_of(format, moe::kPerTensor, false, false));
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
        for (TileShape tile : {moe::kTile1x128, moe::kTile128x128, moe::kTile128x1, moe::kPerTensor})
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
                                                 .arg(moe::format_name(format)).arg(r).arg(c)
                                                 .arg(v).arg(double(xq[r * cols + c])).arg(s)));
                    }
            }
}

void TestQuantScaling::pow2ScalesMakeQuantizationIdempotent() {
    const int64_t rows = 256, cols = 256;
    std::vector<float> x = gaussian(rows * cols, 12);
    x[77] = 3000.0f;
    for (ElementFormat format : {ElementFormat::E4M3, ElementFormat::E5M2})
        for (TileShape tile : {moe::kTile1x128, moe::kTile128x128, moe::kTile128x1, moe::kPerTensor}) {
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
    const std::vector<float> e4m3_in = {1000.0f, -1e6f, 448.0f, 465.0f, 464.0f, 1e-5f, 0.0f, kInf, 1.0f};
    moe::CastCounts counts;
    std::vector<float> out = fake(e4m3_in, 1, 9, spec_of(ElementFormat::E4M3, moe::kPerTensor, false, false),
                                  nullptr, &counts);
    QCOMPARE(counts.saturated, int64_t{3});
    QCOMPARE(counts.flushed_to_zero, int64_t{1});
    QCOMPARE(out[0], 448.0f);
    QCOMPARE(out[1], -448.0f);
    QCOMPARE(out[4], 448.0f);
    QCOMPARE(out[5], 0.0f);
    QCOMPARE(out[7], 448.0f);
    // Unscaled FP16 overflows to Inf like the hardware cast; that counts as saturated too.
    const std::vector<float> fp16_in = {1e5f, 65519.0f, 65520.0f, -7e4f, 1e-8f, 3e-8f, 1.0f};
    out = fake(fp16_in, 1, 7, spec_of(ElementFormat::FP16, moe::kPerTensor, false, false), nullptr, &counts);
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
            for (int64_t c = cols; c < ld; ++c) QCOMPARE(in_place[r * ld + c], 99.0f);  // padding untouched
        }
    }
}

void TestQuantScaling::invalidArgumentsThrow() {
    std::vector<float> x(16, 1.0f), out(16);
    BlockQuantSpec bf16 = spec_of(ElementFormat::BF16, moe::kTile1x128);
    QVERIFY_THROWS_EXCEPTION(moe::ConfigError, moe::quantize_blocks(x.data(), 4, 4, 4, bf16));
    QVERIFY_THROWS_EXCEPTION(moe::ConfigError,
                             moe::fake_quantize(x.data(), 4, 4, 3, spec_of(ElementFormat::E4M3, moe::kTile1x128),
                                                out.data(), 4));
    QVERIFY_THROWS_EXCEPTION(moe::ConfigError,
                             moe::fake_quantize(x.data(), 4, 4, 4, spec_of(ElementFormat::E4M3, TileShape{-1, 4}),
                                                out.data(), 4));
    try {
        moe::quantize_blocks(x.data(), 4, 4, 4, bf16);
        QFAIL("no error");
    } catch (const moe::ConfigError& e) {
        QCOMPARE(QString(e.what()), QString("format: stored block quantization needs e4m3 or e5m2, got bf16"));
    }
}

QTEST_APPLESS_MAIN(TestQuantScaling)
#include "tst_quant_scaling.moc"
