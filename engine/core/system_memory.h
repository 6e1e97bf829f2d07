#pragma once
// How much memory this process can still allocate on the host: the smallest of the machine's
// available memory (/proc/meminfo MemAvailable), the address-space limit (ulimit -v) minus what
// the process has mapped, and the cgroup's memory limit minus its usage. Linux only; elsewhere,
// or when nothing is known, SIZE_MAX.
#include <cstddef>

namespace moe {

size_t host_memory_available();

}  // namespace moe
