#include "backend_factory.h"

#include <cstdio>
#include <memory>

#include "backend/backend_registry.h"
#include "core/error.h"
#ifdef MOE_HAVE_CUDA
#include "cuda_backend.h"
#include "device_info.h"
#endif
#ifdef MOE_HAVE_NCCL
#include "nccl_communicator.h"
#endif
#include "parallel/communicator.h"

namespace moe::app {

void install_backend_factory() {
#ifdef MOE_HAVE_CUDA
    set_device_backend_maker([](const Device& d) -> std::unique_ptr<Backend> {
        const gpu::DeviceList list = gpu::list_devices();
        if (list.devices.empty())
            throw Error("device " + d.str() + ": no GPU available (" + list.problem + ")");
        if (d.index >= static_cast<int>(list.devices.size()))
            throw Error("device " + d.str() + " does not exist (" +
                        std::to_string(list.devices.size()) + " CUDA device(s) found)");
        return std::make_unique<gpu::CudaBackend>(d.index);
    });
#endif
}

std::vector<DeviceChoice> available_devices(std::string* problem) {
    std::vector<DeviceChoice> out{{"cpu", "CPU"}};
#ifdef MOE_HAVE_CUDA
    const gpu::DeviceList list = gpu::list_devices();
    for (const gpu::DeviceInfo& d : list.devices) {
        char label[256];
        std::snprintf(label, sizeof label, "cuda:%d - %s (%.1f GiB)", d.index, d.name.c_str(),
                      double(d.total_memory_bytes) / double(1ull << 30));
        out.push_back({"cuda:" + std::to_string(d.index), label});
    }
    if (problem) *problem = list.problem;
#else
    if (problem) *problem = "this build has no CUDA backend";
#endif
    return out;
}

std::shared_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Communicator> mpi, int device) {
#ifdef MOE_HAVE_NCCL
    return gpu::NcclCommunicator::create(std::move(mpi), device);
#else
    (void)mpi;
    (void)device;
    return nullptr;
#endif
}

}  // namespace moe::app
