#pragma once
// The DeepSeek-V3 model: embedding, decoder layers (MLA + dense FFN or DeepSeekMoE), final norm,
// untied output head, and D Multi-Token Prediction modules sharing the embedding and the head.
// Forward and backward are written out layer by layer; all data work goes through a Backend.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "core/index_buffer.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/linear_precision.h"
#include "model/mtp_module.h"
#include "model/parameters.h"
#include "model/routing_probe.h"
#include "model/transformer_block.h"

namespace moe {

// B sequences of T+1 tokens t_0..t_T: inputs t_0..t_{T-1}, next-token targets t_1..t_T.
// MTP module k predicts t_{i+k+1} at position i, so the extra tokens are used by it too.
struct Batch {
    int64_t batch = 0;
    int64_t seq_len = 0;          // T
    std::vector<int32_t> tokens;  // [batch, seq_len + 1]
};

struct ForwardOptions {
    double mtp_lambda = 0.3;      // weight of the MTP loss (spec: 0.3 early, 0.1 late)
    bool probe_routing = false;   // record every MoE layer's routing decisions
};

struct LossReport {
    double loss = 0.0;       // main next-token cross-entropy, mean over positions
    double mtp_loss = 0.0;   // mtp_lambda / D * sum_k CE_k
    double aux_loss = 0.0;   // sum over MoE layers of the balance loss (per sequence or per batch)
    double total = 0.0;      // loss + mtp_loss + aux_loss: what backward differentiates
    // Sparse attention (index_topk > 0): the indexers' KL losses summed over the layers (main
    // and MTP). Not part of total: each indexer learns from its own loss alone (detached), and
    // backward adds those gradients to the indexer weights.
    double indexer_loss = 0.0;
    std::vector<double> mtp_losses;  // CE_k per depth, unweighted
};

class Model {
public:
    Model(const ModelConfig& cfg, Backend& backend);

    const ModelConfig& config() const { return cfg_; }
    ParameterStore& parameters() { return params_; }
    const ParameterStore& parameters() const { return params_; }
    Backend& backend() { return be_; }

    // Precision of the projection GEMMs (model/linear_precision.h); fp32 unless set. Takes
    // effect at the next forward. The context's recorder, when set, measures every cast.
    void set_linear_recipe(const LinearRecipe& recipe) { precision_.recipe = recipe; }
    PrecisionContext& precision() { return precision_; }

    // Normal(0, initializer_range) for matrices, 1 for norm weights, 0 for the gate bias.
    // Each parameter draws from its own counter-based stream, so the result does not depend on
    // thread count or creation order.
    void init_weights(uint64_t seed);

    // Training forward: losses for the batch; activations are kept for backward().
    LossReport forward(const Batch& batch, const ForwardOptions& options = {});
    // Gradients of the last forward's total loss times loss_scale, accumulated into each
    // parameter's grad (call parameters().zero_grads() first for a fresh step). loss_scale > 1 is
    // fp16 loss scaling: it lifts small gradients out of fp16's flush-to-zero range; the
    // optimizer divides it out again.
    void backward(float loss_scale = 1.0f);

    // Inference forward of B sequences of T tokens (no targets, no MTP): logits() [B*T, V].
    void forward_logits(const int32_t* tokens, int64_t B, int64_t T, bool probe_routing = false);
    const Tensor& logits() const { return logits_; }

    // Generation with a KV cache (model/kv_cache.h, MLA's absorbed form): the main model over
    // n new tokens of one sequence at positions start .. start + n - 1, attending to the cache
    // rows before them and writing its own. logits() is [n, V] with all_logits, else [1, V] for
    // the last token; hidden() [n, D] is the trunk's output (the MTP module's input).
    void forward_cached(const int32_t* tokens, int64_t n, int64_t start, KvCache& cache,
                        bool all_logits, bool probe_routing = false);
    const Tensor& hidden() const;
    // The first MTP module as a drafter (speculative decoding): trunk states h [n, D] of
    // positions start .. start + n - 1 with the token after each (next_tokens [n], host) predict
    // the token after that; the module's layer uses and extends its own cache rows.
    // mtp_logits() [n, V]. Error when the model has no MTP module.
    void mtp_forward_cached(const float* h, const int32_t* next_tokens, int64_t n, int64_t start,
                            KvCache& cache, bool probe_routing = false);
    const Tensor& mtp_logits() const { return mtp_draft_logits_; }
    // Main-head cross-entropy of each position of the last training forward [B*T] (0 where
    // the target is ignored); with logits() this gives per-label losses and accuracies.
    const Tensor& token_losses() const { return losses_; }
    // Routing decisions of every MoE layer (main, then MTP) of the last forward, if probed.
    const std::vector<RoutingRecord>& routing() const { return routing_; }
    // Token inputs [B*T] of the last forward, on the host.
    const std::vector<int32_t>& host_inputs() const { return host_inputs_; }

