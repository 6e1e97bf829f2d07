#include "train/loss_scaler.h"

#include <algorithm>

namespace moe {

namespace {
constexpr double kMaxScale = 16777216.0;  // 2^24: beyond this fp32 gradients lose low bits
}

LossScaler::LossScaler(const LossScaleSettings& settings, bool enabled)
    : s_(settings), enabled_(enabled), scale_(settings.initial) {}

bool LossScaler::update(bool gradients_finite) {
    last_overflow_ = false;
    if (!enabled_) return gradients_finite;
    if (!gradients_finite) {
        // At scale 1 an overflow is a real divergence, not a scale that is too high.
        last_overflow_ = scale_ > 1.0;
        scale_ = std::max(1.0, scale_ * s_.backoff);
        good_steps_ = 0;
        return false;
    }
    if (++good_steps_ >= s_.growth_interval) {
        scale_ = std::min(kMaxScale, scale_ * s_.growth);
        good_steps_ = 0;
    }
    return true;
}

void LossScaler::restore(double scale, int64_t good_steps) {
    scale_ = scale;
    good_steps_ = good_steps;
}

}  // namespace moe
