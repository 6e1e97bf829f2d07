#pragma once
// Checkpoint weights in the HuggingFace layout: a directory with config.json and either
// model.safetensors or shards model-0000K-of-0000N.safetensors listed by
// model.safetensors.index.json ("weight_map": tensor name -> shard file). Tensor names are the
// ParameterStore's names, so no translation happens here. config.json is the caller's business
// (ModelConfig::load/save); these functions touch only the weights.
#include <map>
#include <functional>
#include <string>
#include <vector>

#include "model/parameters.h"

namespace moe {

// A tensor the HF layout stores as a copy of another parameter: the MTP layer's
// model.layers.{L}.embed_tokens.weight and model.layers.{L}.shared_head.head.weight are copies of
// model.embed_tokens.weight and lm_head.weight. The model supplies the list.
struct CheckpointAlias {
    std::string alias;
    std::string source;
};

inline constexpr const char* kCheckpointWeightsFile = "model.safetensors";
inline constexpr const char* kCheckpointIndexFile = "model.safetensors.index.json";

// Creates `dir` if needed and writes dir/model.safetensors (atomically) with every parameter of
// the store in creation order, buffers included, then each alias as a copy of its source.
// Metadata: {"format": "pt"} (what transformers expects) plus `metadata` (which may override it).
// Throws Error for an alias whose source is not a parameter or whose name is one; FileError for
// I/O problems.
void save_checkpoint_weights(const std::string& dir, const ParameterStore& params,
                             const std::vector<CheckpointAlias>& aliases,
                             const std::map<std::string, std::string>& metadata = {});

// Fills every parameter of the store from the checkpoint in `dir` (single file or sharded),
// converting BF16/F16/F64 to fp32. The whole checkpoint is checked before any parameter is
// written (names, shapes, dtypes, FP8), so a rejected checkpoint leaves the store unchanged;
// only an I/O error in the middle of reading can leave it partly loaded.
// Alias tensors in the file are shape-checked against their source and otherwise ignored.
// Projection weights stored as integer codes with scales ("<module>.qweight", ".scales",
// ".zeros"; store/int_weights.h) are dequantized to fp32 the same way.
// FileErrors name the checkpoint file and the tensor: missing parameters, unexpected tensors,
// shape mismatches, FP8 block scales (*.weight_scale_inv; not supported yet), corrupt files.
// progress (optional) is called after each tensor with the bytes read so far and in all (as
// stored: BF16 and FP8 count their own size), for a progress bar on large checkpoints.
using LoadProgress = std::function<void(int64_t done_bytes, int64_t total_bytes)>;
void load_checkpoint_weights(const std::string& dir, ParameterStore& params,
                             const std::vector<CheckpointAlias>& aliases,
                             const LoadProgress& progress = {});

}  // namespace moe
