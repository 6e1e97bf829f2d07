#include "store/model_checkpoint.h"

#include <filesystem>

#include "store/checkpoint.h"

namespace moe {

namespace {
std::vector<CheckpointAlias> aliases_of(const Model& model) {
    std::vector<CheckpointAlias> out;
    for (const auto& [alias, source] : model.checkpoint_aliases()) out.push_back({alias, source});
    return out;
}
}  // namespace

void save_model_checkpoint(const std::string& dir, const Model& model) {
    std::filesystem::create_directories(dir);
    save_checkpoint_weights(dir, model.parameters(), aliases_of(model),
                            {{"producer", std::string("moe-workbench ") + MOE_VERSION}});
    model.config().save((std::filesystem::path(dir) / "config.json").string());
}

ModelConfig load_checkpoint_config(const std::string& dir) {
    return ModelConfig::load((std::filesystem::path(dir) / "config.json").string());
}

void load_model_weights(const std::string& dir, Model& model) {
    load_checkpoint_weights(dir, model.parameters(), aliases_of(model));
}

}  // namespace moe
