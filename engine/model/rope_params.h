#pragma once
// The rotary frequencies of a model (backend.h, RopeParams) from its config: plain RoPE, or
// YaRN as DeepSeek defines it (model/config.h, RopeScaling).
#include "backend/backend.h"
#include "model/config.h"

namespace moe {

RopeParams rope_params(const ModelConfig& config);

}  // namespace moe
