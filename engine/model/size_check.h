#pragma once
// Size checks that run before anything is allocated. Every size field of a config has an upper
// bound (docs/model-config.md, "Size limits") and the model as a whole a parameter limit, both
// checked in floating point, so that the int64 arithmetic on sizes done everywhere after
// validate() cannot overflow. The memory a model needs is compared with what the machine (or the
// device) can give before the first buffer is allocated; the error names the field that makes
// the model too large, its value, and the memory.
#include <cstdint>
#include <functional>
#include <string>

#include "model/config.h"

namespace moe {

class Allocator;

// Most parameters a model may have (DeepSeek-V3 has 6.7e11 with its MTP module).
inline constexpr double kMaxModelParameters = 1e13;

// Every parameter of the model, the MTP modules and bias buffers included, in double precision
// (no overflow for any int64 field values). For a valid config it agrees with summarize().
double estimate_parameters(const ModelConfig& config);

// The size field whose reset to its default value lowers `cost` the most: the field to blame in
// "too large" messages. name "" when no field above its default lowers it.
struct DominantField {
    std::string name;   // HF name, e.g. "hidden_size"
    int64_t value = 0;  // its value in the config
    double saving = 0;  // cost(config) - cost(config with the field at its default)
    std::string shown() const { return name.empty() ? name : name + " " + std::to_string(value); }
};
DominantField dominant_size_field(const ModelConfig& config,
                                  const std::function<double(const ModelConfig&)>& cost);

// Throws ConfigError naming the dominant field when the model's weights (and its gradients when
// `with_gradients`) do not fit in the memory `allocator` can give (host: available RAM within
// the process's limits; a GPU: its free memory).
void check_model_fits(const ModelConfig& config, Allocator& allocator, bool with_gradients);

// "1.50 GiB", "3.2 TiB" for messages.
std::string format_memory(double bytes);

}  // namespace moe
