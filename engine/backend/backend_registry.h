#pragma once
// make_backend: the backend for a device name, chosen at run time. The engine builds only the
// CPU backend; the executables register the factory for other devices (app/backend_factory.h:
// cuda:N when the build has the CUDA backend), so engine/ stays free of CUDA.
#include <functional>
#include <memory>
#include <string>

#include "backend/backend.h"

namespace moe {

// Makes the backend for a non-CPU device or throws moe::Error saying why it cannot.
using DeviceBackendMaker = std::function<std::unique_ptr<Backend>(const Device& device)>;

// Installed once at start-up by the executable (and by tests that need a device).
void set_device_backend_maker(DeviceBackendMaker maker);

// The CPU threads a backend gets for a request: at most the machine's hardware threads (with a
// warning when capped); 0 stays 0 (every core).
int usable_threads(int requested);

// "cpu" -> CpuBackend(usable_threads(threads)); "cuda:N" -> the registered maker, or an Error naming what this
// build lacks. `field` names where the device came from, for the message.
std::unique_ptr<Backend> make_backend(const std::string& device, int threads,
                                      const std::string& field = "device");

}  // namespace moe
