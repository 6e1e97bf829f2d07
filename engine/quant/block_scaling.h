#pragma once
// Fine-grained scaling (DeepSeek-V3 section 3.3): a matrix is cut into tiles, each tile gets one
// fp32 scale from its own amax, and its elements are cast to a low-precision format after
// division by that scale, so one outlier only costs precision in its own tile.
//   activations (GEMM operand with K along columns):   1 x 128 tiles
//   weights:                                          128 x 128 blocks
//   activations on the K-along-rows side (wgrad):     128 x 1 tiles
//   per-tensor: one scale for the whole matrix (TileShape{0, 0}), the comparison that shows
//   why fine-grained scaling matters with outliers.
// Dequantized value = decode(code) * scale, scale = amax / format_max (1 when amax is 0), or
// with pow2_scales the next power of two >= that, so scaling itself is exact. code = the
// format's round-to-nearest-even cast of x / scale, saturating at +-format_max. Details:
//   - amax is over the tile's finite elements: NaN stays NaN, +-Inf saturates to +-max * scale,
//     neither changes the scale of its neighbours. Scales are kept >= FLT_MIN.
//   - scaled = false: the plain cast (scales all 1): FP8 saturates, BF16/FP16 overflow to +-Inf.
//   - FP32 is the identity (scales 1), whatever `scaled` says.
#include <cstdint>
#include <vector>

#include "quant/element_format.h"

namespace moe {

// Tile extent in rows and columns; 0 means the whole extent of that dimension.
struct TileShape {
    int64_t rows = 1;
    int64_t cols = 128;
    bool operator==(const TileShape&) const = default;
};

inline constexpr TileShape kTile1x128{1, 128};
inline constexpr TileShape kTile128x128{128, 128};
inline constexpr TileShape kTile128x1{128, 1};
inline constexpr TileShape kPerTensor{0, 0};

struct BlockQuantSpec {
    ElementFormat format = ElementFormat::E4M3;
    TileShape tile = kTile1x128;
    bool scaled = true;        // false: plain cast, no scales (bf16/fp16 modes)
    bool pow2_scales = false;  // round scales up to powers of two
    bool operator==(const BlockQuantSpec&) const = default;
};

// Tiles along each dimension of a [rows, cols] matrix (partial edge tiles count).
int64_t tile_grid_rows(int64_t rows, TileShape tile);
int64_t tile_grid_cols(int64_t cols, TileShape tile);

// What a cast did: finite elements whose scaled value rounded past the format's max (clamped to
// +-max, or +-Inf for an unscaled BF16/FP16 cast; an Inf input is not counted), and nonzero
// elements whose result is zero (flushed below half the smallest subnormal).
struct CastCounts {
    int64_t saturated = 0;
    int64_t flushed_to_zero = 0;
    CastCounts& operator+=(const CastCounts& o) {
        saturated += o.saturated;
        flushed_to_zero += o.flushed_to_zero;
        return *this;
    }
};

// out = dequantize(quantize(x)) of a [rows, cols] matrix with row strides ld_x / ld_out (out may
// be x itself, with the same stride). scales, if not null, receives [tile_grid_rows,
// tile_grid_cols] row-major. The result is what a GPU's scaled FP8 GEMM sees, element for
// element, and equals dequantize_blocks(quantize_blocks(x)) bit for bit. Two parallel passes
// (tile amax, then the cast by rows), deterministic for any thread count; no allocation once a
// thread has seen its largest tile grid. ConfigError for ld < cols or a negative tile extent.
CastCounts fake_quantize(const float* x, int64_t rows, int64_t cols, int64_t ld_x,
                         const BlockQuantSpec& spec, float* out, int64_t ld_out,
                         float* scales = nullptr);

// The stored form: one byte per element (FP8 codes; spec.format must be E4M3 or E5M2) and the
// scales; dequantize_blocks inverts it. Used for FP8 checkpoints and the GPU path.
struct BlockQuantized {
    int64_t rows = 0, cols = 0;
    BlockQuantSpec spec;
    std::vector<uint8_t> codes;  // [rows, cols]
    std::vector<float> scales;   // [tile_grid_rows, tile_grid_cols]
};
BlockQuantized quantize_blocks(const float* x, int64_t rows, int64_t cols, int64_t ld,
                               const BlockQuantSpec& spec);
void dequantize_blocks(const BlockQuantized& q, float* out, int64_t ld_out);

// Round-to-nearest-even of x to a float with only `mantissa_bits` fraction bits (1..23; 23 returns
// x): the limited accumulator of the GEMM reference. ConfigError outside 1..23.
float round_to_mantissa_bits(float x, int mantissa_bits);

// Reference block-scaled GEMM with DeepSeek's promotion rule, C[M,N] = A[M,K] * B[K,N]^T...
// precisely: A [M,K] quantized with tiles along K (a_spec.tile applies to A as stored), B stored
// [N,K] (the y = x W^T layout) quantized with b_spec.tile; the products of each 128-long K
// chunk are summed in an accumulator with `accumulator_mantissa_bits` bits (23 = fp32; the
// tensor cores' limited accumulator is about 13), then multiplied by the two tiles' scales and
// added to an fp32 accumulator ("promotion"). promote_every = 0 promotes only at the end (no
// promotion), which shows the error the rule removes for long K. Slow; for tests and figures.
// The operands are exactly fake_quantize's (same codes and scales). Scales are applied at
// promotion, so each chunk must see one scale per operand: with promote_every > 0 each
// operand's tile extent along K must be a multiple of it or cover K (ConfigError
// "promote_every" otherwise; 1x128 and 128x128 tiles with 128 are the DeepSeek case). With
// promote_every = 0 and tiles finer than K, each product is scaled before it enters the limited
// accumulator. Each add rounds the exact sum once (RNE) to the accumulator's width.
void gemm_block_scaled_reference(const float* A, const float* B, int64_t M, int64_t N,
                                 int64_t K, const BlockQuantSpec& a_spec,
                                 const BlockQuantSpec& b_spec, int promote_every,
                                 int accumulator_mantissa_bits, float* C);

}  // namespace moe
