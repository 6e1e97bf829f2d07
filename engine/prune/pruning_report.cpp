#include "prune/pruning_report.h"

namespace moe {

std::string to_string(FfnKind kind) {
    switch (kind) {
        case FfnKind::Dense:
            return "dense";
        case FfnKind::Shared:
            return "shared";
        case FfnKind::Routed:
            return "routed";
    }
    return "?";
}

nlohmann::json expert_pruning_json(const ExpertImportance& importance,
                                   const ExpertPrunePlan& plan) {
    nlohmann::json j;
    j["format"] = "moe-pruning";
    j["version"] = 1;
    j["kind"] = "experts";
    j["criterion"] = to_string(plan.criterion);
    j["fraction"] = plan.fraction;
    j["ungroup"] = plan.ungroup;
    j["per_group"] = plan.per_group;
    j["n_group"] = plan.ungroup ? 1 : plan.config.n_group;
    j["base_loss"] = importance.base_loss;
    j["config_changes"] = plan.notes;
    nlohmann::json layers = nlohmann::json::array();
    for (size_t i = 0; i < importance.layers.size(); ++i) {
        const LayerExpertImportance& l = importance.layers[i];
        nlohmann::json o;
        o["layer"] = l.layer;
        o["load"] = l.load;
        o["gate_mass"] = l.gate_mass;
        if (importance.has_masked_loss) o["masked_loss"] = l.masked_loss;
        o["removed"] = i < plan.removed.size() ? plan.removed[i] : std::vector<int64_t>{};
        layers.push_back(std::move(o));
    }
    j["layers"] = std::move(layers);
    return j;
}

nlohmann::json channel_pruning_json(const ChannelPrunePlan& plan) {
    nlohmann::json j;
    j["format"] = "moe-pruning";
    j["version"] = 1;
    j["kind"] = "channels";
    j["fraction"] = plan.fraction;
    j["expert_removed"] = plan.expert_removed;
    j["dense_removed"] = plan.dense_removed;
    j["batches"] = plan.saliency.batches;
    nlohmann::json ffns = nlohmann::json::array();
    for (size_t i = 0; i < plan.saliency.ffns.size(); ++i) {
        const FfnSaliency& f = plan.saliency.ffns[i];
        nlohmann::json o;
        o["prefix"] = f.prefix;
        o["layer"] = f.layer;
        o["kind"] = to_string(f.kind);
        o["expert"] = f.expert;
        o["saliency"] = f.saliency;
        o["removed"] = i < plan.removed.size() ? plan.removed[i] : std::vector<int64_t>{};
        ffns.push_back(std::move(o));
    }
    j["ffns"] = std::move(ffns);
    return j;
}

}  // namespace moe
