#pragma once
// The one place that knows which backends this build has: installs the maker for "cuda:N"
// (gpu::CudaBackend) into the engine's make_backend (engine/backend/backend_registry.h) when
// the build has the CUDA backend. Executables call install_backend_factory() at start-up;
// engine/ itself stays free of CUDA. Also lists the devices a user can choose from.
#include <memory>
#include <string>
#include <vector>

namespace moe {
class Communicator;
}

namespace moe::app {

void install_backend_factory();

struct DeviceChoice {
    std::string id;     // "cpu", "cuda:0", ...
    std::string label;  // "CPU", "cuda:0 - NVIDIA H200 (139.8 GiB)"
};

// The CPU first, then every CUDA device of this machine. `problem` says why there is no GPU
// (no CUDA in this build, no driver, no device); empty when GPUs are listed.
std::vector<DeviceChoice> available_devices(std::string* problem = nullptr);

// Collectives over NCCL for the ranks of `mpi` (an MpiCommunicator), this rank on CUDA device
// `device`; nullptr when this build has no NCCL.
std::shared_ptr<Communicator> make_nccl_communicator(std::shared_ptr<Communicator> mpi, int device);

}  // namespace moe::app
