#pragma once
// Errors the engine reports to its callers (CLI, GUI, tests). Every message names the thing that is
// wrong (file, field, tensor) and the offending value, so a user can act on it without a debugger.
#include <stdexcept>
#include <string>

namespace moe {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A config value that is out of range or inconsistent with another field.
class ConfigError : public Error {
public:
    ConfigError(std::string field, const std::string& message)
        : Error(field + ": " + message), field_(std::move(field)) {}
    const std::string& field() const { return field_; }

private:
    std::string field_;
};

// A file that cannot be read or written, or whose content is malformed.
class FileError : public Error {
public:
    FileError(std::string path, const std::string& message)
        : Error(path + ": " + message), path_(std::move(path)) {}
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

}  // namespace moe
