#include "parallel/communicator.h"

#include <algorithm>

namespace moe {

void SoloCommunicator::all_to_all_v(const float* send, const int64_t* send_counts, float* recv,
                                    const int64_t* recv_counts) {
    if (send_counts[0] != recv_counts[0])
        throw CommError("all_to_all_v: one process sends " + std::to_string(send_counts[0]) +
                        " values to itself but expects " + std::to_string(recv_counts[0]));
    if (send != recv) std::copy(send, send + send_counts[0], recv);
}

void SoloCommunicator::all_to_all(const int64_t* send, int64_t* recv, int64_t per_rank) {
    if (send != recv) std::copy(send, send + per_rank, recv);
}

void SoloCommunicator::all_gather(const float* send, int64_t n, float* recv) {
    if (send != recv) std::copy(send, send + n, recv);
}

void SoloCommunicator::all_gather(const double* send, int64_t n, double* recv) {
    if (send != recv) std::copy(send, send + n, recv);
}

std::unique_ptr<Communicator> SoloCommunicator::split(int, int) {
    auto c = std::make_unique<SoloCommunicator>();
    c->set_timeout(timeout_s_);
    return c;
}

}  // namespace moe
