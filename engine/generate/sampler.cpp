#include "generate/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace moe {

void SamplingSettings::validate() const {
    if (!(temperature >= 0.0 && temperature <= 100.0))
        throw ConfigError("temperature",
                          "must be in [0, 100] (0 is greedy), got " + std::to_string(temperature));
    if (top_k < 0)
        throw ConfigError("top_k", "must be >= 0 (0: off), got " + std::to_string(top_k));
    if (!(top_p > 0.0 && top_p <= 1.0))
        throw ConfigError("top_p", "must be in (0, 1] (1: off), got " + std::to_string(top_p));
}

Sampler::Sampler(const SamplingSettings& settings) : s_(settings), rng_(settings.seed) {
    settings.validate();
}

int32_t Sampler::argmax(const float* logits, int64_t vocab) {
    int64_t best = -1;
    for (int64_t i = 0; i < vocab; ++i)
        if (!std::isnan(logits[i]) && (best < 0 || logits[i] > logits[best])) best = i;
    if (best < 0) throw Error("generation: every logit is NaN (a diverged model?)");
    return static_cast<int32_t>(best);
}

int32_t Sampler::next(const float* logits, int64_t vocab) {
    if (s_.temperature == 0.0) return argmax(logits, vocab);
    cand_.clear();
    for (int64_t i = 0; i < vocab; ++i)
        if (!std::isnan(logits[i])) cand_.emplace_back(logits[i], static_cast<int32_t>(i));
    if (cand_.empty()) throw Error("generation: every logit is NaN (a diverged model?)");
    // Highest logit first, lowest id among equals: a total order, so the result is the same on
    // any standard library.
    const auto better = [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    };
    size_t keep = cand_.size();
    if (s_.top_k > 0 && size_t(s_.top_k) < keep) {
        std::partial_sort(cand_.begin(), cand_.begin() + s_.top_k, cand_.end(), better);
        keep = size_t(s_.top_k);
    } else {
        std::sort(cand_.begin(), cand_.end(), better);
    }
    probs_.resize(keep);
    const double top = cand_[0].first;
    double total = 0.0;
    for (size_t i = 0; i < keep; ++i) {
        probs_[i] = std::exp((double(cand_[i].first) - top) / s_.temperature);
        total += probs_[i];
    }
    if (s_.top_p < 1.0) {  // the smallest prefix whose mass reaches top_p
        double mass = 0.0;
        size_t n = 0;
        while (n < keep) {
            mass += probs_[n++] / total;
            if (mass >= s_.top_p) break;
        }
        keep = n;
        total = 0.0;
        for (size_t i = 0; i < keep; ++i) total += probs_[i];
    }
    // One uniform double from 53 random bits (not std::uniform_real_distribution, whose
    // algorithm differs between standard libraries).
    const double u = double(rng_() >> 11) * 0x1.0p-53 * total;
    double acc = 0.0;
    for (size_t i = 0; i < keep; ++i) {
        acc += probs_[i];
        if (u < acc) return cand_[i].second;
    }
    return cand_[keep - 1].second;
}

}  // namespace moe
