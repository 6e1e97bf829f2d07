// Exact number formats (engine/quant/number_formats.h): FP8 E4M3/E5M2 decode against an
// independent formula for all 256 codes, round trips, ties-to-even at every midpoint, overflow
// modes, and a nearest-value check on random floats; BF16/FP16 known answers and exhaustive
// round trips (plus the compiler's _Float16 as a second oracle where it exists).
#include <QtTest>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "quant/number_formats.h"

using moe::Fp8Format;
using moe::Fp8Overflow;

namespace {

struct Fp8Spec {
    Fp8Format format;
    const char* name;
    int exponent_bits;
    int mantissa_bits;
    int bias;
    bool has_infinity;
};

const Fp8Spec kSpecs[] = {{Fp8Format::E4M3, "E4M3", 4, 3, 7, false},
                          {Fp8Format::E5M2, "E5M2", 5, 2, 15, true}};

enum class Kind { Finite, Inf, NaN };

// The reference value of a code, written straight from the format definition, in double.
Kind reference(const Fp8Spec& s, int code, double* value) {
    const int sign = (code >> 7) & 1;
    const int e = (code >> s.mantissa_bits) & ((1 << s.exponent_bits) - 1);
    const int m = code & ((1 << s.mantissa_bits) - 1);
    const int e_max = (1 << s.exponent_bits) - 1;
    const int m_max = (1 << s.mantissa_bits) - 1;
    if (s.has_infinity && e == e_max) return m == 0 ? Kind::Inf : Kind::NaN;
    if (!s.has_infinity && e == e_max && m == m_max) return Kind::NaN;
    const double frac = static_cast<double>(m) / std::pow(2.0, s.mantissa_bits);
    const double magnitude = e == 0 ? std::pow(2.0, 1 - s.bias) * frac
                                    : std::pow(2.0, e - s.bias) * (1.0 + frac);
    *value = sign ? -magnitude : magnitude;
    return Kind::Finite;
}

// Positive finite codes in increasing value order (codes are monotonic in magnitude).
std::vector<int> positive_finite_codes(const Fp8Spec& s) {
    std::vector<int> codes;
    double v;
    for (int c = 0; c < 128; ++c)
        if (reference(s, c, &v) == Kind::Finite) codes.push_back(c);
    return codes;
}

bool is_negative_zero(float x) { return x == 0.0f && std::signbit(x); }

}  // namespace

class TestQuantFormats : public QObject {
    Q_OBJECT

private slots:
    void fp8DecodeAllCodes() {
        for (const Fp8Spec& s : kSpecs) {
            int nans = 0, infs = 0;
            for (int c = 0; c < 256; ++c) {
                double expected = 0;
                const Kind kind = reference(s, c, &expected);
                const float got = moe::fp8_decode(static_cast<uint8_t>(c), s.format);
                const QString where = QStringLiteral("%1 code 0x%2").arg(s.name).arg(c, 2, 16, QChar('0'));
                if (kind == Kind::NaN) {
                    QVERIFY2(std::isnan(got), qPrintable(where));
                    ++nans;
                } else if (kind == Kind::Inf) {
                    QVERIFY2(std::isinf(got) && std::signbit(got) == bool(c & 0x80), qPrintable(where));
                    ++infs;
                } else {
                    QVERIFY2(static_cast<double>(got) == expected, qPrintable(where));
                    QVERIFY2(std::signbit(got) == bool(c & 0x80), qPrintable(where));  // -0 too
                }
            }
            if (s.format == Fp8Format::E4M3) {
                QCOMPARE(nans, 2);  // 0x7F and 0xFF only
                QCOMPARE(infs, 0);
                QVERIFY(std::isnan(moe::fp8_decode(0x7F, s.format)));
                QVERIFY(std::isnan(moe::fp8_decode(0xFF, s.format)));
            } else {
                QCOMPARE(nans, 6);  // s.11111.{01,10,11}
                QCOMPARE(infs, 2);  // 0x7C, 0xFC
                QCOMPARE(moe::fp8_decode(0x7C, s.format), std::numeric_limits<float>::infinity());
                QCOMPARE(moe::fp8_decode(0xFC, s.format), -std::numeric_limits<float>::infinity());
            }
        }
    }

