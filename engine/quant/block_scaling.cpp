#include "quant/block_scaling.h"

#include <omp.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <limits>
#include <string>

#include "core/error.h"
#include "quant/block_cast.h"
#include "quant/format_grid.h"
#include "quant/number_formats.h"

namespace moe {

namespace {

// Below this many elements a cast runs on the calling thread (thread start-up would dominate).
constexpr int64_t kMinParallelElements = 1 << 14;

int team_for(int64_t elements) {
    return elements >= kMinParallelElements ? std::max(1, omp_get_max_threads()) : 1;
}

// A matrix cut into tiles: tile extents resolved (0 -> whole dimension) and the grid size.
struct TileGrid {
    int64_t rows, cols;            // matrix
    int64_t tile_rows, tile_cols;  // resolved extents, >= 1
    int64_t grid_rows, grid_cols;
};

int64_t resolve_extent(int64_t extent, int64_t dimension) {
    return extent == 0 ? std::max<int64_t>(dimension, 1) : extent;
}

TileGrid make_grid(int64_t rows, int64_t cols, TileShape tile) {
    if (tile.rows < 0 || tile.cols < 0)
        throw ConfigError("tile", "extents must be >= 0, got " + std::to_string(tile.rows) + "x" +
                                      std::to_string(tile.cols));
    TileGrid g{rows, cols, resolve_extent(tile.rows, rows), resolve_extent(tile.cols, cols), 0, 0};
    g.grid_rows = tile_grid_rows(rows, tile);
    g.grid_cols = tile_grid_cols(cols, tile);
    return g;
}

void check_matrix(int64_t rows, int64_t cols, int64_t ld, const char* ld_name) {
    if (rows < 0 || cols < 0)
        throw ConfigError("shape", "must be non-negative, got " + std::to_string(rows) + "x" +
                                       std::to_string(cols));
    if (ld < cols)
        throw ConfigError(
            ld_name, "must be >= cols (" + std::to_string(cols) + "), got " + std::to_string(ld));
}

// Max |x| over finite values: a NaN or Inf element must not turn its whole tile's scale into
// NaN/Inf (it is cast on its own: NaN stays NaN, Inf saturates). Non-negative floats order like
// their bit patterns, so this is an integer max, which vectorizes (a float max does not without
// -ffast-math).
inline int32_t finite_abs_bits(float v) {
    const int32_t abs_bits = std::bit_cast<int32_t>(v) & 0x7FFFFFFF;
    return abs_bits < 0x7F800000 ? abs_bits : 0;
}

inline float finite_amax(const float* p, int64_t n, float amax) {
    int32_t m = std::bit_cast<int32_t>(amax);
    for (int64_t i = 0; i < n; ++i) m = std::max(m, finite_abs_bits(p[i]));
    return std::bit_cast<float>(m);
}

// scale = amax / format_max, or the smallest power of two >= that; 1 for an all-zero tile.
// Kept >= FLT_MIN so x / scale never divides by a subnormal or zero scale.
float scale_from_amax(float amax, float max_finite, bool pow2) {
    if (!(amax > 0.0f)) return 1.0f;
    float scale = amax / max_finite;
    if (pow2) {
        int exponent = 0;
        const float mantissa = std::frexp(scale, &exponent);  // scale = mantissa * 2^exponent
        scale = std::ldexp(1.0f, mantissa == 0.5f ? exponent - 1 : exponent);
        // The division rounded: make sure max_finite * scale really covers amax (exact product).
        if (max_finite * scale < amax) scale *= 2.0f;
    }
    return std::max(scale, FLT_MIN);
}

// Per-tile amax of a tile band (tile_rows rows starting at row r0) into amax[0..grid_cols).
void band_amax(const float* x, int64_t ld, const TileGrid& g, int64_t r0, int64_t r1, float* amax) {
    std::fill(amax, amax + g.grid_cols, 0.0f);
    for (int64_t r = r0; r < r1; ++r) {
        const float* row = x + r * ld;
        if (g.tile_cols == 1) {  // one tile per column (128x1): elementwise, vectorizes
            for (int64_t c = 0; c < g.cols; ++c) amax[c] = finite_amax(row + c, 1, amax[c]);
            continue;
        }
        for (int64_t tc = 0; tc < g.grid_cols; ++tc) {
            const int64_t c0 = tc * g.tile_cols, c1 = std::min(g.cols, c0 + g.tile_cols);
            amax[tc] = finite_amax(row + c0, c1 - c0, amax[tc]);
        }
    }
}

// Every tile's scale into scales[grid_rows * grid_cols]. Parallel over tile bands when there are
// enough of them, else over the rows of each band with a max reduction (max is exact, so the
// result does not depend on the thread count).
void compute_scales(const float* x, int64_t ld, const TileGrid& g, float max_finite, bool pow2,
                    float* scales) {
    const int nt = team_for(g.rows * g.cols);
    if (g.grid_rows >= nt) {
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t tr = 0; tr < g.grid_rows; ++tr)
            band_amax(x, ld, g, tr * g.tile_rows, std::min(g.rows, (tr + 1) * g.tile_rows),
                      scales + tr * g.grid_cols);
    } else {
        // Few bands (per tensor, or 128-row blocks of a short matrix): each thread takes a
        // contiguous share of a band's rows into its own partial amax row, then the partials are
        // combined. The buffer is the calling thread's and only grows.
        thread_local std::vector<float> partial_scratch;
        const size_t needed = static_cast<size_t>(nt * g.grid_cols);
        if (partial_scratch.size() < needed) partial_scratch.resize(needed);
        float* partial = partial_scratch.data();
        for (int64_t tr = 0; tr < g.grid_rows; ++tr) {
            const int64_t r0 = tr * g.tile_rows, r1 = std::min(g.rows, r0 + g.tile_rows);
#pragma omp parallel for schedule(static) num_threads(nt)
            for (int t = 0; t < nt; ++t)
                band_amax(x, ld, g, r0 + (r1 - r0) * t / nt, r0 + (r1 - r0) * (t + 1) / nt,
                          partial + t * g.grid_cols);
            float* amax = scales + tr * g.grid_cols;
            std::copy(partial, partial + g.grid_cols, amax);
            for (int t = 1; t < nt; ++t)
                for (int64_t tc = 0; tc < g.grid_cols; ++tc)
                    amax[tc] = std::max(amax[tc], partial[t * g.grid_cols + tc]);
        }
    }
    const int64_t n = g.grid_rows * g.grid_cols;
    for (int64_t i = 0; i < n; ++i) scales[i] = scale_from_amax(scales[i], max_finite, pow2);
}

// How one element is cast: the grid of the format, its max, and what happens past the max.
struct ElementCast {
    ElementFormat format;
    float max_finite;
    bool saturate;  // out of range -> +-max (FP8, and every scaled cast); else +-Inf
    int mantissa_bits;
    int min_exponent;
};

ElementCast element_cast(ElementFormat format, bool scaled) {
    const float max_finite = format_max(format);
    switch (format) {
        case ElementFormat::E4M3: return {format, max_finite, true, 3, -6};
        case ElementFormat::E5M2: return {format, max_finite, true, 2, -14};
        case ElementFormat::FP16: return {format, max_finite, scaled, 10, -14};
        case ElementFormat::BF16: return {format, max_finite, scaled, 7, -126};
        case ElementFormat::FP32: break;
    }
    return {format, max_finite, true, 23, -126};
}

// Casts n elements; scale[0] for all of them, or scale[i] per element (128x1 tiles, where each
// column of a band has its own). apply_scale false leaves the decoded (unscaled) values, what a
// tensor core multiplies. Branch-free, so the loop vectorizes; counts saturation and flushes.
template <bool kBf16, bool kScalePerElement>
void cast_run(const float* x, float* out, int64_t n, const float* scale, const ElementCast& c,
              bool apply_scale, int64_t& saturated, int64_t& flushed) {
    const float limit = c.saturate ? c.max_finite : std::numeric_limits<float>::infinity();
    const float max_finite = c.max_finite;
    const int mantissa_bits = c.mantissa_bits, min_exponent = c.min_exponent;
    int64_t sat = 0, flush = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float s = kScalePerElement ? scale[i] : scale[0];
        const float v = x[i] / s;
        float r = kBf16 ? quant_detail::round_to_bf16_inline(v)
                        : quant_detail::round_to_grid(v, mantissa_bits, min_exponent);
        const bool past_max = std::fabs(r) > max_finite;  // rounded past the max, or was Inf
        sat += past_max & (std::fabs(v) <= FLT_MAX);
        r = past_max ? std::copysign(limit, v) : r;
        const float result = apply_scale ? r * s : r;
        flush += (result == 0.0f) & (x[i] != 0.0f);
        out[i] = result;
    }
    saturated += sat;
    flushed += flush;
}

