#include "nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

namespace moe::gpu {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
}

void check_nccl(ncclResult_t r, const char* what) {
    if (r != ncclSuccess && r != ncclInProgress)
        throw CommError(std::string("NCCL ") + what + ": " + ncclGetErrorString(r));
}

void check_cuda(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw CommError(std::string(what) + ": " + cudaGetErrorString(e));
}

}  // namespace

struct NcclCommunicator::Impl {
    ncclComm_t comm = nullptr;
    cudaEvent_t done = nullptr;
    void* buffer = nullptr;  // staging for host values
    size_t buffer_bytes = 0;
    bool aborted = false;
};

std::unique_ptr<NcclCommunicator> NcclCommunicator::create(std::shared_ptr<Communicator> bootstrap,
                                                           int device) {
    if (!dynamic_cast<MpiCommunicator*>(bootstrap.get()))
        throw CommError("NCCL needs an MPI communicator to start from");
    check_cuda(cudaSetDevice(device), "cudaSetDevice");
    ncclUniqueId id;
    if (bootstrap->rank() == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
    bootstrap->broadcast_bytes(&id, sizeof id, 0);
    auto impl = std::make_unique<Impl>();
    check_nccl(ncclCommInitRank(&impl->comm, bootstrap->size(), id, bootstrap->rank()),
               "ncclCommInitRank");
    check_cuda(cudaEventCreateWithFlags(&impl->done, cudaEventDisableTiming), "cudaEventCreate");
    std::unique_ptr<NcclCommunicator> c(
        new NcclCommunicator(std::move(impl), std::move(bootstrap)));
    c->device_ = device;
    return c;
}

NcclCommunicator::NcclCommunicator(std::unique_ptr<Impl> impl,
                                   std::shared_ptr<Communicator> bootstrap)
    : impl_(std::move(impl)), bootstrap_(std::move(bootstrap)) {
    rank_ = bootstrap_->rank();
    size_ = bootstrap_->size();
    timeout_s_ = bootstrap_->timeout();
}

NcclCommunicator::~NcclCommunicator() {
    if (!impl_) return;
    if (impl_->comm) {
        if (impl_->aborted)
            ncclCommAbort(impl_->comm);
        else
            ncclCommDestroy(impl_->comm);
    }
    if (impl_->done) cudaEventDestroy(impl_->done);
    if (impl_->buffer) cudaFree(impl_->buffer);
}

std::string NcclCommunicator::describe() const {
    return "nccl: rank " + std::to_string(rank_) + " of " + std::to_string(size_) +
           " on cuda:" + std::to_string(device_);
}

void* NcclCommunicator::staging(size_t bytes) {
    if (impl_->buffer_bytes < bytes) {
        if (impl_->buffer) cudaFree(impl_->buffer);
        impl_->buffer = nullptr;
        check_cuda(cudaMalloc(&impl_->buffer, bytes), "cudaMalloc (NCCL staging)");
        impl_->buffer_bytes = bytes;
    }
    return impl_->buffer;
}

void NcclCommunicator::wait(const char* what) {
    check_cuda(cudaEventRecord(impl_->done, 0), "cudaEventRecord");
    const auto t0 = Clock::now();
    for (int spins = 0;; ++spins) {
        const cudaError_t q = cudaEventQuery(impl_->done);
        if (q == cudaSuccess) return;
        if (q != cudaErrorNotReady) check_cuda(q, what);
        ncclResult_t async = ncclSuccess;
        ncclCommGetAsyncError(impl_->comm, &async);
        if (async != ncclSuccess && async != ncclInProgress) {
            impl_->aborted = true;
            throw CommError(std::string(what) + " failed: " + ncclGetErrorString(async));
        }
        if (spins > 2000) std::this_thread::sleep_for(std::chrono::microseconds(100));
        if ((spins & 63) == 0 && seconds_since(t0) > timeout_s_) {
            impl_->aborted = true;
            ncclCommAbort(impl_->comm);
            impl_->comm = nullptr;
            // NCCL cannot say who is missing: the MPI side asks every rank.
            auto* mpi = dynamic_cast<MpiCommunicator*>(bootstrap_.get());
            const std::vector<int> missing =
                mpi ? mpi->silent_ranks(std::min(10.0, std::max(2.0, 0.5 * timeout_s_)))
                    : std::vector<int>{};
            std::string who;
            for (int r : missing) who += (who.empty() ? "" : ", ") + std::to_string(r);
            char secs[32];
            std::snprintf(secs, sizeof secs, "%.1f", seconds_since(t0));
            throw CommError(
                "rank " + std::to_string(rank_) + ": " + what + " (NCCL) did not complete within " +
                secs + " s (--comm-timeout); " +
                (missing.empty()
                     ? std::string("every rank still answers")
                     : "no answer from rank " + who +
                           " (it died, hangs, or is busy for longer than the timeout)") +
                "; stopping every rank");
        }
    }
}

void NcclCommunicator::all_reduce_sum(float* data, int64_t n) {
    const auto t0 = Clock::now();
    // NCCL's ring gives every rank the same bits (each chunk is reduced once, then copied).
    check_nccl(ncclAllReduce(data, data, size_t(n), ncclFloat, ncclSum, impl_->comm, 0),
               "ncclAllReduce");
    wait("all_reduce");
    stats_.all_reduce_bytes += n * int64_t(sizeof(float));
    stats_.all_reduce_s += seconds_since(t0);
}

// Host values through the staging buffer.
void NcclCommunicator::reduce_host(void* data, int64_t n, HostType type, HostOp op, size_t elem) {
    const auto t0 = Clock::now();
    void* d = staging(elem * size_t(n));
    check_cuda(cudaMemcpy(d, data, elem * size_t(n), cudaMemcpyHostToDevice), "cudaMemcpy");
    check_nccl(ncclAllReduce(d, d, size_t(n), type == HostType::Double ? ncclDouble : ncclInt64,
                             op == HostOp::Sum ? ncclSum : ncclMax, impl_->comm, 0),
               "ncclAllReduce");
    wait("all_reduce");
    check_cuda(cudaMemcpy(data, d, elem * size_t(n), cudaMemcpyDeviceToHost), "cudaMemcpy");
    stats_.other_bytes += n * int64_t(elem);
    stats_.other_s += seconds_since(t0);
}

void NcclCommunicator::all_reduce_sum(double* data, int64_t n) {
    reduce_host(data, n, HostType::Double, HostOp::Sum, sizeof(double));
}
void NcclCommunicator::all_reduce_sum(int64_t* data, int64_t n) {
    reduce_host(data, n, HostType::Int64, HostOp::Sum, sizeof(int64_t));
}
void NcclCommunicator::all_reduce_max(double* data, int64_t n) {
    reduce_host(data, n, HostType::Double, HostOp::Max, sizeof(double));
}

void NcclCommunicator::all_to_all_v(const float* send, const int64_t* send_counts, float* recv,
                                    const int64_t* recv_counts) {
    const auto t0 = Clock::now();
    int64_t s_at = 0, r_at = 0, out = 0;
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < size_; ++r) {
        if (send_counts[r] > 0)
            check_nccl(ncclSend(send + s_at, size_t(send_counts[r]), ncclFloat, r, impl_->comm, 0),
                       "ncclSend");
        if (recv_counts[r] > 0)
            check_nccl(ncclRecv(recv + r_at, size_t(recv_counts[r]), ncclFloat, r, impl_->comm, 0),
                       "ncclRecv");
        if (r != rank_) out += send_counts[r];
        s_at += send_counts[r];
        r_at += recv_counts[r];
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd");
    wait("all_to_all");
    stats_.all_to_all_bytes += out * int64_t(sizeof(float));
    stats_.all_to_all_s += seconds_since(t0);
}

void NcclCommunicator::all_to_all(const int64_t* send, int64_t* recv, int64_t per_rank) {
    const auto t0 = Clock::now();
    const size_t bytes = sizeof(int64_t) * size_t(per_rank) * size_t(size_);
    auto* d = static_cast<int64_t*>(staging(2 * bytes));
    check_cuda(cudaMemcpy(d, send, bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    int64_t* r_dev = d + per_rank * size_;
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < size_; ++r) {
        check_nccl(ncclSend(d + r * per_rank, size_t(per_rank), ncclInt64, r, impl_->comm, 0),
                   "ncclSend");
        check_nccl(ncclRecv(r_dev + r * per_rank, size_t(per_rank), ncclInt64, r, impl_->comm, 0),
                   "ncclRecv");
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd");
    wait("all_to_all");
    check_cuda(cudaMemcpy(recv, r_dev, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
    stats_.other_bytes += per_rank * (size_ - 1) * int64_t(sizeof(int64_t));
    stats_.other_s += seconds_since(t0);
}

void NcclCommunicator::all_gather(const float* send, int64_t n, float* recv) {
    const auto t0 = Clock::now();
    check_nccl(ncclAllGather(send, recv, size_t(n), ncclFloat, impl_->comm, 0), "ncclAllGather");
    wait("all_gather");
    stats_.other_bytes += n * int64_t(sizeof(float));
    stats_.other_s += seconds_since(t0);
}

void NcclCommunicator::all_gather(const double* send, int64_t n, double* recv) {
    const auto t0 = Clock::now();
    auto* d = static_cast<double*>(staging(sizeof(double) * size_t(n) * size_t(size_ + 1)));
    check_cuda(cudaMemcpy(d, send, sizeof(double) * size_t(n), cudaMemcpyHostToDevice),
               "cudaMemcpy");
    check_nccl(ncclAllGather(d, d + n, size_t(n), ncclDouble, impl_->comm, 0), "ncclAllGather");
    wait("all_gather");
    check_cuda(
        cudaMemcpy(recv, d + n, sizeof(double) * size_t(n) * size_t(size_), cudaMemcpyDeviceToHost),
        "cudaMemcpy");
    stats_.other_bytes += n * int64_t(sizeof(double));
    stats_.other_s += seconds_since(t0);
}

// Blocks of different sizes: one broadcast per owner, grouped into one launch.
void NcclCommunicator::all_gather_blocks(float* data, const int64_t* counts) {
    const auto t0 = Clock::now();
    int64_t at = 0;
    check_nccl(ncclGroupStart(), "ncclGroupStart");
    for (int r = 0; r < size_; ++r) {
        if (counts[r] > 0)
            check_nccl(ncclBroadcast(data + at, data + at, size_t(counts[r]), ncclFloat, r,
                                     impl_->comm, 0),
                       "ncclBroadcast");
        at += counts[r];
    }
    check_nccl(ncclGroupEnd(), "ncclGroupEnd");
    wait("all_gather");
    stats_.all_reduce_bytes += counts[rank_] * int64_t(sizeof(float));
    stats_.all_reduce_s += seconds_since(t0);
}

void NcclCommunicator::broadcast(float* data, int64_t n, int root) {
    const auto t0 = Clock::now();
    check_nccl(ncclBroadcast(data, data, size_t(n), ncclFloat, root, impl_->comm, 0),
               "ncclBroadcast");
    wait("broadcast");
    stats_.other_bytes += rank_ == root ? n * int64_t(sizeof(float)) : 0;
    stats_.other_s += seconds_since(t0);
}

void NcclCommunicator::broadcast_bytes(void* data, int64_t bytes, int root) {
    const auto t0 = Clock::now();
    void* d = staging(size_t(bytes));
    if (rank_ == root)
        check_cuda(cudaMemcpy(d, data, size_t(bytes), cudaMemcpyHostToDevice), "cudaMemcpy");
    check_nccl(ncclBroadcast(d, d, size_t(bytes), ncclUint8, root, impl_->comm, 0),
               "ncclBroadcast");
    wait("broadcast");
    check_cuda(cudaMemcpy(data, d, size_t(bytes), cudaMemcpyDeviceToHost), "cudaMemcpy");
    stats_.other_s += seconds_since(t0);
}

void NcclCommunicator::barrier() {
    const auto t0 = Clock::now();
    auto* d = static_cast<float*>(staging(sizeof(float)));
    check_nccl(ncclAllReduce(d, d, 1, ncclFloat, ncclSum, impl_->comm, 0), "ncclAllReduce");
    wait("barrier");
    stats_.other_s += seconds_since(t0);
}

std::unique_ptr<Communicator> NcclCommunicator::split(int color, int key) {
    std::shared_ptr<Communicator> mpi = bootstrap_->split(color, key);
    auto impl = std::make_unique<Impl>();
    check_nccl(ncclCommSplit(impl_->comm, color, key, &impl->comm, nullptr), "ncclCommSplit");
    check_cuda(cudaEventCreateWithFlags(&impl->done, cudaEventDisableTiming), "cudaEventCreate");
    std::unique_ptr<NcclCommunicator> c(new NcclCommunicator(std::move(impl), std::move(mpi)));
    c->device_ = device_;
    return c;
}

}  // namespace moe::gpu
