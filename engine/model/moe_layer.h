#pragma once
// DeepSeekMoE (spec section 3): shared experts that see every token plus routed experts chosen
// per token by a sigmoid (or softmax) gate with group-limited top-k and a selection-only bias.
// Dropless: each routed expert runs one GEMM chain over exactly the tokens sent to it, after the
// tokens are permuted so each expert's tokens are contiguous. All experts of a projection run
// as one grouped GEMM (Backend::grouped_linear_*, with the precision mode's casts applied per
// expert) that reads the route plan where the backend keeps it: on a GPU the host does not
// wait for the routing inside the step. A step whose casts are recorded (the precision view)
// loops over the experts with the plan's offsets copied to the host.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"
#include "core/device_array.h"
#include "core/index_buffer.h"
#include "core/tensor.h"
#include "model/activation_sparsity.h"
#include "model/config.h"
#include "model/expert_dispatch.h"
#include "model/parameters.h"
#include "model/routing_probe.h"
#include "model/swiglu_ffn.h"

namespace moe {

class MoeLayer {
public:
    MoeLayer(ParameterStore& store, const std::string& prefix, int64_t layer_index,
             const ModelConfig& cfg, const PrecisionContext* precision = nullptr);

    // h [B*T, D] (kept by pointer until backward) -> y [B*T, D] (overwritten). Returns this
    // layer's balance loss (0 when aux_loss_alpha == 0). probe: when non-null, filled with the
    // routing decisions of this pass.
    double forward(Backend& be, const float* h, int64_t B, int64_t T, RoutingRecord* probe,
                   float* y);
    // dh += d/dh given dy; the balance loss enters with weight aux_grad_scale (1, or the loss
    // scale of fp16 training, which multiplies every gradient the same way).
    void backward(Backend& be, const float* dy, float* dh);
    void set_aux_grad_scale(float s) { aux_grad_scale_ = s; }

    // Tokens routed to each expert in the last forward [E] (counts over all B*T tokens). On a
    // device the first call after a forward copies the plan's offsets to the host (one sync).
    const std::vector<int64_t>& expert_counts() const;
    Parameter& bias() { return *bias_; }                // only when has_bias()
    bool has_bias() const { return bias_ != nullptr; }  // topk_method "noaux_tc"
    int64_t layer_index() const { return layer_; }
    int64_t n_experts() const { return E_; }
    // SwiGLU outputs of the last forward (routed experts' rows and the shared experts) with
    // |a| < threshold.
    NearZeroCount near_zero(float threshold) const;
    // Expert parallelism over `comm` (an expert group, one rank included; null: every expert
    // here, no dispatch). This rank then
    // runs only its share of the routed experts, on the rows every rank of the group routes to
    // them (model/expert_dispatch.h). The parameters of the other experts stay in the store
    // (replicated) and get no gradient here: data-parallel summing over all ranks fills them.
    void set_expert_parallel(Communicator* comm);
    const ExpertDispatch* expert_parallel() const { return ep_.get(); }

private:
    GateParams gate_params() const;
    // (sequences, tokens per sequence) the balance loss is computed over: (B, T) when
    // cfg.seq_aux, else (1, B*T), the batch-wise loss.
    std::pair<int64_t, int64_t> aux_shape() const;
    // Whether the routed experts run as grouped GEMMs: always, except in a step whose casts are
    // being recorded (the recorder names each expert's weights).
    bool grouped() const;
    // The projections' operand casts for the grouped ops (none in fp32).
    struct Casts {
        bool quantized = false;
        BlockQuantSpec activation, weight, wgrad;
        // Forward and dgrad: x or dy, and W. Wgrad: dy and x.
        GroupedCasts forward() const {
            return quantized ? GroupedCasts{&activation, &weight} : GroupedCasts{};
        }
        GroupedCasts weight_grad() const {
            return quantized ? GroupedCasts{&wgrad, &wgrad} : GroupedCasts{};
        }
    };
    Casts casts() const;
    // The experts' weight (and gradient) pointer tables in the backend's memory, uploaded when
    // the pointers change (after pack(), or a move to another device).
    void refresh_weight_tables();
    Parameter* table_entry(int64_t i) const;
    void refresh_grad_tables();

    int64_t layer_, D_, E_, K_, F_;
    ModelConfig cfg_;
    Parameter* gate_ = nullptr;  // mlp.gate.weight [E, D]
    Parameter* bias_ = nullptr;  // mlp.gate.e_score_correction_bias [E] (noaux_tc only)
    std::vector<SwiGluWeights> experts_;
    std::unique_ptr<SwiGluFfn> shared_;

    // Forward state.
    const float* h_ = nullptr;
    int64_t B_ = 0, T_ = 0;
    bool aux_on_ = false;
    float aux_grad_scale_ = 1.0f;
    Tensor logits_, scores_, weights_, xp_, g_, u_, a_, yp_;
    IndexBuffer topk_idx_, row_token_, slot_row_;
    DeviceArray<int64_t> offsets_;  // the route plan's [E+1], in the backend's memory
    mutable std::vector<int64_t> counts_, host_offsets_;
    mutable bool counts_current_ = false;
    std::vector<const float*> host_w_;  // gate, up, down pointers of every expert, as uploaded
    std::vector<float*> host_dw_;
    DeviceArray<const float*> w_table_;  // [3E]: gate_0..gate_{E-1}, up_*, down_*
    DeviceArray<float*> dw_table_;
    // Backward scratch.
    Tensor d_weights_, d_yp_, d_xp_, d_g_, d_u_, d_a_, d_scores_, d_logits_;
    // Expert parallelism: the rows this rank's experts run on, their outputs and gradients.
    std::unique_ptr<ExpertDispatch> ep_;
    Tensor xe_, ye_, d_ye_, d_xe_;
    int64_t expert_rows_ = 0;  // rows the local experts ran on in the last forward
};

}  // namespace moe
