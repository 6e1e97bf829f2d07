// Dynamic top-k sparse attention on the CPU backend against dense causal attention and a
// sliding window of the same number of keys, one sequence of T tokens with DeepSeek-shaped heads
// (docs/performance.md; scripts/sparse-attention-study.sh runs it). Prints milliseconds for the
// forward and backward passes, the indexer's own cost (scores, top-k, its backward) and each
// method's time as a ratio of dense attention measured in the same run (round robin, best of --reps).
//
//   build/bench/moe-bench-sparse-attention --T 2048 --topk 128,256,512
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <cmath>
#include "backend/cpu/cpu_backend.h"

namespace {

using Clock = std::chrono::steady_clock;

std::vector<float> random_values(size_t n, uint64_t seed) {
    std::vector<float> v(n);
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (float& x : v) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        x = static_cast<float>(static_cast<double>(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
    return v;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Dynamic top-k sparse attention vs dense causal and sliding-window attention"};
    int64_t T = 2048, H = 16, dk = 192, dv = 128, HI = 4, dI = 64;
    std::vector<int64_t> topk = {128, 256, 512};
    int threads = 0, reps = 3;
    app.add_option("--T", T, "Tokens in the sequence");
    app.add_option("--heads", H, "Attention heads");
    app.add_option("--dk", dk, "Query/key head dim (DeepSeek-V3: 128 + 64 rotary)");
    app.add_option("--dv", dv, "Value head dim");
    app.add_option("--topk", topk, "Keys per query (comma-separated)")->delimiter(',');
    app.add_option("--index-heads", HI, "Indexer heads");
    app.add_option("--index-dim", dI, "Indexer head dim");
    app.add_option("--threads", threads, "CPU threads (0 = all cores)");
    app.add_option("--reps", reps, "Repetitions (the best is reported)");
    CLI11_PARSE(app, argc, argv);

    moe::CpuBackend be(threads);
    const float scale = 1.0f / std::sqrt(float(dk));
    const auto q = random_values(size_t(T * H * dk), 1), k = random_values(size_t(T * H * dk), 2),
               v = random_values(size_t(T * H * dv), 3),
               dout = random_values(size_t(T * H * dv), 4);
    const auto qi = random_values(size_t(T * HI * dI), 5), ki = random_values(size_t(T * dI), 6),
               w = random_values(size_t(T * HI), 7);
    std::vector<float> out(size_t(T * H * dv)), dq(q.size()), dk_(k.size()), dv_(v.size());
    std::vector<float> probs(size_t(H * T * T));

    std::printf("T %lld, %lld heads, dk %lld, dv %lld; indexer %lld heads x %lld; %s; best of %d\n",
                (long long)T, (long long)H, (long long)dk, (long long)dv, (long long)HI,
                (long long)dI, be.describe().c_str(), reps);
    // Round robin: every repetition times every method once, and each method's best is kept,
    // so a busy machine slows all of them alike and the ratios stay meaningful.
    struct Timing {
        double fwd = 1e300, bwd = 1e300;
    };
    auto keep_best = [](double& best, const std::function<void()>& f) {
        const auto t0 = Clock::now();
        f();
        best = std::min(best, std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    };
    const float iscale = 1.0f / std::sqrt(float(dI));
    Timing dense;
    std::vector<Timing> window(topk.size()), sparse(topk.size());
    std::vector<double> idx_f(topk.size(), 1e300), sel(topk.size(), 1e300), kl(topk.size(), 1e300),
        idx_b(topk.size(), 1e300);
    std::vector<float> scores(size_t(T * T)), dscores(size_t(T * T));
    std::vector<float> dqi(qi.size()), dki(ki.size()), dw(w.size());
    std::vector<std::vector<int32_t>> idx(topk.size());
    std::vector<std::vector<float>> sprobs(topk.size());
    for (size_t i = 0; i < topk.size(); ++i) {
        idx[i].resize(size_t(T * topk[i]));
        sprobs[i].resize(size_t(T * H * topk[i]));
    }
    for (int r = 0; r < reps; ++r) {
        keep_best(dense.fwd, [&] {
            be.attention_forward(q.data(), k.data(), v.data(), 1, T, H, dk, dv, scale, 0,
                                 probs.data(), out.data());
        });
        keep_best(dense.bwd, [&] {
            be.attention_backward(dout.data(), q.data(), k.data(), v.data(), probs.data(), 1, T, H,
                                  dk, dv, scale, 0, dq.data(), dk_.data(), dv_.data());
        });
        for (size_t i = 0; i < topk.size(); ++i) {
            const int64_t K = topk[i];
            keep_best(window[i].fwd, [&] {
                be.attention_forward(q.data(), k.data(), v.data(), 1, T, H, dk, dv, scale, K,
                                     probs.data(), out.data());
            });
            keep_best(window[i].bwd, [&] {
                be.attention_backward(dout.data(), q.data(), k.data(), v.data(), probs.data(), 1,
                                      T, H, dk, dv, scale, K, dq.data(), dk_.data(), dv_.data());
            });
            keep_best(idx_f[i], [&] {
                be.indexer_scores_forward(qi.data(), ki.data(), w.data(), 1, T, T, 0, HI, dI,
                                          iscale, scores.data());
            });
            keep_best(sel[i], [&] { be.topk_keys(scores.data(), 1, T, T, 0, K, idx[i].data()); });
            keep_best(sparse[i].fwd, [&] {
                be.sparse_attention_forward(q.data(), k.data(), v.data(), idx[i].data(), 1, T, H,
                                            dk, dv, K, scale, sprobs[i].data(), out.data());
            });
            keep_best(sparse[i].bwd, [&] {
                be.sparse_attention_backward(dout.data(), q.data(), k.data(), v.data(),
                                             sprobs[i].data(), idx[i].data(), 1, T, H, dk, dv, K,
                                             scale, dq.data(), dk_.data(), dv_.data());
            });
            keep_best(kl[i], [&] {
                be.indexer_loss(scores.data(), sprobs[i].data(), idx[i].data(), 1, T, H, K, 1.0f,
                                dscores.data());
            });
            keep_best(idx_b[i], [&] {
                be.indexer_scores_backward(dscores.data(), qi.data(), ki.data(), w.data(), 1, T, T,
                                           0, HI, dI, iscale, dqi.data(), dki.data(), dw.data());
            });
        }
    }

    // Average keys a query sees.
    auto avg_keys = [&](int64_t kk) {
        double s = 0;
        for (int64_t t = 0; t < T; ++t) s += double(std::min<int64_t>(t + 1, kk > 0 ? kk : T));
        return s / double(T);
    };
    const double dense_ms = dense.fwd + dense.bwd;
    auto line = [&](const std::string& name, double keys, double f, double b) {
        std::printf("%-34s %12.1f %10.1f %10.1f %10.1f %9.2f\n", name.c_str(), keys, f, b, f + b,
                    (f + b) / dense_ms);
    };
    std::printf("%-34s %12s %10s %10s %10s %9s\n", "attention", "keys/query", "fwd ms", "bwd ms",
                "total ms", "vs dense");
    line("dense causal", avg_keys(0), dense.fwd, dense.bwd);
    for (size_t i = 0; i < topk.size(); ++i) {
        const std::string K = std::to_string(topk[i]);
        const double keys = avg_keys(topk[i]);
        line("sliding window " + K, keys, window[i].fwd, window[i].bwd);
        line("top-" + K + " sparse (attention only)", keys, sparse[i].fwd, sparse[i].bwd);
        line("top-" + K + " + indexer, top-k, KL", keys, sparse[i].fwd + idx_f[i] + sel[i] + kl[i],
             sparse[i].bwd + idx_b[i]);
        std::printf("    indexer scores %.1f ms, top-k %.1f ms, KL %.1f ms, indexer backward %.1f "
                    "ms\n",
                    idx_f[i], sel[i], kl[i], idx_b[i]);
    }
    return 0;
}
