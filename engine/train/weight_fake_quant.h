#pragma once
// Quantization-aware training's weights (training.precision.qat): before a step's passes the
// projection weights are replaced by their fake-quantized values (quant/int_quant.h: INT8 or
// INT4, per channel or group, symmetric or not) and the fp32 master values are kept aside;
// forward and backward then run unchanged on every backend, so the gradients are those of the
// quantized model (the straight-through estimator: dL/dW at W_q, applied to W); restore() puts
// the master values back before the optimizer updates them. The rounding runs on the host (a
// device's weights are copied down and up: correct everywhere, fast on the CPU).
#include <cstdint>
#include <string>
#include <vector>

#include "quant/int_quant.h"

namespace moe {

class ParameterStore;
struct Parameter;

class WeightFakeQuant {
public:
    // The projection weights of `params` (model/linear_precision.h's is_projection_weight).
    // ConfigError ("training.precision.qat.group_size") naming a weight whose input width the
    // group does not divide.
    // scale_lr > 0: learned scales (QatSettings::scale_lr; symmetric specs only).
    WeightFakeQuant(ParameterStore& params, const IntQuantSpec& spec, double scale_lr = 0.0);

    void quantize();  // no-op when already quantized
    void restore();   // no-op when not quantized
    bool quantized() const { return quantized_; }
    const std::vector<Parameter*>& weights() const { return weights_; }

    // Learned scales, as a learned clip of each group (the LSQ step-size gradient, Esser et al.
    // 2020). The step's passes quantized group g with scale s = amax_g / qmax; with
    // alpha = clip / amax_g, LSQ's gradient is
    //   dL/dalpha = s * sum_j dL/dWq_j * (round(w_j / s) - w_j / s),
    // and prepare_clips (masters restored, the step's final gradients in place) moves alpha from 1
    // by a normalized step, alpha = clamp(1 - scale_lr * sign(dL/dalpha), 0.5, 1); apply_clips
    // (after the optimizer's update) clamps the group's masters to +-alpha * amax_g. The range a
    // group loses is then in its weights: no state besides them (resume is exact), and
    // quantizing the checkpoint (an export, PTQ) gives the scales the next step trains with.
    bool learns_scales() const { return scale_lr_ > 0.0; }
    void prepare_clips();
    void apply_clips();
    // Mean alpha of the last prepare_clips over all groups (1: nothing clipped).
    double mean_clip_ratio() const { return mean_ratio_; }

private:
    std::vector<Parameter*> weights_;
    IntQuantSpec spec_;
    double scale_lr_ = 0.0;
    std::vector<std::vector<float>> clip_;  // per weight, per group: the clip to apply (|w| <= clip)
    std::vector<float> grad_scratch_;
    double mean_ratio_ = 1.0;
    bool clips_ready_ = false;  // prepare_clips ran and apply_clips has not yet
    std::vector<std::vector<float>> master_;
    std::vector<float> scratch_;
    bool quantized_ = false;
};

// Quantizes on construction and restores on destruction (also when a pass throws).
class FakeQuantScope {
public:
    explicit FakeQuantScope(WeightFakeQuant* q) : q_(q) {
        if (q_) q_->quantize();
    }
    ~FakeQuantScope() {
        if (q_) q_->restore();
    }
    FakeQuantScope(const FakeQuantScope&) = delete;
    FakeQuantScope& operator=(const FakeQuantScope&) = delete;

private:
    WeightFakeQuant* q_;
};

}  // namespace moe
