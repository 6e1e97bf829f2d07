#pragma once
// Reading and writing whole JSON files, with errors that name the path (and, for malformed JSON,
// where in the file the parser stopped).
#include <string>

#include <nlohmann/json.hpp>

namespace moe {

// Throws FileError(path, ...) when the file cannot be read or is not valid JSON.
nlohmann::json read_json_file(const std::string& path);

// Pretty JSON (indent 2) written to `path.tmp` and renamed over `path`, so a crash never leaves a
// half-written file behind. Creates missing parent folders. Throws FileError on failure.
void write_json_file(const std::string& path, const nlohmann::json& value);

}  // namespace moe
