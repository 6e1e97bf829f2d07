#pragma once
// How far a quantized tensor is from the original: the figures the run file records and the
// Quantization view shows.
#include <cstdint>
#include <vector>

namespace moe {

struct QuantErrorStats {
    int64_t count = 0;
    double rel_fro_error = 0;   // ||xq - x||_F / ||x||_F (0 when x is all zero)
    double snr_db = 0;          // 10 log10(||x||^2 / ||xq - x||^2), clamped to +-300: no
                                // error (or n = 0) is 300, an error on an all-zero x is -300
    float amax = 0;             // max |x|
    double max_abs_error = 0;
    double frac_saturated = 0;  // from the cast's CastCounts
    double frac_flushed = 0;
};

// Sums in double over fixed 4096-element blocks: the same figures for any thread count.
QuantErrorStats quant_error(const float* x, const float* xq, int64_t n, int64_t saturated = 0,
                            int64_t flushed_to_zero = 0);

// Histograms on log2 magnitude: bin i covers [lo + i*width, lo + (i+1)*width) of log2|v|;
// values below the range go to bin 0, above to the last bin, exact zeros are counted apart.
struct Log2Histogram {
    static constexpr double kLo = -24.0;   // below FP16's smallest subnormal
    static constexpr double kHi = 16.0;    // above E5M2/FP16 max
    static constexpr int kBins = 160;      // quarter-binade bins
    std::vector<uint32_t> counts = std::vector<uint32_t>(kBins, 0);
    uint32_t zeros = 0;
    static double bin_lo(int i) { return kLo + i * (kHi - kLo) / kBins; }
};

// values: of v[i] / (divisor, e.g. the tile scale; 1 for none). errors: of |xq - x| / amax.
// NaN values are skipped; powers of two land exactly at the start of their bin.
void add_to_histogram(Log2Histogram& h, const float* v, int64_t n, float divisor = 1.0f);

// Blockwise statistics: relative error per tile, [tile_grid_rows, tile_grid_cols] row-major, x and
// xq with the same row stride ld; a tile extent of 0 is the whole dimension, edge tiles are
// partial, an all-zero tile reports 0. Sums in double, in a fixed order.
std::vector<float> tile_rel_errors(const float* x, const float* xq, int64_t rows, int64_t cols,
                                   int64_t ld, int64_t tile_rows, int64_t tile_cols);

}  // namespace moe
