#pragma once
// ExpertDispatch: expert parallelism's data movement for one MoE layer (docs/parallelism.md).
// The ranks of an expert group split the routed experts: rank j holds experts
// [j * E/ep, (j+1) * E/ep). After the local route plan has sorted this rank's (token, slot)
// rows by expert, the rows for rank j's experts are one contiguous block: an all-to-all sends
// each block to its owner, and the owner regroups what it received (by source rank, then
// expert) into expert-major order so its experts run as one grouped GEMM over their local
// offsets. The results go back the same way in reverse, landing in the sender's original row
// order. The backward moves the gradients along the same two paths (the combine's gradient to
// the owners, the dispatch's gradient back).
//
// plan() exchanges the per-expert row counts (a small all-to-all) and builds the regrouping;
// to_owners() / back() move rows of any width. All collectives are over the expert group:
// every rank of it must call the same methods in the same order.
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "core/device_array.h"
#include "core/index_buffer.h"
#include "core/tensor.h"
#include "parallel/communicator.h"

namespace moe {

class ExpertDispatch {
public:
    // E routed experts split over comm.size() ranks (E % size == 0, checked).
    ExpertDispatch(Communicator& comm, int64_t n_experts);

    int64_t local_experts() const { return local_; }
    int64_t first_expert() const { return first_; }

    // From this rank's route plan offsets [E+1] (host): what goes where, what comes back.
    void plan(const std::vector<int64_t>& offsets);
    int64_t sent_rows() const { return sent_rows_; }          // this rank's rows (n * K)
    int64_t received_rows() const { return received_rows_; }  // rows its experts run on
    // Offsets of its local experts in the received, regrouped rows [local + 1] (host and device).
    const std::vector<int64_t>& local_offsets() const { return local_offsets_; }
    const DeviceArray<int64_t>& local_offsets_device() const { return local_offsets_dev_; }

    // rows [sent_rows, width] in route-plan order -> out [received_rows, width] regrouped.
    void to_owners(Backend& be, const float* rows, int64_t width, Tensor& out);
    // rows [received_rows, width] regrouped -> out [sent_rows, width] in route-plan order.
    void back(Backend& be, const float* rows, int64_t width, float* out);

private:
    Communicator& comm_;
    int64_t E_, local_, first_;
    int ranks_;
    int64_t sent_rows_ = 0, received_rows_ = 0;
    std::vector<int64_t> send_rows_, recv_rows_;      // [ranks] rows to and from each rank
    std::vector<int64_t> send_counts_, recv_counts_;  // [ranks] floats of the current width
    std::vector<int64_t> local_offsets_;
    DeviceArray<int64_t> local_offsets_dev_;
    // regroup_[i]: the received row that becomes regrouped row i; ungroup_ its inverse.
    IndexBuffer regroup_, ungroup_;
    Tensor staging_;  // received (or to-be-sent) rows in source-rank order
    std::vector<int64_t> mine_, theirs_, block_start_;  // plan()'s host scratch
    std::vector<int32_t> host_regroup_, host_ungroup_;
};

}  // namespace moe
