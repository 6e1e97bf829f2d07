#pragma once
// Small numeric helpers shared by the CPU backend's files (internal, not part of the API).
#include <bit>
#include <cmath>
#include <cstdint>

namespace moe::cpu {

// Sigmoid without overflow: exp is only taken of non-positive arguments.
inline float sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
    const float e = std::exp(x);
    return e / (1.0f + e);
}

// exp(x) for float, branch-free so that loops calling it vectorize (std::exp is an opaque libm
// call). Cody-Waite range reduction x = n ln2 + r, |r| <= ln2/2, then a degree-6 polynomial for
// e^r (Cephes' expf coefficients) and 2^n put into the exponent bits: within 2 ulp of exp in
// the normal range. x < -87.3 gives 0 (std::exp would give a subnormal), x > 88.3 is clamped.
inline float exp_vec(float x) {
    const float xc = std::min(std::max(x, -87.3f), 88.3f);
    // n = round(x / ln2): adding 1.5 * 2^23 pushes the fraction out under round-to-nearest.
    const float shifter = 12582912.0f;
    const float n = (xc * 1.44269504088896341f + shifter) - shifter;
    const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 split hi + lo
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float y = p * (r * r) + r + 1.0f;
    const float scale = std::bit_cast<float>((static_cast<int32_t>(n) + 127) << 23);
    return x < -87.3f ? 0.0f : y * scale;
}

// Contiguous chunk [begin, end) of `n` items for part `i` of `parts` (static schedule by hand,
// for regions that need the thread id to address per-thread partials).
inline void chunk(int64_t n, int parts, int i, int64_t& begin, int64_t& end) {
    const int64_t base = n / parts, rem = n % parts;
    begin = i * base + (i < rem ? i : rem);
    end = begin + base + (i < rem ? 1 : 0);
}

}  // namespace moe::cpu
