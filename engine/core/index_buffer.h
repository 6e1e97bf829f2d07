#pragma once
// IndexBuffer: int32 indices (tokens, targets, positions, top-k expert ids, the route plan) in
// the memory of the device that computes with them (core/device_array.h).
#include <cstdint>

#include "core/device_array.h"

namespace moe {

using IndexBuffer = DeviceArray<int32_t>;

}  // namespace moe
