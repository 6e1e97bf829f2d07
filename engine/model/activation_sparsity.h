#pragma once
// Activation sparsity of the SwiGLU outputs a = silu(g) * u: the share of values with
// |a| < threshold. SiLU's negative lobe is small but not zero, so "near zero" needs a threshold;
// the share tells how much of the FFN's down projection multiplies (almost) nothing.
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace moe {

struct NearZeroCount {
    int64_t near_zero = 0;
    int64_t total = 0;
    NearZeroCount& operator+=(const NearZeroCount& o) {
        near_zero += o.near_zero;
        total += o.total;
        return *this;
    }
    double fraction() const { return total > 0 ? double(near_zero) / double(total) : 0.0; }
};

inline NearZeroCount count_near_zero(const float* a, int64_t n, float threshold) {
    NearZeroCount c;
    c.total = n;
    for (int64_t i = 0; i < n; ++i) c.near_zero += std::fabs(a[i]) < threshold;
    return c;
}

// The first n values of a tensor on any device (a device tensor is read back first).
inline NearZeroCount count_near_zero(const Tensor& t, int64_t n, float threshold) {
    if (t.on_host()) return count_near_zero(t.data(), n, threshold);
    const std::vector<float> host = t.to_host();
    return count_near_zero(host.data(), n, threshold);
}

}  // namespace moe
