#include "model/rope_params.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace moe {

namespace {

// The pair dimension at which `rotations` full turns fit the original context: YaRN keeps the
// frequencies that turn faster than beta_fast times as they are (extrapolation) and divides
// those slower than beta_slow by the factor (interpolation), with a linear ramp between.
double correction_dim(double rotations, double dim, double base, double original_context) {
    return dim * std::log(original_context / (rotations * 2.0 * std::numbers::pi)) /
           (2.0 * std::log(base));
}

}  // namespace

RopeParams rope_params(const ModelConfig& c) {
    RopeParams p;
    p.theta = c.rope_theta;
    const RopeScaling& r = c.rope_scaling;
    if (!r.yarn || r.factor <= 1.0) return p;
    const double dim = static_cast<double>(c.qk_rope_head_dim);
    const double ctx = static_cast<double>(r.original_max_position_embeddings);
    p.factor = r.factor;
    p.ramp_low = std::max(std::floor(correction_dim(r.beta_fast, dim, c.rope_theta, ctx)), 0.0);
    p.ramp_high =
        std::min(std::ceil(correction_dim(r.beta_slow, dim, c.rope_theta, ctx)), dim - 1.0);
    p.mscale = yarn_mscale(r.factor, r.mscale) / yarn_mscale(r.factor, r.mscale_all_dim);
    return p;
}

}  // namespace moe
