#include "prune/channel_pruning.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "prune/weight_transfer.h"

namespace moe {

ChannelPrunePlan plan_channel_pruning(const ModelConfig& config, const ChannelSaliency& saliency,
                                      double fraction) {
    if (!(fraction >= 0.0 && fraction < 1.0)) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", fraction);
        throw Error(std::string("channel pruning: fraction ") + buf +
                    " is not in [0, 1) (the share of each FFN's hidden channels to remove)");
    }
    const int64_t F = config.moe_intermediate_size, I = config.intermediate_size;
    ChannelPrunePlan plan;
    plan.fraction = fraction;
    plan.saliency = saliency;
    plan.expert_removed = std::min<int64_t>(F - 1, std::llround(fraction * double(F)));
    plan.dense_removed = std::min<int64_t>(I - 1, std::llround(fraction * double(I)));
    for (const FfnSaliency& f : saliency.ffns) {
        const int64_t width = f.kind == FfnKind::Dense    ? I
                              : f.kind == FfnKind::Shared ? config.n_shared_experts * F
                                                          : F;
        if (int64_t(f.saliency.size()) != width)
            throw Error(
                "channel pruning: '" + f.prefix + "' has " + std::to_string(f.saliency.size()) +
                " saliency values, the config gives it " + std::to_string(width) + " channels");
        const int64_t r = f.kind == FfnKind::Dense ? plan.dense_removed
                          : f.kind == FfnKind::Shared
                              ? config.n_shared_experts * plan.expert_removed
                              : plan.expert_removed;
        std::vector<int64_t> ids(static_cast<size_t>(width));
        std::iota(ids.begin(), ids.end(), 0);
        std::stable_sort(ids.begin(), ids.end(),
                         [&](int64_t a, int64_t b) { return f.saliency[a] < f.saliency[b]; });
        std::vector<int64_t> removed(ids.begin(), ids.begin() + r),
            kept(ids.begin() + r, ids.end());
        std::sort(removed.begin(), removed.end());
        std::sort(kept.begin(), kept.end());
        plan.kept.push_back(std::move(kept));
        plan.removed.push_back(std::move(removed));
    }
    ModelConfig c = config;
    c.moe_intermediate_size = F - plan.expert_removed;
    c.intermediate_size = I - plan.dense_removed;
    c.validate();
    plan.config = c;
    return plan;
}

std::unique_ptr<Model> prune_channels(const Model& model, const ChannelPrunePlan& plan,
                                      Backend& backend) {
    auto out = std::make_unique<Model>(plan.config, backend);
    transfer_weights(model, *out, [&](const std::string& name) {
        TensorSelection sel{name, {}, {}};
        for (size_t i = 0; i < plan.saliency.ffns.size(); ++i) {
            const std::string& p = plan.saliency.ffns[i].prefix;
            if (name.compare(0, p.size(), p) != 0) continue;
            const std::string rest = name.substr(p.size());
            if (rest == "gate_proj.weight" || rest == "up_proj.weight")
                sel.rows = plan.kept[i];
            else if (rest == "down_proj.weight")
                sel.cols = plan.kept[i];
            else
                continue;
            break;
        }
        return sel;
    });
    return out;
}

}  // namespace moe
