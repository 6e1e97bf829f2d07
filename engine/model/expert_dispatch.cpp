#include "model/expert_dispatch.h"

#include <algorithm>

#include "core/error.h"

namespace moe {

ExpertDispatch::ExpertDispatch(Communicator& comm, int64_t n_experts)
    : comm_(comm), E_(n_experts), ranks_(comm.size()) {
    if (ranks_ < 1 || E_ % ranks_ != 0)
        throw ConfigError("model.n_routed_experts",
                          std::to_string(E_) + " routed experts do not split evenly over " +
                              std::to_string(ranks_) +
                              " expert-parallel ranks (ep): use an ep that divides it");
    local_ = E_ / ranks_;
    first_ = local_ * comm.rank();
}

void ExpertDispatch::plan(const std::vector<int64_t>& offsets) {
    if (int64_t(offsets.size()) != E_ + 1)
        throw Error("expert dispatch: the route plan has " + std::to_string(offsets.size()) +
                    " offsets, expected " + std::to_string(E_ + 1));
    const size_t R = size_t(ranks_);
    // Rows this rank sends to each owner's experts, per expert: [ranks][local].
    // Host scratch kept between steps: a steady-state step allocates nothing here.
    std::vector<int64_t>& mine = mine_;
    std::vector<int64_t>& theirs = theirs_;
    mine.resize(R * size_t(local_));
    theirs.resize(R * size_t(local_));
    for (int64_t e = 0; e < E_; ++e) mine[size_t(e)] = offsets[size_t(e + 1)] - offsets[size_t(e)];
    comm_.all_to_all(mine.data(), theirs.data(), local_);  // theirs[s][e]: rows from s for my e
    send_rows_.assign(R, 0);
    recv_rows_.assign(R, 0);
    for (size_t j = 0; j < R; ++j)
        for (int64_t e = 0; e < local_; ++e) {
            send_rows_[j] += mine[j * size_t(local_) + size_t(e)];
            recv_rows_[j] += theirs[j * size_t(local_) + size_t(e)];
        }
    sent_rows_ = offsets.back();
    received_rows_ = 0;
    for (int64_t r : recv_rows_) received_rows_ += r;

    // Received rows come as [source 0: expert 0.., expert 1.. | source 1: ...]; regrouped they
    // are [expert 0: source 0.., source 1.. | expert 1: ...].
    std::vector<int64_t>& block_start = block_start_;  // first received row of (s, e)
    block_start.resize(R * size_t(local_));
    int64_t at = 0;
    for (size_t s = 0; s < R; ++s)
        for (int64_t e = 0; e < local_; ++e) {
            block_start[s * size_t(local_) + size_t(e)] = at;
            at += theirs[s * size_t(local_) + size_t(e)];
        }
    const auto received = static_cast<size_t>(received_rows_);
    std::vector<int32_t>& regroup = host_regroup_;
    std::vector<int32_t>& ungroup = host_ungroup_;
    regroup.resize(received);
    ungroup.resize(received);
    local_offsets_.assign(size_t(local_ + 1), 0);
    int64_t row = 0;
    for (int64_t e = 0; e < local_; ++e) {
        for (size_t s = 0; s < R; ++s) {
            const int64_t first = block_start[s * size_t(local_) + size_t(e)];
            for (int64_t i = 0; i < theirs[s * size_t(local_) + size_t(e)]; ++i, ++row) {
                regroup[size_t(row)] = int32_t(first + i);
                ungroup[size_t(first + i)] = int32_t(row);
            }
        }
        local_offsets_[size_t(e + 1)] = row;
    }
    regroup_.upload(regroup);
    ungroup_.upload(ungroup);
    local_offsets_dev_.upload(local_offsets_);

    CommStats& st = comm_.stats();
    st.tokens_sent += sent_rows_ - send_rows_[size_t(comm_.rank())];
    st.tokens_received += received_rows_ - recv_rows_[size_t(comm_.rank())];
}

void ExpertDispatch::to_owners(Backend& be, const float* rows, int64_t width, Tensor& out) {
    send_counts_.resize(size_t(ranks_));
    recv_counts_.resize(size_t(ranks_));
    for (size_t j = 0; j < size_t(ranks_); ++j) {
        send_counts_[j] = send_rows_[j] * width;
        recv_counts_[j] = recv_rows_[j] * width;
    }
    staging_.resize({std::max<int64_t>(received_rows_, 1), width});
    comm_.all_to_all_v(rows, send_counts_.data(), staging_.data(), recv_counts_.data());
    out.resize({std::max<int64_t>(received_rows_, 1), width});
    if (received_rows_ > 0)
        be.moe_permute(staging_.data(), regroup_.data(), received_rows_, width, out.data());
}

void ExpertDispatch::back(Backend& be, const float* rows, int64_t width, float* out) {
    send_counts_.resize(size_t(ranks_));
    recv_counts_.resize(size_t(ranks_));
    for (size_t j = 0; j < size_t(ranks_); ++j) {
        send_counts_[j] = recv_rows_[j] * width;  // what came from j goes back to j
        recv_counts_[j] = send_rows_[j] * width;
    }
    staging_.resize({std::max<int64_t>(received_rows_, 1), width});
    if (received_rows_ > 0)
        be.moe_permute(rows, ungroup_.data(), received_rows_, width, staging_.data());
    comm_.all_to_all_v(staging_.data(), send_counts_.data(), out, recv_counts_.data());
}

}  // namespace moe
