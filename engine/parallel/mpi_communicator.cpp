#include "parallel/mpi_communicator.h"

// The C API only (OpenMPI's mpi.h would pull in the deprecated C++ bindings).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace moe {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kAliveTag = 7001;

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string mpi_error(int code) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(code, text, &len);
    return std::string(text, static_cast<size_t>(len));
}

int as_int(int64_t n, const char* what) {
    if (n < 0 || n > INT_MAX)
        throw CommError(std::string(what) + ": " + std::to_string(n) +
                        " values in one message exceed MPI's int counts");
    return static_cast<int>(n);
}

}  // namespace

struct MpiCommunicator::Impl {
    MPI_Comm comm = MPI_COMM_NULL;   // the collectives
    MPI_Comm probe = MPI_COMM_NULL;  // the "alive" exchange after a timeout, apart from them
    bool owned = false;

    void check(int code, const char* what) const {
        if (code != MPI_SUCCESS)
            throw CommError(std::string("MPI ") + what + ": " + mpi_error(code));
    }
};

std::unique_ptr<MpiCommunicator> MpiCommunicator::world() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
        int provided = 0;
        const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) throw CommError("MPI could not start: " + mpi_error(rc));
    }
    auto impl = std::make_unique<Impl>();
    impl->check(MPI_Comm_dup(MPI_COMM_WORLD, &impl->comm), "Comm_dup");
    impl->check(MPI_Comm_dup(MPI_COMM_WORLD, &impl->probe), "Comm_dup");
    impl->owned = true;
    MPI_Comm_set_errhandler(impl->comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(impl->probe, MPI_ERRORS_RETURN);
    return std::unique_ptr<MpiCommunicator>(new MpiCommunicator(std::move(impl)));
}

void MpiCommunicator::finalize() {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) MPI_Finalize();
}

void MpiCommunicator::abort_all(int code) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
}

MpiCommunicator::MpiCommunicator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {
    MPI_Comm_rank(impl_->comm, &rank_);
    MPI_Comm_size(impl_->comm, &size_);
}

MpiCommunicator::~MpiCommunicator() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (impl_ && impl_->owned && !finalized) {
        if (impl_->comm != MPI_COMM_NULL) MPI_Comm_free(&impl_->comm);
        if (impl_->probe != MPI_COMM_NULL) MPI_Comm_free(&impl_->probe);
    }
}

std::string MpiCommunicator::describe() const {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    return "mpi: rank " + std::to_string(rank_) + " of " + std::to_string(size_) + " on " + host;
}

