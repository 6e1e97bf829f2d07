// FP8 operands for cuBLASLt's block-scaled GEMM (see kernels.h, pack_fp8_operand).
#include <cuda_fp8.h>

#include "common.cuh"
#include "kernels.h"

namespace moe::gpu::kern {

namespace {

constexpr int kTile = 32;  // transpose tile (32 x 32 floats through shared memory)

__device__ inline uint8_t to_code(float q, float scale, bool e5m2) {
    // q is already on the format's grid times `scale` (fake_quantize's output), so q / scale
    // lies within a rounding error of 2^-24 of a code: the cast returns that code exactly.
    const float c = q / scale;
    return static_cast<uint8_t>(
        __nv_cvt_float_to_fp8(c, __NV_SATFINITE, e5m2 ? __NV_E5M2 : __NV_E4M3));
}

// codes[o, k] (K contiguous) from q stored [rows, cols]: o = row, k = col (k_rows false) or
// o = col, k = row (k_rows true, a transpose through shared memory so both sides coalesce).
__global__ void pack_codes_kernel(const float* q, int64_t rows, int64_t cols,
                                  const float* grid_scales, int64_t tile_rows, int64_t tile_cols,
                                  int64_t grid_cols, bool k_rows, bool e5m2, uint8_t* codes) {
    __shared__ uint8_t sh[kTile][kTile + 4];
    const int64_t r0 = int64_t(blockIdx.y) * kTile, c0 = int64_t(blockIdx.x) * kTile;
    for (int i = threadIdx.y; i < kTile; i += blockDim.y) {
        const int64_t r = r0 + i, c = c0 + threadIdx.x;
        if (r < rows && c < cols) {
            const float s = grid_scales[(r / tile_rows) * grid_cols + c / tile_cols];
            const uint8_t code = to_code(q[r * cols + c], s, e5m2);
            if (k_rows)
                sh[threadIdx.x][i] = code;
            else
                codes[r * cols + c] = code;
        }
    }
    if (!k_rows) return;
    __syncthreads();
    // Transposed write: codes is [cols, rows]; this block's tile starts at (c0, r0).
    for (int i = threadIdx.y; i < kTile; i += blockDim.y) {
        const int64_t o = c0 + i, k = r0 + threadIdx.x;
        if (o < cols && k < rows) codes[o * rows + k] = sh[i][threadIdx.x];
    }
}

__global__ void pack_scales_kernel(const float* grid_scales, int64_t grid_cols, bool k_rows,
                                   bool block, int64_t outer, int64_t k_blocks,
                                   int64_t k_blocks_padded, float* lt_scales) {
    // VEC128: lt[kb * outer + o]; BLK128x128: lt[ob * k_blocks_padded + kb] (padding = 1).
    const int64_t n = block ? outer * k_blocks_padded : outer * k_blocks;
    MOE_GRID_LOOP(i, n) {
        int64_t o, kb;
        if (block) {
            o = i / k_blocks_padded;
            kb = i % k_blocks_padded;
            if (kb >= k_blocks) {
                lt_scales[i] = 1.0f;
                continue;
            }
        } else {
            kb = i / outer;
            o = i % outer;
        }
        lt_scales[i] = k_rows ? grid_scales[kb * grid_cols + o] : grid_scales[o * grid_cols + kb];
    }
}

}  // namespace

cudaError_t pack_fp8_operand(const float* q, int64_t rows, int64_t cols, const float* grid_scales,
                             int64_t tile_rows, int64_t tile_cols, bool k_rows, bool e5m2,
                             bool block, uint8_t* codes, float* lt_scales) {
    if (rows <= 0 || cols <= 0) return cudaSuccess;
    const int64_t grid_cols = (cols + tile_cols - 1) / tile_cols;
    const dim3 threads(kTile, 8);
    const dim3 blocks(static_cast<unsigned>((cols + kTile - 1) / kTile),
                      static_cast<unsigned>((rows + kTile - 1) / kTile));
    pack_codes_kernel<<<blocks, threads>>>(q, rows, cols, grid_scales, tile_rows, tile_cols,
                                           grid_cols, k_rows, e5m2, codes);
    if (const cudaError_t e = launched(); e != cudaSuccess) return e;
    // Scale grid in the stored layout: the K blocks run along rows (k_rows) or columns.
    const int64_t K = k_rows ? rows : cols;
    const int64_t outer_extent = k_rows ? cols : rows;
    const int64_t outer = block ? (outer_extent + 127) / 128 : outer_extent;
    const int64_t k_blocks = (K + 127) / 128;
    const int64_t k_blocks_padded = (k_blocks + 3) / 4 * 4;
    const int64_t n = block ? outer * k_blocks_padded : outer * k_blocks;
    pack_scales_kernel<<<grid_for(n), kThreads>>>(grid_scales, grid_cols, k_rows, block, outer,
                                                  k_blocks, k_blocks_padded, lt_scales);
    return launched();
}

}  // namespace moe::gpu::kern
