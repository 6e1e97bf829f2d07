#include "quant/int_quant.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace moe {

namespace {

void validate(const IntQuantSpec& spec, int64_t rows, int64_t cols) {
    if (spec.bits != 2 && spec.bits != 3 && spec.bits != 4 && spec.bits != 8)
        throw ConfigError("bits", "must be 2, 3, 4 or 8, got " + std::to_string(spec.bits));
    if (rows < 0 || cols < 0)
        throw ConfigError("shape", "must be non-negative, got " + std::to_string(rows) + "x" +
                                       std::to_string(cols));
    if (spec.group_size < 0)
        throw ConfigError("group_size", "must be >= 0, got " + std::to_string(spec.group_size));
    if (spec.group_size > 0 && cols % spec.group_size != 0)
        throw ConfigError("group_size", "must divide the " + std::to_string(cols) +
                                            " columns, got " + std::to_string(spec.group_size));
}

int64_t group_width(const IntQuantSpec& spec, int64_t cols) {
    return spec.group_size == 0 ? cols : spec.group_size;
}

int64_t groups_in_row(const IntQuantSpec& spec, int64_t cols) {
    if (cols == 0) return 0;
    return spec.group_size == 0 ? 1 : cols / spec.group_size;
}

int64_t row_bytes(int bits, int64_t cols) {
    return bits == 8 ? cols : (cols + 1) / 2;
}

int team_for(int64_t elements) {
    return elements >= (1 << 15) ? omp_get_max_threads() : 1;
}

// One group's parameters: w ~ (q - zero) * scale.
struct GroupParams {
    float scale = 1.0f;
    int zero = 0;
};

// Symmetric: scale = amax / (2^(b-1) - 1). Asymmetric: the range [min, max] widened to include 0,
// so an exact zero weight stays exact and the zero point lands in [0, 2^b - 1] without clamping.
GroupParams group_params(const float* w, int64_t n, const IntQuantSpec& spec) {
    GroupParams p;
    if (spec.symmetric) {
        float amax = 0.0f;
        for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(w[i]));
        const float qmax = static_cast<float>((1 << (spec.bits - 1)) - 1);
        if (amax > 0.0f) p.scale = amax / qmax;
        return p;
    }
    float lo = 0.0f, hi = 0.0f;
    for (int64_t i = 0; i < n; ++i) lo = std::min(lo, w[i]), hi = std::max(hi, w[i]);
    const int levels = (1 << spec.bits) - 1;
    if (hi > lo) p.scale = (hi - lo) / static_cast<float>(levels);
    p.zero = std::clamp(static_cast<int>(std::nearbyint(-lo / p.scale)), 0, levels);
    return p;
}

// Round to nearest, ties to even, clamped to the code range.
int quantize_value(float w, const GroupParams& p, const IntQuantSpec& spec) {
    const int lo = spec.symmetric ? -((1 << (spec.bits - 1)) - 1) : 0;
    const int hi = spec.symmetric ? (1 << (spec.bits - 1)) - 1 : (1 << spec.bits) - 1;
    const float q = std::nearbyint(w / p.scale) + static_cast<float>(p.zero);
    return static_cast<int>(std::clamp(q, static_cast<float>(lo), static_cast<float>(hi)));
}

// A code's storage: low 8 (int8) or 4 (int4, int3, int2) bits of its two's complement
// (symmetric) or unsigned value (asymmetric), and back. Narrower codes sign-extend from their
// nibble like int4's.
uint8_t to_storage(int q) {
    return static_cast<uint8_t>(q);
}

int from_storage(uint8_t stored, const IntQuantSpec& spec) {
    if (!spec.symmetric) return stored;
    if (spec.bits == 8) return static_cast<int8_t>(stored);
    return stored >= 8 ? static_cast<int>(stored) - 16 : stored;  // 4-bit two's complement
}

}  // namespace

int64_t IntQuantized::groups_per_row() const {
    return groups_in_row(spec, cols);
}

int64_t IntQuantized::bytes() const {
    return static_cast<int64_t>(data.size() + scales.size() * sizeof(float) + zeros.size());
}

