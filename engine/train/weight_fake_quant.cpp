#include "train/weight_fake_quant.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "model/linear_precision.h"
#include "model/parameters.h"

namespace moe {

WeightFakeQuant::WeightFakeQuant(ParameterStore& params, const IntQuantSpec& spec, double scale_lr)
    : spec_(spec), scale_lr_(scale_lr) {
    if (scale_lr > 0.0 && !spec.symmetric)
        throw ConfigError("training.precision.qat.scale_lr",
                          "learned scales need a symmetric scheme");
    for (Parameter* p : params.all()) {
        if (!is_projection_weight(p->name, p->value.rank())) continue;
        const int64_t cols = p->value.shape()[1];
        if (spec.group_size > 0 && cols % spec.group_size != 0)
            throw ConfigError(
                "training.precision.qat.group_size",
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

namespace {

// Groups of one weight: [rows, groups] of `width` consecutive columns.
int64_t group_width(const IntQuantSpec& spec, int64_t cols) {
    return spec.group_size > 0 ? spec.group_size : cols;
}

}  // namespace

void WeightFakeQuant::prepare_clips() {
    if (!learns_scales()) return;
    const double qmax = double((1 << (spec_.bits - 1)) - 1);
    clip_.resize(weights_.size());
    double ratio_sum = 0.0;
    int64_t groups_total = 0;
    for (size_t i = 0; i < weights_.size(); ++i) {
        Parameter& p = *weights_[i];
        const int64_t rows = p.value.shape()[0], cols = p.value.shape()[1];
        const int64_t width = group_width(spec_, cols), groups = cols / width;
        std::vector<float>& w = master_[i];  // the masters the step's passes quantized
        w.resize(size_t(p.value.numel()));
        p.value.allocator().download(w.data(), p.value.data(), p.value.bytes());
        grad_scratch_.resize(w.size());
        p.grad.allocator().download(grad_scratch_.data(), p.grad.data(), p.grad.bytes());
        std::vector<float>& clip = clip_[i];
        clip.assign(size_t(rows * groups), 0.0f);
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t g = 0; g < groups; ++g) {
                const float* wg = w.data() + r * cols + g * width;
                const float* gg = grad_scratch_.data() + r * cols + g * width;
                double amax = 0.0;
                for (int64_t j = 0; j < width; ++j) amax = std::max(amax, double(std::fabs(wg[j])));
                float& c = clip[size_t(r * groups + g)];
                c = float(amax);
                ++groups_total;
                if (amax == 0.0) {
                    ratio_sum += 1.0;
                    continue;
                }
                const double step = amax / qmax;
                double d_alpha = 0.0;  // dL/dalpha / step: the sign is all that is used
                for (int64_t j = 0; j < width; ++j) {
                    const double v = double(wg[j]) / step;
                    d_alpha += double(gg[j]) * (std::nearbyint(v) - v);
                }
                const double alpha =
                    d_alpha > 0.0 ? std::max(0.5, 1.0 - scale_lr_) : 1.0;  // only a clip can shrink
                c = float(alpha * amax);
                ratio_sum += alpha;
            }
    }
    mean_ratio_ = groups_total > 0 ? ratio_sum / double(groups_total) : 1.0;
    clips_ready_ = true;
}

void WeightFakeQuant::apply_clips() {
    if (!learns_scales() || !clips_ready_) return;
    for (size_t i = 0; i < weights_.size(); ++i) {
        Parameter& p = *weights_[i];
        const int64_t rows = p.value.shape()[0], cols = p.value.shape()[1];
        const int64_t width = group_width(spec_, cols), groups = cols / width;
        std::vector<float>& w = master_[i];
        p.value.allocator().download(w.data(), p.value.data(), p.value.bytes());  // updated
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t g = 0; g < groups; ++g) {
                const float c = clip_[i][size_t(r * groups + g)];
                float* wg = w.data() + r * cols + g * width;
                for (int64_t j = 0; j < width; ++j) wg[j] = std::clamp(wg[j], -c, c);
            }
        p.value.allocator().upload(p.value.data(), w.data(), p.value.bytes());
    }
    clips_ready_ = false;  // the buffers stay for the next step
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
