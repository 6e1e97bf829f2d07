#include "core/driver_gpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace moe {

std::vector<std::string> driver_gpus() {
    namespace fs = std::filesystem;
    std::vector<std::string> out;
    std::error_code ec;
    const fs::path root("/proc/driver/nvidia/gpus");
    if (!fs::is_directory(root, ec)) return out;
    std::vector<fs::path> buses;
    for (const auto& entry : fs::directory_iterator(root, ec))
        if (entry.is_directory(ec)) buses.push_back(entry.path());
    std::sort(buses.begin(), buses.end());
    for (const fs::path& bus : buses) {
        std::string model = bus.filename().string();
        std::ifstream info(bus / "information");
        for (std::string line; std::getline(info, line);)
            if (line.rfind("Model:", 0) == 0) {
                const size_t first = line.find_first_not_of(" \t", 6);
                model = (first == std::string::npos ? std::string() : line.substr(first)) + " (" +
                        bus.filename().string() + ")";
            }
        out.push_back(model);
    }
    return out;
}

}  // namespace moe
