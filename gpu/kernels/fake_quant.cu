// Fake quantization on the device, the same values as engine/quant's fake_quantize bit for bit:
// per-tile amax over finite elements (as an integer max of the magnitude bits, so exact in any
// order), scale = amax / format_max (optionally the next power of two), then each element
// x / scale rounded to nearest even on the format's grid, saturated, and multiplied back.
// The float operations use the _rn intrinsics so nvcc cannot contract them into FMAs.
#include <cfloat>

#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

__device__ inline int finite_abs_bits(float v) {
    const int bits = __float_as_int(v) & 0x7FFFFFFF;
    return bits < 0x7F800000 ? bits : 0;
}

__device__ float scale_from_amax(float amax, float max_finite, bool pow2) {
    if (!(amax > 0.0f)) return 1.0f;
    float scale = __fdiv_rn(amax, max_finite);
    if (pow2) {
        int exponent = 0;
        const float mantissa = frexpf(scale, &exponent);
        scale = ldexpf(1.0f, mantissa == 0.5f ? exponent - 1 : exponent);
        if (__fmul_rn(max_finite, scale) < amax) scale = __fmul_rn(scale, 2.0f);
    }
    return fmaxf(scale, FLT_MIN);
}

// One block per tile, tiles numbered row-major over the tile grid (1-D: no 65535 limit).
__global__ void tile_scales_k(const float* x, int64_t rows, int64_t cols, int64_t ld,
                              CastArgs a, int64_t grid_cols, float* scales) {
    __shared__ int sh[kThreads];
    const int64_t tile = blockIdx.x;
    const int64_t r0 = (tile / grid_cols) * a.tile_rows, c0 = (tile % grid_cols) * a.tile_cols;
    const int64_t tr = min(a.tile_rows, rows - r0), tc = min(a.tile_cols, cols - c0);
    int m = 0;
    for (int64_t i = threadIdx.x; i < tr * tc; i += kThreads)
        m = max(m, finite_abs_bits(x[(r0 + i / tc) * ld + c0 + i % tc]));
    sh[threadIdx.x] = m;
    __syncthreads();
    for (int s = kThreads / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = max(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    if (threadIdx.x == 0)
        scales[tile] =
            scale_from_amax(__int_as_float(sh[0]), a.max_finite, a.pow2_scales);
}

// engine/quant/format_grid.h's round_to_grid: RNE onto a grid with mantissa_bits fraction bits.
__device__ inline float round_to_grid(float x, int mantissa_bits, int min_exponent) {
    const unsigned abs_bits = __float_as_uint(x) & 0x7FFFFFFFu;
    int exponent = static_cast<int>(abs_bits >> 23) - 127;
    if (exponent < min_exponent) exponent = min_exponent;
    const float quantum = __uint_as_float(static_cast<unsigned>(exponent - mantissa_bits + 127) << 23);
    const float inverse = __uint_as_float(static_cast<unsigned>(mantissa_bits - exponent + 127) << 23);
    const float steps = __fmul_rn(__uint_as_float(abs_bits), inverse);
    const float rounded = __fmul_rn(__fsub_rn(__fadd_rn(steps, 0x1p23f), 0x1p23f), quantum);
    return copysignf(rounded, x);
}

__device__ inline float round_to_bf16(float x) {
    const unsigned bits = __float_as_uint(x);
    const unsigned rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
    return x != x ? x : __uint_as_float(rounded);
}

__global__ void cast_k(const float* x, int64_t rows, int64_t cols, int64_t ld, CastArgs a,
                       const float* scales, float* out) {
    const int64_t grid_cols = (cols + a.tile_cols - 1) / a.tile_cols;
    const float limit = a.saturate ? a.max_finite : INFINITY;
    MOE_GRID_LOOP(i, rows * cols) {
        const int64_t r = i / cols, c = i % cols;
        const float s = a.scaled ? scales[(r / a.tile_rows) * grid_cols + c / a.tile_cols] : 1.0f;
        const float v = __fdiv_rn(x[r * ld + c], s);
        float q = a.bf16 ? round_to_bf16(v) : round_to_grid(v, a.mantissa_bits, a.min_exponent);
        if (fabsf(q) > a.max_finite) q = copysignf(limit, v);
        out[i] = __fmul_rn(q, s);
    }
}

}  // namespace

cudaError_t fake_quantize(const float* x, int64_t rows, int64_t cols, int64_t ld,
                          const CastArgs& a, float* scales, float* out) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    if (a.scaled) {
        const int64_t grid_cols = (cols + a.tile_cols - 1) / a.tile_cols;
        const int64_t tiles = grid_cols * ((rows + a.tile_rows - 1) / a.tile_rows);
        tile_scales_k<<<static_cast<unsigned>(tiles), kThreads>>>(x, rows, cols, ld, a, grid_cols,
                                                                  scales);
        const cudaError_t e = launched();
        if (e != cudaSuccess) return e;
    }
    cast_k<<<grid_for(rows * cols), kThreads>>>(x, rows, cols, ld, a, scales, out);
    return launched();
}

}  // namespace moe::gpu::kern
