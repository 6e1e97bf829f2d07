// CpuBackend: RMSNorm and rotary position embedding.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_math.h"

namespace moe {

// y[r] = w * x[r] * rstd[r], rstd[r] = 1 / sqrt(mean(x[r]^2) + eps). x [rows, dim] (strided).
void CpuBackend::rmsnorm_forward(const float* x, int64_t x_stride, const float* w, int64_t rows,
                                 int64_t dim, float eps, float* y, int64_t y_stride,
                                 float* rstd) {
    const int nt = team(rows * dim * 3);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * x_stride;
        float* yr = y + r * y_stride;
        double ss = 0.0;
        for (int64_t j = 0; j < dim; ++j) ss += static_cast<double>(xr[j]) * xr[j];
        const float rs = static_cast<float>(1.0 / std::sqrt(ss / dim + eps));
        for (int64_t j = 0; j < dim; ++j) yr[j] = w[j] * (xr[j] * rs);
        rstd[r] = rs;
    }
}

// With g = w * dy:  dx = rstd * g - rstd^3 / dim * x * dot(g, x);  dw += dy * x * rstd.
// dw is a reduction over rows: the rows are cut into at most kDwBlocks contiguous blocks (a
// function of `rows` alone), each block summed by one thread into its own partial (double), and
// the partials added to dw in block order, so dw does not depend on the thread count.
void CpuBackend::rmsnorm_backward(const float* dy, int64_t dy_stride, const float* x,
                                  int64_t x_stride, const float* w, const float* rstd,
                                  int64_t rows, int64_t dim, float* dx, int64_t dx_stride,
                                  float* dw) {
    if (rows <= 0 || dim <= 0) return;
    constexpr int64_t kDwBlocks = 64;
    const int64_t block_rows = std::max<int64_t>(16, (rows + kDwBlocks - 1) / kDwBlocks);
    const int64_t blocks = (rows + block_rows - 1) / block_rows;
    const int nt = static_cast<int>(std::min<int64_t>(blocks, team(rows * dim * 4)));
    double* part = grow(partial_, static_cast<size_t>(blocks * dim));
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t blk = 0; blk < blocks; ++blk) {
        double* pw = part + blk * dim;
        std::fill(pw, pw + dim, 0.0);
        const int64_t r1 = std::min(rows, (blk + 1) * block_rows);
        for (int64_t r = blk * block_rows; r < r1; ++r) {
            const float* dyr = dy + r * dy_stride;
            const float* xr = x + r * x_stride;
            float* dxr = dx + r * dx_stride;
            const float rs = rstd[r];
            double dot = 0.0;
            for (int64_t j = 0; j < dim; ++j) dot += static_cast<double>(w[j] * dyr[j]) * xr[j];
            const float c = static_cast<float>(dot * rs * rs * rs / dim);
            for (int64_t j = 0; j < dim; ++j) {
                dxr[j] += rs * w[j] * dyr[j] - c * xr[j];
                pw[j] += dyr[j] * xr[j] * rs;
            }
        }
    }
    // Combine in block order; columns are independent, so this loop may run in parallel.
    const int nc = team(blocks * dim);
#pragma omp parallel for schedule(static) num_threads(nc)
    for (int64_t j = 0; j < dim; ++j) {
        double s = 0.0;
        for (int64_t blk = 0; blk < blocks; ++blk) s += part[blk * dim + j];
        dw[j] += static_cast<float>(s);
    }
}

// Interleaved RoPE: pair i = (x[2i], x[2i+1]) rotated by pos * inv_freq(i) (backend.h,
// RopeParams). The angle and its sine/cosine are computed in double so long positions keep
// their accuracy; each pair's rotation is computed once per row and applied to every head.
void CpuBackend::rope(float* x, int64_t rows, int64_t row_stride, int64_t heads,
                      int64_t head_stride, int64_t offset, int64_t rope_dim,
                      const int32_t* positions, const RopeParams& rp, bool inverse) {
    const int64_t half = rope_dim / 2;
    const double log_theta = std::log(rp.theta);
    const bool yarn = rp.factor > 1.0;
    const double ramp_span = rp.ramp_high > rp.ramp_low ? rp.ramp_high - rp.ramp_low : 0.001;
    const int nt = team(rows * heads * rope_dim * 4);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < rows; ++r) {
        float* xr = x + r * row_stride + offset;
        const double pos = positions[r];
        for (int64_t i = 0; i < half; ++i) {
            double inv_freq = std::exp(-log_theta * (2.0 * i) / rope_dim);
            if (yarn) {
                const double ramp = std::clamp((i - rp.ramp_low) / ramp_span, 0.0, 1.0);
                inv_freq = inv_freq * (1.0 - ramp) + inv_freq / rp.factor * ramp;
            }
            const double ang = pos * inv_freq;
            const float c = static_cast<float>(std::cos(ang) * rp.mscale);
            const float s = static_cast<float>((inverse ? -std::sin(ang) : std::sin(ang)) * rp.mscale);
            for (int64_t h = 0; h < heads; ++h) {
                float* p = xr + h * head_stride + 2 * i;
                const float a = p[0], b = p[1];
                p[0] = a * c - b * s;
                p[1] = a * s + b * c;
            }
        }
    }
}

}  // namespace moe
