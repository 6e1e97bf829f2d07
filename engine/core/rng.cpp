#include "core/rng.h"

#include <cmath>

namespace moe {

namespace {
uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
}  // namespace

uint64_t random_bits(uint64_t seed, uint64_t stream, uint64_t counter) {
    uint64_t x = mix64(seed + 0x9E3779B97F4A7C15ull);
    x = mix64(x ^ (stream * 0xD6E8FEB86659FD93ull));
    return mix64(x ^ (counter * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull));
}

double random_uniform(uint64_t seed, uint64_t stream, uint64_t counter) {
    return static_cast<double>(random_bits(seed, stream, counter) >> 11) * 0x1.0p-53;
}

double random_normal(uint64_t seed, uint64_t stream, uint64_t counter) {
    const uint64_t bits = random_bits(seed, stream, counter);
    // Two 32-bit uniforms in (0, 1]; the +1 keeps log() finite.
    const double u1 = (static_cast<double>(bits >> 32) + 1.0) * 0x1.0p-32;
    const double u2 = static_cast<double>(bits & 0xFFFFFFFFull) * 0x1.0p-32;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

uint64_t stream_id(std::string_view name) {
    uint64_t h = 1469598103934665603ull;
    for (unsigned char c : name) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}

}  // namespace moe
