#include "parallel_launch.h"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "backend_factory.h"
#include "core/error.h"
#include "parallel/mpi_communicator.h"

namespace moe::app {

namespace {

// The launcher (mpirun) ends the other ranks with SIGTERM when one dies: say so before going.
// Rows the run file flushed stay readable (HDF5 SWMR); nothing is written from here.
int g_rank = 0;
extern "C" void on_sigterm(int) {
    char text[160];
    const int n =
        std::snprintf(text, sizeof text,
                      "moe-train: rank %d: stopped by the launcher (another rank of the job ended; "
                      "the launcher's message names it)\n",
                      g_rank);
    if (n > 0 && ::write(STDERR_FILENO, text, size_t(n)) < 0) {
        // nothing else to do in a signal handler
    }
    std::_Exit(143);
}

}  // namespace

ParallelContext start_parallel(const std::string& layout, double timeout_s) {
    if (layout.empty()) return ParallelContext::solo();
    const ParallelLayout l = ParallelLayout::parse(layout, "--parallel");
    if (!(timeout_s > 0.0)) throw ConfigError("--comm-timeout", "must be > 0 seconds");
    std::shared_ptr<Communicator> world = MpiCommunicator::world();
    world->set_timeout(timeout_s);
    g_rank = world->rank();
    std::signal(SIGTERM, on_sigterm);
    return ParallelContext::create(std::move(world), l);
}

std::string place_rank(ParallelContext& par, const std::string& device) {
    if (!par.parallel() || !device.starts_with("cuda")) return device;
    int local = par.rank();
    for (const char* v :
         {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID", "PMI_LOCAL_RANK"})
        if (const char* s = std::getenv(v)) {
            local = std::atoi(s);
            break;
        }
    const std::string mine = "cuda:" + std::to_string(local);
    std::shared_ptr<Communicator> nccl = make_nccl_communicator(par.world, local);
    if (!nccl)
        throw ConfigError("--parallel",
                          "several ranks on " + device +
                              " need NCCL for their collectives, and this build has none "
                              "(train on the CPU, or build with a CUDA toolkit that has NCCL)");
    const int r = par.rank();
    par.experts = nccl->split(par.layout.dp_index(r), par.layout.ep_index(r));
    par.data = nccl->split(par.layout.ep_index(r), par.layout.dp_index(r));
    par.world = std::move(nccl);
    return mine;
}

void finish_parallel(const ParallelContext& par) {
    if (par.parallel()) MpiCommunicator::finalize();
}

void abort_parallel(const ParallelContext& par, const std::string& message) {
    std::fprintf(stderr, "moe-train: rank %d: error: %s\n", par.rank(), message.c_str());
    std::fflush(stderr);
    MpiCommunicator::abort_all(1);
}

FaultPlan FaultPlan::parse(const std::string& text) {
    FaultPlan f;
    char kind[16] = {};
    long long step = 0;
    int rank = -1;
    if (std::sscanf(text.c_str(), "%d:%lld:%15s", &rank, &step, kind) != 3 || rank < 0 ||
        step < 1 ||
        (std::strcmp(kind, "kill") && std::strcmp(kind, "hang") && std::strcmp(kind, "exit")))
        throw ConfigError("--inject-fault",
                          "\"" + text + "\": expected RANK:STEP:kill|hang|exit, e.g. 1:5:kill");
    f.rank = rank;
    f.step = step;
    f.kind = kind;
    return f;
}

void FaultPlan::before_step(const ParallelContext& par, int64_t step) const {
    if (rank != par.rank() || step != this->step) return;
    std::fprintf(stderr, "moe-train: rank %d: injected fault at step %lld: %s\n", rank,
                 (long long)step, kind.c_str());
    std::fflush(stderr);
    if (kind == "kill") std::raise(SIGKILL);
    if (kind == "exit") std::_Exit(7);
    for (;;) ::pause();  // hang: no collective from here on
}

}  // namespace moe::app
