#pragma once
// One Multi-Token Prediction module (spec section 5), depth k of D:
//   h' = eh_proj([enorm(Emb(t_{i+k})) ; hnorm(h^{k-1}_i)])   (embedding first, as released)
//   h^k = Block(h');  logits = lm_head(shared_head.norm(h^k))
// The embedding and the output head are the main model's (shared parameters); the module owns
// enorm, hnorm, eh_proj, its block and shared_head.norm under model.layers.<L + k - 1>.
#include <cstdint>
#include <string>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/parameters.h"
#include "model/linear_precision.h"
#include "model/transformer_block.h"

namespace moe {

class MtpModule {
public:
    MtpModule(ParameterStore& store, int64_t layer_index, const ModelConfig& cfg,
              const PrecisionContext* precision = nullptr);

    // emb [n, D]: Emb(t_{i+k}) (from the shared embedding); h_prev [n, D]: h^{k-1}.
    // Writes the module's final normalized hidden state (input to the shared head) to
    // normed() and its block output h^k to output(). Returns the block's balance loss.
    double forward(Backend& be, const float* emb, const float* h_prev, int64_t B, int64_t T,
                   const int32_t* positions, RoutingRecord* probe);
    // d_normed: gradient w.r.t. normed(); d_out_extra: gradient w.r.t. output() from the next
    // module (may be null). Accumulates into d_emb and d_h_prev.
    void backward(Backend& be, const float* d_normed, const float* d_out_extra, float* d_emb,
                  float* d_h_prev);

    const Tensor& output() const { return block_.output(); }
    const Tensor& normed() const { return normed_; }
    TransformerBlock& block() { return block_; }
    const TransformerBlock& block() const { return block_; }

private:
    int64_t D_;
    float eps_;
    Parameter* enorm_;
    Parameter* hnorm_;
    Parameter* eh_proj_;
    const PrecisionContext* precision_;
    TransformerBlock block_;
    Parameter* head_norm_;

    const float* emb_ = nullptr;
    const float* h_prev_ = nullptr;
    int64_t n_ = 0;
    Tensor cat_, e_rstd_, h_rstd_, proj_, normed_, head_rstd_;
    Tensor d_out_, d_proj_, d_cat_;
};

}  // namespace moe