template <bool kBf16>
void cast_row(const float* x, float* out, const TileGrid& g, const float* row_scales,
              const ElementCast& c, bool apply_scale, int64_t& saturated, int64_t& flushed) {
    if (g.tile_cols == 1) {
        cast_run<kBf16, true>(x, out, g.cols, row_scales, c, apply_scale, saturated, flushed);
        return;
    }
    for (int64_t tc = 0; tc < g.grid_cols; ++tc) {
        const int64_t c0 = tc * g.tile_cols, c1 = std::min(g.cols, c0 + g.tile_cols);
        cast_run<kBf16, false>(x + c0, out + c0, c1 - c0, row_scales + tc, c, apply_scale,
                               saturated, flushed);
    }
}

// The whole cast of a matrix given its scales, parallel over rows (a row reads its band's scales).
CastCounts cast_matrix(const float* x, int64_t ld_x, const TileGrid& g, const float* scales,
                       const ElementCast& c, bool apply_scale, float* out, int64_t ld_out) {
    int64_t saturated = 0, flushed = 0;
    const bool bf16 = c.format == ElementFormat::BF16;  // its quantum can be a float subnormal
    const int nt = team_for(g.rows * g.cols);
#pragma omp parallel for schedule(static) num_threads(nt) reduction(+ : saturated, flushed)
    for (int64_t r = 0; r < g.rows; ++r) {
        const float* row_scales = scales + (r / g.tile_rows) * g.grid_cols;
        if (bf16)
            cast_row<true>(x + r * ld_x, out + r * ld_out, g, row_scales, c, apply_scale, saturated,
                           flushed);
        else
            cast_row<false>(x + r * ld_x, out + r * ld_out, g, row_scales, c, apply_scale,
                            saturated, flushed);
    }
    return {saturated, flushed};
}

