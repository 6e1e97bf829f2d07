#pragma once
// The memory a training run needs, estimated from the project before anything is allocated, and
// the check that refuses a run that cannot fit (naming the field to change, its value, and the
// memory). The estimate is a lower bound: fp32 weights, gradients and AdamW moments exactly, plus
// the activations the forward pass keeps for the backward pass (each layer's inputs, attention
// probabilities, expert hidden states, logits) counted once. A run it lets through can still run
// out of memory for scratch buffers; one it refuses could not have run.
#include "store/project.h"

namespace moe {

class Allocator;

struct TrainingMemory {
    double weights = 0;      // fp32, buffers included
    double gradients = 0;    // fp32
    double optimizer = 0;    // two fp32 AdamW moments
    double activations = 0;  // one micro-batch, lower bound
    double total() const { return weights + gradients + optimizer + activations; }
};

// fused_attention: the backend keeps each query's log-sum-exp instead of the attention
// probabilities (Backend::prefers_fused_attention).
TrainingMemory estimate_training_memory(const ModelConfig& model, int64_t batch_size,
                                        int64_t seq_len, bool fused_attention = false);
TrainingMemory estimate_training_memory(const Project& project, bool fused_attention = false);

// ConfigError naming the field that makes the run too large (a model size field, or
// training.batch_size / training.seq_len), its value, the memory needed and available on the
// allocator's device. The project must be valid.
void check_training_fits(const Project& project, Allocator& allocator,
                         bool fused_attention = false);

}  // namespace moe
