// Host defaults of Backend's grouped linear ops: one gemm() (or gemm_quantized() with the
// casts) per non-empty group, with the same arguments linear_forward / linear_backward and
// projection_forward / _backward use, so a grouped expert layer on the CPU gives bit for bit
// what the per-expert loop gave.
#include "backend/backend.h"

namespace moe {

namespace {

const BlockQuantSpec& spec_or_fp32(const BlockQuantSpec* s) {
    static const BlockQuantSpec fp32{ElementFormat::FP32, kTile1x128, false, false};
    return s ? *s : fp32;
}

}  // namespace

void Backend::grouped_linear_forward(const float* x, const int64_t* offsets, int64_t groups,
                                     int64_t /*rows*/, const float* const* w, int64_t in,
                                     int64_t out, float* y, const GroupedCasts& casts) {
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t r0 = offsets[g], m = offsets[g + 1] - r0;
        if (m <= 0) continue;
        if (casts.fp32())
            gemm(false, true, m, out, in, 1.0f, x + r0 * in, in, w[g], in, 0.0f, y + r0 * out,
                 out);
        else
            gemm_quantized(false, true, m, out, in, 1.0f, x + r0 * in, in, spec_or_fp32(casts.a),
                           w[g], in, spec_or_fp32(casts.b), 0.0f, y + r0 * out, out);
    }
}

void Backend::grouped_linear_backward_data(const float* dy, const int64_t* offsets,
                                           int64_t groups, int64_t /*rows*/,
                                           const float* const* w, int64_t in, int64_t out,
                                           float* dx, const GroupedCasts& casts) {
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t r0 = offsets[g], m = offsets[g + 1] - r0;
        if (m <= 0) continue;
        if (casts.fp32())
            gemm(false, false, m, in, out, 1.0f, dy + r0 * out, out, w[g], in, 1.0f, dx + r0 * in,
                 in);
        else
            gemm_quantized(false, false, m, in, out, 1.0f, dy + r0 * out, out,
                           spec_or_fp32(casts.a), w[g], in, spec_or_fp32(casts.b), 1.0f,
                           dx + r0 * in, in);
    }
}

void Backend::grouped_linear_backward_weight(const float* dy, const float* x,
                                             const int64_t* offsets, int64_t groups,
                                             int64_t /*rows*/, float* const* dw, int64_t in,
                                             int64_t out, const GroupedCasts& casts) {
    for (int64_t g = 0; g < groups; ++g) {
        const int64_t r0 = offsets[g], m = offsets[g + 1] - r0;
        if (m <= 0) continue;
        if (casts.fp32())
            gemm(true, false, out, in, m, 1.0f, dy + r0 * out, out, x + r0 * in, in, 1.0f, dw[g],
                 in);
        else
            gemm_quantized(true, false, out, in, m, 1.0f, dy + r0 * out, out,
                           spec_or_fp32(casts.a), x + r0 * in, in, spec_or_fp32(casts.b), 1.0f,
                           dw[g], in);
    }
}

}  // namespace moe
