#pragma once
// Strict reading of JSON objects into typed fields. Config and project files are written by hand
// as often as by tools, so every mistake (wrong type, misspelt key) becomes an error that names
// the field, what was found, and what was expected.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace moe::json_fields {

// Short description of a JSON value for messages: `string "abc"`, `number 1.5`, `null`, ...
std::string describe(const nlohmann::json& value);

// Typed reads. Throw ConfigError(field, "expected ..., got ...") on a type mismatch.
int64_t get_int(const nlohmann::json& value, const std::string& field);
double get_double(const nlohmann::json& value, const std::string& field);  // any number
bool get_bool(const nlohmann::json& value, const std::string& field);
std::string get_string(const nlohmann::json& value, const std::string& field);

// Throws ConfigError(what, "expected a JSON object, got ...") unless `value` is an object.
void require_object(const nlohmann::json& value, const std::string& what);

// Levenshtein distance between two strings.
size_t edit_distance(const std::string& a, const std::string& b);

// The closest known name when it is close enough to be a likely typo, else "".
std::string closest_name(const std::string& name, const std::vector<std::string>& known);

// Throws ConfigError(name, "unknown field in <where>[; did you mean "..."?]").
[[noreturn]] void reject_unknown(const std::string& name, const std::vector<std::string>& known,
                                 const std::string& where);

// Paths ("training.optimizer.lr") where two JSON values differ: object members compared one by
// one (a member on one side only differs), anything else as a whole. `prefix` starts the paths.
std::vector<std::string> differences(const nlohmann::json& a, const nlohmann::json& b,
                                     const std::string& prefix = "");

// A double printed without trailing noise (1e-06, 2.5, 10000) for messages.
std::string format_number(double value);

}  // namespace moe::json_fields
