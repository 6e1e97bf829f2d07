#pragma once
// Device: where memory lives and compute runs, "cpu" or "cuda:N".
#include <string>

namespace moe {

struct Device {
    enum class Kind { Host, Cuda };
    Kind kind = Kind::Host;
    int index = 0;

    bool is_host() const { return kind == Kind::Host; }
    std::string str() const { return is_host() ? "cpu" : "cuda:" + std::to_string(index); }
    bool operator==(const Device&) const = default;
};

// "cpu" or "cuda:N" (N in 0..255); anything else is a ConfigError naming `field` and the text.
Device parse_device(const std::string& text, const std::string& field);

}  // namespace moe
