#pragma once
// Small numeric helpers shared by the CPU backend's files (internal, not part of the API).
#include <cmath>

namespace moe::cpu {

// Sigmoid without overflow: exp is only taken of non-positive arguments.
inline float sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + std::exp(-x));
    const float e = std::exp(x);
    return e / (1.0f + e);
}

// Contiguous chunk [begin, end) of `n` items for part `i` of `parts` (static schedule by hand,
// for regions that need the thread id to address per-thread partials).
inline void chunk(int64_t n, int parts, int i, int64_t& begin, int64_t& end) {
    const int64_t base = n / parts, rem = n % parts;
    begin = i * base + (i < rem ? i : rem);
    end = begin + base + (i < rem ? 1 : 0);
}

}  // namespace moe::cpu
