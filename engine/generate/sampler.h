#pragma once
// Next-token choice from logits: greedy (temperature 0), or sampling with a temperature, top-k
// and top-p (nucleus) filters, in that order, from a seeded generator - the same seed gives the
// same tokens on any machine (the draw uses only integer steps and one double per token).
#include <cstdint>
#include <random>
#include <vector>

namespace moe {

struct SamplingSettings {
    double temperature = 0.0;  // 0: greedy (argmax, lowest id on ties)
    int64_t top_k = 0;         // 0: no top-k filter
    double top_p = 1.0;        // 1: no nucleus filter
    uint64_t seed = 0;
    // ConfigError naming the field (temperature in [0, 100], top_k >= 0, top_p in (0, 1]).
    void validate() const;
};

class Sampler {
public:
    explicit Sampler(const SamplingSettings& settings);
    // logits [vocab] on the host. Error when every logit is NaN.
    int32_t next(const float* logits, int64_t vocab);
    static int32_t argmax(const float* logits, int64_t vocab);

private:
    SamplingSettings s_;
    std::mt19937_64 rng_;
    std::vector<std::pair<float, int32_t>> cand_;
    std::vector<double> probs_;
};

}  // namespace moe
