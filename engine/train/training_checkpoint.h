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
    std::string checkpoint_id;   // set by each save; also in both safetensors files' metadata

    nlohmann::json to_json() const;
    static TrainingState from_json(const nlohmann::json& j, const std::string& path);
};

// Writes the checkpoint directory `dir` (replacing an older one of that name) whole or not at
// all: into "<dir>.tmp", removed again when a write fails, then renamed. Unfinished
// "step-*.tmp" folders left in dir's parent by an interrupted earlier write are removed first.
// Each save stamps a new checkpoint_id into all three files.
void save_training_checkpoint(const std::string& dir, const Model& model, AdamW& optimizer,
                              const TrainingState& state);
// trainer_state.json of a checkpoint (FileError naming the file and field on problems).
TrainingState load_training_state(const std::string& dir);
// Throws FileError when model.safetensors or optimizer.safetensors carry another checkpoint_id
// than `state` (files of different saves mixed in one folder). No check for old checkpoints
// without ids.
void check_checkpoint_files(const std::string& dir, const TrainingState& state);
// Removes "step-NNNNNNNN.tmp" folders under root (interrupted writes); returns how many.
int remove_unfinished_checkpoints(const std::string& root);
// True while save_training_checkpoint is writing (for signal handlers: a second Ctrl-C waits for
// the write to finish instead of leaving a half checkpoint).
bool checkpoint_write_active();
// Model weights and optimizer moments; the model and optimizer must match the checkpoint's
// project (FileError naming the tensor otherwise).
void load_training_tensors(const std::string& dir, Model& model, AdamW& optimizer);

// Fits a project to a run of `steps` steps, as moe-train --steps does: training.steps and the
// schedule's total_steps become `steps`, and a warmup longer than half the run is shortened to a
// tenth of it. Returns the warmup it replaced, or 0 when it kept the warmup.
int64_t fit_project_to_steps(Project& project, int64_t steps);

// Where a project given with --resume disagrees with the checkpoint's own project, as field
// paths ("model.hidden_size", "training.optimizer.lr"). name, description, training.steps,
// training.device, training.threads and the schedule's total_steps may differ (they do not
// change what the checkpoint holds); a warmup the first run shortened for its --steps is
// compared as shortened.
std::vector<std::string> resume_conflicts(const Project& given, const Project& checkpoint);

// Checkpoint directories "step-NNNNNNNN" under root, oldest first.
std::vector<std::string> list_checkpoints(const std::string& root);
std::string checkpoint_dir_name(const std::string& root, int64_t step);
// Deletes all but the newest `keep` checkpoints under root (keep 0 keeps all), and never
// `also_keep` (the trainer's last verified-good checkpoint).
void prune_checkpoints(const std::string& root, int64_t keep, const std::string& also_keep = "");

}  // namespace moe
