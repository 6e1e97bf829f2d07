#pragma once
// Exact low-precision number formats: FP8 (E4M3, E5M2), BF16 and FP16.
// Bit-level encode/decode with round-to-nearest-even, so the precision lab can measure what a
// cast really does to a tensor rather than what an approximation of it does. No scaling here:
// block scales (1x128 / 128x128) build on top of these element formats.
//
// Bit layouts (sign s, biased exponent e, mantissa m, most significant bit first):
//   E4M3  s eeee mmm           bias 7,   normal 2^(e-7) * 1.m,  e=0: 2^-6 * 0.m
//                              no infinities; s.1111.111 (0x7F/0xFF) is NaN; max 448 (0x7E)
//   E5M2  s eeeee mm           bias 15,  IEEE-style: e=31,m=0 is +-Inf, e=31,m!=0 is NaN;
//                              max 57344 (0x7B); smallest subnormal 2^-16
//   FP16  s eeeee mmmmmmmmmm   bias 15,  IEEE binary16: max 65504, smallest subnormal 2^-24
//   BF16  s eeeeeeee mmmmmmm   bias 127, the top 16 bits of an IEEE binary32
#include <cstdint>

namespace moe {

enum class Fp8Format { E4M3, E5M2 };

// What fp8_encode does with a value whose rounded magnitude exceeds the format's max finite value
// (values that round down to max are in range in both modes):
//   Saturate       -> +-max finite (E4M3 448, E5M2 57344); +-Inf input also goes to +-max.
//   NonSaturating  -> NaN for E4M3 (it has no infinity), +-Inf for E5M2; +-Inf input likewise.
// NaN input is always encoded as a NaN code (sign kept).
enum class Fp8Overflow { Saturate, NonSaturating };

// Largest finite magnitude of a format: 448 (E4M3) or 57344 (E5M2).
float fp8_max(Fp8Format format);

// The value of an 8-bit code; every one of the 256 codes is defined (NaN codes decode to NaN).
float fp8_decode(uint8_t code, Fp8Format format);

// Round-to-nearest-even of x into the format; -0 stays -0, subnormals are rounded exactly.
uint8_t fp8_encode(float x, Fp8Format format, Fp8Overflow overflow = Fp8Overflow::Saturate);

// Round-to-nearest-even to BF16 / FP16 and back to float. FP16 overflows to +-Inf (IEEE), BF16 to
// +-Inf beyond its max (3.39e38); NaN stays NaN.
float round_to_bf16(float x);
float round_to_fp16(float x);

uint16_t bf16_encode(float x);
float bf16_decode(uint16_t code);
uint16_t fp16_encode(float x);
float fp16_decode(uint16_t code);

}  // namespace moe
