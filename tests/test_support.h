#pragma once
// Small helpers shared by the test suites: deterministic random data and error measures.
#include <cstdint>
#include <string>
#include <vector>

namespace moe::test {

// Uniform values in [-scale, scale], deterministic for a seed.
void fill_uniform(float* x, int64_t n, uint64_t seed, float scale = 1.0f);
std::vector<float> random_vector(int64_t n, uint64_t seed, float scale = 1.0f);

// max_i |a_i - b_i| / max(|b_i|, floor): the worst relative error, with `floor` keeping tiny
// reference values from dominating.
double max_relative_error(const float* a, const float* b, int64_t n, double floor = 1e-6);
// ||a - b|| / ||b|| over the whole array.
double relative_l2_error(const float* a, const float* b, int64_t n);

// Path inside the source tree (tests read presets and the PyTorch reference from there).
std::string source_path(const std::string& relative);

}  // namespace moe::test