IntQuantized quantize_int(const float* w, int64_t rows, int64_t cols, const IntQuantSpec& spec) {
    validate(spec, rows, cols);
    IntQuantized q;
    q.rows = rows;
    q.cols = cols;
    q.spec = spec;
    const int64_t groups = groups_in_row(spec, cols), width = group_width(spec, cols);
    const int64_t stride = row_bytes(spec.bits, cols);
    q.data.assign(static_cast<size_t>(rows * stride), 0);
    q.scales.assign(static_cast<size_t>(rows * groups), 1.0f);
    if (!spec.symmetric) q.zeros.assign(static_cast<size_t>(rows * groups), 0);
#pragma omp parallel for schedule(static) num_threads(team_for(rows* cols))
    for (int64_t r = 0; r < rows; ++r) {
        uint8_t* row_data = q.data.data() + r * stride;
        for (int64_t g = 0; g < groups; ++g) {
            const float* wg = w + r * cols + g * width;
            const GroupParams p = group_params(wg, width, spec);
            q.scales[r * groups + g] = p.scale;
            if (!spec.symmetric) q.zeros[r * groups + g] = static_cast<uint8_t>(p.zero);
            for (int64_t i = 0; i < width; ++i) {
                const int64_t c = g * width + i;
                const uint8_t stored = to_storage(quantize_value(wg[i], p, spec));
                if (spec.bits == 8)
                    row_data[c] = stored;
                else  // element 2i in the low nibble of byte i (int4, int3, int2)
                    row_data[c / 2] |= static_cast<uint8_t>((stored & 0x0F) << (4 * (c % 2)));
            }
        }
    }
    return q;
}

void dequantize_int(const IntQuantized& q, float* out) {
    validate(q.spec, q.rows, q.cols);
    const int64_t groups = groups_in_row(q.spec, q.cols), width = group_width(q.spec, q.cols);
    const int64_t stride = row_bytes(q.spec.bits, q.cols);
    if (q.data.size() != static_cast<size_t>(q.rows * stride) ||
        q.scales.size() != static_cast<size_t>(q.rows * groups) ||
        q.zeros.size() != (q.spec.symmetric ? size_t{0} : static_cast<size_t>(q.rows * groups)))
        throw ConfigError("data", "sizes do not match the " + std::to_string(q.rows) + "x" +
                                      std::to_string(q.cols) + " shape and its spec");
#pragma omp parallel for schedule(static) num_threads(team_for(q.rows* q.cols))
    for (int64_t r = 0; r < q.rows; ++r) {
        const uint8_t* row_data = q.data.data() + r * stride;
        for (int64_t c = 0; c < q.cols; ++c) {
            const int64_t g = r * groups + c / width;
            const uint8_t stored =
                q.spec.bits == 8 ? row_data[c]
                                 : static_cast<uint8_t>((row_data[c / 2] >> (4 * (c % 2))) & 0x0F);
            const int zero = q.spec.symmetric ? 0 : q.zeros[g];
            out[r * q.cols + c] =
                static_cast<float>(from_storage(stored, q.spec) - zero) * q.scales[g];
        }
    }
}

// dequantize(quantize(w)) without the codes: the same rounding and the same float expression
// as dequantize_int, group by group, allocating nothing (QAT calls it for every weight at every
// step).
void fake_quantize_int(const float* w, int64_t rows, int64_t cols, const IntQuantSpec& spec,
                       float* out) {
    validate(spec, rows, cols);
    const int64_t groups = groups_in_row(spec, cols), width = group_width(spec, cols);
#pragma omp parallel for schedule(static) num_threads(team_for(rows* cols))
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g = 0; g < groups; ++g) {
            const float* wg = w + r * cols + g * width;
            float* og = out + r * cols + g * width;
            const GroupParams p = group_params(wg, width, spec);
            const int zero = spec.symmetric ? 0 : p.zero;
            for (int64_t i = 0; i < width; ++i)  // og may be wg: each value is read first
                og[i] = static_cast<float>(quantize_value(wg[i], p, spec) - zero) * p.scale;
        }
    }
}

std::vector<uint8_t> pack_int4(const std::vector<uint8_t>& nibbles) {
    std::vector<uint8_t> packed((nibbles.size() + 1) / 2, 0);
    for (size_t i = 0; i < nibbles.size(); ++i)
        packed[i / 2] |= static_cast<uint8_t>((nibbles[i] & 0x0F) << (4 * (i % 2)));
    return packed;
}

std::vector<uint8_t> unpack_int4(const std::vector<uint8_t>& packed, int64_t count) {
    if (count < 0 || count > static_cast<int64_t>(packed.size()) * 2)
        throw ConfigError("count", "must be in 0.." + std::to_string(packed.size() * 2) + " for " +
                                       std::to_string(packed.size()) + " bytes, got " +
                                       std::to_string(count));
    std::vector<uint8_t> nibbles(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) nibbles[i] = (packed[i / 2] >> (4 * (i % 2))) & 0x0F;
    return nibbles;
}

}  // namespace moe
