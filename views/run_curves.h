#pragma once
// Plain data for the training-curves view: the /metrics and /eval columns of one run, as a run
// file reader or a live session fills them. Empty column = not logged; NaN = missing value.
#include <QString>
#include <QStringList>

#include <vector>

namespace moe::views {

struct EvalCurves {
    std::vector<double> step;                     // [M]
    std::vector<double> loss;                     // [M] overall
    QStringList labels;                           // data labels (task, language)
    std::vector<std::vector<double>> label_loss;  // [labels.size()][M]
};

struct RunCurves {
    QString run_name;
    QString precision;  // "fp32", "bf16", "fp16", "fp8"; empty = unknown. Shown when runs differ.
    // One row per logged step, all of equal length N (step ascending).
    std::vector<double> step, tokens, wall_s;
    std::vector<double> loss, mtp_loss, aux_loss, lr, grad_norm, tokens_per_s;
    // fp16 dynamic loss scaling: the scale per step and 1 where the step was skipped (overflow).
    // Left empty for runs without loss scaling, so no panel is drawn for them.
    std::vector<double> loss_scale, skipped;
    EvalCurves eval;
};

// The per-step metrics, in drawing order.
enum class Metric { Loss, MtpLoss, AuxLoss, Lr, GradNorm, TokensPerS, EvalLoss, LossScale };

}  // namespace moe::views
