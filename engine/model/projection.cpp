#include "model/projection.h"

#include <vector>

#include "model/linear.h"
#include "quant/quant_recorder.h"

namespace moe {

namespace {

// The recorder measures on the host: values on a device are read back first (only at the
// steps that record).
const float* on_host(Backend& be, const float* p, int64_t n) {
    if (be.allocator().device().is_host()) return p;
    thread_local std::vector<float> copy;
    copy.resize(static_cast<size_t>(n));
    be.allocator().download(copy.data(), p, sizeof(float) * static_cast<size_t>(n));
    return copy.data();
}

}  // namespace

void projection_forward(Backend& be, const PrecisionContext* pc, const Parameter& w,
                        const float* x, int64_t n, int64_t in, int64_t out, float* y) {
    if (!pc || !pc->recipe.quantized()) {
        linear_forward(be, x, n, in, w.value.data(), out, y);
        return;
    }
    const LinearRecipe& r = pc->recipe;
    if (pc->recorder) {
        pc->recorder->observe(w.name, on_host(be, w.value.data(), out * in), out, in, in,
                              r.weight());
        pc->recorder->observe(w.name + "@input", on_host(be, x, n * in), n, in, in,
                              r.activation());
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
        pc->recorder->observe(w.name + "@grad", on_host(be, dy, n * out), n, out, out,
                              r.activation());
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
