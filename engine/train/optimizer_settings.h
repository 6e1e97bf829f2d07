#pragma once
// Training hyper-parameters (spec section 8): AdamW and its learning-rate schedule, the
// load-balancing mode (spec section 4) and the MTP loss weight schedule (spec section 5).
// Each reads and writes JSON strictly: unknown fields are rejected by name, values are checked
// and errors name the full path of the field ("training.optimizer.lr") and the bad value.
// Fields missing from the JSON keep their defaults. The schedule is nested in the optimizer's
// object: {"lr": 3e-3, ..., "schedule": {"kind": "cosine", "warmup_steps": 100, ...}}.
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "model/linear_precision.h"
#include "quant/int_quant.h"

namespace moe {

struct ModelConfig;

// The learning rate as a function of the step (counted from 0):
//   constant         peak at every step (warmup_steps is ignored)
//   warmup_constant  linear warmup, then peak
//   cosine           linear warmup, then cosine decay from peak to min_lr_ratio * peak over
//                    [warmup_steps, total_steps]
//   wsd              warmup-stable-decay: linear warmup, peak, then a LINEAR decay to
//                    min_lr_ratio * peak over the final decay_fraction of total_steps
// Warmup is linear from peak / warmup_steps (step 0) to peak (step warmup_steps - 1), so no
// step runs at lr 0. The decays reach their minimum at step == total_steps (one past the last
// step of a run of total_steps steps) and stay there beyond it.
struct LrSchedule {
    std::string kind = "cosine";
    int64_t warmup_steps = 100;
    int64_t total_steps = 1000;  // the run's optimizer steps; the trainer normally sets it
    double min_lr_ratio = 0.1;
    double decay_fraction = 0.2;  // wsd only

    double lr_at(int64_t step, double peak) const;

    // Throws ConfigError("<prefix>.<field>", ...) naming the first invalid field and its value.
    void validate(const std::string& prefix = "training.optimizer.schedule") const;
    static LrSchedule from_json(const nlohmann::json& j,
                                const std::string& prefix = "training.optimizer.schedule");
    nlohmann::json to_json() const;
    bool operator==(const LrSchedule&) const = default;
};

struct OptimizerSettings {
    double lr = 3e-3;  // peak learning rate
    double beta1 = 0.9;
    double beta2 = 0.95;
    double eps = 1e-8;
    double weight_decay = 0.1;  // matrices only (see AdamW)
    double grad_clip = 1.0;     // max global gradient norm; 0 = off
    int64_t grad_accum = 1;     // micro-batches per optimizer step
    LrSchedule schedule;

    void validate(const std::string& prefix = "training.optimizer") const;
    static OptimizerSettings from_json(const nlohmann::json& j,
                                       const std::string& prefix = "training.optimizer");
    nlohmann::json to_json() const;
    bool operator==(const OptimizerSettings&) const = default;
};

// How expert load is balanced. Mapping onto the model config (apply_balance_mode) and the
// trainer:
//   aux_free   aux_loss_alpha = 0; after every optimizer step the selection bias moves by gamma
//              (BiasBalancer). Needs topk_method "noaux_tc", the only routing with a bias.
//   seq_aux    aux_loss_alpha = alpha, seq_aux = true (per-sequence loss); no bias updates
//   batch_aux  aux_loss_alpha = alpha, seq_aux = false (whole-batch loss); no bias updates
//   none       aux_loss_alpha = 0; no bias updates (a baseline that shows the collapse)
struct BalanceSettings {
    std::string mode = "aux_free";
    double gamma = 0.001;  // bias update speed (V3: 0.001)
    double alpha = 1e-4;   // balance loss weight (V3: 1e-4 for the complementary loss)

    bool bias_updates() const { return mode == "aux_free"; }

    void validate(const std::string& prefix = "training.balance") const;
    static BalanceSettings from_json(const nlohmann::json& j,
                                     const std::string& prefix = "training.balance");
    nlohmann::json to_json() const;
    bool operator==(const BalanceSettings&) const = default;
};

// Sets cfg.aux_loss_alpha and cfg.seq_aux for the mode (table above). Throws ConfigError
// ("training.balance.mode") for aux_free on a model whose routing has no selection bias.
void apply_balance_mode(const BalanceSettings& balance, ModelConfig& cfg);

// Weight of the MTP loss: lambda for the first switch_fraction of the run, late_lambda after
// (V3: 0.3 for the first 10T tokens, 0.1 for the last 4.8T, i.e. a switch at ~0.7).
struct MtpSchedule {
    double lambda = 0.3;
    double late_lambda = 0.1;
    double switch_fraction = 0.7;

