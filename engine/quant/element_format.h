#pragma once
// The element formats a tensor can be cast to, as one enum: what the precision modes, the block
// quantizer and the error metrics talk about. Bit-exact casts live in number_formats.h.
#include <string>

namespace moe {

enum class ElementFormat { FP32, BF16, FP16, E4M3, E5M2 };

// "fp32", "bf16", "fp16", "e4m3", "e5m2".
const char* format_name(ElementFormat format);
// Inverse of format_name; ConfigError naming `field` and the value otherwise.
ElementFormat parse_format(const std::string& name, const std::string& field);

// Largest finite magnitude (FLT_MAX for FP32) and smallest positive subnormal (FLT_TRUE_MIN).
float format_max(ElementFormat format);
float format_min_subnormal(ElementFormat format);

// Round-to-nearest-even cast and back to float. FP8 saturates to +-max (the DeepSeek recipe);
// FP16/BF16 overflow to +-Inf like the hardware casts. FP32 returns x.
float round_to_format(float x, ElementFormat format);

}  // namespace moe