    void fp8KnownValues() {
        QCOMPARE(moe::fp8_decode(0x7E, Fp8Format::E4M3), 448.0f);
        QCOMPARE(moe::fp8_decode(0xFE, Fp8Format::E4M3), -448.0f);
        QCOMPARE(moe::fp8_decode(0x7B, Fp8Format::E5M2), 57344.0f);
        QCOMPARE(moe::fp8_max(Fp8Format::E4M3), 448.0f);
        QCOMPARE(moe::fp8_max(Fp8Format::E5M2), 57344.0f);
        // Smallest subnormals and smallest normals.
        QCOMPARE(moe::fp8_decode(0x01, Fp8Format::E4M3), std::ldexp(1.0f, -9));
        QCOMPARE(moe::fp8_decode(0x01, Fp8Format::E5M2), std::ldexp(1.0f, -16));
        QCOMPARE(moe::fp8_decode(0x08, Fp8Format::E4M3), std::ldexp(1.0f, -6));
        QCOMPARE(moe::fp8_decode(0x04, Fp8Format::E5M2), std::ldexp(1.0f, -14));
        QCOMPARE(moe::fp8_decode(0x38, Fp8Format::E4M3), 1.0f);
        QCOMPARE(moe::fp8_decode(0x3C, Fp8Format::E5M2), 1.0f);
        QCOMPARE(moe::fp8_encode(1.0f, Fp8Format::E4M3), uint8_t(0x38));
        QCOMPARE(moe::fp8_encode(-2.0f, Fp8Format::E4M3), uint8_t(0xC0));
        QCOMPARE(moe::fp8_encode(448.0f, Fp8Format::E4M3), uint8_t(0x7E));
        QCOMPARE(moe::fp8_encode(57344.0f, Fp8Format::E5M2), uint8_t(0x7B));
        QCOMPARE(moe::fp8_encode(std::ldexp(1.0f, -9), Fp8Format::E4M3), uint8_t(0x01));
        QCOMPARE(moe::fp8_encode(std::ldexp(1.0f, -16), Fp8Format::E5M2), uint8_t(0x01));
        // Zeros keep their sign; values below half the smallest subnormal flush to signed zero.
        QCOMPARE(moe::fp8_encode(0.0f, Fp8Format::E4M3), uint8_t(0x00));
        QCOMPARE(moe::fp8_encode(-0.0f, Fp8Format::E4M3), uint8_t(0x80));
        QCOMPARE(moe::fp8_encode(-0.0f, Fp8Format::E5M2), uint8_t(0x80));
        QVERIFY(is_negative_zero(moe::fp8_decode(0x80, Fp8Format::E4M3)));
        QCOMPARE(moe::fp8_encode(-1e-30f, Fp8Format::E4M3), uint8_t(0x80));
        QCOMPARE(moe::fp8_encode(std::numeric_limits<float>::denorm_min(), Fp8Format::E5M2), uint8_t(0x00));
        // Just above half the smallest subnormal rounds up to it.
        QCOMPARE(moe::fp8_encode(std::nextafter(std::ldexp(1.0f, -10), 1.0f), Fp8Format::E4M3), uint8_t(0x01));
    }

    void fp8RoundTripEveryCode() {
        for (const Fp8Spec& s : kSpecs) {
            for (int c = 0; c < 256; ++c) {
                double v;
                const Kind kind = reference(s, c, &v);
                if (kind == Kind::NaN) continue;
                const float x = moe::fp8_decode(static_cast<uint8_t>(c), s.format);
                // Infinity round-trips only where it is representable and not saturated.
                const uint8_t back = moe::fp8_encode(x, s.format, Fp8Overflow::NonSaturating);
                QVERIFY2(back == c, qPrintable(QStringLiteral("%1 code 0x%2 -> 0x%3").arg(s.name)
                                                   .arg(c, 2, 16, QChar('0')).arg(int(back), 2, 16, QChar('0'))));
                if (kind == Kind::Finite)
                    QCOMPARE(int(moe::fp8_encode(x, s.format, Fp8Overflow::Saturate)), c);
            }
        }
    }

