#pragma once
// How much each routed expert of each MoE layer matters, measured on a fixed set of batches:
//   load        share of the layer's (token, slot) selections that went to the expert
//   gate_mass   share of the layer's summed top-k gate weights the expert received
//   masked_loss loss increase when the expert is taken out of the selection (its selection
//               bias pushed to -1e9, so every token re-routes to its next best expert) - what
//               removing the expert would cost, before any fine-tuning
// The loss is the training objective without the balance loss (main cross-entropy plus the
// weighted MTP loss), so MTP layers' experts are ranked by what they change too.
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"

namespace moe {

struct LayerExpertImportance {
    int64_t layer = 0;                // HF layer index (MTP layers after the main ones)
    std::vector<double> load;         // [E], sums to 1
    std::vector<double> gate_mass;    // [E], sums to 1
    std::vector<double> masked_loss;  // [E], loss with the expert masked minus the base loss
};

struct ExpertImportance {
    double base_loss = 0.0;  // mean over the batches, nothing masked
    bool has_masked_loss = false;
    std::vector<LayerExpertImportance> layers;  // model.moe_layers() order
};

enum class ExpertCriterion { Load, GateMass, MaskedLoss };
// "load", "gate_mass", "masked_loss"; Error naming the value and the choices otherwise.
ExpertCriterion parse_expert_criterion(const std::string& text);
std::string to_string(ExpertCriterion criterion);
// The criterion's score of every expert of one layer (higher = more important).
const std::vector<double>& scores_of(const LayerExpertImportance& layer, ExpertCriterion criterion);

// Mean of the objective above over `batches` (ForwardOptions mtp_lambda).
double objective_loss(Model& model, const std::vector<Batch>& batches, double mtp_lambda);

// Measures load and gate mass over `batches`; with `masked_loss`, also one pass over the batches
// per expert and layer (E x layers passes). masked_loss needs the selection bias (topk_method
// "noaux_tc"): Error otherwise. The model's weights are unchanged afterwards.
ExpertImportance measure_expert_importance(Model& model, const std::vector<Batch>& batches,
                                           double mtp_lambda, bool masked_loss);

// Masks experts for selection: bias[e] -= 1e9 for every e in `experts` of the MoE layer
// `layer` (HF index). Returns the bias values it replaced (restore with restore_bias).
std::vector<float> mask_experts(Model& model, int64_t layer, const std::vector<int64_t>& experts);
void restore_bias(Model& model, int64_t layer, const std::vector<float>& bias);

}  // namespace moe