// Scratch for scales when the caller does not want them: grows, never shrinks, one per thread.
float* scale_scratch(int64_t n) {
    thread_local std::vector<float> scratch;
    if (scratch.size() < static_cast<size_t>(n)) scratch.resize(static_cast<size_t>(n));
    return scratch.data();
}

Fp8Format fp8_format_of(const BlockQuantSpec& spec) {
    if (spec.format == ElementFormat::E4M3) return Fp8Format::E4M3;
    if (spec.format == ElementFormat::E5M2) return Fp8Format::E5M2;
    throw ConfigError("format", std::string("stored block quantization needs e4m3 or e5m2, got ") +
                                    format_name(spec.format));
}

}  // namespace

namespace quant_detail {

CastCounts cast_blocks(const float* x, int64_t rows, int64_t cols, int64_t ld_x,
                       const BlockQuantSpec& spec, float* out, int64_t ld_out, float* scales,
                       bool apply_scale) {
    check_matrix(rows, cols, ld_x, "ld_x");
    check_matrix(rows, cols, ld_out, "ld_out");
    const TileGrid g = make_grid(rows, cols, spec.tile);
    const int64_t tiles = g.grid_rows * g.grid_cols;
    if (rows == 0 || cols == 0) return {};
    float* s = scales ? scales : scale_scratch(tiles);
    const bool scaled = spec.scaled && spec.format != ElementFormat::FP32;
    if (scaled)
        compute_scales(x, ld_x, g, format_max(spec.format), spec.pow2_scales, s);
    else
        std::fill(s, s + tiles, 1.0f);
    if (spec.format == ElementFormat::FP32) {  // nothing to round: a copy (or nothing in place)
        if (out != x || ld_out != ld_x)
            for (int64_t r = 0; r < rows; ++r)
                std::copy(x + r * ld_x, x + r * ld_x + cols, out + r * ld_out);
        return {};
    }
    return cast_matrix(x, ld_x, g, s, element_cast(spec.format, scaled), apply_scale, out, ld_out);
}

}  // namespace quant_detail

