// Fuzz target: project files and HF config.json text (engine/core/json_text.h,
// engine/store/project.h, engine/model/config.h, engine/model/summary.h). The input is the text
// of a file; it goes through what Project::load and ModelConfig::load do, in memory.
// Invariants checked:
// - only moe::JsonTextError (parse_json_text) and moe::Error subclasses (ConfigError, ...)
//   escape; anything else (std::bad_alloc, std::out_of_range, nlohmann exceptions) aborts;
// - a Project / ModelConfig that validates, written with to_json().dump(2) (what save writes)
//   and read back with parse_json_text + from_json, validates again and compares equal;
// - a bare HF config read as a project has the model ModelConfig::from_json reads;
// - summarize() + format_summary() on every valid model: no int64 overflow (UBSan), counts
//   >= 0, active <= total.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_text.h"
#include "model/config.h"
#include "model/summary.h"
#include "store/project.h"

namespace {

[[noreturn]] void fail(const std::string& what) {
    std::fprintf(stderr, "fuzz_project_config: invariant broken: %s\n", what.c_str());
    std::abort();
}

// Save + load in memory: the text save() would write must load back to an equal value.
template <class T>
void check_round_trip(const T& value, const char* what) {
    const std::string text = value.to_json().dump(2);
    T again;
    try {
        again = T::from_json(moe::parse_json_text(text));
        again.validate();
    } catch (const std::exception& e) {
        fail(std::string(what) + " does not load back from its own to_json(): " + e.what() +
             "\n--- written:\n" + text);
    }
    if (!(again == value))
        fail(std::string(what) + " differs after to_json() + from_json()\n--- written:\n" + text +
             "\n--- read back and written again:\n" + again.to_json().dump(2));
}

void check_summary(const moe::ModelConfig& c, int64_t seq_len) {
    const moe::ModelSummary s = moe::summarize(c, seq_len);
    if (s.total_params <= 0 || s.active_params <= 0 || s.active_params > s.total_params ||
        s.mtp_params < 0 || s.trainable_params <= 0 || s.active_matmul_params < 0 ||
        s.active_routed_experts < 0)
        fail("implausible summary of a valid model:\n" + moe::format_summary(s) + "\n" +
             c.to_json().dump(2));
    if (moe::format_summary(s).empty()) fail("empty summary");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    nlohmann::json j;
    try {
        j = moe::parse_json_text(text);
    } catch (const moe::JsonTextError&) {
        return 0;
    }

    std::optional<moe::Project> project;
    try {
        moe::Project p = moe::Project::from_json(j);
        p.validate();
        project = std::move(p);
    } catch (const moe::Error&) {
    }
    std::optional<moe::ModelConfig> config;
    try {
        moe::ModelConfig c = moe::ModelConfig::from_json(j);
        c.validate();
        config = std::move(c);
    } catch (const moe::Error&) {
    }

    if (project) {
        check_round_trip(*project, "project");
        check_summary(project->model, project->training.seq_len);
    }
    if (config) {
        check_round_trip(*config, "model config");
        check_summary(*config, 1);
        check_summary(*config, config->max_position_embeddings);
        if (j.contains("model_type") && project && !(project->model == *config))
            fail("a bare config.json read as a project gives another model");
    }
    return 0;
}
