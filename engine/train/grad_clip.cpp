#include "train/grad_clip.h"

#include <algorithm>
#include <cmath>

namespace moe {

GradNorm global_grad_norm(const ParameterStore& store, Backend& backend, double max_norm,
                          double pre_scale) {
    double sum = 0.0;
    if (store.packed()) {  // one reduction over the gradient arena
        const Tensor& g = store.grad_arena();
        sum = backend.sum_squares(g.data(), g.numel());
    } else {
        for (const Parameter* p : store.all())
            if (p->trainable) sum += backend.sum_squares(p->grad.data(), p->grad.numel());
    }
    GradNorm r;
    r.norm = std::sqrt(sum) * std::fabs(pre_scale);
    r.finite = std::isfinite(r.norm);
    if (!r.finite)
        r.factor = 0.0;
    else if (max_norm > 0.0)
        r.factor = std::min(1.0, max_norm / (r.norm + 1e-6));
    return r;
}

}  // namespace moe
