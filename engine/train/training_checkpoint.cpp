#include "train/training_checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/json_file.h"
#include "store/model_checkpoint.h"
#include "store/safetensors.h"

namespace moe {

namespace fs = std::filesystem;

namespace {

constexpr const char* kStateFile = "trainer_state.json";
constexpr const char* kOptimizerFile = "optimizer.safetensors";
constexpr const char* kStateFormat = "moe-workbench-training-state";
constexpr int64_t kStateVersion = 1;

void fsync_dir(const fs::path& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        ::fsync(fd);
        ::close(fd);
    }
}

template <class T>
T field(const nlohmann::json& j, const char* name, const std::string& path) {
    if (!j.contains(name)) throw FileError(path, std::string("missing field '") + name + "'");
    try {
        return j.at(name).get<T>();
    } catch (const nlohmann::json::exception& e) {
        throw FileError(path, std::string("field '") + name + "': " + e.what());
    }
}

}  // namespace

nlohmann::json TrainingState::to_json() const {
    return nlohmann::json{{"format", kStateFormat},
                          {"format_version", kStateVersion},
                          {"step", step},
                          {"tokens", tokens},
                          {"wall_s", wall_s},
                          {"bad_steps", bad_steps},
                          {"optimizer_step", optimizer_step},
                          {"loss_scale", loss_scale},
                          {"loss_scale_good_steps", loss_scale_good_steps},
                          {"data", data},
                          {"run_file", run_file},
                          {"project", project.to_json()}};
}

TrainingState TrainingState::from_json(const nlohmann::json& j, const std::string& path) {
    if (!j.is_object() || j.value("format", "") != kStateFormat)
        throw FileError(path, std::string("not a training state file (format is not '") +
                                  kStateFormat + "')");
    const int64_t version = field<int64_t>(j, "format_version", path);
    if (version > kStateVersion)
        throw FileError(path, "format_version " + std::to_string(version) +
                                  " is newer than this program reads (" +
                                  std::to_string(kStateVersion) + ")");
    TrainingState s;
    s.step = field<int64_t>(j, "step", path);
    s.tokens = field<int64_t>(j, "tokens", path);
    s.wall_s = field<double>(j, "wall_s", path);
    s.bad_steps = field<int64_t>(j, "bad_steps", path);
    s.optimizer_step = field<int64_t>(j, "optimizer_step", path);
    // Absent in checkpoints from before the precision modes: fp32, scale 1.
    if (j.contains("loss_scale")) s.loss_scale = field<double>(j, "loss_scale", path);
    if (j.contains("loss_scale_good_steps"))
        s.loss_scale_good_steps = field<int64_t>(j, "loss_scale_good_steps", path);
    s.data = j.at("data");
    s.run_file = j.value("run_file", "");
    try {
        s.project = Project::from_json(j.at("project"));
        s.project.validate();
    } catch (const ConfigError& e) {
        throw FileError(path, std::string("project: ") + e.what());
    }
    return s;
}

void save_training_checkpoint(const std::string& dir, const Model& model, AdamW& optimizer,
                              const TrainingState& state) {
    const fs::path final_dir(dir);
    const fs::path tmp = final_dir.string() + ".tmp";
    std::error_code ec;
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) throw FileError(tmp.string(), "cannot create checkpoint directory: " + ec.message());

    save_model_checkpoint(tmp.string(), model);
    SafetensorsWriter writer;
    for (const auto& [name, tensor] : optimizer.state_tensors()) writer.add_f32(name, *tensor);
    writer.write((tmp / kOptimizerFile).string());
    write_json_file((tmp / kStateFile).string(), state.to_json());
    fsync_dir(tmp);

    fs::remove_all(final_dir, ec);
    fs::rename(tmp, final_dir, ec);
    if (ec)
        throw FileError(final_dir.string(), "cannot move the checkpoint into place: " + ec.message());
    fsync_dir(final_dir.parent_path().empty() ? fs::path(".") : final_dir.parent_path());
}

TrainingState load_training_state(const std::string& dir) {
    const std::string path = (fs::path(dir) / kStateFile).string();
    if (!fs::exists(path))
        throw FileError(dir, std::string("not a training checkpoint: no ") + kStateFile +
                                 " (a model-only checkpoint can be evaluated, not resumed)");
    return TrainingState::from_json(read_json_file(path), path);
}

void load_training_tensors(const std::string& dir, Model& model, AdamW& optimizer) {
    load_model_weights(dir, model);
    const std::string path = (fs::path(dir) / kOptimizerFile).string();
    const SafetensorsReader reader(path);
    for (const auto& [name, tensor] : optimizer.state_tensors()) {
        const SafetensorsEntry* e = reader.find(name);
        if (!e) throw FileError(path, "missing optimizer tensor '" + name + "'");
        if (e->shape != tensor->shape())
            throw FileError(path, "optimizer tensor '" + name + "' has shape " +
                                      shape_to_string(e->shape) + ", the model needs " +
                                      shape_to_string(tensor->shape()));
        reader.read_f32_into(name, *tensor);
    }
}

std::string checkpoint_dir_name(const std::string& root, int64_t step) {
    char name[32];
    std::snprintf(name, sizeof name, "step-%08lld", static_cast<long long>(step));
    return (fs::path(root) / name).string();
}

std::vector<std::string> list_checkpoints(const std::string& root) {
    std::vector<std::string> out;
    std::error_code ec;
    if (!fs::is_directory(root, ec)) return out;
    for (const auto& entry : fs::directory_iterator(root, ec)) {
        const std::string name = entry.path().filename().string();
        if (entry.is_directory() && name.rfind("step-", 0) == 0 && name.size() == 13 &&
            name.find(".tmp") == std::string::npos)
            out.push_back(entry.path().string());
    }
    std::sort(out.begin(), out.end());  // zero-padded step numbers sort as numbers
    return out;
}

void prune_checkpoints(const std::string& root, int64_t keep) {
    if (keep <= 0) return;
    const std::vector<std::string> all = list_checkpoints(root);
    std::error_code ec;
    for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove_all(all[i], ec);
}

}  // namespace moe
