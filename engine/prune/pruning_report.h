#pragma once
// pruning.json, written next to a pruned checkpoint by moe-prune: what was measured and what was
// removed, so the workbench's pruning view can show it (docs/pruning.md lists the fields).
//   {"format": "moe-pruning", "version": 1, "kind": "experts" | "channels", ...}
#include <nlohmann/json.hpp>

#include "prune/channel_pruning.h"
#include "prune/expert_pruning.h"

namespace moe {

inline constexpr const char* kPruningReportFile = "pruning.json";

nlohmann::json expert_pruning_json(const ExpertImportance& importance, const ExpertPrunePlan& plan);
nlohmann::json channel_pruning_json(const ChannelPrunePlan& plan);

std::string to_string(FfnKind kind);  // "dense", "shared", "routed"

}  // namespace moe