    void fp8TiesToEvenAtEveryMidpoint() {
        for (const Fp8Spec& s : kSpecs) {
            const std::vector<int> codes = positive_finite_codes(s);
            for (size_t i = 0; i + 1 < codes.size(); ++i) {
                double lo_v, hi_v;
                reference(s, codes[i], &lo_v);
                reference(s, codes[i + 1], &hi_v);
                const float mid = static_cast<float>((lo_v + hi_v) / 2);  // exact: <= 5 significant bits
                QCOMPARE(static_cast<double>(mid), (lo_v + hi_v) / 2);
                const int even = (codes[i] & 1) == 0 ? codes[i] : codes[i + 1];
                for (int sign : {0, 0x80}) {
                    const float m = sign ? -mid : mid;
                    const QString where = QStringLiteral("%1 midpoint %2").arg(s.name).arg(double(m));
                    QVERIFY2(moe::fp8_encode(m, s.format) == (even | sign), qPrintable(where));
                    // One float ulp off the tie decides the direction.
                    const float below = std::nextafter(m, 0.0f);
                    const float above = std::nextafter(m, sign ? -1e30f : 1e30f);
                    QVERIFY2(moe::fp8_encode(below, s.format) == (codes[i] | sign), qPrintable(where));
                    QVERIFY2(moe::fp8_encode(above, s.format) == (codes[i + 1] | sign), qPrintable(where));
                }
            }
        }
    }

    void fp8Overflow() {
        const float inf = std::numeric_limits<float>::infinity();
        const float nan = std::numeric_limits<float>::quiet_NaN();
        // E4M3: next step above 448 would be 480, so the rounding boundary is 464 (ties to 448, even).
        const auto e4 = Fp8Format::E4M3;
        QCOMPARE(moe::fp8_encode(464.0f, e4, Fp8Overflow::NonSaturating), uint8_t(0x7E));
        QCOMPARE(moe::fp8_encode(std::nextafter(464.0f, inf), e4, Fp8Overflow::NonSaturating), uint8_t(0x7F));
        QCOMPARE(moe::fp8_encode(-1000.0f, e4, Fp8Overflow::NonSaturating), uint8_t(0xFF));
        QCOMPARE(moe::fp8_encode(1000.0f, e4, Fp8Overflow::Saturate), uint8_t(0x7E));
        QCOMPARE(moe::fp8_encode(-1e38f, e4, Fp8Overflow::Saturate), uint8_t(0xFE));
        QCOMPARE(moe::fp8_encode(inf, e4, Fp8Overflow::Saturate), uint8_t(0x7E));
        QCOMPARE(moe::fp8_encode(-inf, e4, Fp8Overflow::Saturate), uint8_t(0xFE));
        QCOMPARE(moe::fp8_encode(inf, e4, Fp8Overflow::NonSaturating), uint8_t(0x7F));
        QCOMPARE(moe::fp8_encode(-inf, e4, Fp8Overflow::NonSaturating), uint8_t(0xFF));
        QVERIFY(std::isnan(moe::fp8_decode(moe::fp8_encode(nan, e4, Fp8Overflow::Saturate), e4)));
        QVERIFY(std::isnan(moe::fp8_decode(moe::fp8_encode(-nan, e4, Fp8Overflow::NonSaturating), e4)));
        // E5M2: max 57344 = 1.75 * 2^15; the tie at 61440 goes to the even neighbour, Inf.
        const auto e5 = Fp8Format::E5M2;
        QCOMPARE(moe::fp8_encode(std::nextafter(61440.0f, 0.0f), e5, Fp8Overflow::NonSaturating), uint8_t(0x7B));
        QCOMPARE(moe::fp8_encode(61440.0f, e5, Fp8Overflow::NonSaturating), uint8_t(0x7C));
        QCOMPARE(moe::fp8_encode(61440.0f, e5, Fp8Overflow::Saturate), uint8_t(0x7B));
        QCOMPARE(moe::fp8_encode(-1e10f, e5, Fp8Overflow::NonSaturating), uint8_t(0xFC));
        QCOMPARE(moe::fp8_encode(-1e10f, e5, Fp8Overflow::Saturate), uint8_t(0xFB));
        QCOMPARE(moe::fp8_encode(inf, e5, Fp8Overflow::Saturate), uint8_t(0x7B));
        QCOMPARE(moe::fp8_encode(-inf, e5, Fp8Overflow::NonSaturating), uint8_t(0xFC));
        QVERIFY(std::isnan(moe::fp8_decode(moe::fp8_encode(nan, e5, Fp8Overflow::Saturate), e5)));
        QVERIFY(std::isnan(moe::fp8_decode(moe::fp8_encode(nan, e5, Fp8Overflow::NonSaturating), e5)));
    }

