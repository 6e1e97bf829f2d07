#include "device_info.h"

#include <cuda_runtime.h>

namespace moe::gpu {

DeviceList list_devices() {
    DeviceList out;
    int count = 0;
    const cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        out.problem = std::string("CUDA unavailable: ") + cudaGetErrorString(err);
        return out;
    }
    if (count == 0) {
        out.problem = "no CUDA device found";
        return out;
    }
    for (int i = 0; i < count; ++i) {
        cudaDeviceProp prop{};
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
        out.devices.push_back({i, prop.name, static_cast<int64_t>(prop.totalGlobalMem), prop.major,
                               prop.minor});
    }
    return out;
}

}  // namespace moe::gpu
