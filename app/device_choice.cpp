#include "device_choice.h"

#include <cstdlib>

#include "core/error.h"
#ifdef MOE_HAVE_CUDA
#include "device_info.h"
#endif

namespace moe::app {

void require_trainable_device(const std::string& device) {
    if (device == "cpu") return;
    const std::string prefix = "cuda:";
    char* end = nullptr;
    const long index = device.rfind(prefix, 0) == 0 && device.size() > prefix.size()
                           ? std::strtol(device.c_str() + prefix.size(), &end, 10)
                           : -1;
    if (index < 0 || (end && *end != '\0'))
        throw Error("--device: expected cpu or cuda:N, got '" + device + "'");
#ifndef MOE_HAVE_CUDA
    throw Error("--device " + device +
                ": this build has no CUDA backend (configure with a CUDA toolkit installed)");
#else
    const gpu::DeviceList list = gpu::list_devices();
    if (list.devices.empty())
        throw Error("--device " + device + ": no GPU available (" + list.problem + ")");
    if (index >= static_cast<long>(list.devices.size()))
        throw Error("--device " + device + ": no such device (" +
                    std::to_string(list.devices.size()) + " CUDA device(s) found)");
    throw Error("--device " + device + " (" + list.devices[index].name +
                "): the CUDA backend is op-complete but the trainer does not yet place tensors "
                "on the device; train with --device cpu (scripts/gpu-test.sh tests the GPU ops)");
#endif
}

}  // namespace moe::app
