#pragma once
// A training checkpoint: everything needed to continue a run bit-exactly, in one directory.
//   config.json, model.safetensors   the model in the HF layout (loadable by any HF tool;
//                                    the balancing bias is a tensor there)
//   optimizer.safetensors            AdamW moments "optimizer.m.<param>", "optimizer.v.<param>"
//   trainer_state.json               step, tokens, wall time, AdamW step, data position, the
//                                    project, NaN-guard state
// Written into "<dir>.tmp" and renamed into place, so a crash never leaves a half checkpoint
// under the final name.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/model.h"
#include "store/project.h"
#include "train/adamw.h"

namespace moe {

struct TrainingState {
    int64_t step = 0;            // optimizer steps done
    int64_t tokens = 0;          // training tokens seen
    double wall_s = 0;           // training time so far
    int64_t bad_steps = 0;       // consecutive skipped steps at the time of saving
    int64_t optimizer_step = 0;  // AdamW's step count (bias correction)
    double loss_scale = 1.0;     // fp16 dynamic loss scale, and the good steps toward its growth
    int64_t loss_scale_good_steps = 0;
    nlohmann::json data;         // DataLoader::state()
    Project project;
    std::string run_file;        // the run file this checkpoint belongs to

    nlohmann::json to_json() const;
    static TrainingState from_json(const nlohmann::json& j, const std::string& path);
};

// Writes the checkpoint directory `dir` (replacing an older one of that name).
void save_training_checkpoint(const std::string& dir, const Model& model, AdamW& optimizer,
                              const TrainingState& state);
// trainer_state.json of a checkpoint (FileError naming the file and field on problems).
TrainingState load_training_state(const std::string& dir);
// Model weights and optimizer moments; the model and optimizer must match the checkpoint's
// project (FileError naming the tensor otherwise).
void load_training_tensors(const std::string& dir, Model& model, AdamW& optimizer);

// Checkpoint directories "step-NNNNNNNN" under root, oldest first.
std::vector<std::string> list_checkpoints(const std::string& root);
std::string checkpoint_dir_name(const std::string& root, int64_t step);
// Deletes all but the newest `keep` checkpoints under root (keep 0 keeps all).
void prune_checkpoints(const std::string& root, int64_t keep);

}  // namespace moe
