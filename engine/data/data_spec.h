#pragma once
// DataSpec: what a project's "training.data" holds, i.e. where training text comes from.
//   {"source": "synthetic", "tasks": {"arithmetic": 2, "copy": 1}, "digits": 3,
//    "min_length": 3, "max_length": 8, "validation_fraction": 0.05, "seed_offset": 0}
//   {"source": "text", "path": "corpus/", "max_per_label": 5000}
//   {"source": "fortunes", "languages": ["en", "de", "ru"], "max_per_label": 2000}
// Shorthand strings: "synthetic" and "fortunes" (defaults), any other string is a text path
// (what older projects stored). Fields belonging to another source are rejected. See docs/data.md.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace moe {

struct DataSpec {
    std::string source = "synthetic";     // "synthetic" | "text" | "fortunes"
    // synthetic
    std::map<std::string, double> tasks;  // task -> weight; empty = every task, equal weights
    int64_t digits = 3;
    int64_t min_length = 3;
    int64_t max_length = 8;
    // text: the file or folder (required); fortunes: the fortunes folder ("" = Debian's)
    std::string path;
    // fortunes
    std::vector<std::string> languages;   // empty = every installed language
    // text and fortunes: > 0 caps the documents per label (balance); 0 = no cap
    int64_t max_per_label = 0;
    // all: share of documents held out for validation
    double validation_fraction = 0.05;
    // all: added to the training seed for the data only (vary data order, keep the init)
    int64_t seed_offset = 0;

    bool operator==(const DataSpec&) const = default;

    // ConfigError naming "training.data.<field>" and the value.
    void validate() const;
    static DataSpec from_json(const nlohmann::json& j);
    // The default spec is written as the shorthand "synthetic"; otherwise an object with the
    // source's own fields.
    nlohmann::json to_json() const;

    static const std::vector<std::string>& sources();
    // Fields of the JSON object that apply to `source`.
    static std::vector<std::string> fields_for(const std::string& source);
};

}  // namespace moe
