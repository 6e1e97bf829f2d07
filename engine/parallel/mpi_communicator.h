#pragma once
// MpiCommunicator: Communicator over MPI (Debian's OpenMPI) on host memory, one process per
// rank, launched by mpirun or Slurm's srun.
//
// Collectives run as non-blocking MPI calls that this rank polls until they complete or its
// timeout passes. On a timeout every rank that is still alive (they all wait in the same
// collective, so they time out together) exchanges a short "alive" message with every other
// for a few seconds; the ranks whose message never arrived are the dead or hung ones, and the
// CommError names them. The pending collective cannot be cancelled: the caller saves what it
// can and calls abort_all(), which ends every rank of the job (a hung one included).
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"

namespace moe {

class MpiCommunicator final : public Communicator {
public:
    // MPI_COMM_WORLD, initialising MPI on first use (threads: MPI_THREAD_FUNNELED, calls from
    // the thread that made it). Error when MPI cannot start.
    static std::unique_ptr<MpiCommunicator> world();
    // Ends MPI (after the last collective; a no-op when MPI was not started).
    static void finalize();
    // Ends every rank of the job with `code` (MPI_Abort on MPI_COMM_WORLD).
    [[noreturn]] static void abort_all(int code);

    ~MpiCommunicator() override;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    std::string describe() const override;

    void all_reduce_sum(float* data, int64_t n) override;
    void all_reduce_sum(double* data, int64_t n) override;
    void all_reduce_sum(int64_t* data, int64_t n) override;
    void all_reduce_max(double* data, int64_t n) override;
    void all_to_all_v(const float* send, const int64_t* send_counts, float* recv,
                      const int64_t* recv_counts) override;
    void all_to_all(const int64_t* send, int64_t* recv, int64_t per_rank) override;
    void all_gather(const float* send, int64_t n, float* recv) override;
    void all_gather(const double* send, int64_t n, double* recv) override;
    void all_gather_blocks(float* data, const int64_t* counts) override;
    void broadcast(float* data, int64_t n, int root) override;
    void broadcast_bytes(void* data, int64_t bytes, int root) override;
    void barrier() override;
    std::unique_ptr<Communicator> split(int color, int key) override;

    // The ranks that do not answer an "alive" exchange within `window` seconds (every live
    // rank must call it: the timeout path of this and of the NCCL communicator).
    std::vector<int> silent_ranks(double window);

private:
    struct Impl;
    explicit MpiCommunicator(std::unique_ptr<Impl> impl);
    void reduce_host(void* data, int64_t n, HostType type, HostOp op, size_t elem);
    std::unique_ptr<Impl> impl_;
    int rank_ = 0, size_ = 1;
};

}  // namespace moe
