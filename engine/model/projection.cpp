#include "model/projection.h"

#include "model/linear.h"
#include "quant/quant_recorder.h"

namespace moe {

void projection_forward(Backend& be, const PrecisionContext* pc, const Parameter& w,
                        const float* x, int64_t n, int64_t in, int64_t out, float* y) {
    if (!pc || !pc->recipe.quantized()) {
        linear_forward(be, x, n, in, w.value.data(), out, y);
        return;
    }
    const LinearRecipe& r = pc->recipe;
    if (pc->recorder) {
        pc->recorder->observe(w.name, w.value.data(), out, in, in, r.weight());
        pc->recorder->observe(w.name + "@input", x, n, in, in, r.activation());
    }
    be.gemm_quantized(false, true, n, out, in, 1.0f, x, in, r.activation(), w.value.data(), in,
                      r.weight(), 0.0f, y, out);
}

void projection_backward(Backend& be, const PrecisionContext* pc, Parameter& w, const float* dy,
                         const float* x, int64_t n, int64_t in, int64_t out, float* dx) {
    if (!pc || !pc->recipe.quantized()) {
        linear_backward(be, dy, x, n, in, w.value.data(), out, dx, w.grad.data());
        return;
    }
    const LinearRecipe& r = pc->recipe;
    if (pc->recorder)
        pc->recorder->observe(w.name + "@grad", dy, n, out, out, r.activation());
    // dgrad: dx[n, in] += dy[n, out] W[out, in]; K = out runs along dy's rows' columns and W's
    // rows.
    if (dx)
        be.gemm_quantized(false, false, n, in, out, 1.0f, dy, out, r.activation(),
                          w.value.data(), in, r.weight(), 1.0f, dx, in);
    // wgrad: dW[out, in] += dy^T x; K = tokens runs down the rows of both dy and x.
    be.gemm_quantized(true, false, out, in, n, 1.0f, dy, out, r.wgrad_operand(), x, in,
                      r.wgrad_operand(), 1.0f, w.grad.data(), in);
}

}  // namespace moe
