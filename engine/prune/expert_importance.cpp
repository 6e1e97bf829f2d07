#include "prune/expert_importance.h"

#include "core/error.h"

namespace moe {

namespace {

// A bias this low takes an expert out of every selection (scores lie in [0, 1]) while keeping
// group scores finite.
constexpr float kMaskBias = -1e9f;

MoeLayer& layer_at(Model& model, int64_t layer) {
    for (MoeLayer* l : model.moe_layers())
        if (l->layer_index() == layer) return *l;
    throw Error("no MoE layer " + std::to_string(layer) + " in the model");
}

std::vector<double> normalized(std::vector<double> v) {
    double s = 0.0;
    for (double x : v) s += x;
    if (s > 0.0)
        for (double& x : v) x /= s;
    return v;
}

}  // namespace

ExpertCriterion parse_expert_criterion(const std::string& text) {
    if (text == "load") return ExpertCriterion::Load;
    if (text == "gate_mass") return ExpertCriterion::GateMass;
    if (text == "masked_loss") return ExpertCriterion::MaskedLoss;
    throw Error("expert criterion '" + text + "' is not one of load, gate_mass, masked_loss");
}

std::string to_string(ExpertCriterion criterion) {
    switch (criterion) {
        case ExpertCriterion::Load:
            return "load";
        case ExpertCriterion::GateMass:
            return "gate_mass";
        case ExpertCriterion::MaskedLoss:
            return "masked_loss";
    }
    return "?";
}

const std::vector<double>& scores_of(const LayerExpertImportance& layer,
                                     ExpertCriterion criterion) {
    switch (criterion) {
        case ExpertCriterion::Load:
            return layer.load;
        case ExpertCriterion::GateMass:
            return layer.gate_mass;
        case ExpertCriterion::MaskedLoss:
            break;
    }
    return layer.masked_loss;
}

double objective_loss(Model& model, const std::vector<Batch>& batches, double mtp_lambda) {
    if (batches.empty()) throw Error("objective_loss: no batches to measure the loss on");
    ForwardOptions opt;
    opt.mtp_lambda = mtp_lambda;
    double sum = 0.0;
    for (const Batch& b : batches) {
        const LossReport r = model.forward(b, opt);
        sum += r.loss + r.mtp_loss;
    }
    return sum / double(batches.size());
}

std::vector<float> mask_experts(Model& model, int64_t layer, const std::vector<int64_t>& experts) {
    MoeLayer& l = layer_at(model, layer);
    if (!l.has_bias())
        throw Error(
            "masking experts needs the selection bias (topk_method noaux_tc); this model's "
            "topk_method is '" +
            model.config().topk_method + "'");
    std::vector<float> was = l.bias().value.to_host();
    std::vector<float> masked = was;
    for (int64_t e : experts) {
        if (e < 0 || e >= l.n_experts())
            throw Error("expert " + std::to_string(e) + " out of range [0, " +
                        std::to_string(l.n_experts()) + ") in layer " + std::to_string(layer));
        masked[static_cast<size_t>(e)] += kMaskBias;
    }
    l.bias().value.copy_from_host(masked.data());
    return was;
}

void restore_bias(Model& model, int64_t layer, const std::vector<float>& bias) {
    layer_at(model, layer).bias().value.copy_from_host(bias.data());
}

ExpertImportance measure_expert_importance(Model& model, const std::vector<Batch>& batches,
                                           double mtp_lambda, bool masked_loss) {
    if (batches.empty()) throw Error("expert importance: no batches to measure on");
    if (model.config().n_routed_experts == 0)
        throw Error("expert importance: the model has no routed experts");
    if (masked_loss && !model.config().has_selection_bias())
        throw Error(
            "the masked_loss criterion needs the selection bias (topk_method noaux_tc); "
            "this model's topk_method is '" +
            model.config().topk_method + "': rank by load or gate_mass");
    const int64_t E = model.config().n_routed_experts;
    ExpertImportance out;
    std::vector<MoeLayer*> layers = model.moe_layers();
    out.layers.resize(layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
        out.layers[i].layer = layers[i]->layer_index();
        out.layers[i].load.assign(static_cast<size_t>(E), 0.0);
        out.layers[i].gate_mass.assign(static_cast<size_t>(E), 0.0);
    }

    // Load and gate mass from the probed routing of one pass.
    ForwardOptions opt;
    opt.mtp_lambda = mtp_lambda;
    opt.probe_routing = true;
    double base = 0.0;
    for (const Batch& b : batches) {
        const LossReport r = model.forward(b, opt);
        base += r.loss + r.mtp_loss;
        for (const RoutingRecord& rec : model.routing()) {
            LayerExpertImportance* li = nullptr;
            for (auto& l : out.layers)
                if (l.layer == rec.layer) li = &l;
            if (!li) continue;
            for (size_t j = 0; j < rec.topk_idx.size(); ++j) {
                const auto e = static_cast<size_t>(rec.topk_idx[j]);
                li->load[e] += 1.0;
                li->gate_mass[e] += rec.topk_weight[j];
            }
        }
    }
    out.base_loss = base / double(batches.size());
    for (auto& l : out.layers) {
        l.load = normalized(std::move(l.load));
        l.gate_mass = normalized(std::move(l.gate_mass));
    }
    if (!masked_loss) return out;

    out.has_masked_loss = true;
    for (auto& l : out.layers) {
        l.masked_loss.assign(static_cast<size_t>(E), 0.0);
        for (int64_t e = 0; e < E; ++e) {
            const std::vector<float> was = mask_experts(model, l.layer, {e});
            try {
                l.masked_loss[static_cast<size_t>(e)] =
                    objective_loss(model, batches, mtp_lambda) - out.base_loss;
            } catch (...) {
                restore_bias(model, l.layer, was);
                throw;
            }
            restore_bias(model, l.layer, was);
        }
    }
    return out;
}

}  // namespace moe