    // For random floats across magnitudes, no finite code is strictly closer than the chosen one,
    // and an exact tie is resolved to the even code.
    void fp8EncodePicksNearest() {
        std::mt19937_64 gen(20240611);
        std::uniform_real_distribution<double> mantissa(1.0, 2.0);
        std::uniform_int_distribution<int> exponent(-20, 17);
        for (const Fp8Spec& s : kSpecs) {
            std::vector<std::pair<int, double>> finite;
            for (int c = 0; c < 256; ++c) {
                double v;
                if (reference(s, c, &v) == Kind::Finite) finite.emplace_back(c, v);
            }
            const double max = moe::fp8_max(s.format);
            for (int n = 0; n < 100000; ++n) {
                float x = static_cast<float>(mantissa(gen) * std::ldexp(1.0, exponent(gen)));
                if (n & 1) x = -x;
                if (n % 7 == 0) x = std::round(x * 64.0f) / 64.0f;  // land on ties now and then
                const uint8_t code = moe::fp8_encode(x, s.format, Fp8Overflow::Saturate);
                const double got = moe::fp8_decode(code, s.format);
                if (std::fabs(x) > max) {
                    QCOMPARE(got, x > 0 ? max : -max);
                    continue;
                }
                const double err = std::fabs(got - x);
                for (const auto& [c, v] : finite) {
                    const double other = std::fabs(v - x);
                    if (other < err || (other == err && v != got && (code & 1)))
                        QFAIL(qPrintable(QStringLiteral("%1: x=%2 encoded 0x%3 (%4) but 0x%5 (%6) is nearer or even")
                                             .arg(s.name).arg(double(x), 0, 'g', 9).arg(int(code), 2, 16, QChar('0'))
                                             .arg(got).arg(c, 2, 16, QChar('0')).arg(v)));
                }
            }
        }
    }

