#include "inspect/routing_inspection.h"

#include <algorithm>
#include <cstring>
#include <iterator>

#include "core/error.h"
#include "data/byte_tokenizer.h"
#include "model/moe_layer.h"

namespace moe {

Inspection inspect_tokens(Model& model, const std::vector<int32_t>& tokens) {
    const ModelConfig& cfg = model.config();
    const int64_t T = static_cast<int64_t>(tokens.size());
    if (T == 0) throw Error("inspect: no tokens to inspect");
    if (T > cfg.max_position_embeddings)
        throw Error("inspect: " + std::to_string(T) + " tokens exceed max_position_embeddings " +
                    std::to_string(cfg.max_position_embeddings));

    model.forward_logits(tokens.data(), 1, T, /*probe_routing=*/true);

    Inspection out;
    out.tokens = tokens;
    out.token_text.reserve(tokens.size());
    for (int32_t t : tokens) out.token_text.push_back(ByteTokenizer::token_display(t));
    out.E = cfg.n_routed_experts;
    out.K = cfg.num_experts_per_tok;
    out.heads = cfg.num_attention_heads;
    out.n_group = cfg.n_group;
    out.topk_group = cfg.topk_group;
    out.sliding_window = cfg.sliding_window;

    // forward_logits runs the main trunk only, so routing() holds the main MoE layers in order.
    std::vector<MoeLayer*> moe = model.moe_layers();
    for (const RoutingRecord& r : model.routing()) {
        out.layers.push_back(r.layer);
        out.routing.push_back(r);
        std::vector<float> bias(static_cast<size_t>(out.E), 0.0f);
        for (MoeLayer* m : moe)
            if (m->layer_index() == r.layer && m->has_bias())
                m->bias().value.copy_to_host(bias.data());
        out.bias.push_back(std::move(bias));
    }
    out.index_topk = cfg.index_topk;
    for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
        out.attention.push_back(model.attention_probs(l).to_host());
        if (cfg.index_topk > 0) out.selected_keys.push_back(model.selected_keys(l));
    }
    return out;
}

namespace {

void check_comparable(const Inspection& a, const Inspection& b) {
    if (a.tokens != b.tokens)
        throw Error("routing agreement: the inspections cover different tokens (" +
                    std::to_string(a.tokens.size()) + " vs " + std::to_string(b.tokens.size()) +
                    " tokens, or different text)");
    if (a.layers != b.layers)
        throw Error("routing agreement: the models have different MoE layers");
    if (a.K != b.K)
        throw Error("routing agreement: top-k differs (" + std::to_string(a.K) + " vs " +
                    std::to_string(b.K) + ")");
}

}  // namespace

RoutingAgreement routing_agreement(const Inspection& a, const Inspection& b) {
    check_comparable(a, b);
    const int64_t T = a.n_tokens(), K = a.K, L = a.n_layers();
    RoutingAgreement out;
    if (T == 0 || K == 0 || L == 0) return out;
    std::vector<int32_t> sa(static_cast<size_t>(K)), sb(static_cast<size_t>(K)), common;
    for (int64_t l = 0; l < L; ++l) {
        const RoutingRecord& ra = a.routing[static_cast<size_t>(l)];
        const RoutingRecord& rb = b.routing[static_cast<size_t>(l)];
        double overlap = 0, exact = 0, top1 = 0;
        for (int64_t t = 0; t < T; ++t) {
            const int32_t* ia = ra.topk_idx.data() + t * K;
            const int32_t* ib = rb.topk_idx.data() + t * K;
            sa.assign(ia, ia + K);
            sb.assign(ib, ib + K);
            std::sort(sa.begin(), sa.end());
            std::sort(sb.begin(), sb.end());
            common.clear();
            std::set_intersection(sa.begin(), sa.end(), sb.begin(), sb.end(),
                                  std::back_inserter(common));
            overlap += static_cast<double>(common.size()) / static_cast<double>(K);
            exact += sa == sb ? 1.0 : 0.0;
            top1 += ia[0] == ib[0] ? 1.0 : 0.0;
        }
        out.layer_overlap.push_back(overlap / static_cast<double>(T));
        out.layer_exact.push_back(exact / static_cast<double>(T));
        out.layer_top1.push_back(top1 / static_cast<double>(T));
    }
    // Every layer has the same number of tokens, so the overall mean is the mean of layers.
    for (int64_t l = 0; l < L; ++l) {
        out.overlap += out.layer_overlap[static_cast<size_t>(l)] / static_cast<double>(L);
        out.exact += out.layer_exact[static_cast<size_t>(l)] / static_cast<double>(L);
        out.top1 += out.layer_top1[static_cast<size_t>(l)] / static_cast<double>(L);
    }
    return out;
}

