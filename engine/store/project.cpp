#include "store/project.h"

#include <cmath>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/device.h"
#include "core/json_fields.h"
#include "core/json_file.h"

namespace moe {

namespace {

using json = nlohmann::json;

const std::vector<std::string> kTrainingFields = {
    "batch_size",    "seq_len",      "seed",          "threads",      "steps",
    "data",          "optimizer",    "balance",       "mtp",          "log_every",
    "eval_every",    "eval_batches", "routing_every", "probe_tokens", "checkpoint_every",
    "keep_checkpoints", "max_bad_steps", "precision", "device", "index_warmup_steps"};
const std::vector<std::string> kProjectFields = {"name", "description", "model", "training"};

}  // namespace

void TrainingSettings::validate() const {
    if (batch_size <= 0)
        throw ConfigError("training.batch_size", "must be > 0, got " + std::to_string(batch_size));
    if (seq_len <= 0)
        throw ConfigError("training.seq_len", "must be > 0, got " + std::to_string(seq_len));
    if (threads < 0 || threads > kMaxThreads)
        throw ConfigError("training.threads", "must be in [0, " + std::to_string(kMaxThreads) +
                                                  "] (0 = all cores), got " +
                                                  std::to_string(threads));
    if (steps <= 0)
        throw ConfigError("training.steps", "must be > 0, got " + std::to_string(steps));
    // Upper bounds keep every product of sizes (tokens x hidden x vocabulary, ...) inside int64;
    // whether a batch fits in memory is checked when training starts (train/memory_plan.h).
    const std::pair<const char*, std::pair<int64_t, int64_t>> bounded[] = {
        {"training.batch_size", {batch_size, kMaxBatchSize}},
        {"training.seq_len", {seq_len, int64_t(1) << 24}},
        {"training.steps", {steps, int64_t(1) << 40}},
        {"training.eval_batches", {eval_batches, int64_t(1) << 20}},
        {"training.probe_tokens", {probe_tokens, int64_t(1) << 20}},
        {"training.max_bad_steps", {max_bad_steps, int64_t(1) << 40}},
    };
    for (const auto& [field, v] : bounded)
        if (v.first > v.second)
            throw ConfigError(field, "must be <= " + std::to_string(v.second) +
                                         " (the engine's size limit), got " +
                                         std::to_string(v.first));
    if (batch_size * seq_len > kMaxBatchTokens)
        throw ConfigError("training.batch_size",
                          "batch_size x seq_len must be <= " + std::to_string(kMaxBatchTokens) +
                              " tokens per micro-batch, got " + std::to_string(batch_size) +
                              " x " + std::to_string(seq_len));
    parse_device(device, "training.device");
    const std::pair<const char*, int64_t> intervals[] = {
        {"training.log_every", log_every},           {"training.eval_every", eval_every},
        {"training.eval_batches", eval_batches},     {"training.routing_every", routing_every},
        {"training.checkpoint_every", checkpoint_every},
        {"training.keep_checkpoints", keep_checkpoints}, {"training.max_bad_steps", max_bad_steps},
        {"training.index_warmup_steps", index_warmup_steps}};
    for (const auto& [field, value] : intervals)
        if (value < 0)
            throw ConfigError(field, "must be >= 0 (0 = off), got " + std::to_string(value));
    if (probe_tokens < 2)
        throw ConfigError("training.probe_tokens", "must be >= 2, got " + std::to_string(probe_tokens));
    data.validate();
    optimizer.validate();
    balance.validate();
    mtp.validate();
    precision.validate();
}

TrainingSettings TrainingSettings::from_json(const json& j) {
    json_fields::require_object(j, "training");
    TrainingSettings t;
    for (const auto& [key, value] : j.items()) {
        const std::string field = "training." + key;
        if (key == "batch_size") t.batch_size = json_fields::get_int(value, field);
        else if (key == "seq_len") t.seq_len = json_fields::get_int(value, field);
        else if (key == "seed") t.seed = json_fields::get_int(value, field);
        else if (key == "threads") t.threads = json_fields::get_int(value, field);
        else if (key == "device") t.device = json_fields::get_string(value, field);
        else if (key == "steps") t.steps = json_fields::get_int(value, field);
        else if (key == "data") t.data = DataSpec::from_json(value);
        else if (key == "optimizer") t.optimizer = OptimizerSettings::from_json(value);
        else if (key == "balance") t.balance = BalanceSettings::from_json(value);
        else if (key == "mtp") t.mtp = MtpSchedule::from_json(value);
        else if (key == "precision") t.precision = PrecisionSettings::from_json(value);
        else if (key == "log_every") t.log_every = json_fields::get_int(value, field);
        else if (key == "eval_every") t.eval_every = json_fields::get_int(value, field);
        else if (key == "eval_batches") t.eval_batches = json_fields::get_int(value, field);
        else if (key == "routing_every") t.routing_every = json_fields::get_int(value, field);
        else if (key == "probe_tokens") t.probe_tokens = json_fields::get_int(value, field);
        else if (key == "checkpoint_every") t.checkpoint_every = json_fields::get_int(value, field);
        else if (key == "keep_checkpoints") t.keep_checkpoints = json_fields::get_int(value, field);
        else if (key == "max_bad_steps") t.max_bad_steps = json_fields::get_int(value, field);
        else if (key == "index_warmup_steps") t.index_warmup_steps = json_fields::get_int(value, field);
        else json_fields::reject_unknown(key, kTrainingFields, "\"training\"");
    }
    // The LR schedule spans the run unless the file sets its own length.
    const bool schedule_has_length = j.contains("optimizer") && j["optimizer"].is_object() &&
                                     j["optimizer"].contains("schedule") &&
                                     j["optimizer"]["schedule"].is_object() &&
                                     j["optimizer"]["schedule"].contains("total_steps");
    if (!schedule_has_length) t.optimizer.schedule.total_steps = t.steps;
    return t;
}

json TrainingSettings::to_json() const {
    return json{{"batch_size", batch_size},
                {"seq_len", seq_len},
                {"seed", seed},
                {"threads", threads},
                {"device", device},
                {"steps", steps},
                {"data", data.to_json()},
                {"optimizer", optimizer.to_json()},
                {"balance", balance.to_json()},
                {"mtp", mtp.to_json()},
                {"precision", precision.to_json()},
                {"log_every", log_every},
                {"eval_every", eval_every},
                {"eval_batches", eval_batches},
                {"routing_every", routing_every},
                {"probe_tokens", probe_tokens},
                {"checkpoint_every", checkpoint_every},
                {"keep_checkpoints", keep_checkpoints},
                {"max_bad_steps", max_bad_steps},
                {"index_warmup_steps", index_warmup_steps}};
}

void Project::validate() const {
    // The name becomes the run file's name (runs/NAME-TIME.h5): a name that is a path would put
    // the run somewhere else.
    auto bad_name = [this](const std::string& why) {
        throw ConfigError("name", why + ", got \"" + name.substr(0, 80) + "\"");
    };
    if (name.size() > 120) bad_name("must be at most 120 bytes (it names the run files)");
    if (name == "." || name == "..") bad_name("must be a name, not a folder");
    if (!name.empty() && name.front() == '.') bad_name("must not start with '.' (a hidden file)");
    for (const unsigned char c : name)
        if (c == '/' || c == '\\' || c < 0x20 || c == 0x7f)
            bad_name("must not contain '/', '\\' or control characters (it names the run files)");
    model.validate();
    training.validate();
    ModelConfig balanced = model;  // checks the balancing mode fits the model (bias present)
    apply_balance_mode(training.balance, balanced);
    if (training.seq_len > model.max_position_embeddings)
        throw ConfigError("training.seq_len",
                          "must be <= max_position_embeddings (" +
                              std::to_string(model.max_position_embeddings) + "), got " +
                              std::to_string(training.seq_len));
}

Project Project::from_json(const json& j) {
    json_fields::require_object(j, "project");
    Project p;
    // Without a selection bias there is nothing for aux-loss-free balancing to update, so a
    // project that does not choose a balancing mode gets none.
    auto default_balance = [&p](bool chosen) {
        if (!chosen && !p.model.has_selection_bias()) p.training.balance.mode = "none";
    };
    if (j.contains("model_type")) {  // a bare HF config.json
        p.model = ModelConfig::from_json(j);
        default_balance(false);
        return p;
    }
    for (const auto& [key, value] : j.items()) {
        if (key == "name") p.name = json_fields::get_string(value, "name");
        else if (key == "description") p.description = json_fields::get_string(value, "description");
        else if (key == "model") p.model = ModelConfig::from_json(value);
        else if (key == "training") p.training = TrainingSettings::from_json(value);
        else json_fields::reject_unknown(key, kProjectFields, "the project file");
    }
    default_balance(j.contains("training") && j["training"].is_object() &&
                    j["training"].contains("balance"));
    return p;
}

json Project::to_json() const {
    return json{{"name", name},
                {"description", description},
                {"model", model.to_json()},
                {"training", training.to_json()}};
}

Project Project::load(const std::string& path) {
    const json j = read_json_file(path);
    try {
        Project p = from_json(j);
        if (p.name.empty()) p.name = std::filesystem::path(path).stem().string();
        p.validate();
        return p;
    } catch (const ConfigError& e) {
        throw ConfigFileError(path, e);
    }
}

void Project::save(const std::string& path) const { write_json_file(path, to_json()); }

}  // namespace moe