namespace {

// Each rank says "alive" to every other and listens for `window` seconds: the ranks never
// heard from.
std::vector<int> silent(MPI_Comm probe, int rank, int size, double window) {
    // The buffers outlive this call on purpose: the requests of silent ranks stay pending (a
    // late answer may still land) until the process ends, which follows at once.
    int* me = new int(rank);
    std::vector<int>& heard = *new std::vector<int>(static_cast<size_t>(size), -1);
    std::vector<MPI_Request> sends, recvs(static_cast<size_t>(size), MPI_REQUEST_NULL);
    for (int r = 0; r < size; ++r) {
        if (r == rank) continue;
        MPI_Request s = MPI_REQUEST_NULL;
        MPI_Isend(me, 1, MPI_INT, r, kAliveTag, probe, &s);
        sends.push_back(s);
        MPI_Irecv(&heard[size_t(r)], 1, MPI_INT, r, kAliveTag, probe, &recvs[size_t(r)]);
    }
    const auto t0 = Clock::now();
    std::vector<int> missing;
    for (;;) {
        missing.clear();
        for (int r = 0; r < size; ++r) {
            if (r == rank) continue;
            int done = 0;
            if (recvs[size_t(r)] != MPI_REQUEST_NULL)
                MPI_Test(&recvs[size_t(r)], &done, MPI_STATUS_IGNORE);
            if (heard[size_t(r)] != r) missing.push_back(r);
        }
        if (missing.empty() || seconds_since(t0) > window) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return missing;
}

// Polls `req` until it completes; on a timeout finds out which ranks still answer and throws.
struct Waiter {
    MPI_Comm probe;
    int rank, size;
    double timeout;

    void wait(MPI_Request* req, const char* what) const {
        const auto t0 = Clock::now();
        int done = 0;
        for (int spins = 0;; ++spins) {
            const int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
            if (rc != MPI_SUCCESS) throw CommError(std::string(what) + " failed: " + mpi_error(rc));
            if (done) return;
            // Spin first (a collective between busy ranks completes in microseconds), then
            // sleep a little per poll so a waiting rank does not take a core from the others.
            if (spins > 2000) std::this_thread::sleep_for(std::chrono::microseconds(100));
            if ((spins & 63) == 0 && seconds_since(t0) > timeout) stop(what, seconds_since(t0));
        }
    }

    [[noreturn]] void stop(const char* what, double waited) const {
        // Every live rank waits in the same collective, so they all reach this within about
        // the time it took the last one to enter.
        const std::vector<int> missing =
            silent(probe, rank, size, std::min(10.0, std::max(2.0, 0.5 * timeout)));
        std::string who;
        for (int r : missing) who += (who.empty() ? "" : ", ") + std::to_string(r);
        char secs[32];
        std::snprintf(secs, sizeof secs, "%.1f", waited);
        throw CommError("rank " + std::to_string(rank) + ": " + what + " did not complete within " +
                        secs + " s (--comm-timeout); " +
                        (missing.empty()
                             ? std::string("every rank still answers (a rank is slower than the "
                                           "timeout allows: raise it)")
                             : "no answer from rank " + who +
                                   " (it died, hangs, or is busy for longer than the timeout)") +
                        "; stopping every rank");
    }
};

}  // namespace

#define MOE_WAITER                             \
    Waiter {                                   \
        impl_->probe, rank_, size_, timeout_s_ \
    }

// A sum to rank 0, then its result to every rank: each rank ends with the same bits (an
// all-reduce may add the terms in a different order on each rank, and data-parallel replicas
// that differ in the last bit drift apart). In pieces of at most 2^30 values (int counts).
void MpiCommunicator::all_reduce_sum(float* data, int64_t n) {
    const auto t0 = Clock::now();
    MPI_Request req;
    for (int64_t at = 0; at < n; at += int64_t(1) << 30) {
        const int count = static_cast<int>(std::min<int64_t>(n - at, int64_t(1) << 30));
        impl_->check(MPI_Ireduce(rank_ == 0 ? MPI_IN_PLACE : data + at, data + at, count, MPI_FLOAT,
                                 MPI_SUM, 0, impl_->comm, &req),
                     "Ireduce");
        MOE_WAITER.wait(&req, "all_reduce");
        impl_->check(MPI_Ibcast(data + at, count, MPI_FLOAT, 0, impl_->comm, &req), "Ibcast");
        MOE_WAITER.wait(&req, "all_reduce");
    }
    stats_.all_reduce_bytes += n * int64_t(sizeof(float));
    stats_.all_reduce_s += seconds_since(t0);
}

// Host figures (a few values): summed (or maxed) on rank 0, its result sent to every rank, so
// all ranks hold the same bits whatever the type.
void MpiCommunicator::reduce_host(void* data, int64_t n, HostType type, HostOp op, size_t elem) {
    const auto t0 = Clock::now();
    MPI_Request req;
    const int count = as_int(n, "all_reduce");
    const MPI_Datatype t = type == HostType::Double ? MPI_DOUBLE : MPI_INT64_T;
    impl_->check(MPI_Ireduce(rank_ == 0 ? MPI_IN_PLACE : data, data, count, t,
                             op == HostOp::Sum ? MPI_SUM : MPI_MAX, 0, impl_->comm, &req),
                 "Ireduce");
    MOE_WAITER.wait(&req, "all_reduce");
    impl_->check(MPI_Ibcast(data, count, t, 0, impl_->comm, &req), "Ibcast");
    MOE_WAITER.wait(&req, "all_reduce");
    stats_.other_bytes += n * int64_t(elem);
    stats_.other_s += seconds_since(t0);
}

void MpiCommunicator::all_reduce_sum(double* data, int64_t n) {
    reduce_host(data, n, HostType::Double, HostOp::Sum, sizeof(double));
}
void MpiCommunicator::all_reduce_sum(int64_t* data, int64_t n) {
    reduce_host(data, n, HostType::Int64, HostOp::Sum, sizeof(int64_t));
}
void MpiCommunicator::all_reduce_max(double* data, int64_t n) {
    reduce_host(data, n, HostType::Double, HostOp::Max, sizeof(double));
}

void MpiCommunicator::all_to_all_v(const float* send, const int64_t* send_counts, float* recv,
                                   const int64_t* recv_counts) {
    const auto t0 = Clock::now();
    const size_t ranks = static_cast<size_t>(size_);
    std::vector<int> sc(ranks), sd(ranks), rc(ranks), rd(ranks);
    int64_t s_at = 0, r_at = 0;
    for (int r = 0; r < size_; ++r) {
        sc[size_t(r)] = as_int(send_counts[r], "all_to_all");
        rc[size_t(r)] = as_int(recv_counts[r], "all_to_all");
        sd[size_t(r)] = as_int(s_at, "all_to_all");
        rd[size_t(r)] = as_int(r_at, "all_to_all");
        s_at += send_counts[r];
        r_at += recv_counts[r];
    }
    MPI_Request req;
    impl_->check(MPI_Ialltoallv(send, sc.data(), sd.data(), MPI_FLOAT, recv, rc.data(), rd.data(),
                                MPI_FLOAT, impl_->comm, &req),
                 "Ialltoallv");
    MOE_WAITER.wait(&req, "all_to_all");
    stats_.all_to_all_bytes +=
        (s_at - send_counts[rank_]) * int64_t(sizeof(float));  // leaves this rank
    stats_.all_to_all_s += seconds_since(t0);
}

void MpiCommunicator::all_to_all(const int64_t* send, int64_t* recv, int64_t per_rank) {
    const auto t0 = Clock::now();
    MPI_Request req;
    impl_->check(MPI_Ialltoall(send, as_int(per_rank, "all_to_all"), MPI_INT64_T, recv,
                               int(per_rank), MPI_INT64_T, impl_->comm, &req),
                 "Ialltoall");
    MOE_WAITER.wait(&req, "all_to_all");
    stats_.other_bytes += per_rank * (size_ - 1) * int64_t(sizeof(int64_t));
    stats_.other_s += seconds_since(t0);
}

void MpiCommunicator::all_gather(const float* send, int64_t n, float* recv) {
    const auto t0 = Clock::now();
    MPI_Request req;
    impl_->check(MPI_Iallgather(send, as_int(n, "all_gather"), MPI_FLOAT, recv, int(n), MPI_FLOAT,
                                impl_->comm, &req),
                 "Iallgather");
    MOE_WAITER.wait(&req, "all_gather");
    stats_.other_bytes += n * int64_t(sizeof(float));
    stats_.other_s += seconds_since(t0);
}

void MpiCommunicator::all_gather(const double* send, int64_t n, double* recv) {
    const auto t0 = Clock::now();
    MPI_Request req;
    impl_->check(MPI_Iallgather(send, as_int(n, "all_gather"), MPI_DOUBLE, recv, int(n), MPI_DOUBLE,
                                impl_->comm, &req),
                 "Iallgather");
    MOE_WAITER.wait(&req, "all_gather");
    stats_.other_bytes += n * int64_t(sizeof(double));
    stats_.other_s += seconds_since(t0);
}

void MpiCommunicator::all_gather_blocks(float* data, const int64_t* counts) {
    const auto t0 = Clock::now();
    const size_t ranks = static_cast<size_t>(size_);
    std::vector<int> c(ranks), d(ranks);
    int64_t at = 0;
    for (size_t r = 0; r < ranks; ++r) {
        c[r] = as_int(counts[r], "all_gather");
        d[r] = as_int(at, "all_gather");
        at += counts[r];
    }
    MPI_Request req;
    impl_->check(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, data, c.data(), d.data(), MPI_FLOAT,
                                 impl_->comm, &req),
                 "Iallgatherv");
    MOE_WAITER.wait(&req, "all_gather");
    stats_.all_reduce_bytes += counts[rank_] * int64_t(sizeof(float));  // with the gradient traffic
    stats_.all_reduce_s += seconds_since(t0);
}

