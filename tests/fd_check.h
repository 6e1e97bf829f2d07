#pragma once
// Central finite differences against an analytic gradient, shared by the op-level suites
// (tst_backend_ops, tst_sparse_attention). Needs QtTest (CHECK_FD verifies and logs).
#include <QtTest>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

namespace moe::test {

// Central finite differences of loss() with respect to x, compared with `analytic`.
// loss() returns NaN when the perturbation changed a discrete choice (gate top-k); such
// coordinates are skipped and counted. The error of a coordinate is |a - n| / max(|a|, |n|,
// 1e-2 * max|n|), so near-zero gradients are judged against the gradient's overall scale.
struct FdResult {
    double worst = 0.0;
    int checked = 0;
    int skipped = 0;
};

inline FdResult fd_check(std::vector<float>& x, const std::vector<float>& analytic,
                         const std::function<double()>& loss, double h, int max_samples = 64,
                         uint64_t seed = 7) {
    std::vector<size_t> idx(x.size());
    std::iota(idx.begin(), idx.end(), size_t{0});
    if (idx.size() > static_cast<size_t>(max_samples)) {
        std::mt19937_64 rng(seed);
        std::shuffle(idx.begin(), idx.end(), rng);
        idx.resize(static_cast<size_t>(max_samples));
    }
    std::vector<std::pair<double, double>> pairs;  // (analytic, numeric)
    FdResult res;
    for (size_t i : idx) {
        const float orig = x[i];
        const float xp = static_cast<float>(orig + h), xm = static_cast<float>(orig - h);
        x[i] = xp;
        const double lp = loss();
        x[i] = xm;
        const double lm = loss();
        x[i] = orig;
        if (std::isnan(lp) || std::isnan(lm)) {
            ++res.skipped;
            continue;
        }
        pairs.emplace_back(analytic[i], (lp - lm) / (static_cast<double>(xp) - xm));
    }
    double scale = 0.0;
    for (auto& [a, n] : pairs) scale = std::max(scale, std::fabs(n));
    for (auto& [a, n] : pairs) {
        const double denom = std::max({std::fabs(a), std::fabs(n), 1e-2 * scale, 1e-12});
        res.worst = std::max(res.worst, std::fabs(a - n) / denom);
        if (std::isnan(a)) res.worst = INFINITY;
    }
    res.checked = static_cast<int>(pairs.size());
    return res;
}

// Logs and verifies one FD result.
#define CHECK_FD(name, res, tol)                                                         \
    do {                                                                                 \
        qInfo("FD %-28s worst rel err %.3e over %d coords (%d skipped), tol %.0e", name, \
              (res).worst, (res).checked, (res).skipped, (tol));                         \
        QVERIFY2((res).checked > 0, name);                                               \
        QVERIFY2((res).worst < (tol), name);                                             \
    } while (0)

inline constexpr double kFdTol = 1e-2;

}  // namespace moe::test
