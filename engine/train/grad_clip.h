#pragma once
// Global gradient-norm clipping (spec section 8: clip at 1.0). The norm is measured, not
// applied: the factor goes into AdamW::step's grad_scale together with 1 / grad_accum, so the
// gradients are read once more and never rewritten.
#include <cstdint>

#include "backend/backend.h"
#include "model/parameters.h"

namespace moe {

struct GradNorm {
    double norm = 0.0;    // || pre_scale * g || over all trainable parameters
    double factor = 1.0;  // min(1, max_norm / (norm + 1e-6)); 1 when clipping is off
    bool finite = true;   // false: a NaN or Inf gradient; the trainer skips the step
};

// The global L2 norm of the trainable parameters' gradients, each scaled by pre_scale (pass
// 1 / grad_accum when the grads are sums over micro-batches), and the clip factor for
// max_norm (<= 0: off). Sums of squares per parameter in the store's order, then in double:
// deterministic. A non-finite norm gives factor 0 and finite = false.
GradNorm global_grad_norm(const ParameterStore& store, Backend& backend, double max_norm,
                          double pre_scale = 1.0);

}  // namespace moe
