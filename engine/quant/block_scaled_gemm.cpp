// gemm_block_scaled_reference (declared in block_scaling.h): the accumulation of an FP8 tensor
// core GEMM with DeepSeek-V3's promotion to fp32, simulated element by element.
#include <omp.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "quant/block_cast.h"
#include "quant/block_scaling.h"
#include "quant/format_grid.h"

namespace moe {

namespace {

// One operand as the tensor core sees it: decoded element values (no scale) and the tile scales.
struct DecodedOperand {
    std::vector<float> values;  // [rows, K]
    std::vector<float> scales;  // [tile_grid_rows, tile_grid_cols]
    int64_t tile_rows = 1, tile_k = 1, grid_cols = 1;

    float scale(int64_t row, int64_t k) const {
        return scales[(row / tile_rows) * grid_cols + k / tile_k];
    }
};

DecodedOperand decode_operand(const float* x, int64_t rows, int64_t K, const BlockQuantSpec& spec) {
    DecodedOperand op;
    op.values.resize(static_cast<size_t>(rows * K));
    op.scales.resize(
        static_cast<size_t>(tile_grid_rows(rows, spec.tile) * tile_grid_cols(K, spec.tile)));
    quant_detail::cast_blocks(x, rows, K, K, spec, op.values.data(), K, op.scales.data(), false);
    op.tile_rows = spec.tile.rows == 0 ? std::max<int64_t>(rows, 1) : spec.tile.rows;
    op.tile_k = spec.tile.cols == 0 ? std::max<int64_t>(K, 1) : spec.tile.cols;
    op.grid_cols = tile_grid_cols(K, spec.tile);
    return op;
}

// One add into the limited accumulator: the exact sum rounded once to its mantissa width.
inline float accumulate(float acc, double product, int mantissa_bits) {
    const double sum = static_cast<double>(acc) + product;
    return mantissa_bits >= 23 ? static_cast<float>(sum)
                               : quant_detail::round_double_to_mantissa_bits(sum, mantissa_bits);
}

}  // namespace

void gemm_block_scaled_reference(const float* A, const float* B, int64_t M, int64_t N, int64_t K,
                                 const BlockQuantSpec& a_spec, const BlockQuantSpec& b_spec,
                                 int promote_every, int accumulator_mantissa_bits, float* C) {
    if (M < 0 || N < 0 || K < 0)
        throw ConfigError("shape", "M, N, K must be >= 0, got " + std::to_string(M) + ", " +
                                       std::to_string(N) + ", " + std::to_string(K));
    if (promote_every < 0)
        throw ConfigError("promote_every", "must be >= 0, got " + std::to_string(promote_every));
    if (accumulator_mantissa_bits < 1 || accumulator_mantissa_bits > 23)
        throw ConfigError("accumulator_mantissa_bits",
                          "must be in 1..23, got " + std::to_string(accumulator_mantissa_bits));
    const DecodedOperand a = decode_operand(A, M, K, a_spec);
    const DecodedOperand b = decode_operand(B, N, K, b_spec);
    const int64_t chunk = promote_every > 0 ? promote_every : std::max<int64_t>(K, 1);
    // A chunk must see one scale per operand so the scales can wait for the promotion: each
    // operand's tiles along K either span all of K or are whole multiples of the chunk.
    auto one_scale_per_chunk = [&](const DecodedOperand& op) {
        return op.tile_k >= K || op.tile_k % chunk == 0;
    };
    const bool scales_at_promotion = one_scale_per_chunk(a) && one_scale_per_chunk(b);
    if (promote_every > 0 && !scales_at_promotion)
        throw ConfigError("promote_every", "must divide the K extent of both operands' tiles (A " +
                                               std::to_string(a.tile_k) + ", B " +
                                               std::to_string(b.tile_k) + "), got " +
                                               std::to_string(promote_every));
    // promote_every = 0 with tiles finer than K (e.g. 1x128 and no promotion): the scales change
    // inside the one chunk, so each product is scaled before it enters the limited accumulator.
    const int nt = M * N * K >= (1 << 20) ? omp_get_max_threads() : 1;
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t m = 0; m < M; ++m) {
        const float* a_row = a.values.data() + m * K;
        for (int64_t n = 0; n < N; ++n) {
            const float* b_row = b.values.data() + n * K;
            float total = 0.0f;  // the fp32 accumulator on the CUDA cores
            for (int64_t k0 = 0; k0 < K; k0 += chunk) {
                const int64_t k1 = std::min(K, k0 + chunk);
                float partial = 0.0f;  // the tensor core's limited accumulator
                if (scales_at_promotion) {
                    for (int64_t k = k0; k < k1; ++k)
                        partial = accumulate(partial, static_cast<double>(a_row[k]) * b_row[k],
                                             accumulator_mantissa_bits);
                    total += partial * a.scale(m, k0) * b.scale(n, k0);
                } else {
                    for (int64_t k = k0; k < k1; ++k) {
                        const double product = static_cast<double>(a_row[k] * a.scale(m, k)) *
                                               static_cast<double>(b_row[k] * b.scale(n, k));
                        partial = accumulate(partial, product, accumulator_mantissa_bits);
                    }
                    total += partial;
                }
            }
            C[m * N + n] = total;
        }
    }
}

}  // namespace moe
