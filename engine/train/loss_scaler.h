#pragma once
// Dynamic loss scaling for fp16 training (LossScaleSettings in train/optimizer_settings.h).
// fp16 flushes gradients below 2^-24 to zero; multiplying the loss by a large scale lifts them
// into range, and the optimizer divides the scale out of the fp32 gradients. When the scale is
// too large some gradient overflows to Inf: that step is skipped and the scale backs off; after
// growth_interval good steps it grows again, so it settles near the largest safe value.
#include <cstdint>

#include "train/optimizer_settings.h"

namespace moe {

class LossScaler {
public:
    // Disabled: scale() is always 1 and every finite step is applied.
    LossScaler(const LossScaleSettings& settings, bool enabled);

    bool enabled() const { return enabled_; }
    double scale() const { return enabled_ ? scale_ : 1.0; }
    // After a step's backward: true to apply the step. Overflow (non-finite gradients) backs
    // the scale off and returns false; a finite step counts toward growth.
    bool update(bool gradients_finite);
    // Whether the last update() was an overflow that the scaler absorbed (a skipped step that
    // is expected, not a sign of divergence): false once the scale is at its floor of 1.
    bool last_was_overflow() const { return last_overflow_; }

    // Checkpoint state, so a resumed run continues with the same scale.
    int64_t good_steps() const { return good_steps_; }
    void restore(double scale, int64_t good_steps);

private:
    LossScaleSettings s_;
    bool enabled_;
    double scale_;
    int64_t good_steps_ = 0;
    bool last_overflow_ = false;
};

}  // namespace moe
