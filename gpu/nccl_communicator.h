#pragma once
// NcclCommunicator: Communicator over NCCL for ranks that train on CUDA devices, one GPU per
// rank (docs/parallelism.md). Float buffers are device memory (the gradient arena, the expert
// rows); double and int64 buffers are host memory and go through a small device buffer. The
// NCCL id is made on rank 0 and broadcast over MPI; MPI stays alongside for what NCCL cannot
// tell: which ranks stopped answering.
//
// Collectives are enqueued on the legacy default stream (ordered with CudaBackend's kernels)
// and then waited for with a timeout: past it the NCCL communicator is aborted, the MPI side
// names the silent ranks, and a CommError says so.
#include <memory>
#include <string>
#include <vector>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"

namespace moe::gpu {

class NcclCommunicator final : public Communicator {
public:
    // Collective over `bootstrap`: every rank uses CUDA device `device`.
    static std::unique_ptr<NcclCommunicator> create(std::shared_ptr<Communicator> bootstrap,
                                                    int device);
    ~NcclCommunicator() override;

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

private:
    struct Impl;
    NcclCommunicator(std::unique_ptr<Impl> impl, std::shared_ptr<Communicator> bootstrap);
    // Waits for what was enqueued; on a timeout aborts and throws naming the silent ranks.
    void wait(const char* what);
    // Host values through the device buffer.
    void* staging(size_t bytes);
    void reduce_host(void* data, int64_t n, HostType type, HostOp op, size_t elem);
    std::unique_ptr<Impl> impl_;
    std::shared_ptr<Communicator> bootstrap_;  // an MpiCommunicator over the same ranks
    int rank_ = 0, size_ = 1, device_ = 0;
};

}  // namespace moe::gpu
