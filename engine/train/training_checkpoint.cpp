#include "train/training_checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/json_fields.h"
#include "core/json_file.h"
#include "store/checkpoint.h"
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

// 64 random bits as hex, different for every save (also across processes).
std::string new_checkpoint_id() {
    std::random_device rd;
    const uint64_t bits = (uint64_t(rd()) << 32) ^ uint64_t(rd()) ^
                          uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(bits));
    return buf;
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
                          {"checkpoint_id", checkpoint_id},
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
    // Absent in checkpoints written before the id existed: nothing to compare then.
    if (j.contains("checkpoint_id")) s.checkpoint_id = field<std::string>(j, "checkpoint_id", path);
    try {
        s.project = Project::from_json(j.at("project"));
        s.project.validate();
    } catch (const ConfigError& e) {
        throw FileError(path, std::string("project: ") + e.what());
    }
    return s;
}

namespace {
std::atomic<bool> g_writing{false};
}  // namespace

bool checkpoint_write_active() { return g_writing.load(); }

int remove_unfinished_checkpoints(const std::string& root) {
    std::error_code ec;
    if (root.empty() || !fs::is_directory(root, ec)) return 0;
    int removed = 0;
    for (const auto& entry : fs::directory_iterator(root, ec)) {
        const std::string name = entry.path().filename().string();
        // Only what save_training_checkpoint makes: "step-NNNNNNNN.tmp".
        if (name.size() == 17 && name.rfind("step-", 0) == 0 && name.ends_with(".tmp") &&
            name.find_first_not_of("0123456789", 5) == 13) {
            std::error_code rm;
            fs::remove_all(entry.path(), rm);
            if (!rm) ++removed;
        }
    }
    return removed;
}

void save_training_checkpoint(const std::string& dir, const Model& model, AdamW& optimizer,
                              const TrainingState& state) {
    const fs::path final_dir(dir);
    const fs::path tmp = final_dir.string() + ".tmp";
    std::error_code ec;
    // Leftovers of an interrupted write (a second Ctrl-C, a crash) are never read: clear them.
    remove_unfinished_checkpoints(final_dir.parent_path().string());
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) throw FileError(tmp.string(), "cannot create checkpoint directory: " + ec.message());

    struct Writing {
        Writing() { g_writing = true; }
        ~Writing() { g_writing = false; }
    } writing;
    // One id in all three files: resume refuses a folder whose files come from different saves.
    TrainingState stamped = state;
    stamped.checkpoint_id = new_checkpoint_id();
    try {
        save_model_checkpoint(tmp.string(), model, {{"checkpoint_id", stamped.checkpoint_id}});
        SafetensorsWriter writer;
        for (const auto& [name, tensor] : optimizer.state_tensors()) writer.add_f32(name, *tensor);
        writer.set_metadata("checkpoint_id", stamped.checkpoint_id);
        writer.write((tmp / kOptimizerFile).string());
        write_json_file((tmp / kStateFile).string(), stamped.to_json());
    } catch (...) {
        // A full disk or another I/O error: no half checkpoint stays behind.
        std::error_code ignored;
        fs::remove_all(tmp, ignored);
        throw;
    }
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

void check_checkpoint_files(const std::string& dir, const TrainingState& state) {
    if (state.checkpoint_id.empty()) return;
    const std::string state_path = (fs::path(dir) / kStateFile).string();
    for (const char* file : {kCheckpointWeightsFile, kOptimizerFile}) {
        const std::string path = (fs::path(dir) / file).string();
        const SafetensorsReader reader(path);
        const auto it = reader.metadata().find("checkpoint_id");
        const std::string id = it == reader.metadata().end() ? std::string() : it->second;
        if (id != state.checkpoint_id)
            throw FileError(path, "does not belong to this checkpoint: its checkpoint_id is " +
                                      (id.empty() ? std::string("missing") : "\"" + id + "\"") +
                                      ", " + state_path + " says \"" + state.checkpoint_id +
                                      "\" (files of different saves mixed in one folder; "
                                      "resume from an intact checkpoint)");
    }
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

int64_t fit_project_to_steps(Project& project, int64_t steps) {
    project.training.steps = steps;
    auto& schedule = project.training.optimizer.schedule;
    schedule.total_steps = steps;
    if (schedule.warmup_steps <= steps / 2) return 0;
    const int64_t old = schedule.warmup_steps;
    schedule.warmup_steps = std::max<int64_t>(1, steps / 10);
    return old;
}

std::vector<std::string> resume_conflicts(const Project& given, const Project& checkpoint) {
    // The trainer applies the balancing mode to the model before saving; do the same here.
    Project a = given;
    apply_balance_mode(a.training.balance, a.model);
    // A first run with --steps saved its project fitted to that length.
    if (a.training.optimizer.schedule.warmup_steps != checkpoint.training.optimizer.schedule.warmup_steps)
        fit_project_to_steps(a, checkpoint.training.steps);
    nlohmann::json ja = a.to_json(), jb = checkpoint.to_json();
    for (nlohmann::json* j : {&ja, &jb}) {
        j->erase("name");
        j->erase("description");
        for (const char* f : {"steps", "device", "threads"}) (*j)["training"].erase(f);
        auto& opt = (*j)["training"]["optimizer"];
        if (opt.contains("schedule") && opt["schedule"].is_object()) opt["schedule"].erase("total_steps");
    }
    return json_fields::differences(ja, jb);
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

void prune_checkpoints(const std::string& root, int64_t keep, const std::string& also_keep) {
    if (keep <= 0) return;
    const std::vector<std::string> all = list_checkpoints(root);
    std::error_code ec;
    for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i)
        if (also_keep.empty() || !fs::equivalent(all[i], also_keep, ec)) fs::remove_all(all[i], ec);
}

}  // namespace moe
