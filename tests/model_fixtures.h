#pragma once
// Tiny model configurations and batches shared by the model test suites.
#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/model.h"
#include "store/project.h"

namespace moe::test {

// Every feature on: q low-rank path, a dense first layer, n_group 2 with topk_group 1, a shared
// expert, sigmoid gate with a selection bias, routed_scaling_factor 2.5, MTP depth 1, the
// sequence-wise balance loss.
ModelConfig tiny_full_config();
// The V2-style variant: softmax gate without bias or group limit, plain q_proj, no MTP.
ModelConfig tiny_softmax_config();

// B sequences of T+1 random tokens.
Batch random_batch(int64_t vocab, int64_t B, int64_t T, uint64_t seed);

// projects/tiny-tasks.json shrunk to train in seconds on one core (hidden 32, 2 layers, 8
// experts top-2 in 2 groups, 2 x 16 tokens per step, no scheduled checkpoints).
Project shrunk_tiny_tasks(int64_t steps);

// The top-k expert ids of every MoE layer of the model's last probed forward, concatenated:
// equal signatures mean identical routing decisions.
std::vector<int32_t> routing_signature(const Model& model);

// Gives the gate weights a larger spread and the selection bias non-zero values, so routing
// is far from ties (finite differences must not flip a top-k choice) and the bias matters.
void spread_router(Model& model, uint64_t seed);

}  // namespace moe::test
