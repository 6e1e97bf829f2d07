#pragma once
// Integer weight quantization for inference: INT8, INT4, INT3 or INT2, per output channel (a row of
// the [out, in] weight) or per group of `group_size` consecutive input columns, symmetric (q in
// [-2^(b-1)+1, 2^(b-1)-1], w ~ q * scale) or asymmetric (q in [0, 2^b - 1], w ~ (q - zero) * scale
// with an integer zero point). INT4 codes are packed two per byte, the even column in the low
// nibble; each row starts on a byte (odd cols: the last high nibble is 0).
//   symmetric:  scale = amax / (2^(b-1) - 1), q = clamp(rne(w / scale)); -2^(b-1) is never used
//   asymmetric: [lo, hi] = [min(min w, 0), max(max w, 0)] (the range always holds 0, so a zero
//               weight stays exact), scale = (hi - lo) / (2^b - 1), zero = rne(-lo / scale)
//   an all-zero group gets scale 1 (and zero 0). |w - dequantized| <= scale / 2 in both modes.
// INT3 (7 levels symmetric, 8 asymmetric) and INT2 (symmetric: ternary -1, 0, 1; asymmetric 4
// levels) are stored like INT4, one code per nibble: 4 bits of storage for 3 or 2 bits of
// information (the study formats of docs/precision.md, not a packing).
// Scales are fp32 and zero points one byte each: INT4 with group 128 stores 4 + 32/128 = 4.25
// bits per weight (symmetric) or 4.3125 (asymmetric); INT8 per channel 8 + 32/cols.
#include <cstdint>
#include <vector>

namespace moe {

struct IntQuantSpec {
    int bits = 8;            // 8, 4, 3 or 2
    int64_t group_size = 0;  // 0: one group per row (per channel); else must divide cols
                             // (no partial last group: every group has one width)
    bool symmetric = true;
    bool operator==(const IntQuantSpec&) const = default;
};

struct IntQuantized {
    int64_t rows = 0, cols = 0;
    IntQuantSpec spec;
    std::vector<uint8_t> data;   // int8: [rows*cols] two's complement (sym) or unsigned (asym);
                                 // int4, int3, int2: [rows * ceil(cols/2)] packed
    std::vector<float> scales;   // [rows, groups]
    std::vector<uint8_t> zeros;  // [rows, groups], asymmetric only

    int64_t groups_per_row() const;
    int64_t bytes() const;  // data + scales + zeros: the memory the format really needs
};

// ConfigError (field "bits" / "group_size") for an invalid spec for this shape. Parallel over rows.
IntQuantized quantize_int(const float* w, int64_t rows, int64_t cols, const IntQuantSpec& spec);
void dequantize_int(const IntQuantized& q, float* out);
// out = dequantize(quantize(w)); out may be w.
void fake_quantize_int(const float* w, int64_t rows, int64_t cols, const IntQuantSpec& spec,
                       float* out);

// Two 4-bit codes per byte, element 2i in the low nibble of byte i (only a nibble's low 4 bits
// are kept; an odd count leaves the last high nibble 0). unpack_int4: ConfigError ("count") when
// count exceeds 2 * packed.size().
std::vector<uint8_t> pack_int4(const std::vector<uint8_t>& nibbles);
std::vector<uint8_t> unpack_int4(const std::vector<uint8_t>& packed, int64_t count);

}  // namespace moe
