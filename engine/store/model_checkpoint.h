#pragma once
// A whole-model checkpoint directory in the HF DeepSeek-V3 layout: config.json (ModelConfig)
// plus the weights (checkpoint.h), with the MTP layers' copies of the shared embedding and head.
#include <string>

#include "model/config.h"
#include "model/model.h"

namespace moe {

// Writes dir/config.json and dir/model.safetensors (each atomically).
void save_model_checkpoint(const std::string& dir, const Model& model);
// Reads dir/config.json (FileError/ConfigError naming the path and field).
ModelConfig load_checkpoint_config(const std::string& dir);
// Fills the model's parameters from dir; the model must have been built from the same config.
void load_model_weights(const std::string& dir, Model& model);

}  // namespace moe
