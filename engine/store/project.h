#pragma once
// Project: what the workbench opens and saves, `projects/NAME.json`:
//   {"name": str, "description": str, "model": {HF config.json fields},
//    "training": {"batch_size", "seq_len", "seed", "threads", "mtp_lambda", "data"}}
// A bare HF config.json also loads as a project (with default training settings), so a
// checkpoint's config can be opened directly. See docs/model-config.md.
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "data/data_spec.h"
#include "model/config.h"
#include "train/optimizer_settings.h"

namespace moe {

// Limits of TrainingSettings::validate (docs/model-config.md): far above what fits anywhere
// today, low enough that sizes multiply without overflow.
inline constexpr int64_t kMaxThreads = 1024;
inline constexpr int64_t kMaxBatchSize = int64_t(1) << 20;
inline constexpr int64_t kMaxBatchTokens = int64_t(1) << 28;

struct TrainingSettings {
    int64_t batch_size = 8;         // sequences per step (per micro-batch)
    int64_t seq_len = 128;          // tokens per sequence
    int64_t seed = 0;               // initialization and data order
    int64_t threads = 0;            // CPU threads; 0 = all cores
    std::string device = "cpu";     // where to train: "cpu" or "cuda:N"
    int64_t steps = 1000;           // optimizer steps of a full run (the LR schedule's length)
    DataSpec data;                  // where training text comes from (data/data_spec.h)
    OptimizerSettings optimizer;    // AdamW, LR schedule, clipping, accumulation
    BalanceSettings balance;        // aux_free | seq_aux | batch_aux | none
    MtpSchedule mtp;                // MTP loss weight over training
    PrecisionSettings precision;    // fp32 | bf16 | fp16 | fp8 projection GEMMs

    // Bookkeeping intervals, in optimizer steps (0 turns the item off).
    int64_t log_every = 10;         // metrics and expert load rows in the run file
    int64_t eval_every = 100;       // validation loss, per label
    int64_t eval_batches = 8;       // validation batches per evaluation
    int64_t routing_every = 100;    // routing snapshot of the probe text
    int64_t probe_tokens = 256;     // length of the probe text
    int64_t checkpoint_every = 500; // checkpoint directories
    int64_t keep_checkpoints = 3;   // the newest K are kept
    int64_t max_bad_steps = 5;      // consecutive NaN/Inf steps before the run stops
    // Sparse attention (model.index_topk > 0): the first steps attend densely while the
    // indexers learn from every causal key (DeepSeek-V3.2's dense warm-up); 0 = sparse at once.
    int64_t index_warmup_steps = 0;

    bool operator==(const TrainingSettings&) const = default;

    // Field names are prefixed "training." in errors. seq_len is checked against the model
    // separately (Project::validate).
    void validate() const;
    static TrainingSettings from_json(const nlohmann::json& j);
    nlohmann::json to_json() const;
};

struct Project {
    std::string name;
    std::string description;
    ModelConfig model;
    TrainingSettings training;

    bool operator==(const Project&) const = default;

    // model.validate(), training.validate(), and training.seq_len <= max_position_embeddings.
    void validate() const;

    // Rejects unknown fields like ModelConfig::from_json. A JSON object with "model_type" at the
    // top level is read as a bare HF config (name "", description "", default training).
    static Project from_json(const nlohmann::json& j);
    nlohmann::json to_json() const;

    // load: parses and validates; FileError for unreadable files or invalid JSON,
    // ConfigFileError (what() starts with the path) for bad fields. A missing or empty name
    // becomes the file's stem. save: pretty JSON, atomic, not validated.
    static Project load(const std::string& path);
    void save(const std::string& path) const;
};

}  // namespace moe