void MpiCommunicator::broadcast(float* data, int64_t n, int root) {
    const auto t0 = Clock::now();
    MPI_Request req;
    for (int64_t at = 0; at < n; at += int64_t(1) << 30) {
        const int count = static_cast<int>(std::min<int64_t>(n - at, int64_t(1) << 30));
        impl_->check(MPI_Ibcast(data + at, count, MPI_FLOAT, root, impl_->comm, &req), "Ibcast");
        MOE_WAITER.wait(&req, "broadcast");
    }
    stats_.other_bytes += rank_ == root ? n * int64_t(sizeof(float)) : 0;
    stats_.other_s += seconds_since(t0);
}

void MpiCommunicator::broadcast_bytes(void* data, int64_t bytes, int root) {
    const auto t0 = Clock::now();
    MPI_Request req;
    impl_->check(MPI_Ibcast(data, as_int(bytes, "broadcast"), MPI_BYTE, root, impl_->comm, &req),
                 "Ibcast");
    MOE_WAITER.wait(&req, "broadcast");
    stats_.other_bytes += rank_ == root ? bytes : 0;
    stats_.other_s += seconds_since(t0);
}

void MpiCommunicator::barrier() {
    const auto t0 = Clock::now();
    MPI_Request req;
    impl_->check(MPI_Ibarrier(impl_->comm, &req), "Ibarrier");
    MOE_WAITER.wait(&req, "barrier");
    stats_.other_s += seconds_since(t0);
}

std::vector<int> MpiCommunicator::silent_ranks(double window) {
    return silent(impl_->probe, rank_, size_, window);
}

std::unique_ptr<Communicator> MpiCommunicator::split(int color, int key) {
    auto impl = std::make_unique<Impl>();
    impl_->check(MPI_Comm_split(impl_->comm, color, key, &impl->comm), "Comm_split");
    impl_->check(MPI_Comm_split(impl_->probe, color, key, &impl->probe), "Comm_split");
    impl->owned = true;
    MPI_Comm_set_errhandler(impl->comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(impl->probe, MPI_ERRORS_RETURN);
    std::unique_ptr<MpiCommunicator> c(new MpiCommunicator(std::move(impl)));
    c->set_timeout(timeout_s_);
    return c;
}

}  // namespace moe
