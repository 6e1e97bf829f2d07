#pragma once
// The precision of the model's projection GEMMs: every linear layer except the embedding, the
// output head and the MoE gate (those stay fp32, as in DeepSeek-V3's FP8 recipe; so do norms,
// RoPE and the attention softmax, which are not GEMMs on quantized inputs). Master weights,
// gradients and optimizer state stay fp32 in every mode: only the GEMM inputs are cast.
//   fp32  plain fp32 GEMMs (bitwise the engine's reference path)
//   bf16  both inputs rounded to bf16, fp32 accumulation
//   fp16  both inputs rounded to fp16 (overflow to Inf), fp32 accumulation; the trainer adds
//         dynamic loss scaling so small gradients do not flush to zero
//   fp8   E4M3 with fine-grained scales, the DeepSeek recipe for the three GEMMs of a layer:
//           fprop  y  = x W^T   x: 1x128 tiles along K,  W: 128x128 blocks
//           dgrad  dx = dy W    dy: 1x128 tiles,         W: 128x128 blocks
//           wgrad  dW = dy^T x  dy and x: 128x1 tiles (128 tokens of one channel, K = tokens)
//         per_tensor replaces every tile by one scale per operand (the comparison).
#include <string>

#include "backend/attention_math.h"
#include "quant/block_scaling.h"

namespace moe {

enum class LinearPrecision { FP32, BF16, FP16, FP8 };

const char* to_string(LinearPrecision p);  // "fp32", "bf16", "fp16", "fp8"
// ConfigError naming `field` for anything else.
LinearPrecision parse_linear_precision(const std::string& name, const std::string& field);

struct LinearRecipe {
    LinearPrecision mode = LinearPrecision::FP32;
    bool per_tensor = false;   // fp8: one scale per operand instead of tiles
    bool pow2_scales = false;  // fp8: scales rounded up to powers of two
    // Not a projection, but decided with them: the products inside fused attention
    // (training.precision.attention; GPU backends - the CPU's attention stays fp32).
    AttentionMath attention = AttentionMath::Fp32;

    bool quantized() const { return mode != LinearPrecision::FP32; }
    // The cast of each GEMM operand, tiles in the operand's stored layout.
    BlockQuantSpec activation() const;     // x (fprop) and dy (dgrad): [tokens, K]
    BlockQuantSpec weight() const;         // W [out, in], both as fprop and dgrad operand
    BlockQuantSpec wgrad_operand() const;  // dy and x in dW = dy^T x: [tokens = K, channels]
    bool operator==(const LinearRecipe&) const = default;
};

class QuantRecorder;

// What every projection of one model shares: the recipe, and while a step is being recorded,
// the recorder that measures each cast (null otherwise).
struct PrecisionContext {
    LinearRecipe recipe;
    QuantRecorder* recorder = nullptr;
};

// True for the parameters that go through projection GEMMs (and so are quantized in the low
// precision modes): 2-D weights other than embed_tokens, lm_head / shared_head.head and the
// MoE gate.
bool is_projection_weight(const std::string& parameter_name, int64_t rank);

}  // namespace moe
