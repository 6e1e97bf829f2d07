#pragma once
// moe-train's side of several processes (docs/parallelism.md): the --parallel layout turned
// into communicators (MPI; one rank per process under mpirun or srun), the signal a launcher
// sends when another rank ended, and --inject-fault, which makes one rank die or hang at a
// chosen step so the fault handling can be tried (tests, demonstrations).
#include <cstdint>
#include <string>

#include "parallel/parallel_layout.h"

namespace moe::app {

// The context for `layout` ("" or absent: one process) with every collective's timeout.
// ConfigError for a layout that does not match the job's rank count.
ParallelContext start_parallel(const std::string& layout, double timeout_s);

// With several ranks on CUDA: each rank takes the GPU of its local rank on its machine
// (`device` "cuda:N" becomes "cuda:<local rank>"; one rank per GPU) and the collectives move to
// NCCL where the build has it (else they stay on MPI, through host memory). Returns the
// device this rank trains on; `device` unchanged for one process or the CPU.
std::string place_rank(ParallelContext& par, const std::string& device);

// Ends MPI after a run (no-op for one process).
void finish_parallel(const ParallelContext& par);

// After an error on a rank of a parallel run: the message with the rank, then every rank of
// the job ends (the others may wait in a collective that can no longer complete).
[[noreturn]] void abort_parallel(const ParallelContext& par, const std::string& message);

// "RANK:STEP:KIND", KIND one of kill (SIGKILL), hang (sleeps forever), exit (exit code 7).
struct FaultPlan {
    int rank = -1;
    int64_t step = 0;
    std::string kind;
    static FaultPlan parse(const std::string& text);  // ConfigError naming --inject-fault
    // Called before each step (the step about to run, counted from 1).
    void before_step(const ParallelContext& par, int64_t step) const;
};

}  // namespace moe::app
