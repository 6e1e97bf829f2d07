#pragma once
// Converts the engine's routing inspections into the view's plain data: the one place where
// moe::Inspection meets moe::views::RoutingInspectionData, so the view stays engine-free.
#include <string>
#include <vector>

#include "inspect/routing_inspection.h"
#include "routing_inspection_data.h"
#include "store/run_layout.h"

namespace moe::workbench {

// primary (and optionally comparison, which must cover the same tokens) named by their
// checkpoints. With a comparison, the agreement is filled from routing_agreement().
views::RoutingInspectionData routing_view_data(const Inspection& primary,
                                               const std::string& primary_name,
                                               const Inspection* comparison = nullptr,
                                               const std::string& comparison_name = {});

// Fills data.label_names / specialization from a run's probe routing row (every MoE layer of
// the row that also appears in data.layer_names, matched by HF layer index).
void add_specialization(views::RoutingInspectionData& data, const RunHeader& header,
                        const RoutingRow& row, const std::vector<int64_t>& view_layers);

}  // namespace moe::workbench
