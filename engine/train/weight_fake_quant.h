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
    WeightFakeQuant(ParameterStore& params, const IntQuantSpec& spec);

    void quantize();  // no-op when already quantized
    void restore();   // no-op when not quantized
    bool quantized() const { return quantized_; }
    const std::vector<Parameter*>& weights() const { return weights_; }

private:
    std::vector<Parameter*> weights_;
    IntQuantSpec spec_;
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
