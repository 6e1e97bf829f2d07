// RMSNorm (one block per row, the sum of squares in a fixed double tree) and interleaved RoPE.
#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

__global__ void rmsnorm_forward_k(const float* x, int64_t xs, const float* w, int64_t dim,
                                  float eps, float* y, int64_t ys, float* rstd) {
    __shared__ double sh[kThreads];
    const int64_t r = blockIdx.x;
    const float* xr = x + r * xs;
    double ss = 0.0;
    for (int64_t j = threadIdx.x; j < dim; j += kThreads) ss += double(xr[j]) * xr[j];
    ss = block_sum(ss, sh);
    const float rs = static_cast<float>(1.0 / sqrt(ss / dim + eps));
    float* yr = y + r * ys;
    for (int64_t j = threadIdx.x; j < dim; j += kThreads) yr[j] = w[j] * (xr[j] * rs);
    if (threadIdx.x == 0) rstd[r] = rs;
}

// sum = a + b and y = rmsnorm(sum) * w in one pass over the row (the same double tree as
// rmsnorm_forward_k, so the result equals the unfused ops' bit for bit).
__global__ void residual_rmsnorm_k(const float* a, const float* b, const float* w, int64_t dim,
                                   float eps, float* sum, float* y, float* rstd) {
    __shared__ double sh[kThreads];
    const int64_t r = blockIdx.x;
    const float* ar = a + r * dim;
    const float* br = b + r * dim;
    float* sr = sum + r * dim;
    double ss = 0.0;
    for (int64_t j = threadIdx.x; j < dim; j += kThreads) {
        const float v = ar[j] + br[j];
        sr[j] = v;
        ss += double(v) * v;
    }
    ss = block_sum(ss, sh);
    const float rs = static_cast<float>(1.0 / sqrt(ss / dim + eps));
    float* yr = y + r * dim;
    for (int64_t j = threadIdx.x; j < dim; j += kThreads) yr[j] = w[j] * (sr[j] * rs);
    if (threadIdx.x == 0) rstd[r] = rs;
}

__global__ void residual_add_k(const float4* a, const float4* b, int64_t n4, float4* out) {
    MOE_GRID_LOOP(i, n4) {
        const float4 x = a[i], y = b[i];
        out[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
    }
}

__global__ void residual_add_tail_k(const float* a, const float* b, int64_t from, int64_t n,
                                    float* out) {
    MOE_GRID_LOOP(i, n - from) out[from + i] = a[from + i] + b[from + i];
}

// dx = rstd * w * dy - rstd^3 / dim * x * dot(w * dy, x), one block per row.
__global__ void rmsnorm_dx_k(const float* dy, int64_t dys, const float* x, int64_t xs,
                             const float* w, const float* rstd, int64_t dim, float* dx,
                             int64_t dxs) {
    __shared__ double sh[kThreads];
    const int64_t r = blockIdx.x;
    const float* dyr = dy + r * dys;
    const float* xr = x + r * xs;
    const float rs = rstd[r];
    double dot = 0.0;
    for (int64_t j = threadIdx.x; j < dim; j += kThreads) dot += double(w[j] * dyr[j]) * xr[j];
    dot = block_sum(dot, sh);
    const float c = static_cast<float>(dot * rs * rs * rs / dim);
    float* dxr = dx + r * dxs;
    for (int64_t j = threadIdx.x; j < dim; j += kThreads) dxr[j] += rs * w[j] * dyr[j] - c * xr[j];
}

// dw[j] += sum_r dy * x * rstd: one thread per column walks the rows in order (no atomics).
__global__ void rmsnorm_dw_k(const float* dy, int64_t dys, const float* x, int64_t xs,
                             const float* rstd, int64_t rows, int64_t dim, float* dw) {
    MOE_GRID_LOOP(j, dim) {
        double s = 0.0;
        for (int64_t r = 0; r < rows; ++r) s += double(dy[r * dys + j] * x[r * xs + j] * rstd[r]);
        dw[j] += static_cast<float>(s);
    }
}

// One thread per (row, pair); the rotation (angle in double, as on the CPU) applies to all heads.
__global__ void rope_k(float* x, int64_t rows, int64_t rs, int64_t heads, int64_t hs,
                       int64_t offset, int64_t rope_dim, const int32_t* pos, double log_theta,
                       RopeArgs a, bool inverse) {
    const int64_t half = rope_dim / 2;
    const double span = a.ramp_high > a.ramp_low ? a.ramp_high - a.ramp_low : 0.001;
    MOE_GRID_LOOP(i, rows * half) {
        const int64_t r = i / half, p = i % half;
        double inv_freq = exp(-log_theta * (2.0 * p) / rope_dim);
        if (a.factor > 1.0) {  // YaRN (backend.h, RopeParams)
            const double ramp = fmin(fmax((p - a.ramp_low) / span, 0.0), 1.0);
            inv_freq = inv_freq * (1.0 - ramp) + inv_freq / a.factor * ramp;
        }
        const double ang = double(pos[r]) * inv_freq;
        const float c = static_cast<float>(cos(ang) * a.mscale);
        const float s = static_cast<float>((inverse ? -sin(ang) : sin(ang)) * a.mscale);
        float* xr = x + r * rs + offset + 2 * p;
        for (int64_t h = 0; h < heads; ++h) {
            float* q = xr + h * hs;
            const float a = q[0], b = q[1];
            q[0] = a * c - b * s;
            q[1] = a * s + b * c;
        }
    }
}

}  // namespace

