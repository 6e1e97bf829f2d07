#include "prune/expert_pruning.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "prune/weight_transfer.h"

namespace moe {

namespace {

std::string fraction_text(double f) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", f);
    return buf;
}

}  // namespace

ExpertPrunePlan plan_expert_pruning(const ModelConfig& config, const ExpertImportance& importance,
                                    ExpertCriterion criterion, double fraction, bool ungroup) {
    const int64_t E = config.n_routed_experts;
    if (E == 0) throw Error("expert pruning: the model has no routed experts");
    if (!(fraction >= 0.0 && fraction < 1.0))
        throw Error("expert pruning: fraction " + fraction_text(fraction) +
                    " is not in [0, 1) (the share of each layer's experts to remove)");
    if (criterion == ExpertCriterion::MaskedLoss && !importance.has_masked_loss)
        throw Error("expert pruning: the masked_loss criterion needs masked-loss measurements");
    const int64_t G = ungroup ? 1 : config.n_group, Eg = E / G;
    const double per_group_exact = fraction * double(Eg);
    const int64_t r = std::llround(per_group_exact);
    if (std::abs(per_group_exact - double(r)) > 1e-6) {
        std::string ok;
        for (int64_t k = 1; k < Eg && k <= 8; ++k)
            ok += (k > 1 ? ", " : "") + fraction_text(double(k) / double(Eg));
        throw Error("expert pruning: fraction " + fraction_text(fraction) + " removes " +
                    fraction_text(per_group_exact) + " experts from each of " + std::to_string(G) +
                    (G == 1 ? " group" : " groups") + " of " + std::to_string(Eg) +
                    "; every group must lose the same whole number: use a multiple of 1/" +
                    std::to_string(Eg) + " (" + ok + ")" +
                    (G > 1 ? ", or --ungroup to rank all experts of a layer together" : ""));
    }
    const int64_t Eg_new = Eg - r;
    if (Eg_new < 1)
        throw Error("expert pruning: fraction " + fraction_text(fraction) + " leaves no experts");
    if (G > 1 && config.has_selection_bias() && Eg_new < 2)
        throw Error("expert pruning: fraction " + fraction_text(fraction) +
                    " leaves one expert per group; the "
                    "bias-corrected group score (top-2 sum) needs two: remove fewer, or --ungroup");
    if (importance.layers.size() !=
        size_t(config.num_moe_layers() + config.num_nextn_predict_layers))
        throw Error("expert pruning: the importance has " +
                    std::to_string(importance.layers.size()) + " MoE layers, the model " +
                    std::to_string(config.num_moe_layers() + config.num_nextn_predict_layers));

    ExpertPrunePlan plan;
    plan.criterion = criterion;
    plan.fraction = fraction;
    plan.ungroup = ungroup;
    plan.per_group = r;
    for (const LayerExpertImportance& li : importance.layers) {
        const std::vector<double>& score = scores_of(li, criterion);
        if (int64_t(score.size()) != E)
            throw Error("expert pruning: layer " + std::to_string(li.layer) + " has " +
                        std::to_string(score.size()) + " scores for " + std::to_string(E) +
                        " experts");
        std::vector<int64_t> removed;
        for (int64_t g = 0; g < G; ++g) {
            std::vector<int64_t> ids(static_cast<size_t>(Eg));
            std::iota(ids.begin(), ids.end(), g * Eg);
            // Lowest score first; ties to the higher id so the lower ids (the usual default) stay.
            std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) {
                if (score[a] != score[b]) return score[a] < score[b];
                return a > b;
            });
            removed.insert(removed.end(), ids.begin(), ids.begin() + r);
        }
        std::sort(removed.begin(), removed.end());
        std::vector<int64_t> kept;
        for (int64_t e = 0; e < E; ++e)
            if (!std::binary_search(removed.begin(), removed.end(), e)) kept.push_back(e);
        plan.layers.push_back(li.layer);
        plan.kept.push_back(std::move(kept));
        plan.removed.push_back(std::move(removed));
    }

    ModelConfig c = config;
    c.n_routed_experts = E - G * r;
    if (ungroup) {
        if (config.n_group != 1)
            plan.notes.push_back("n_group " + std::to_string(config.n_group) + " -> 1");
        c.n_group = 1;
        c.topk_group = 1;
    }
    if (c.topk_group * Eg_new < c.num_experts_per_tok) {
        const int64_t need =
            std::min<int64_t>(c.n_group, (c.num_experts_per_tok + Eg_new - 1) / Eg_new);
        plan.notes.push_back("topk_group " + std::to_string(c.topk_group) + " -> " +
                             std::to_string(need) + " (the kept groups must reach top_k experts)");
        c.topk_group = need;
    }
    if (c.n_routed_experts < c.num_experts_per_tok) {
        plan.notes.push_back("num_experts_per_tok " + std::to_string(c.num_experts_per_tok) +
                             " -> " + std::to_string(c.n_routed_experts));
        c.num_experts_per_tok = c.n_routed_experts;
    }
    c.validate();
    plan.config = c;
    return plan;
}

std::unique_ptr<Model> prune_experts(const Model& model, const ExpertPrunePlan& plan,
                                     Backend& backend) {
    auto out = std::make_unique<Model>(plan.config, backend);
    static const std::string kExperts = "mlp.experts.";
    transfer_weights(model, *out, [&](const std::string& name) {
        TensorSelection sel{name, {}, {}};
        int64_t layer = 0;
        std::string rest;
        if (!split_layer_name(name, layer, rest)) return sel;
        const auto it = std::find(plan.layers.begin(), plan.layers.end(), layer);
        if (it == plan.layers.end()) return sel;
        const std::vector<int64_t>& kept = plan.kept[static_cast<size_t>(it - plan.layers.begin())];
        const std::string layer_prefix = "model.layers." + std::to_string(layer) + ".";
        if (rest == "mlp.gate.weight" || rest == "mlp.gate.e_score_correction_bias") {
            sel.rows = kept;
        } else if (rest.compare(0, kExperts.size(), kExperts) == 0) {
            const size_t dot = rest.find('.', kExperts.size());
            const int64_t j = std::stoll(rest.substr(kExperts.size(), dot - kExperts.size()));
            sel.source = layer_prefix + kExperts + std::to_string(kept[static_cast<size_t>(j)]) +
                         rest.substr(dot);
        }
        return sel;
    });
    return out;
}

}  // namespace moe
