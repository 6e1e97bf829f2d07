#pragma once
// Casting a float onto an element format's value grid inside a loop, without going through codes
// (internal to engine/quant). number_formats.h is the bit-exact reference; this is the same
// round-to-nearest-even on values, written so a tile loop stays a few float operations per element.
// tst_quant_scaling checks the two agree, bit for bit, through fake_quantize == dequantize_blocks.
#include <bit>
#include <cmath>
#include <cstdint>

namespace moe::quant_detail {

// Rounds x to a binary format with `mantissa_bits` stored fraction bits and smallest normal
// exponent `min_exponent`, ties to even, with an unbounded exponent range above (the caller
// compares with the format's max). Signed zero, Inf and NaN pass through. Valid while the quantum
// 2^(e - mantissa_bits) and its inverse are normal floats: E4M3, E5M2 and FP16, not BF16.
inline float round_to_grid(float x, int mantissa_bits, int min_exponent) {
    const uint32_t abs_bits = std::bit_cast<uint32_t>(x) & 0x7FFFFFFFu;
    int exponent = static_cast<int>(abs_bits >> 23) - 127;  // Inf/NaN: 128, harmless below
    if (exponent < min_exponent) exponent = min_exponent;   // subnormal range: fixed quantum
    const float quantum =
        std::bit_cast<float>(static_cast<uint32_t>(exponent - mantissa_bits + 127) << 23);
    const float inverse =
        std::bit_cast<float>(static_cast<uint32_t>(mantissa_bits - exponent + 127) << 23);
    // |x| / quantum < 2^(mantissa_bits + 1), so adding 2^23 leaves integer spacing and the float
    // addition itself rounds to nearest even; both scalings by powers of two are exact.
    const float steps = std::bit_cast<float>(abs_bits) * inverse;
    const float rounded = ((steps + 0x1p23f) - 0x1p23f) * quantum;
    return std::copysign(rounded, x);
}

// Round-to-nearest-even to BF16 and back, on the float's bits (the top 16 bits of a binary32):
// the same values as round_to_bf16 in number_formats.h, inline so a loop can vectorize it.
// Overflow carries into the exponent and gives +-Inf like the IEEE cast; NaN stays NaN.
inline float round_to_bf16_inline(float x) {
    const uint32_t bits = std::bit_cast<uint32_t>(x);
    const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
    return x != x ? x : std::bit_cast<float>(rounded);
}

// Round-to-nearest-even of a double to a float with only `mantissa_bits` fraction bits (1..23):
// a limited-precision accumulator. Rounds once, on the double's bits, so no double rounding.
inline float round_double_to_mantissa_bits(double x, int mantissa_bits) {
    const uint64_t bits = std::bit_cast<uint64_t>(x);
    const uint64_t abs_bits = bits & 0x7FFFFFFFFFFFFFFFull;
    if (abs_bits >= 0x7FF0000000000000ull) return static_cast<float>(x);  // Inf, NaN
    const int shift = 52 - mantissa_bits;
    const uint64_t half_minus_one = (uint64_t{1} << (shift - 1)) - 1;
    const uint64_t odd = (abs_bits >> shift) & 1u;
    const uint64_t rounded = (abs_bits + half_minus_one + odd) & ~((uint64_t{1} << shift) - 1);
    const double magnitude = std::bit_cast<double>(rounded);  // a carry moves into the exponent
    return static_cast<float>(std::copysign(magnitude, x));   // exact: <= 24 significant bits
}

}  // namespace moe::quant_detail
