#include "prune/channel_saliency.h"

#include <cmath>

#include "core/error.h"
#include "prune/weight_transfer.h"

namespace moe {

namespace {

const std::string kGate = "gate_proj.weight";

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// sum |w * g| over rows (per_row) or columns of a [R, C] matrix, added into out.
void add_abs_products(const Parameter& p, bool per_row, std::vector<double>& out) {
    const std::vector<float> w = p.value.to_host(), g = p.grad.to_host();
    const int64_t R = p.value.dim(0), C = p.value.dim(1);
    for (int64_t r = 0; r < R; ++r)
        for (int64_t c = 0; c < C; ++c) {
            const size_t i = static_cast<size_t>(r * C + c);
            out[static_cast<size_t>(per_row ? r : c)] += std::abs(double(w[i]) * double(g[i]));
        }
}

}  // namespace

ChannelSaliency empty_channel_saliency(const Model& model) {
    ChannelSaliency s;
    static const std::string kExperts = "mlp.experts.";
    for (const Parameter* p : model.parameters().all()) {
        if (!ends_with(p->name, kGate) || p->value.rank() != 2) continue;
        FfnSaliency f;
        f.prefix = p->name.substr(0, p->name.size() - kGate.size());
        std::string rest;
        if (!split_layer_name(p->name, f.layer, rest)) continue;
        if (rest.compare(0, kExperts.size(), kExperts) == 0) {
            f.kind = FfnKind::Routed;
            f.expert = std::stoll(rest.substr(kExperts.size()));
        } else if (rest.compare(0, 19, "mlp.shared_experts.") == 0) {
            f.kind = FfnKind::Shared;
        } else {
            f.kind = FfnKind::Dense;
        }
        f.saliency.assign(static_cast<size_t>(p->value.dim(0)), 0.0);
        s.ffns.push_back(std::move(f));
    }
    return s;
}

void accumulate_channel_saliency(Model& model, const std::vector<Batch>& batches, double mtp_lambda,
                                 ChannelSaliency& saliency) {
    ForwardOptions opt;
    opt.mtp_lambda = mtp_lambda;
    ParameterStore& store = model.parameters();
    for (const Batch& b : batches) {
        store.zero_grads();
        model.forward(b, opt);
        model.backward();
        for (FfnSaliency& f : saliency.ffns) {
            add_abs_products(store.at(f.prefix + "gate_proj.weight"), true, f.saliency);
            add_abs_products(store.at(f.prefix + "up_proj.weight"), true, f.saliency);
            add_abs_products(store.at(f.prefix + "down_proj.weight"), false, f.saliency);
        }
        ++saliency.batches;
    }
    store.zero_grads();
}

ChannelSaliency measure_channel_saliency(Model& model, const std::vector<Batch>& batches,
                                         double mtp_lambda) {
    if (batches.empty()) throw Error("channel saliency: no batches to measure on");
    ChannelSaliency s = empty_channel_saliency(model);
    accumulate_channel_saliency(model, batches, mtp_lambda, s);
    return s;
}

}  // namespace moe
