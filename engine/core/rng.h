#pragma once
// Counter-based random numbers: value i of stream s under seed k is a pure function of (k, s, i).
// Any element can be generated independently of the others, in any order and on any device,
// so initialization and data sampling are reproducible across thread counts and backends.
#include <cstdint>
#include <string_view>

namespace moe {

// 64 well-mixed bits for (seed, stream, counter).
uint64_t random_bits(uint64_t seed, uint64_t stream, uint64_t counter);
// Uniform in [0, 1).
double random_uniform(uint64_t seed, uint64_t stream, uint64_t counter);
// Standard normal (Box-Muller on two uniforms derived from the same counter).
double random_normal(uint64_t seed, uint64_t stream, uint64_t counter);
// A stream id from a name (FNV-1a), e.g. a parameter's name.
uint64_t stream_id(std::string_view name);

}  // namespace moe
