#pragma once
// What the trainer tells its driver (CLI, GUI session) after each step, evaluation and
// checkpoint: plain data, safe to copy across threads.
#include <cstdint>
#include <string>
#include <vector>

namespace moe {

struct StepReport {
    int64_t step = 0;         // optimizer steps done, this one included
    int64_t total_steps = 0;
    int64_t tokens = 0;       // training tokens seen so far
    double loss = 0, mtp_loss = 0, aux_loss = 0;
    double indexer_loss = 0;   // sparse attention indexers' KL, summed over layers (0: dense)
    bool index_warmup = false; // the step attended densely (sparse attention's warm-up)
    double lr = 0, grad_norm = 0;
    double tokens_per_s = 0;  // this step
    double wall_s = 0;        // training time so far (resumed runs include earlier sessions)
    double eta_s = 0;         // at the recent rate
    bool skipped = false;     // NaN/Inf loss or gradient: no update was made
    double loss_scale = 1.0;  // fp16 dynamic loss scale used for this step (1 otherwise)
    std::vector<double> maxvio;  // per MoE layer, this step's global batch
};

struct EvalReport {
    int64_t step = 0;
    double loss = 0;  // mean next-token cross-entropy over the validation batches
    std::vector<std::string> labels;
    std::vector<double> label_loss;      // per label (task or language)
    std::vector<double> label_accuracy;  // next-token accuracy on answers (or all tokens)
};

}  // namespace moe
