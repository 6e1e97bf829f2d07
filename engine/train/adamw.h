#pragma once
// AdamW (decoupled weight decay) over a model's trainable parameters, fp32 moments.
// Weight decay applies to matrices only (rank >= 2: projections, experts, embedding, head,
// gate); rank-1 tensors (RMSNorm weights) get none, since shrinking a norm's gain towards 0 is
// not a regularizer but a distortion of the activations' scale. Buffers (trainable = false,
// such as e_score_correction_bias) are not touched. The moments live on the backend's device.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/parameters.h"
#include "parallel/communicator.h"
#include "train/optimizer_settings.h"

namespace moe {

class AdamW {
public:
    // Captures the store's trainable parameters and allocates their moments (zero) once.
    // The store and the backend must outlive the optimizer.
    AdamW(ParameterStore& store, Backend& backend, const OptimizerSettings& settings);

    // One update of every trainable parameter from its grad: g' = grad_scale * grad (fold
    // 1 / grad_accum and the clip factor in here). Increments the step count first, so the
    // first call uses bias corrections for step 1.
    void step(double lr, double grad_scale);

    // Betas, eps and weight decay may change between steps (the lr comes with each step).
    void set_settings(const OptimizerSettings& settings) { settings_ = settings; }
    const OptimizerSettings& settings() const { return settings_; }

    // Checkpoint state: ("optimizer.m.<param name>", m), ("optimizer.v.<param name>", v) for
    // every trainable parameter, in the store's order, plus the step count. The tensors are
    // the live moments: a checkpoint reader writes into them.
    std::vector<std::pair<std::string, Tensor*>> state_tensors();
    int64_t step_count() const { return step_; }
    void set_step_count(int64_t step) { step_ = step; }
    void reset();  // moments to 0, step count to 0

    // The weight decay a parameter gets (0 for rank < 2).
    float decay_for(const Parameter& p) const;

    // ZeRO-1 (packed stores): from here on this rank keeps the moments of its share of the
    // arena only - [begin, end), a 1/size() slice - updates those values alone and gathers the
    // others' (`comm` must outlive the optimizer). The current moments' slice is kept.
    void shard(Communicator& comm);
    bool sharded() const { return comm_ != nullptr; }
    // A sharded optimizer's whole moments for a checkpoint: gather_state() (collective) makes
    // them whole on every rank, so state_tensors() can be read or written; release_full_state()
    // keeps this rank's slice of them (after a load too) and frees the rest.
    void gather_state();
    void release_full_state();

private:
    void point_slots_at(Tensor& m, Tensor& v);  // per-parameter views into whole arenas
    void copy(const float* src, float* dst, int64_t n);
    struct Slot {
        Parameter* param;
        Tensor m, v;  // views into m_arena_ / v_arena_ for a packed store
    };
    Backend& be_;
    ParameterStore& store_;
    OptimizerSettings settings_;
    std::vector<Slot> slots_;
    // A packed store (ParameterStore::pack): the moments in two arenas laid out like its
    // gradient arena, so a step is two updates (decayed matrices, then vectors).
    Tensor m_arena_, v_arena_;
    int64_t step_ = 0;
    // ZeRO-1: the slice this rank updates, every rank's slice length, and whole moments while
    // a checkpoint is written or read.
    Communicator* comm_ = nullptr;
    int64_t begin_ = 0, end_ = 0;
    std::vector<int64_t> counts_;
    Tensor m_full_, v_full_;
};

}  // namespace moe
