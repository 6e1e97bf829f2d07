// Backend::causal_softmax's host implementation (backend.h), used by CpuBackend.
#include <algorithm>
#include <cmath>

#include "backend/backend.h"
#include "core/error.h"

namespace moe {

void Backend::check_causal_softmax(int64_t n, int64_t H, int64_t cols, int64_t start) {
    if (n < 0 || H < 1 || start < 0 || start + n > cols)
        throw Error("causal_softmax: " + std::to_string(n) + " queries (" + std::to_string(H) +
                    " heads) from position " + std::to_string(start) + " need " +
                    std::to_string(start + n) + " columns, got " + std::to_string(cols));
}

void Backend::causal_softmax(float* s, int64_t n, int64_t H, int64_t cols, int64_t start,
                             int64_t window, float scale) {
    check_causal_softmax(n, H, cols, start);
#pragma omp parallel for schedule(static) if (n * H * cols > 65536)
    for (int64_t r = 0; r < n * H; ++r) {
        float* row = s + r * cols;
        const int64_t pos = start + r / H;
        const int64_t lo = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
        float mx = -INFINITY;
        for (int64_t t = lo; t <= pos; ++t) mx = std::max(mx, scale * row[t]);
        double sum = 0.0;
        for (int64_t t = lo; t <= pos; ++t) {
            const float e = std::exp(scale * row[t] - mx);
            row[t] = e;
            sum += e;
        }
        const float inv = static_cast<float>(1.0 / sum);
        for (int64_t t = 0; t < cols; ++t) row[t] = (t >= lo && t <= pos) ? row[t] * inv : 0.0f;
    }
}

}  // namespace moe
