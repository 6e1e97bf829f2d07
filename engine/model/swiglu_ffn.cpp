#include "model/swiglu_ffn.h"

#include "model/projection.h"

namespace moe {

SwiGluWeights SwiGluWeights::create(ParameterStore& store, const std::string& prefix,
                                    int64_t dim, int64_t width,
                                    const PrecisionContext* precision) {
    SwiGluWeights w;
    w.precision = precision;
    w.gate = &store.add(prefix + ".gate_proj.weight", {width, dim});
    w.up = &store.add(prefix + ".up_proj.weight", {width, dim});
    w.down = &store.add(prefix + ".down_proj.weight", {dim, width});
    w.dim = dim;
    w.width = width;
    return w;
}

void swiglu_ffn_forward(Backend& be, const SwiGluWeights& w, const float* x, int64_t rows,
                        SwiGluActivations act, float* y) {
    const int64_t D = w.dim, F = w.width;
    projection_forward(be, w.precision, *w.gate, x, rows, D, F, act.g);
    projection_forward(be, w.precision, *w.up, x, rows, D, F, act.u);
    be.swiglu_forward(act.g, act.u, rows * F, act.a);
    projection_forward(be, w.precision, *w.down, act.a, rows, F, D, y);
}

void swiglu_ffn_backward(Backend& be, const SwiGluWeights& w, const float* x, int64_t rows,
                         SwiGluActivations act, const float* dy, float* dx,
                         SwiGluActivations grad) {
    const int64_t D = w.dim, F = w.width;
    be.zero(grad.a, rows * F);
    be.zero(grad.g, rows * F);
    be.zero(grad.u, rows * F);
    projection_backward(be, w.precision, *w.down, dy, act.a, rows, F, D, grad.a);
    be.swiglu_backward(grad.a, act.g, act.u, rows * F, grad.g, grad.u);
    projection_backward(be, w.precision, *w.gate, grad.g, x, rows, D, F, dx);
    projection_backward(be, w.precision, *w.up, grad.u, x, rows, D, F, dx);
}

SwiGluFfn::SwiGluFfn(ParameterStore& store, const std::string& prefix, int64_t dim,
                     int64_t width, const PrecisionContext* precision)
    : w_(SwiGluWeights::create(store, prefix, dim, width, precision)) {}

void SwiGluFfn::forward(Backend& be, const float* x, int64_t rows, float* y) {
    x_ = x;
    rows_ = rows;
    g_.resize({rows, w_.width});
    u_.resize({rows, w_.width});
    a_.resize({rows, w_.width});
    swiglu_ffn_forward(be, w_, x, rows, {g_.data(), u_.data(), a_.data()}, y);
}

void SwiGluFfn::backward(Backend& be, const float* dy, float* dx) {
    dg_.resize({rows_, w_.width});
    du_.resize({rows_, w_.width});
    da_.resize({rows_, w_.width});
    swiglu_ffn_backward(be, w_, x_, rows_, {g_.data(), u_.data(), a_.data()}, dy, dx,
                        {dg_.data(), du_.data(), da_.data()});
}

}  // namespace moe
