#include "store/model_checkpoint.h"

#include <cmath>
#include <filesystem>

#include "core/error.h"
#include "store/checkpoint.h"

namespace moe {

namespace {
std::vector<CheckpointAlias> aliases_of(const Model& model) {
    std::vector<CheckpointAlias> out;
    for (const auto& [alias, source] : model.checkpoint_aliases()) out.push_back({alias, source});
    return out;
}
}  // namespace

void save_model_checkpoint(const std::string& dir, const Model& model,
                           std::map<std::string, std::string> metadata) {
    std::filesystem::create_directories(dir);
    metadata.emplace("producer", std::string("moe-workbench ") + MOE_VERSION);
    save_checkpoint_weights(dir, model.parameters(), aliases_of(model), metadata);
    model.config().save((std::filesystem::path(dir) / "config.json").string());
}

ModelConfig load_checkpoint_config(const std::string& dir) {
    return ModelConfig::load((std::filesystem::path(dir) / "config.json").string());
}

void load_model_weights(const std::string& dir, Model& model, const LoadProgress& progress) {
    load_checkpoint_weights(dir, model.parameters(), aliases_of(model), progress);
    // One pass over the arena; per tensor only when something is wrong, to name them.
    Backend& be = model.backend();
    const Tensor& all = model.parameters().value_arena();
    if (std::isfinite(be.sum_squares(all.data(), all.numel()))) return;
    std::vector<std::string> bad;
    for (const Parameter* p : model.parameters().all())
        if (!std::isfinite(be.sum_squares(p->value.data(), p->value.numel()))) bad.push_back(p->name);
    std::string names;
    for (size_t i = 0; i < bad.size() && i < 5; ++i) names += (i ? ", '" : "'") + bad[i] + "'";
    if (bad.size() > 5) names += " and " + std::to_string(bad.size() - 5) + " more";
    throw FileError((std::filesystem::path(dir) / kCheckpointWeightsFile).string(),
                    std::to_string(bad.size()) + " of " +
                        std::to_string(model.parameters().all().size()) +
                        " tensors hold NaN or Inf values (" + names +
                        "): the weights of a diverged run cannot be evaluated");
}

}  // namespace moe
