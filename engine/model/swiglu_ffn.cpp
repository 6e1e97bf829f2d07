#include "model/swiglu_ffn.h"

#include "model/linear.h"

namespace moe {

SwiGluWeights SwiGluWeights::create(ParameterStore& store, const std::string& prefix,
                                    int64_t dim, int64_t width) {
    SwiGluWeights w;
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
    linear_forward(be, x, rows, D, w.gate->value.data(), F, act.g);
    linear_forward(be, x, rows, D, w.up->value.data(), F, act.u);
    be.swiglu_forward(act.g, act.u, rows * F, act.a);
    linear_forward(be, act.a, rows, F, w.down->value.data(), D, y);
}

void swiglu_ffn_backward(Backend& be, const SwiGluWeights& w, const float* x, int64_t rows,
                         SwiGluActivations act, const float* dy, float* dx,
                         SwiGluActivations grad) {
    const int64_t D = w.dim, F = w.width;
    be.zero(grad.a, rows * F);
    be.zero(grad.g, rows * F);
    be.zero(grad.u, rows * F);
    linear_backward(be, dy, act.a, rows, F, w.down->value.data(), D, grad.a, w.down->grad.data());
    be.swiglu_backward(grad.a, act.g, act.u, rows * F, grad.g, grad.u);
    linear_backward(be, grad.g, x, rows, D, w.gate->value.data(), F, dx, w.gate->grad.data());
    linear_backward(be, grad.u, x, rows, D, w.up->value.data(), F, dx, w.up->grad.data());
}

SwiGluFfn::SwiGluFfn(ParameterStore& store, const std::string& prefix, int64_t dim,
                     int64_t width)
    : w_(SwiGluWeights::create(store, prefix, dim, width)) {}

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
