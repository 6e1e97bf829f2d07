#pragma once
// SwiGLU feed-forward: down(silu(gate(x)) * up(x)). Used for the dense FFN of the first
// layers, for the shared experts, and (on slices of the permuted tokens) for each routed expert.
#include <cstdint>
#include <string>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/linear_precision.h"
#include "model/parameters.h"

namespace moe {

// The three weights of one SwiGLU, as HF names them under `prefix`:
// gate_proj [F, D], up_proj [F, D], down_proj [D, F].
struct SwiGluWeights {
    Parameter* gate = nullptr;
    Parameter* up = nullptr;
    Parameter* down = nullptr;
    int64_t dim = 0;    // D
    int64_t width = 0;  // F
    const PrecisionContext* precision = nullptr;  // the model's projection precision (null: fp32)

    static SwiGluWeights create(ParameterStore& store, const std::string& prefix, int64_t dim,
                                int64_t width, const PrecisionContext* precision = nullptr);
};

// Activations of a SwiGLU over `rows` tokens: g, u, a = silu(g) * u, each [rows, F].
// Pointers into caller-owned buffers, so experts can use slices of one big buffer.
struct SwiGluActivations {
    float* g;
    float* u;
    float* a;
};

// y[rows, D] = down(silu(gate(x)) * up(x)), overwriting y.
void swiglu_ffn_forward(Backend& be, const SwiGluWeights& w, const float* x, int64_t rows,
                        SwiGluActivations act, float* y);
// dx[rows, D] += d/dx; weight gradients accumulate. dg, du, da are [rows, F] scratch.
void swiglu_ffn_backward(Backend& be, const SwiGluWeights& w, const float* x, int64_t rows,
                         SwiGluActivations act, const float* dy, float* dx, SwiGluActivations grad);

// A dense SwiGLU layer with its own buffers (dense FFN, shared experts).
class SwiGluFfn {
public:
    SwiGluFfn(ParameterStore& store, const std::string& prefix, int64_t dim, int64_t width,
              const PrecisionContext* precision = nullptr);
    void forward(Backend& be, const float* x, int64_t rows, float* y);
    void backward(Backend& be, const float* dy, float* dx);  // uses the x of the last forward
    const SwiGluWeights& weights() const { return w_; }
    const Tensor& hidden() const { return a_; }  // silu(g) * u of the last forward

private:
    SwiGluWeights w_;
    const float* x_ = nullptr;
    int64_t rows_ = 0;
    Tensor g_, u_, a_, dg_, du_, da_;
};

}  // namespace moe
