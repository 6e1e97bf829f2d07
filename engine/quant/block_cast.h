#pragma once
// The block cast behind fake_quantize, with the choice of leaving the decoded (unscaled) element
// values: what a tensor core multiplies before the scales are applied (internal to engine/quant,
// used by the block-scaled GEMM reference).
#include "quant/block_scaling.h"

namespace moe::quant_detail {

// apply_scale true: fake_quantize. false: out receives decode(code) without the tile scale.
CastCounts cast_blocks(const float* x, int64_t rows, int64_t cols, int64_t ld_x,
                       const BlockQuantSpec& spec, float* out, int64_t ld_out, float* scales,
                       bool apply_scale);

}  // namespace moe::quant_detail
