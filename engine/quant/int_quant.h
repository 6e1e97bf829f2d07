#pragma once
// Integer weight quantization for inference: INT8 or INT4, per output channel (a row of the
// [out, in] weight) or per group of `group_size` consecutive input columns, symmetric
// (q in [-2^(b-1)+1, 2^(b-1)-1], w ~ q * scale) or asymmetric (q in [0, 2^b - 1],
// w ~ (q - zero) * scale with an integer zero point). INT4 codes are packed two per byte, the
// even column in the low nibble.
#include <cstdint>
#include <vector>

namespace moe {

struct IntQuantSpec {
    int bits = 8;              // 8 or 4
    int64_t group_size = 0;    // 0: one group per row (per channel); else must divide cols
    bool symmetric = true;
    bool operator==(const IntQuantSpec&) const = default;
};

struct IntQuantized {
    int64_t rows = 0, cols = 0;
    IntQuantSpec spec;
    std::vector<uint8_t> data;    // int8: [rows*cols] two's complement (sym) or unsigned (asym);
                                  // int4: [rows * ceil(cols/2)] packed
    std::vector<float> scales;    // [rows, groups]
    std::vector<uint8_t> zeros;   // [rows, groups], asymmetric only

    int64_t groups_per_row() const;
    int64_t bytes() const;  // data + scales + zeros: the memory the format really needs
};

// ConfigError (field "bits" / "group_size") for an invalid spec for this shape.
IntQuantized quantize_int(const float* w, int64_t rows, int64_t cols, const IntQuantSpec& spec);
void dequantize_int(const IntQuantized& q, float* out);
// out = dequantize(quantize(w)); out may be w.
void fake_quantize_int(const float* w, int64_t rows, int64_t cols, const IntQuantSpec& spec,
                       float* out);

// Two 4-bit codes per byte, element 2i in the low nibble of byte i.
std::vector<uint8_t> pack_int4(const std::vector<uint8_t>& nibbles);
std::vector<uint8_t> unpack_int4(const std::vector<uint8_t>& packed, int64_t count);

}  // namespace moe
