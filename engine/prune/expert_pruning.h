#pragma once
// Expert pruning: the lowest-ranked routed experts of every MoE layer removed, the router's rows
// and selection bias entries removed with them and the remaining experts renumbered, so the
// result is an ordinary smaller checkpoint (fewer n_routed_experts) in the HF layout.
//
// Groups: DeepSeek's group-limited routing needs n_routed_experts divisible by n_group, so the
// same number of experts leaves every group (groups are the contiguous blocks of E / n_group
// experts), each group losing its lowest-ranked ones. With `ungroup`, n_group and topk_group
// become 1 and the lowest experts of the whole layer go, wherever they sit. When the groups left
// cannot reach top_k experts, topk_group is raised (and top_k lowered only if all groups cannot);
// the plan's notes say so. Tokens then re-route among the experts left: with groups kept and no
// clamping, the pruned model computes what the original computes with those experts masked.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/model.h"
#include "prune/expert_importance.h"

namespace moe {

struct ExpertPrunePlan {
    ExpertCriterion criterion = ExpertCriterion::Load;
    double fraction = 0.0;
    bool ungroup = false;
    int64_t per_group = 0;                      // experts removed from each group
    std::vector<int64_t> layers;                // HF indices, importance order
    std::vector<std::vector<int64_t>> kept;     // per layer, ascending original ids
    std::vector<std::vector<int64_t>> removed;  // per layer, ascending original ids
    ModelConfig config;                         // the pruned model's
    std::vector<std::string> notes;             // config adjustments made
};

// Removes `fraction` (0 <= f < 1) of each layer's experts by `criterion`. Error when the
// fraction is out of range, does not give a whole number of experts per group (naming the
// fractions that do), leaves no experts, or leaves groups the bias-corrected routing cannot use;
// when the importance lacks the criterion's scores; or when it does not match the config.
ExpertPrunePlan plan_expert_pruning(const ModelConfig& config, const ExpertImportance& importance,
                                    ExpertCriterion criterion, double fraction, bool ungroup);

// The pruned model on `backend` (the source's, usually), its weights taken from `model`.
std::unique_ptr<Model> prune_experts(const Model& model, const ExpertPrunePlan& plan,
                                     Backend& backend);

}  // namespace moe
