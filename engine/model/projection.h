#pragma once
// Projections: the linear layers whose GEMMs follow the model's precision (linear_precision.h):
// y = x W^T, with W a Parameter stored [out, in]. In fp32 they are exactly linear_forward /
// linear_backward; otherwise each GEMM goes through Backend::gemm_quantized with the recipe's
// casts, and a recorder, when set, measures every cast (weight, input, output gradient).
#include <cstdint>

#include "backend/backend.h"
#include "model/linear_precision.h"
#include "model/parameters.h"

namespace moe {

// y[n, out] = x[n, in] W^T (overwrites y). pc may be null (fp32).
void projection_forward(Backend& be, const PrecisionContext* pc, const Parameter& w,
                        const float* x, int64_t n, int64_t in, int64_t out, float* y);

// dx[n, in] += dy W (skipped when dx is null);  W.grad += dy^T x.
void projection_backward(Backend& be, const PrecisionContext* pc, Parameter& w, const float* dy,
                         const float* x, int64_t n, int64_t in, int64_t out, float* dx);

}  // namespace moe
