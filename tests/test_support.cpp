#include "test_support.h"

#include <algorithm>
#include <cmath>

namespace moe::test {

namespace {
uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
}  // namespace

void fill_uniform(float* x, int64_t n, uint64_t seed, float scale) {
    uint64_t state = seed * 0x2545F4914F6CDD1Dull + 1;
    for (int64_t i = 0; i < n; ++i) {
        const double u = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;  // [0, 1)
        x[i] = static_cast<float>((2.0 * u - 1.0) * scale);
    }
}

std::vector<float> random_vector(int64_t n, uint64_t seed, float scale) {
    std::vector<float> v(static_cast<size_t>(n));
    fill_uniform(v.data(), n, seed, scale);
    return v;
}

double max_relative_error(const float* a, const float* b, int64_t n, double floor) {
    double worst = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const double denom = std::max(std::fabs(static_cast<double>(b[i])), floor);
        worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]) / denom);
        if (std::isnan(a[i]) != std::isnan(b[i])) return INFINITY;
    }
    return worst;
}

double relative_l2_error(const float* a, const float* b, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(a[i]) - b[i];
        num += d * d;
        den += static_cast<double>(b[i]) * b[i];
    }
    if (std::isnan(num)) return INFINITY;
    return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

std::string source_path(const std::string& relative) {
    return std::string(MOE_SOURCE_DIR) + "/" + relative;
}

}  // namespace moe::test