cudaError_t rmsnorm_forward(const float* x, int64_t x_stride, const float* w, int64_t rows,
                            int64_t dim, float eps, float* y, int64_t y_stride, float* rstd) {
    if (rows <= 0) return cudaSuccess;
    rmsnorm_forward_k<<<static_cast<unsigned>(rows), kThreads>>>(x, x_stride, w, dim, eps, y,
                                                                 y_stride, rstd);
    return launched();
}

cudaError_t residual_rmsnorm_forward(const float* a, const float* b, const float* w, int64_t rows,
                                     int64_t dim, float eps, float* sum, float* y, float* rstd) {
    if (rows <= 0) return cudaSuccess;
    residual_rmsnorm_k<<<static_cast<unsigned>(rows), kThreads>>>(a, b, w, dim, eps, sum, y, rstd);
    return launched();
}

cudaError_t residual_add(const float* a, const float* b, int64_t n, float* out) {
    if (n <= 0) return cudaSuccess;
    // 16-byte accesses when all three are aligned (cudaMalloc'd buffers are), the rest singly.
    const bool aligned = ((reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b) |
                           reinterpret_cast<uintptr_t>(out)) & 15) == 0;
    const int64_t n4 = aligned ? n / 4 : 0;
    if (n4 > 0) {
        residual_add_k<<<grid_for(n4), kThreads>>>(reinterpret_cast<const float4*>(a),
                                                   reinterpret_cast<const float4*>(b), n4,
                                                   reinterpret_cast<float4*>(out));
        if (const cudaError_t e = launched(); e != cudaSuccess) return e;
    }
    if (n4 * 4 < n) residual_add_tail_k<<<grid_for(n - n4 * 4), kThreads>>>(a, b, n4 * 4, n, out);
    return launched();
}

cudaError_t rmsnorm_backward(const float* dy, int64_t dy_stride, const float* x,
                             int64_t x_stride, const float* w, const float* rstd, int64_t rows,
                             int64_t dim, float* dx, int64_t dx_stride, float* dw) {
    if (rows <= 0 || dim <= 0) return cudaSuccess;
    rmsnorm_dx_k<<<static_cast<unsigned>(rows), kThreads>>>(dy, dy_stride, x, x_stride, w, rstd,
                                                            dim, dx, dx_stride);
    const cudaError_t e = launched();
    if (e != cudaSuccess) return e;
    rmsnorm_dw_k<<<grid_for(dim, 128), 128>>>(dy, dy_stride, x, x_stride, rstd, rows, dim, dw);
    return launched();
}

cudaError_t rope(float* x, int64_t rows, int64_t row_stride, int64_t heads, int64_t head_stride,
                 int64_t offset, int64_t rope_dim, const int32_t* positions, const RopeArgs& a,
                 bool inverse) {
    if (rows <= 0 || rope_dim < 2) return cudaSuccess;
    rope_k<<<grid_for(rows * (rope_dim / 2)), kThreads>>>(x, rows, row_stride, heads, head_stride,
                                                          offset, rope_dim, positions,
                                                          log(a.theta), a, inverse);
    return launched();
}

}  // namespace moe::gpu::kern
