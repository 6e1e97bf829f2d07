#pragma once
// A whole-model checkpoint directory in the HF DeepSeek-V3 layout: config.json (ModelConfig)
// plus the weights (checkpoint.h), with the MTP layers' copies of the shared embedding and head.
#include <map>
#include <string>

#include "model/config.h"
#include "model/model.h"
#include "store/checkpoint.h"

namespace moe {

// Writes dir/config.json and dir/model.safetensors (each atomically); `metadata` goes into the
// safetensors header next to "format" and "producer".
void save_model_checkpoint(const std::string& dir, const Model& model,
                           std::map<std::string, std::string> metadata = {});
// Reads dir/config.json (FileError/ConfigError naming the path and field).
ModelConfig load_checkpoint_config(const std::string& dir);
// Fills the model's parameters from dir; the model must have been built from the same config.
// A checkpoint whose weights hold NaN or Inf is refused (FileError naming the tensors): nothing
// useful can be computed from it, and all-NaN logits would pass silently.
// progress: see load_checkpoint_weights.
void load_model_weights(const std::string& dir, Model& model, const LoadProgress& progress = {});

}  // namespace moe
