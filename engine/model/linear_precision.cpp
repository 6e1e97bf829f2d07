#include "model/linear_precision.h"

#include "core/error.h"

namespace moe {

const char* to_string(LinearPrecision p) {
    switch (p) {
        case LinearPrecision::FP32: return "fp32";
        case LinearPrecision::BF16: return "bf16";
        case LinearPrecision::FP16: return "fp16";
        case LinearPrecision::FP8: return "fp8";
    }
    return "?";
}

LinearPrecision parse_linear_precision(const std::string& name, const std::string& field) {
    for (auto p : {LinearPrecision::FP32, LinearPrecision::BF16, LinearPrecision::FP16,
                   LinearPrecision::FP8})
        if (name == to_string(p)) return p;
    throw ConfigError(field, "expected one of fp32, bf16, fp16, fp8, got \"" + name + "\"");
}

namespace {

BlockQuantSpec cast_spec(const LinearRecipe& r, TileShape tile) {
    BlockQuantSpec s;
    switch (r.mode) {
        case LinearPrecision::FP32:
            s.format = ElementFormat::FP32;
            s.scaled = false;
            break;
        case LinearPrecision::BF16:
            s.format = ElementFormat::BF16;
            s.scaled = false;
            break;
        case LinearPrecision::FP16:
            s.format = ElementFormat::FP16;
            s.scaled = false;
            break;
        case LinearPrecision::FP8:
            s.format = ElementFormat::E4M3;
            s.scaled = true;
            break;
    }
    s.tile = r.per_tensor ? kPerTensor : tile;
    s.pow2_scales = r.pow2_scales;
    return s;
}

}  // namespace

BlockQuantSpec LinearRecipe::activation() const { return cast_spec(*this, kTile1x128); }
BlockQuantSpec LinearRecipe::weight() const { return cast_spec(*this, kTile128x128); }
BlockQuantSpec LinearRecipe::wgrad_operand() const { return cast_spec(*this, kTile128x1); }

bool is_projection_weight(const std::string& name, int64_t rank) {
    if (rank != 2) return false;
    for (const char* kept : {"embed_tokens.weight", "lm_head.weight", "shared_head.head.weight",
                             ".mlp.gate.weight"})
        if (name.ends_with(kept)) return false;
    return true;
}

}  // namespace moe
