#pragma once
// Communicator: the collectives between the processes of one training run (data and expert
// parallelism, docs/parallelism.md). Two real implementations: MpiCommunicator (OpenMPI, host
// memory: every parallel code path runs on a machine without a GPU) and the NCCL one in gpu/
// (device memory, the NCCL id exchanged through MPI).
//
// Memory: float buffers are in the memory of the backend the communicator serves (host for
// MPI, the device for NCCL); double and int64 buffers are host memory (figures and counts, a
// few values; a device implementation copies them through the device).
//
// Every rank calls the same collectives in the same order. A collective that does not complete
// within timeout_s (a rank died or hangs) throws CommError naming the ranks that did not answer;
// the caller flushes what it writes and ends the process (the other ranks cannot be trusted to
// continue). Each collective adds its bytes and wall time to stats(), the figures the run file
// keeps per rank.
#include <cstdint>
#include <memory>
#include <string>

#include "core/error.h"

namespace moe {

class CommError : public Error {
public:
    using Error::Error;
};

// Bytes this rank sent and seconds it spent in each kind of collective since the last reset.
struct CommStats {
    int64_t all_reduce_bytes = 0, all_to_all_bytes = 0, other_bytes = 0;
    double all_reduce_s = 0.0, all_to_all_s = 0.0, other_s = 0.0;
    int64_t tokens_sent = 0, tokens_received = 0;  // expert dispatch, counted by the caller
    void reset() { *this = CommStats{}; }
};

class Communicator {
public:
    virtual ~Communicator() = default;

    virtual int rank() const = 0;
    virtual int size() const = 0;
    virtual std::string describe() const = 0;  // "mpi: rank 1 of 4 on host"

    // Sums over the ranks, in place: every rank gets the same sum (the order of the terms is
    // fixed by the implementation, not by timing: results are reproducible run to run).
    virtual void all_reduce_sum(float* data, int64_t n) = 0;
    virtual void all_reduce_sum(double* data, int64_t n) = 0;
    virtual void all_reduce_sum(int64_t* data, int64_t n) = 0;
    // Largest value over the ranks, in place.
    virtual void all_reduce_max(double* data, int64_t n) = 0;
    // Block r of `send` (send_counts[r] floats, blocks consecutive) goes to rank r; block r of
    // `recv` (recv_counts[r] floats) comes from rank r. Counts are per rank, size() of each.
    virtual void all_to_all_v(const float* send, const int64_t* send_counts, float* recv,
                              const int64_t* recv_counts) = 0;
    // The same with `per_rank` values to and from every rank (counts before an all_to_all_v).
    virtual void all_to_all(const int64_t* send, int64_t* recv, int64_t per_rank) = 0;
    // recv [size() * n]: rank r's n values at r * n.
    virtual void all_gather(const float* send, int64_t n, float* recv) = 0;
    virtual void all_gather(const double* send, int64_t n, double* recv) = 0;
    // In place: block r of `data` (counts[r] floats, blocks consecutive) is rank r's; every rank
    // ends with all of them (ZeRO-1's updated weights).
    virtual void all_gather_blocks(float* data, const int64_t* counts) = 0;
    virtual void broadcast(float* data, int64_t n, int root) = 0;
    virtual void broadcast_bytes(void* data, int64_t bytes, int root) = 0;
    virtual void barrier() = 0;

    // The ranks with the same color, ordered by key (MPI_Comm_split): an expert group or a
    // data-parallel group. Collective over this communicator.
    virtual std::unique_ptr<Communicator> split(int color, int key) = 0;

    void set_timeout(double seconds) { timeout_s_ = seconds; }
    double timeout() const { return timeout_s_; }
    CommStats& stats() { return stats_; }
    const CommStats& stats() const { return stats_; }

protected:
    // The host-value reductions (figures, counts) of the implementations.
    enum class HostType { Double, Int64 };
    enum class HostOp { Sum, Max };
    double timeout_s_ = 300.0;
    CommStats stats_;
};

// A communicator of one process (size 1): every collective is a copy or nothing. What a run
// without --parallel uses, so the trainer has one code path.
class SoloCommunicator final : public Communicator {
public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    std::string describe() const override { return "one process"; }
    void all_reduce_sum(float*, int64_t) override {}
    void all_reduce_sum(double*, int64_t) override {}
    void all_reduce_sum(int64_t*, int64_t) override {}
    void all_reduce_max(double*, int64_t) override {}
    void all_to_all_v(const float* send, const int64_t* send_counts, float* recv,
                      const int64_t* recv_counts) override;
    void all_to_all(const int64_t* send, int64_t* recv, int64_t per_rank) override;
    void all_gather(const float* send, int64_t n, float* recv) override;
    void all_gather(const double* send, int64_t n, double* recv) override;
    void all_gather_blocks(float*, const int64_t*) override {}
    void broadcast(float*, int64_t, int) override {}
    void broadcast_bytes(void*, int64_t, int) override {}
    void barrier() override {}
    std::unique_ptr<Communicator> split(int, int) override;
};

}  // namespace moe