    // step counts from 0; total <= 0 (unknown length) keeps lambda.
    double lambda_at(int64_t step, int64_t total) const;

    void validate(const std::string& prefix = "training.mtp") const;
    static MtpSchedule from_json(const nlohmann::json& j,
                                 const std::string& prefix = "training.mtp");
    nlohmann::json to_json() const;
    bool operator==(const MtpSchedule&) const = default;
};

// fp16 dynamic loss scaling: the loss (so every gradient) is multiplied by `scale` before the
// backward pass; a step whose gradients overflow (Inf/NaN) is skipped and the scale multiplied
// by `backoff`; after `growth_interval` good steps in a row it is multiplied by `growth`.
struct LossScaleSettings {
    double initial = 65536.0;
    int64_t growth_interval = 200;
    double backoff = 0.5;
    double growth = 2.0;

    void validate(const std::string& prefix = "training.precision.loss_scale") const;
    static LossScaleSettings from_json(const nlohmann::json& j,
                                       const std::string& prefix = "training.precision.loss_scale");
    nlohmann::json to_json() const;
    bool operator==(const LossScaleSettings&) const = default;
};

// Quantization-aware training (training.precision.qat): the projection weights are
// fake-quantized to INT8 / INT4 / INT3 / INT2 for every forward and backward pass from start_step on, the
// gradients pass straight through the rounding (STE: dL/dW is taken at the quantized weights
// and applied to the fp32 master weights), evaluation runs the quantized model. The formats are
// quant/int_quant.h's, so int4 post-training quantization of the master weights afterwards
// gives exactly the model QAT trained.
//   bits        0 (off), 8, 4, 3 or 2 (INT3, INT2: study formats, codes stored in nibbles)
//   group_size  0: one scale per output channel; else per group of input columns (must divide
//               every projection's input width)
//   scheme      "symmetric" or "asymmetric" (an integer zero point per group)
//   start_step  the step QAT starts at (fine-tuning a trained run is the common case)
struct QatSettings {
    int64_t bits = 0;
    int64_t group_size = 0;
    std::string scheme = "symmetric";
    int64_t start_step = 0;
    // Learned scales (LSQ's step-size gradient, applied as a learned clip): 0 = each group's
    // scale from its range, amax / qmax; > 0 = after every applied step each group's clip moves
    // by this learning rate along -dL/dalpha (alpha = clip / amax, at most 1) and the master
    // weights are clamped to it, so the checkpoint holds the learned range and its
    // quantization is the one QAT trained (symmetric only; weight_fake_quant.h).
    double scale_lr = 0.0;

    bool enabled() const { return bits > 0; }
    bool learns_scales() const { return enabled() && scale_lr > 0.0; }
    bool active_at(int64_t step) const { return enabled() && step >= start_step; }
    IntQuantSpec spec() const;
    void validate(const std::string& prefix = "training.precision.qat") const;
    static QatSettings from_json(const nlohmann::json& j, const std::string& prefix = "training.precision.qat");
    nlohmann::json to_json() const;
    bool operator==(const QatSettings&) const = default;
};

// The precision of the projection GEMMs (model/linear_precision.h) and what the run file
// records about it.
//   mode            fp32 | bf16 | fp16 | fp8
//   scaling         fp8 scales per "tile" (1x128 activations, 128x128 weights, the DeepSeek
//                   recipe) or per "tensor" (one scale per operand: the comparison)
//   scale_rounding  "exact" (amax / 448) or "pow2" (rounded up to a power of two)
//   record_every    steps between /quant rows of the run file (0: never); quantized modes only
//   loss_scale      fp16 only
struct PrecisionSettings {
    std::string mode = "fp32";
    std::string scaling = "tile";
    std::string scale_rounding = "exact";
    std::string attention = "fp32";  // "bf16": fused attention on tensor cores (GPU)
    int64_t record_every = 100;
    LossScaleSettings loss_scale;
    QatSettings qat;  // with mode "fp32" only

    LinearRecipe recipe() const;
    bool loss_scaling() const { return mode == "fp16"; }

    void validate(const std::string& prefix = "training.precision") const;
    static PrecisionSettings from_json(const nlohmann::json& j,
                                       const std::string& prefix = "training.precision");
    nlohmann::json to_json() const;
    bool operator==(const PrecisionSettings&) const = default;
};

}  // namespace moe
