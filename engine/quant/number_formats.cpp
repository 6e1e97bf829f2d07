#include "quant/number_formats.h"

#include <bit>
#include <cmath>
#include <limits>

namespace moe {

namespace {

// One sign-magnitude binary format narrower than float: everything encode/decode needs.
struct Layout {
    int exponent_bits;
    int mantissa_bits;
    int bias;
    bool has_infinity;        // IEEE-style: all-ones exponent is Inf (m=0) or NaN (m!=0)
    uint32_t max_finite;      // magnitude code of the largest finite value
    uint32_t nan_code;        // magnitude code written for NaN
    uint32_t inf_code;        // magnitude code of Inf (has_infinity only)
};

constexpr Layout kE4M3{4, 3, 7, false, 0x7E, 0x7F, 0};
constexpr Layout kE5M2{5, 2, 15, true, 0x7B, 0x7E, 0x7C};
constexpr Layout kFp16{5, 10, 15, true, 0x7BFF, 0x7E00, 0x7C00};
constexpr Layout kBf16{8, 7, 127, true, 0x7F7F, 0x7FC0, 0x7F80};

const Layout& layout(Fp8Format format) { return format == Fp8Format::E4M3 ? kE4M3 : kE5M2; }

enum class Overflow { ToMax, ToSpecial };

// Rounds |x| (finite) to the format with ties to even and returns the magnitude code, which may
// exceed max_finite when the value rounds past it. Works on the float's integer significand so
// no double rounding can occur.
uint32_t round_magnitude(uint32_t abs_bits, const Layout& f) {
    const int float_exp_field = static_cast<int>(abs_bits >> 23);
    const uint32_t fraction = abs_bits & 0x7FFFFFu;
    // value = significand * 2^(exponent - 23), exactly
    const int exponent = float_exp_field == 0 ? -126 : float_exp_field - 127;
    const uint32_t significand = float_exp_field == 0 ? fraction : (fraction | 0x800000u);
    // The target's quantum is 2^(e - mbits) with e clamped to its smallest normal exponent, so
    // values below the normal range land on the subnormal grid.
    const int min_exponent = 1 - f.bias;
    const int e = exponent > min_exponent ? exponent : min_exponent;
    const int shift = 23 - f.mantissa_bits + (e - exponent);  // always >= 1 for these formats
    uint32_t q = 0;
    if (shift <= 24) {
        q = significand >> shift;
        const uint32_t rest = significand & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1);
        if (rest > half || (rest == half && (q & 1u))) ++q;
    }  // shift > 24: below half the smallest subnormal, rounds to zero
    // Code = (e - emin) << mbits + q covers both ranges: subnormals have q < 2^mbits and biased
    // exponent 0; normals carry the hidden bit in q, which adds the 1 of the biased exponent.
    // A carry out of the mantissa moves into the exponent by plain addition.
    return (static_cast<uint32_t>(e - min_exponent) << f.mantissa_bits) + q;
}

uint32_t encode(float x, const Layout& f, Overflow overflow) {
    const uint32_t bits = std::bit_cast<uint32_t>(x);
    const uint32_t sign = (bits >> 31) << (f.exponent_bits + f.mantissa_bits);
    const uint32_t abs_bits = bits & 0x7FFFFFFFu;
    const uint32_t out_of_range = overflow == Overflow::ToMax
                                      ? f.max_finite
                                      : (f.has_infinity ? f.inf_code : f.nan_code);
    if (abs_bits > 0x7F800000u) return sign | f.nan_code;  // NaN
    if (abs_bits == 0x7F800000u) return sign | out_of_range;  // Inf
    const uint32_t magnitude = round_magnitude(abs_bits, f);
    return sign | (magnitude > f.max_finite ? out_of_range : magnitude);
}

float decode(uint32_t code, const Layout& f) {
    const int width = f.exponent_bits + f.mantissa_bits;
    const bool negative = (code >> width) & 1u;
    const uint32_t magnitude = code & ((1u << width) - 1u);
    const uint32_t exponent_field = magnitude >> f.mantissa_bits;
    const uint32_t mantissa = magnitude & ((1u << f.mantissa_bits) - 1u);
    const uint32_t all_ones = (1u << f.exponent_bits) - 1u;
    float value;
    if (f.has_infinity && exponent_field == all_ones) {
        value = mantissa == 0 ? std::numeric_limits<float>::infinity()
                              : std::numeric_limits<float>::quiet_NaN();
    } else if (!f.has_infinity && magnitude > f.max_finite) {
        value = std::numeric_limits<float>::quiet_NaN();  // E4M3: only s.1111.111
    } else if (exponent_field == 0) {
        // Subnormal: 2^(1-bias) * m / 2^mbits; ldexp is exact since the result fits a float.
        value = std::ldexp(static_cast<float>(mantissa), 1 - f.bias - f.mantissa_bits);
    } else {
        const uint32_t significand = mantissa | (1u << f.mantissa_bits);
        value = std::ldexp(static_cast<float>(significand),
                           static_cast<int>(exponent_field) - f.bias - f.mantissa_bits);
    }
    return negative ? -value : value;
}

}  // namespace

float fp8_max(Fp8Format format) { return format == Fp8Format::E4M3 ? 448.0f : 57344.0f; }

float fp8_decode(uint8_t code, Fp8Format format) { return decode(code, layout(format)); }

uint8_t fp8_encode(float x, Fp8Format format, Fp8Overflow overflow) {
    const Overflow mode = overflow == Fp8Overflow::Saturate ? Overflow::ToMax : Overflow::ToSpecial;
    return static_cast<uint8_t>(encode(x, layout(format), mode));
}

uint16_t bf16_encode(float x) { return static_cast<uint16_t>(encode(x, kBf16, Overflow::ToSpecial)); }

// BF16 is the top half of a float, so decoding is a shift (exact for every code, NaNs included).
float bf16_decode(uint16_t code) { return std::bit_cast<float>(static_cast<uint32_t>(code) << 16); }

uint16_t fp16_encode(float x) { return static_cast<uint16_t>(encode(x, kFp16, Overflow::ToSpecial)); }

float fp16_decode(uint16_t code) { return decode(code, kFp16); }

float round_to_bf16(float x) { return bf16_decode(bf16_encode(x)); }

float round_to_fp16(float x) { return fp16_decode(fp16_encode(x)); }

}  // namespace moe
