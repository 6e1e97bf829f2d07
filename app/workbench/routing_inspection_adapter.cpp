#include "routing_inspection_adapter.h"

#include <algorithm>

namespace moe::workbench {

namespace {

views::RoutingSnapshot snapshot(const Inspection& ins, const std::string& name) {
    views::RoutingSnapshot s;
    s.checkpoint = QString::fromStdString(name);
    for (size_t l = 0; l < ins.routing.size(); ++l) {
        const RoutingRecord& r = ins.routing[l];
        views::RoutingLayer v;
        v.scores = r.scores;
        v.topk = r.topk_idx;
        v.weights = r.topk_weight;
        if (l < ins.bias.size()) v.bias = ins.bias[l];
        s.layers.push_back(std::move(v));
    }
    return s;
}

}  // namespace

views::RoutingInspectionData routing_view_data(const Inspection& primary,
                                               const std::string& primary_name,
                                               const Inspection* comparison,
                                               const std::string& comparison_name) {
    views::RoutingInspectionData d;
    for (const std::string& t : primary.token_text) d.tokens << QString::fromStdString(t);
    for (int64_t l : primary.layers) d.layer_names << QStringLiteral("layer %1").arg(l);
    d.experts = static_cast<int>(primary.E);
    d.top_k = static_cast<int>(primary.K);
    d.n_group = static_cast<int>(primary.n_group);
    d.topk_group = static_cast<int>(primary.topk_group);
    d.note = QString::fromStdString(primary.note);
    d.primary = snapshot(primary, primary_name);
    if (comparison) {
        d.has_comparison = true;
        d.comparison = snapshot(*comparison, comparison_name);
        const RoutingAgreement a = routing_agreement(primary, *comparison);  // throws on mismatch
        d.agreement.overlap = a.overlap;
        d.agreement.exact = a.exact;
        d.agreement.layer_overlap = a.layer_overlap;
        d.agreement.layer_exact = a.layer_exact;
    }
    return d;
}

void add_specialization(views::RoutingInspectionData& data, const RunHeader& header,
                        const RoutingRow& row, const std::vector<int64_t>& view_layers) {
    data.label_names.clear();
    for (const std::string& n : header.label_names) data.label_names << QString::fromStdString(n);
    data.specialization.clear();
    for (int64_t hf : view_layers) {
        views::Matrix m;
        const auto it = std::find(header.moe_layer_indices.begin(), header.moe_layer_indices.end(), hf);
        if (it != header.moe_layer_indices.end() && header.n_labels() > 0) {
            const int64_t l = it - header.moe_layer_indices.begin();
            const SpecializationMatrix s = specialization_matrix(
                header.probe_labels, row.topk, header.n_labels(), header.n_experts, header.top_k, l);
            m.rows = static_cast<int>(s.labels);
            m.cols = static_cast<int>(s.experts);
            m.values = s.share;
            m.row_labels = data.label_names;
            for (int e = 0; e < m.cols; ++e) m.col_labels << QStringLiteral("expert %1").arg(e);
        }
        data.specialization.push_back(std::move(m));
    }
    data.specialization_source = QStringLiteral("probe text at step %1").arg(row.step);
}

}  // namespace moe::workbench
