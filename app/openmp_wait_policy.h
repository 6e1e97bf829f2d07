#pragma once
// OpenMP threads that spin while they wait are fast on an idle machine and disastrous on a busy
// one: next to another process, or the workbench's own GUI thread, each barrier can stall for a
// whole scheduler slice (measured on 2 cores: 900 vs 6800 tokens/s). libgomp reads
// OMP_WAIT_POLICY when it is loaded, before main() runs, so the executables re-exec themselves
// once with PASSIVE unless the user chose a policy.
#include <cstdlib>

#include <unistd.h>

namespace moe::app {

inline void ensure_passive_openmp_waits(char** argv) {
    if (std::getenv("OMP_WAIT_POLICY")) return;
    ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    ::execv("/proc/self/exe", argv);  // returns only on failure: carry on as we are
}

}  // namespace moe::app