    std::vector<MoeLayer*> moe_layers();  // main layers first, then MTP layers
    // Every MoE layer's routed experts split over the ranks of `comm` (MoeLayer::
    // set_expert_parallel); null: all experts in this process.
    void set_expert_parallel(Communicator* comm);
    // HF layer index of every decoder layer, main then MTP (the FFN layers of the sparsity
    // record), and the share of near-zero SwiGLU outputs in each during the last forward.
    std::vector<int64_t> ffn_layer_indices() const;
    std::vector<double> ffn_near_zero(float threshold) const;
    // Attention weights [B, H, T, T] of main layer `layer` (HF index) from the last forward;
    // the routing inspector shows them next to the experts. Error for a layer out of range.
    const Tensor& attention_probs(int64_t layer) const;
    // Sparse attention: the keys each query of layer `layer` (HF index: main, then MTP) attended to in the last
    // forward, [B, T, K] with K = selected_width(), -1 padded; empty for dense attention (or in
    // the dense warm-up).
    std::vector<int32_t> selected_keys(int64_t layer) const;
    int64_t selected_width(int64_t layer) const;
    // Dense warm-up of the sparse attention indexers (every layer): dense attention, the
    // indexers trained toward it. No effect without index_topk.
    void set_index_warmup(bool warmup);
    // Tensors the HF layout stores as copies of a shared parameter: (alias, source) pairs, the
    // MTP layers' embed_tokens and shared_head.head.
    std::vector<std::pair<std::string, std::string>> checkpoint_aliases() const;

private:
    // Embedding + main blocks over inputs [B*T]; returns the summed balance loss.
    double run_trunk(const int32_t* inputs, int64_t B, int64_t T, bool probe);
    const MlaAttention& attention_of(int64_t layer) const;  // main then MTP layers
    void run_head(const float* h, int64_t n);  // final norm + lm_head -> logits_

    ModelConfig cfg_;
    Backend& be_;
    PrecisionContext precision_;  // shared by every projection, so declared before the layers
    ParameterStore params_;
    Parameter* embed_ = nullptr;
    std::vector<std::unique_ptr<TransformerBlock>> blocks_;
    Parameter* norm_ = nullptr;
    Parameter* head_ = nullptr;
    std::vector<std::unique_ptr<MtpModule>> mtp_;

    // Forward state.
    int64_t B_ = 0, T_ = 0;
    double mtp_lambda_ = 0.0;
    bool has_forward_ = false;
    // Indices where the backend computes, staged on the host and uploaded once per forward.
    std::vector<int32_t> host_inputs_, host_targets_, host_positions_, host_stage_;
    IndexBuffer inputs_, targets_, positions_;
    std::vector<IndexBuffer> mtp_inputs_, mtp_targets_;  // per depth [B*T]
    std::vector<int64_t> mtp_valid_;                              // valid targets per depth
    int64_t main_valid_ = 0;
    Tensor x0_, normed_, norm_rstd_, logits_, losses_, mtp_token_losses_;
    std::vector<Tensor> mtp_emb_, mtp_logits_;
    Tensor mtp_draft_emb_, mtp_draft_logits_;
    IndexBuffer draft_tokens_;
    void upload_positions(int64_t n, int64_t start);
    std::vector<RoutingRecord> routing_;
    // Backward scratch.
    Tensor d_logits_, d_normed_, d_a_, d_b_, d_emb_;
    std::vector<Tensor> d_h_;  // gradient w.r.t. h^k, k = 0..D (h^0 = trunk output)
};

}  // namespace moe
