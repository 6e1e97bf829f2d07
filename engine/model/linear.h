#pragma once
// Bias-free linear layers y = x W^T (W stored [out, in], as in HF checkpoints) and their
// backward, expressed with the backend's GEMM.
#include <cstdint>

#include "backend/backend.h"

namespace moe {

// y[n, out] = x[n, in] W^T   (overwrites y)
inline void linear_forward(Backend& be, const float* x, int64_t n, int64_t in, const float* w,
                           int64_t out, float* y) {
    be.gemm(false, true, n, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
}

// dx[n, in] += dy[n, out] W ;  dw[out, in] += dy^T x.  Either output may be null to skip it.
inline void linear_backward(Backend& be, const float* dy, const float* x, int64_t n, int64_t in,
                            const float* w, int64_t out, float* dx, float* dw) {
    if (dx) be.gemm(false, false, n, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);
    if (dw) be.gemm(true, false, out, in, n, 1.0f, dy, out, x, in, 1.0f, dw, in);
}

}  // namespace moe