int64_t tile_grid_rows(int64_t rows, TileShape tile) {
    if (rows <= 0) return 0;
    const int64_t extent = resolve_extent(tile.rows, rows);
    return (rows + extent - 1) / extent;
}

int64_t tile_grid_cols(int64_t cols, TileShape tile) {
    if (cols <= 0) return 0;
    const int64_t extent = resolve_extent(tile.cols, cols);
    return (cols + extent - 1) / extent;
}

float round_to_mantissa_bits(float x, int mantissa_bits) {
    if (mantissa_bits < 1 || mantissa_bits > 23)
        throw ConfigError("accumulator_mantissa_bits",
                          "must be in 1..23, got " + std::to_string(mantissa_bits));
    if (mantissa_bits == 23) return x;
    return quant_detail::round_double_to_mantissa_bits(x, mantissa_bits);
}

CastCounts fake_quantize(const float* x, int64_t rows, int64_t cols, int64_t ld_x,
                         const BlockQuantSpec& spec, float* out, int64_t ld_out, float* scales) {
    return quant_detail::cast_blocks(x, rows, cols, ld_x, spec, out, ld_out, scales, true);
}

BlockQuantized quantize_blocks(const float* x, int64_t rows, int64_t cols, int64_t ld,
                               const BlockQuantSpec& spec) {
    const Fp8Format format = fp8_format_of(spec);
    check_matrix(rows, cols, ld, "ld");
    const TileGrid g = make_grid(rows, cols, spec.tile);
    BlockQuantized q;
    q.rows = rows;
    q.cols = cols;
    q.spec = spec;
    q.codes.resize(static_cast<size_t>(rows * cols));
    q.scales.assign(static_cast<size_t>(g.grid_rows * g.grid_cols), 1.0f);
    if (rows == 0 || cols == 0) return q;
    if (spec.scaled) compute_scales(x, ld, g, fp8_max(format), spec.pow2_scales, q.scales.data());
    // The codes come from the bit-exact encoder, so fake_quantize (value-grid rounding) is checked
    // against it whenever the two are compared.
    const int nt = team_for(rows * cols);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < rows; ++r) {
        const float* row_scales = q.scales.data() + (r / g.tile_rows) * g.grid_cols;
        for (int64_t c = 0; c < cols; ++c)
            q.codes[r * cols + c] = fp8_encode(x[r * ld + c] / row_scales[c / g.tile_cols], format);
    }
    return q;
}

void dequantize_blocks(const BlockQuantized& q, float* out, int64_t ld_out) {
    const Fp8Format format = fp8_format_of(q.spec);
    check_matrix(q.rows, q.cols, ld_out, "ld_out");
    const TileGrid g = make_grid(q.rows, q.cols, q.spec.tile);
    if (q.codes.size() != static_cast<size_t>(q.rows * q.cols) ||
        q.scales.size() != static_cast<size_t>(g.grid_rows * g.grid_cols))
        throw ConfigError("codes", "sizes do not match the " + std::to_string(q.rows) + "x" +
                                       std::to_string(q.cols) + " shape and its tile grid");
    float table[256];  // every code's value: decoding becomes a lookup
    for (int code = 0; code < 256; ++code)
        table[code] = fp8_decode(static_cast<uint8_t>(code), format);
    const int nt = team_for(q.rows * q.cols);
#pragma omp parallel for schedule(static) num_threads(nt)
    for (int64_t r = 0; r < q.rows; ++r) {
        const float* row_scales = q.scales.data() + (r / g.tile_rows) * g.grid_cols;
        for (int64_t c = 0; c < q.cols; ++c)
            out[r * ld_out + c] = table[q.codes[r * q.cols + c]] * row_scales[c / g.tile_cols];
    }
}

}  // namespace moe
