#pragma once
// Validation: mean loss over a fixed set of held-out batches, per label (task or language),
// and next-token accuracy: on answer tokens for tasks that have answers (the part after '=' or
// '>'), on every token otherwise.
#include <cstdint>
#include <vector>

#include "data/data_loader.h"
#include "model/model.h"
#include "train/train_reports.h"

namespace moe {

EvalReport evaluate(Model& model, DataLoader& data, int64_t batches, double mtp_lambda);

}  // namespace moe