    void bf16KnownAnswers() {
        QCOMPARE(moe::bf16_encode(1.0f), uint16_t(0x3F80));
        QCOMPARE(moe::bf16_decode(0x3F80), 1.0f);
        QCOMPARE(moe::bf16_encode(-2.0f), uint16_t(0xC000));
        // 1 + 2^-8 is the midpoint of 1 and 1 + 2^-7: ties to even (1.0); just above goes up.
        QCOMPARE(moe::round_to_bf16(1.0f + std::ldexp(1.0f, -8)), 1.0f);
        QCOMPARE(moe::round_to_bf16(std::nextafter(1.0f + std::ldexp(1.0f, -8), 2.0f)), 1.0f + std::ldexp(1.0f, -7));
        // 1 + 3*2^-8 is the midpoint of 1+2^-7 (odd) and 1+2^-6 (even): goes up.
        QCOMPARE(moe::round_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));
        QCOMPARE(moe::round_to_bf16(-(1.0f + 3 * std::ldexp(1.0f, -8))), -(1.0f + std::ldexp(1.0f, -6)));
        QCOMPARE(moe::round_to_bf16(3.14159265f), 3.140625f);
        QVERIFY(is_negative_zero(moe::round_to_bf16(-0.0f)));
        // Max finite bf16 is 0x7F7F; float max rounds past it to Inf.
        QCOMPARE(moe::bf16_encode(std::numeric_limits<float>::max()), uint16_t(0x7F80));
        QCOMPARE(moe::bf16_encode(moe::bf16_decode(0x7F7F)), uint16_t(0x7F7F));
        QVERIFY(std::isinf(moe::round_to_bf16(-std::numeric_limits<float>::infinity())));
        QVERIFY(std::isnan(moe::round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
        // A float subnormal rounds on the same grid (bf16 shares float's exponent range).
        QCOMPARE(moe::bf16_encode(std::bit_cast<float>(0x00008000u)), uint16_t(0x0000));  // tie -> even 0
        QCOMPARE(moe::bf16_encode(std::bit_cast<float>(0x00018000u)), uint16_t(0x0002));  // tie -> even 2
        QCOMPARE(moe::bf16_encode(std::bit_cast<float>(0x00008001u)), uint16_t(0x0001));
    }

    void bf16AllCodes() {
        // Every non-NaN code round-trips (Inf and subnormals included); NaN codes stay NaN.
        for (uint32_t c = 0; c < 65536; ++c) {
            const float x = moe::bf16_decode(static_cast<uint16_t>(c));
            if (std::isnan(x)) {
                QVERIFY(std::isnan(moe::round_to_bf16(x)));
                continue;
            }
            QCOMPARE(uint32_t(moe::bf16_encode(x)), c);
        }
    }

    void fp16KnownAnswers() {
        QCOMPARE(moe::fp16_encode(1.0f), uint16_t(0x3C00));
        QCOMPARE(moe::fp16_decode(0x7BFF), 65504.0f);
        QCOMPARE(moe::fp16_encode(65504.0f), uint16_t(0x7BFF));
        // 65520 is the midpoint of 65504 (odd mantissa) and 65536 (would-be next): overflows to Inf.
        QCOMPARE(moe::fp16_encode(65520.0f), uint16_t(0x7C00));
        QCOMPARE(moe::fp16_encode(std::nextafter(65520.0f, 0.0f)), uint16_t(0x7BFF));
        QCOMPARE(moe::fp16_encode(-65520.0f), uint16_t(0xFC00));
        QVERIFY(std::isinf(moe::round_to_fp16(1e6f)));
        QCOMPARE(moe::fp16_decode(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
        QCOMPARE(moe::fp16_decode(0x0400), std::ldexp(1.0f, -14));  // smallest normal
        QCOMPARE(moe::fp16_encode(std::ldexp(1.0f, -25)), uint16_t(0x0000));  // tie -> even 0
        QCOMPARE(moe::fp16_encode(std::ldexp(3.0f, -25)), uint16_t(0x0002));  // tie -> even 2
        QCOMPARE(moe::fp16_encode(std::nextafter(std::ldexp(1.0f, -25), 1.0f)), uint16_t(0x0001));
        QCOMPARE(moe::round_to_fp16(1.0f + std::ldexp(1.0f, -11)), 1.0f);  // tie -> even
        QCOMPARE(moe::round_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 1.0f + std::ldexp(1.0f, -9));
        QVERIFY(is_negative_zero(moe::round_to_fp16(-1e-10f)));
        QVERIFY(std::isnan(moe::round_to_fp16(std::numeric_limits<float>::quiet_NaN())));
    }

    void fp16AllCodes() {
        for (uint32_t c = 0; c < 65536; ++c) {
            const int e = (c >> 10) & 0x1F, m = c & 0x3FF;
            const float x = moe::fp16_decode(static_cast<uint16_t>(c));
            if (e == 31) {
                QVERIFY(m == 0 ? std::isinf(x) : std::isnan(x));
                if (m) continue;
            } else {
                const double magnitude = e == 0 ? std::ldexp(double(m), -24)
                                                : std::ldexp(1.0 + m / 1024.0, e - 15);
                QCOMPARE(double(x), (c & 0x8000) ? -magnitude : magnitude);
            }
            QCOMPARE(uint32_t(moe::fp16_encode(x)), c);
        }
    }

    // Random floats against the neighbouring codes (the grid is monotonic, so the nearest code is
    // one of the chosen code's neighbours) and, where the compiler has it, against _Float16.
    void fp16EncodePicksNearest() {
        std::mt19937 gen(7);
        for (int n = 0; n < 100000; ++n) {
            const uint32_t bits = (gen() & 0x80000000u) | ((96u + gen() % 62u) << 23) | (gen() & 0x7FFFFFu);
            const float x = std::bit_cast<float>(bits);  // |x| in [2^-31, 2^16)
            const uint16_t code = moe::fp16_encode(x);
#ifdef __FLT16_MAX__
            QCOMPARE(code, std::bit_cast<uint16_t>(static_cast<_Float16>(x)));
#endif
            const float got = moe::fp16_decode(code);
            if (std::isinf(got)) {
                QVERIFY(std::fabs(x) >= 65520.0f);
                continue;
            }
            const double err = std::fabs(double(got) - x);
            for (int d : {-1, 1}) {
                const uint32_t magnitude = (code & 0x7FFF) + d;
                if (magnitude > 0x7BFF) continue;
                const double other = std::fabs(double(moe::fp16_decode(uint16_t((code & 0x8000) | magnitude))) - x);
                QVERIFY(other > err || (other == err && (code & 1) == 0));
            }
        }
    }
};

QTEST_APPLESS_MAIN(TestQuantFormats)
#include "tst_quant_formats.moc"
