#include "core/device.h"

#include <cctype>

#include "core/error.h"

namespace moe {

Device parse_device(const std::string& text, const std::string& field) {
    if (text == "cpu") return {};
    const std::string prefix = "cuda:";
    if (text.rfind(prefix, 0) == 0 && text.size() > prefix.size() &&
        text.size() <= prefix.size() + 3) {
        int index = 0;
        bool digits = true;
        for (size_t i = prefix.size(); i < text.size(); ++i) {
            if (!std::isdigit(static_cast<unsigned char>(text[i])))
                digits = false;
            else
                index = index * 10 + (text[i] - '0');
        }
        if (digits && index <= 255) return {Device::Kind::Cuda, index};
    }
    throw ConfigError(
        field, "expected \"cpu\" or \"cuda:N\" (N a GPU index, e.g. cuda:0), got \"" + text + "\"");
}

}  // namespace moe
