#pragma once
// moe-train's --device: "cpu" or "cuda:N". Training runs on the CPU backend today: the CUDA
// backend (gpu/cuda_backend.h) implements every op on device pointers, but Model/Trainer still
// allocate their tensors in host memory, so a cuda device is checked and then refused with a
// message that says which of the three cases it is (no CUDA in this build, no usable
// driver/device, or the trainer not yet placing tensors on the device).
#include <string>

namespace moe::app {

// Returns for "cpu"; throws moe::Error (with the reason) for anything else.
void require_trainable_device(const std::string& device);

}  // namespace moe::app
