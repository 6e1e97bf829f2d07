#include "train/weight_fake_quant.h"

#include "core/error.h"
#include "model/linear_precision.h"
#include "model/parameters.h"

namespace moe {

WeightFakeQuant::WeightFakeQuant(ParameterStore& params, const IntQuantSpec& spec) : spec_(spec) {
    for (Parameter* p : params.all()) {
        if (!is_projection_weight(p->name, p->value.rank())) continue;
        const int64_t cols = p->value.shape()[1];
        if (spec.group_size > 0 && cols % spec.group_size != 0)
            throw ConfigError("training.precision.qat.group_size",
                              std::to_string(spec.group_size) + " does not divide the input width " +
                                  std::to_string(cols) + " of " + p->name +
                                  " (use a divisor of every projection's input width, or 0 for per channel)");
        weights_.push_back(p);
    }
    master_.resize(weights_.size());
}

void WeightFakeQuant::quantize() {
    if (quantized_) return;
    for (size_t i = 0; i < weights_.size(); ++i) {
        Parameter& p = *weights_[i];
        const int64_t rows = p.value.shape()[0], cols = p.value.shape()[1];
        std::vector<float>& master = master_[i];
        master.resize(size_t(p.value.numel()));
        p.value.allocator().download(master.data(), p.value.data(), p.value.bytes());
        scratch_.resize(master.size());
        fake_quantize_int(master.data(), rows, cols, spec_, scratch_.data());
        p.value.allocator().upload(p.value.data(), scratch_.data(), p.value.bytes());
    }
    quantized_ = true;
}

void WeightFakeQuant::restore() {
    if (!quantized_) return;
    for (size_t i = 0; i < weights_.size(); ++i) {
        Parameter& p = *weights_[i];
        p.value.allocator().upload(p.value.data(), master_[i].data(), p.value.bytes());
    }
    quantized_ = false;
}

}  // namespace moe
