#pragma once
// How fused attention multiplies (training.precision.attention in a project). Fp32: every
// product in fp32. Bf16: the operands of each product - q, k, v, dout and the probabilities /
// score gradients - rounded to bf16, sums and softmax statistics in fp32: what tensor cores do
// (FlashAttention's bf16 recipe). Backend::fused_attention_* take it.
namespace moe {

enum class AttentionMath { Fp32, Bf16 };

}  // namespace moe
