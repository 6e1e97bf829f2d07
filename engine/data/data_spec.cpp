#include "data/data_spec.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/json_fields.h"
#include "data/synthetic_tasks.h"

namespace moe {

namespace {

using json = nlohmann::json;
const std::string kPrefix = "training.data.";

const std::vector<std::string> kAllFields = {
    "source", "tasks",     "digits",         "min_length",          "max_length",
    "path",   "languages", "max_per_label", "validation_fraction", "seed_offset"};

std::vector<std::string> prefixed(const std::vector<std::string>& names, const std::string& prefix) {
    std::vector<std::string> out;
    for (const auto& n : names) out.push_back(prefix + n);
    return out;
}

bool contains(const std::vector<std::string>& list, const std::string& s) {
    return std::find(list.begin(), list.end(), s) != list.end();
}

std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

const std::vector<std::string>& DataSpec::sources() {
    static const std::vector<std::string> kSources = {"synthetic", "text", "fortunes"};
    return kSources;
}

std::vector<std::string> DataSpec::fields_for(const std::string& source) {
    std::vector<std::string> f = {"source", "validation_fraction", "seed_offset"};
    if (source == "synthetic") f.insert(f.end(), {"tasks", "digits", "min_length", "max_length"});
    if (source == "text") f.insert(f.end(), {"path", "max_per_label"});
    if (source == "fortunes") f.insert(f.end(), {"path", "languages", "max_per_label"});
    return f;
}

void DataSpec::validate() const {
    using json_fields::format_number;
    if (!contains(sources(), source))
        throw ConfigError(kPrefix + "source", "must be \"synthetic\", \"text\" or \"fortunes\", got " +
                                                  in_quotes(source));
    if (source == "synthetic") {
        bool any = tasks.empty();
        for (const auto& [name, weight] : tasks) {
            if (!contains(SyntheticTasks::task_names(), name))
                json_fields::reject_unknown(kPrefix + "tasks." + name,
                                            prefixed(SyntheticTasks::task_names(), kPrefix + "tasks."),
                                            "the synthetic tasks");
            if (!(std::isfinite(weight) && weight >= 0))
                throw ConfigError(kPrefix + "tasks." + name,
                                  "weight must be >= 0, got " + format_number(weight));
            any = any || weight > 0;
        }
        if (!any) throw ConfigError(kPrefix + "tasks", "needs at least one task with a weight > 0");
        if (digits < 1 || digits > SyntheticOptions::kMaxDigits)
            throw ConfigError(kPrefix + "digits", "must be in [1, 18], got " + std::to_string(digits));
        if (min_length < 1)
            throw ConfigError(kPrefix + "min_length", "must be >= 1, got " + std::to_string(min_length));
        if (max_length < min_length || max_length > SyntheticOptions::kMaxLength)
            throw ConfigError(kPrefix + "max_length", "must be in [min_length (" +
                                                          std::to_string(min_length) + "), 256], got " +
                                                          std::to_string(max_length));
    }
    if (source == "text" && path.empty())
        throw ConfigError(kPrefix + "path", "source \"text\" needs a file or folder, got \"\"");
    if (source == "fortunes") {
        for (const auto& lang : languages) {
            const bool ok = lang.size() >= 2 && lang.size() <= 3 &&
                            std::all_of(lang.begin(), lang.end(), [](char c) { return c >= 'a' && c <= 'z'; });
            if (!ok)
                throw ConfigError(kPrefix + "languages",
                                  "expected language codes like \"en\" or \"de\", got " + in_quotes(lang));
        }
    }
    if (max_per_label < 0)
        throw ConfigError(kPrefix + "max_per_label",
                          "must be >= 0 (0 = no cap), got " + std::to_string(max_per_label));
    if (!(std::isfinite(validation_fraction) && validation_fraction >= 0 && validation_fraction <= 0.5))
        throw ConfigError(kPrefix + "validation_fraction",
                          "must be in [0, 0.5], got " + format_number(validation_fraction));
}

DataSpec DataSpec::from_json(const json& j) {
    DataSpec d;
    if (j.is_string()) {
        const std::string s = j.get<std::string>();
        if (s.empty())
            throw ConfigError("training.data", "expected \"synthetic\", \"fortunes\", a corpus path "
                                               "or an object, got \"\"");
        if (s == "synthetic" || s == "fortunes") d.source = s;
        else d.source = "text", d.path = s;  // older projects: a corpus path
        return d;
    }
    if (!j.is_object())
        throw ConfigError("training.data", "expected a string or a JSON object, got " +
                                               json_fields::describe(j));
    if (const auto it = j.find("source"); it != j.end())
        d.source = json_fields::get_string(*it, kPrefix + "source");
    if (!contains(sources(), d.source))
        throw ConfigError(kPrefix + "source", "must be \"synthetic\", \"text\" or \"fortunes\", got " +
                                                  in_quotes(d.source));
    const std::vector<std::string> allowed = fields_for(d.source);
    for (const auto& [key, value] : j.items()) {
        const std::string field = kPrefix + key;
        if (!contains(kAllFields, key))
            json_fields::reject_unknown(field, prefixed(kAllFields, kPrefix), "\"training.data\"");
        if (!contains(allowed, key))
            throw ConfigError(field, "does not apply to source " + in_quotes(d.source) +
                                         " (got " + json_fields::describe(value) + ")");
        if (key == "source") continue;
        else if (key == "tasks") {
            json_fields::require_object(value, field);
            for (const auto& [name, weight] : value.items())
                d.tasks[name] = json_fields::get_double(weight, field + "." + name);
        } else if (key == "digits") d.digits = json_fields::get_int(value, field);
        else if (key == "min_length") d.min_length = json_fields::get_int(value, field);
        else if (key == "max_length") d.max_length = json_fields::get_int(value, field);
        else if (key == "path") d.path = json_fields::get_string(value, field);
        else if (key == "languages") {
            if (!value.is_array())
                throw ConfigError(field, "expected an array of language codes, got " +
                                             json_fields::describe(value));
            for (size_t i = 0; i < value.size(); ++i)
                d.languages.push_back(
                    json_fields::get_string(value[i], field + "[" + std::to_string(i) + "]"));
        } else if (key == "max_per_label") d.max_per_label = json_fields::get_int(value, field);
        else if (key == "validation_fraction")
            d.validation_fraction = json_fields::get_double(value, field);
        else if (key == "seed_offset") d.seed_offset = json_fields::get_int(value, field);
    }
    return d;
}

json DataSpec::to_json() const {
    if (*this == DataSpec{}) return "synthetic";
    json j = {{"source", source}};
    if (source == "synthetic") {
        json t = json::object();
        for (const auto& [name, weight] : tasks) t[name] = weight;
        j["tasks"] = t;
        j["digits"] = digits;
        j["min_length"] = min_length;
        j["max_length"] = max_length;
    } else {
        if (source == "text" || !path.empty()) j["path"] = path;
        if (source == "fortunes") j["languages"] = languages;
        j["max_per_label"] = max_per_label;
    }
    j["validation_fraction"] = validation_fraction;
    j["seed_offset"] = seed_offset;
    return j;
}

}  // namespace moe
