#include "core/json_fields.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "core/error.h"

namespace moe::json_fields {

std::string describe(const nlohmann::json& value) {
    std::string text = value.dump();
    if (text.size() > 60) text = text.substr(0, 57) + "...";
    switch (value.type()) {
    case nlohmann::json::value_t::null: return "null";
    case nlohmann::json::value_t::boolean: return "boolean " + text;
    case nlohmann::json::value_t::string: return "string " + text;
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "integer " + text;
    case nlohmann::json::value_t::number_float: return "number " + text;
    case nlohmann::json::value_t::array: return "array " + text;
    case nlohmann::json::value_t::object: return "object " + text;
    default: return text;
    }
}

int64_t get_int(const nlohmann::json& value, const std::string& field) {
    if (value.is_number_unsigned()) {
        const auto u = value.get<uint64_t>();
        if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            throw ConfigError(field, "integer out of range, got " + value.dump());
        return static_cast<int64_t>(u);
    }
    if (value.is_number_integer()) return value.get<int64_t>();
    throw ConfigError(field, "expected an integer, got " + describe(value));
}

double get_double(const nlohmann::json& value, const std::string& field) {
    // Integers are fine where a real is expected (`"rope_theta": 10000`).
    if (value.is_number()) return value.get<double>();
    throw ConfigError(field, "expected a number, got " + describe(value));
}

bool get_bool(const nlohmann::json& value, const std::string& field) {
    if (value.is_boolean()) return value.get<bool>();
    throw ConfigError(field, "expected true or false, got " + describe(value));
}

std::string get_string(const nlohmann::json& value, const std::string& field) {
    if (value.is_string()) return value.get<std::string>();
    throw ConfigError(field, "expected a string, got " + describe(value));
}

void require_object(const nlohmann::json& value, const std::string& what) {
    if (!value.is_object())
        throw ConfigError(what, "expected a JSON object, got " + describe(value));
}

size_t edit_distance(const std::string& a, const std::string& b) {
    std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
        }
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

std::string closest_name(const std::string& name, const std::vector<std::string>& known) {
    std::string best;
    size_t best_distance = std::numeric_limits<size_t>::max();
    for (const auto& candidate : known) {
        const size_t d = edit_distance(name, candidate);
        if (d < best_distance) {
            best_distance = d;
            best = candidate;
        }
    }
    // A third of the name's length (at least 2 edits) separates typos from unrelated names.
    const size_t limit = std::max<size_t>(2, name.size() / 3);
    return best_distance <= limit ? best : std::string();
}

void reject_unknown(const std::string& name, const std::vector<std::string>& known,
                    const std::string& where) {
    std::string message = "unknown field in " + where;
    const std::string suggestion = closest_name(name, known);
    if (!suggestion.empty()) message += "; did you mean \"" + suggestion + "\"?";
    throw ConfigError(name, message);
}

std::vector<std::string> differences(const nlohmann::json& a, const nlohmann::json& b,
                                     const std::string& prefix) {
    std::vector<std::string> out;
    if (a.is_object() && b.is_object()) {
        auto path = [&prefix](const std::string& key) {
            return prefix.empty() ? key : prefix + "." + key;
        };
        for (auto it = a.begin(); it != a.end(); ++it) {
            if (!b.contains(it.key())) {
                out.push_back(path(it.key()));
                continue;
            }
            const auto sub = differences(it.value(), b.at(it.key()), path(it.key()));
            out.insert(out.end(), sub.begin(), sub.end());
        }
        for (auto it = b.begin(); it != b.end(); ++it)
            if (!a.contains(it.key())) out.push_back(path(it.key()));
    } else if (a != b) {
        out.push_back(prefix.empty() ? std::string("(the whole value)") : prefix);
    }
    return out;
}

std::string format_number(double value) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.10g", value);
    return buffer;
}

}  // namespace moe::json_fields
