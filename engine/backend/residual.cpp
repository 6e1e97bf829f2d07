// Backend::residual_rmsnorm_forward and residual_add's host defaults (backend.h): the unfused
// ops in the order the decoder layer ran them before they were fused, bit for bit.
#include "backend/backend.h"

namespace moe {

void Backend::residual_rmsnorm_forward(const float* a, const float* b, const float* w,
                                       int64_t rows, int64_t dim, float eps, float* sum, float* y,
                                       float* rstd) {
    copy_2d(a, dim, sum, dim, rows, dim);
    add_2d(b, dim, sum, dim, rows, dim);
    rmsnorm_forward(sum, dim, w, rows, dim, eps, y, dim, rstd);
}

void Backend::residual_add(const float* a, const float* b, int64_t n, float* out) {
    copy_2d(a, n, out, n, 1, n);
    add_2d(b, n, out, n, 1, n);
}

}  // namespace moe
