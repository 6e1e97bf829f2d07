#include "backend/backend_registry.h"

#include <algorithm>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace moe {

namespace {
std::mutex g_mutex;
DeviceBackendMaker g_maker;
}  // namespace

int usable_threads(int requested) {
    const int hardware = std::max(1, int(std::thread::hardware_concurrency()));
    if (requested <= 0) return 0;  // the backend's default: every core
    if (requested <= hardware) return requested;
    // More threads than cores only adds barriers (results do not depend on the thread count),
    // and thousands of them exhaust the process: use the cores there are.
    spdlog::warn("{} CPU threads requested, this machine has {}: using {}", requested, hardware,
                 hardware);
    return hardware;
}

void set_device_backend_maker(DeviceBackendMaker maker) {
    std::lock_guard lock(g_mutex);
    g_maker = std::move(maker);
}

std::unique_ptr<Backend> make_backend(const std::string& device, int threads,
                                      const std::string& field) {
    const Device d = parse_device(device, field);
    if (d.is_host()) return std::make_unique<CpuBackend>(usable_threads(threads));
    DeviceBackendMaker maker;
    {
        std::lock_guard lock(g_mutex);
        maker = g_maker;
    }
    if (!maker)
        throw Error(field + " \"" + device + "\": this program was built without the CUDA " +
                    "backend (no CUDA toolkit at configure time, or MOE_ENABLE_CUDA=OFF); use cpu");
    return maker(d);
}

}  // namespace moe
