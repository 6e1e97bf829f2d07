#pragma once
// The CUDA devices this machine has, as plain data (no CUDA headers here, so app/ code can list
// GPUs without including the toolkit).
#include <cstdint>
#include <string>
#include <vector>

namespace moe::gpu {

struct DeviceInfo {
    int index = 0;
    std::string name;
    int64_t total_memory_bytes = 0;
    int compute_major = 0;
    int compute_minor = 0;
};

struct DeviceList {
    std::vector<DeviceInfo> devices;
    std::string problem;  // why the list is empty: no driver, no device, ... (empty when fine)
};

DeviceList list_devices();

}  // namespace moe::gpu