SpecializationMatrix specialization_matrix(const std::vector<int32_t>& labels,
                                           const std::vector<int32_t>& topk, int64_t n_labels,
                                           int64_t E, int64_t K, int64_t layer) {
    const int64_t T = static_cast<int64_t>(labels.size());
    if (n_labels < 0 || E <= 0 || K <= 0)
        throw Error("specialization matrix: need labels >= 0, experts > 0 and top-k > 0");
    if (T == 0 || topk.size() % static_cast<size_t>(T * K) != 0)
        throw Error("specialization matrix: " + std::to_string(topk.size()) +
                    " routing entries do not split into layers of " + std::to_string(T) +
                    " tokens x " + std::to_string(K) + " experts");
    const int64_t L = static_cast<int64_t>(topk.size()) / (T * K);
    if (layer < 0 || layer >= L)
        throw Error("specialization matrix: layer " + std::to_string(layer) + " outside [0, " +
                    std::to_string(L) + ")");

    SpecializationMatrix m;
    m.labels = n_labels;
    m.experts = E;
    m.share.assign(static_cast<size_t>(n_labels * E), 0.0);
    m.label_tokens.assign(static_cast<size_t>(n_labels), 0);
    const int32_t* rows = topk.data() + layer * T * K;
    for (int64_t t = 0; t < T; ++t) {
        const int32_t label = labels[static_cast<size_t>(t)];
        if (label < 0 || label >= n_labels) continue;  // unlabelled (separators, padding)
        ++m.label_tokens[static_cast<size_t>(label)];
        for (int64_t k = 0; k < K; ++k) {
            const int32_t e = rows[t * K + k];
            if (e < 0 || e >= E)
                throw Error("specialization matrix: expert id " + std::to_string(e) +
                            " outside [0, " + std::to_string(E) + ")");
            m.share[static_cast<size_t>(label * E + e)] += 1.0;
        }
    }
    for (int64_t l = 0; l < n_labels; ++l) {
        const double slots = static_cast<double>(m.label_tokens[static_cast<size_t>(l)] * K);
        if (slots == 0) continue;
        for (int64_t e = 0; e < E; ++e) m.share[static_cast<size_t>(l * E + e)] /= slots;
    }
    return m;
}

std::vector<ExpertToken> top_tokens_for_expert(const Inspection& inspection, int64_t layer,
                                               int64_t expert, int64_t n) {
    if (layer < 0 || layer >= inspection.n_layers())
        throw Error("top tokens: MoE layer " + std::to_string(layer) + " outside [0, " +
                    std::to_string(inspection.n_layers()) + ")");
    if (expert < 0 || expert >= inspection.E)
        throw Error("top tokens: expert " + std::to_string(expert) + " outside [0, " +
                    std::to_string(inspection.E) + ")");
    const RoutingRecord& r = inspection.routing[static_cast<size_t>(layer)];
    const int64_t K = r.top_k, E = r.n_experts;
    std::vector<ExpertToken> out;
    for (int64_t t = 0; t < r.tokens; ++t)
        for (int64_t k = 0; k < K; ++k) {
            if (r.topk_idx[static_cast<size_t>(t * K + k)] != expert) continue;
            ExpertToken x;
            x.position = t;
            x.token = inspection.tokens[static_cast<size_t>(t)];
            x.text = inspection.token_text[static_cast<size_t>(t)];
            x.weight = r.topk_weight[static_cast<size_t>(t * K + k)];
            x.score = r.scores[static_cast<size_t>(t * E + expert)];
            x.slot = k;
            out.push_back(std::move(x));
        }
    std::stable_sort(out.begin(), out.end(),
                     [](const ExpertToken& a, const ExpertToken& b) { return a.weight > b.weight; });
    if (n >= 0 && static_cast<int64_t>(out.size()) > n) out.resize(static_cast<size_t>(n));
    return out;
}

}  // namespace moe
