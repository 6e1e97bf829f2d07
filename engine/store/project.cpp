#include "store/project.h"

#include <cmath>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/json_fields.h"
#include "core/json_file.h"

namespace moe {

namespace {

using json = nlohmann::json;

const std::vector<std::string> kTrainingFields = {"batch_size", "seq_len", "seed",
                                                  "threads",    "mtp_lambda", "data"};
const std::vector<std::string> kProjectFields = {"name", "description", "model", "training"};

}  // namespace

void TrainingSettings::validate() const {
    if (batch_size <= 0)
        throw ConfigError("training.batch_size", "must be > 0, got " + std::to_string(batch_size));
    if (seq_len <= 0)
        throw ConfigError("training.seq_len", "must be > 0, got " + std::to_string(seq_len));
    if (threads < 0)
        throw ConfigError("training.threads",
                          "must be >= 0 (0 = all cores), got " + std::to_string(threads));
    if (!(std::isfinite(mtp_lambda) && mtp_lambda >= 0))
        throw ConfigError("training.mtp_lambda",
                          "must be >= 0, got " + json_fields::format_number(mtp_lambda));
    data.validate();
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
        else if (key == "mtp_lambda") t.mtp_lambda = json_fields::get_double(value, field);
        else if (key == "data") t.data = DataSpec::from_json(value);
        else json_fields::reject_unknown(key, kTrainingFields, "\"training\"");
    }
    return t;
}

json TrainingSettings::to_json() const {
    return json{{"batch_size", batch_size}, {"seq_len", seq_len},       {"seed", seed},
                {"threads", threads},       {"mtp_lambda", mtp_lambda}, {"data", data.to_json()}};
}

void Project::validate() const {
    model.validate();
    training.validate();
    if (training.seq_len > model.max_position_embeddings)
        throw ConfigError("training.seq_len",
                          "must be <= max_position_embeddings (" +
                              std::to_string(model.max_position_embeddings) + "), got " +
                              std::to_string(training.seq_len));
}

Project Project::from_json(const json& j) {
    json_fields::require_object(j, "project");
    Project p;
    if (j.contains("model_type")) {  // a bare HF config.json
        p.model = ModelConfig::from_json(j);
        return p;
    }
    for (const auto& [key, value] : j.items()) {
        if (key == "name") p.name = json_fields::get_string(value, "name");
        else if (key == "description") p.description = json_fields::get_string(value, "description");
        else if (key == "model") p.model = ModelConfig::from_json(value);
        else if (key == "training") p.training = TrainingSettings::from_json(value);
        else json_fields::reject_unknown(key, kProjectFields, "the project file");
    }
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
