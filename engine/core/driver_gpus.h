#pragma once
// NVIDIA GPUs the Linux driver reports (/proc/driver/nvidia/gpus, one folder per GPU), as
// "model (bus id)". Works without CUDA: the launcher and moe-worker list what the machine has
// even when this build cannot use it. Empty where there is no driver.
#include <string>
#include <vector>

namespace moe {

std::vector<std::string> driver_gpus();

}  // namespace moe
