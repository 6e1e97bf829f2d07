#pragma once
// Parsing JSON text that came from outside the program (project files, config.json, trainer
// state, shard indexes, protocol messages). nlohmann's own parser is iterative, but re-serialising
// or visiting a value recursively is not: a file nested 100,000 levels deep would overflow the
// stack long after it parsed. So untrusted text is refused before use when it is nested deeper
// than kMaxJsonDepth, larger than the caller's byte limit, or when an object repeats a key
// (nlohmann would keep the last one silently, so a typo'd duplicate would win unnoticed).
#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace moe {

// Deeper than any real config (DeepSeek-V3's config.json is 3 levels, projects 4).
inline constexpr int kMaxJsonDepth = 64;
// Default size limit for hand-written files (a project is a few KiB; tokenizer.json ~8 MiB).
inline constexpr size_t kMaxJsonBytes = size_t(64) << 20;

// Why a JSON text was refused: `where` is the path of the offending value ("training.optimizer"
// for a duplicate key inside it, "" at the top level); `byte` the offset when the parser knows it.
class JsonTextError : public std::runtime_error {
public:
    JsonTextError(const std::string& message, std::string where, size_t byte)
        : std::runtime_error(message), where_(std::move(where)), byte_(byte) {}
    const std::string& where() const { return where_; }
    size_t byte() const { return byte_; }

private:
    std::string where_;
    size_t byte_;
};

// Parses `text` with the limits above; throws JsonTextError with a message such as
// "not valid JSON at line 1, column 17: ... (byte 17)", "nested deeper than 64 levels at byte 65",
// "duplicate key \"lr\" in training.optimizer" or "is 80.0 MiB, more than the 64.0 MiB limit".
nlohmann::json parse_json_text(std::string_view text, size_t max_bytes = kMaxJsonBytes);

// Nesting depth of the arrays and objects in `text` (strings skipped), without parsing it; stops
// counting at `limit` + 1. Garbage gives some number, never a crash.
int json_nesting_depth(std::string_view text, int limit = kMaxJsonDepth);

}  // namespace moe
