#include "core/system_memory.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

namespace moe {

namespace {

// "Key:   123 kB" from a /proc file, in bytes; SIZE_MAX when absent.
size_t proc_kb_field(const char* file, const std::string& key) {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(key + ":", 0) != 0) continue;
        std::istringstream fields(line.substr(key.size() + 1));
        unsigned long long kb = 0;
        if (fields >> kb) return static_cast<size_t>(kb) * 1024;
    }
    return SIZE_MAX;
}

// A number from a cgroup file ("max" means none); SIZE_MAX when absent.
size_t cgroup_value(const char* file) {
    std::ifstream in(file);
    std::string text;
    if (!(in >> text) || text == "max") return SIZE_MAX;
    try {
        const unsigned long long v = std::stoull(text);
        // cgroup v1 writes a huge page-aligned number for "no limit".
        return v >= (1ull << 60) ? SIZE_MAX : static_cast<size_t>(v);
    } catch (...) {
        return SIZE_MAX;
    }
}

size_t minus(size_t limit, size_t used) {
    if (limit == SIZE_MAX) return SIZE_MAX;
    if (used == SIZE_MAX) return limit;
    return limit > used ? limit - used : 0;
}

}  // namespace

size_t host_memory_available() {
    size_t available = proc_kb_field("/proc/meminfo", "MemAvailable");
    rlimit as{};
    if (::getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY)
        available = std::min(available, minus(static_cast<size_t>(as.rlim_cur),
                                              proc_kb_field("/proc/self/status", "VmSize")));
    available = std::min(available, minus(cgroup_value("/sys/fs/cgroup/memory.max"),
                                          cgroup_value("/sys/fs/cgroup/memory.current")));
    available =
        std::min(available, minus(cgroup_value("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
                                  cgroup_value("/sys/fs/cgroup/memory/memory.usage_in_bytes")));
    return available;
}

}  // namespace moe
