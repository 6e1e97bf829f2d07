#include <string>

#include "backend/backend.h"
#include "core/error.h"

namespace moe {

void validate_gate_params(const GateParams& p) {
    const auto fail = [](const std::string& msg) { throw Error("moe_gate: " + msg); };
    if (p.n_experts <= 0) fail("n_experts must be positive, got " + std::to_string(p.n_experts));
    if (p.top_k <= 0 || p.top_k > p.n_experts)
        fail("top_k " + std::to_string(p.top_k) + " must be in [1, n_experts = " +
             std::to_string(p.n_experts) + "]");
    if (p.n_group > 1) {
        if (p.n_experts % p.n_group != 0)
            fail("n_experts " + std::to_string(p.n_experts) + " is not divisible by n_group " +
                 std::to_string(p.n_group));
        if (p.topk_group < 1 || p.topk_group > p.n_group)
            fail("topk_group " + std::to_string(p.topk_group) + " must be in [1, n_group = " +
                 std::to_string(p.n_group) + "]");
        if (p.top_k > p.topk_group * (p.n_experts / p.n_group))
            fail("top_k " + std::to_string(p.top_k) + " exceeds the experts in topk_group " +
                 std::to_string(p.topk_group) + " groups");
    }
}

}  // namespace moe
