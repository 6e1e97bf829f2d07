// moe-bench-train: training throughput of the CPU engine on one model config.
//   moe-bench-train --config ../shared/bench/d512.json --batch 8 --seq 256 --threads 2
// A step is what the trainer does: forward, backward, global-norm clipping at 1.0, AdamW
// (betas 0.9/0.95, weight decay 0.1), fp32, no MTP. Prints
//   1. tokens/s (B*T / seconds per step): median and best of --steps steps after --warmup;
//   2. a per-op profile of --profile-steps further steps (TimingBackend), with the GEMM share
//      of the step time and the GEMM rate the engine reaches;
//   3. OpenBLAS's own sgemm rate, same thread count, on 2048x512x512 and on the shapes that
//      take the most GEMM time in the model, so the engine's rate has a ceiling to compare to.
// The last line, "BENCH key=value ...", is for scripts (scripts/bench-cpu.sh).
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/model.h"
#include "model/summary.h"
#include "timing_backend.h"
#include "train/adamw.h"
#include "train/grad_clip.h"

namespace {

using Clock = std::chrono::steady_clock;
using moe::bench::TimingBackend;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

// Uniformly random tokens; batch i of a run is a pure function of (seed, i).
moe::Batch random_batch(int64_t vocab, int64_t B, int64_t T, uint64_t seed, uint64_t index) {
    moe::Batch b;
    b.batch = B;
    b.seq_len = T;
    b.tokens.resize(static_cast<size_t>(B * (T + 1)));
    for (size_t i = 0; i < b.tokens.size(); ++i)
        b.tokens[i] = static_cast<int32_t>(moe::random_bits(seed, 100 + index, i) % uint64_t(vocab));
    return b;
}

struct StepTimes {
    double forward = 0, backward = 0, optimizer = 0;
    double total() const { return forward + backward + optimizer; }
};

// One training step as the trainer runs it (no gradient accumulation, no bias updates).
StepTimes train_step(moe::Model& model, moe::AdamW& opt, const moe::Batch& batch, double lr,
                     double* loss) {
    StepTimes t;
    moe::ForwardOptions fo;
    fo.mtp_lambda = 0.0;
    auto t0 = Clock::now();
    const moe::LossReport r = model.forward(batch, fo);
    t.forward = seconds_since(t0);
    t0 = Clock::now();
    model.parameters().zero_grads();
    model.backward();
    t.backward = seconds_since(t0);
    t0 = Clock::now();
    const moe::GradNorm gn = moe::global_grad_norm(model.parameters(), model.backend(), 1.0);
    if (gn.finite) opt.step(lr, gn.factor);
    t.optimizer = seconds_since(t0);
    if (loss) *loss = r.total;
    return t;
}

// OpenBLAS sgemm alone, row-major C = op(A) op(B) with beta 0: best-of-3 GFLOP/s over batches
// of calls lasting >= ~0.15 s each, after one untimed call.
double blas_gflops(bool ta, bool tb, int64_t M, int64_t N, int64_t K) {
    std::vector<float> A(static_cast<size_t>(M * K)), B(static_cast<size_t>(K * N)),
        C(static_cast<size_t>(M * N));
    for (size_t i = 0; i < A.size(); ++i) A[i] = float(moe::random_normal(1, 1, i));
    for (size_t i = 0; i < B.size(); ++i) B[i] = float(moe::random_normal(1, 2, i));
    const int lda = ta ? int(M) : int(K), ldb = tb ? int(K) : int(N);
    auto call = [&] {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    int(M), int(N), int(K), 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(),
                    int(N));
    };
    call();
    const double flops = 2.0 * double(M) * double(N) * double(K);
    int reps = 1;
    double best = 0.0;
    for (int trial = 0; trial < 3; ++trial) {
        double dt = 0.0;
        while (true) {
            const auto t0 = Clock::now();
            for (int r = 0; r < reps; ++r) call();
            dt = seconds_since(t0);
            if (dt >= 0.15) break;
            reps *= 2;
        }
        best = std::max(best, flops * reps / dt / 1e9);
    }
    return best;
}

std::string shape_name(const TimingBackend::GemmShape& s) {
    const auto& [ta, tb, M, N, K] = s;
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s%s %lldx%lldx%lld", ta ? "T" : "N", tb ? "T" : "N",
                  static_cast<long long>(M), static_cast<long long>(N),
                  static_cast<long long>(K));
    return buf;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"moe-bench-train: CPU training throughput (tokens/s), per-op profile, GEMM rate"};
    std::string config_path;
    int64_t B = 16, T = 128;
    int threads = 2, steps = 10, warmup = 3, profile_steps = 3, top = 12;
    uint64_t seed = 1234;
    bool no_blas = false;
    app.add_option("--config", config_path, "Model config (HF DeepseekV3Config JSON)")->required();
    app.add_option("--batch", B, "Sequences per step")->check(CLI::PositiveNumber);
    app.add_option("--seq", T, "Tokens per sequence")->check(CLI::PositiveNumber);
    app.add_option("--threads", threads, "CPU threads (engine and OpenBLAS)")->check(CLI::PositiveNumber);
    app.add_option("--steps", steps, "Timed steps")->check(CLI::PositiveNumber);
    app.add_option("--warmup", warmup, "Untimed steps first")->check(CLI::NonNegativeNumber);
    app.add_option("--profile-steps", profile_steps, "Steps profiled op by op (after the timed ones)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--top", top, "Ops and GEMM shapes listed in the profile");
    app.add_option("--seed", seed, "Seed of the weights and the batches");
    app.add_flag("--no-blas", no_blas, "Skip the standalone OpenBLAS sgemm measurements");
    CLI11_PARSE(app, argc, argv);

    try {
        moe::ModelConfig cfg = moe::ModelConfig::load(config_path);
        cfg.num_nextn_predict_layers = 0;  // the benchmark step has no MTP
        moe::CpuBackend cpu(threads);
        TimingBackend be(cpu);
        moe::Model model(cfg, be);
        model.init_weights(seed);
        moe::OptimizerSettings os;
        os.beta1 = 0.9;
        os.beta2 = 0.95;
        os.weight_decay = 0.1;
        os.grad_clip = 1.0;
        moe::AdamW opt(model.parameters(), be, os);
        const double lr = 1e-3;
        const double tokens = double(B * T);
        const moe::ModelSummary summary = moe::summarize(cfg, T);

        std::printf("config %s: %lld trainable parameters, batch %lld x seq %lld, %d threads\n",
                    config_path.c_str(), static_cast<long long>(model.parameters().count_trainable()),
                    static_cast<long long>(B), static_cast<long long>(T), cpu.threads());

        // 1. Throughput, profiling off.
        be.set_enabled(false);
        double loss0 = 0.0, loss = 0.0;
        int step_index = 0;
        for (int i = 0; i < warmup; ++i, ++step_index)
            train_step(model, opt, random_batch(cfg.vocab_size, B, T, seed, step_index), lr,
                       i == 0 ? &loss0 : &loss);
        std::vector<double> total, fwd, bwd, optim;
        for (int i = 0; i < steps; ++i, ++step_index) {
            // The batch is made outside the timed region.
            const moe::Batch batch = random_batch(cfg.vocab_size, B, T, seed, step_index);
            const StepTimes t = train_step(model, opt, batch, lr, &loss);
            total.push_back(t.total());
            fwd.push_back(t.forward);
            bwd.push_back(t.backward);
            optim.push_back(t.optimizer);
        }
        const double med = median(total);
        const double best = *std::min_element(total.begin(), total.end());
        std::printf("loss: first warm-up step %.4f, last step %.4f (ln V = %.4f)\n", loss0, loss,
                    std::log(double(cfg.vocab_size)));
        std::printf("step: median %.1f ms (forward %.1f, backward %.1f, clip+AdamW %.1f), best %.1f ms\n",
                    med * 1e3, median(fwd) * 1e3, median(bwd) * 1e3, median(optim) * 1e3,
                    best * 1e3);
        std::printf("tokens/s: median %.0f, best %.0f   (model %.2f GFLOP/s at %.3f GFLOP/token)\n",
                    tokens / med, tokens / best, summary.train_flops_per_token * tokens / med / 1e9,
                    summary.train_flops_per_token / 1e9);

        // 2. Profile.
        double gemm_share = 0.0, gemm_gflops = 0.0;
        std::vector<std::pair<TimingBackend::GemmShape, TimingBackend::GemmStat>> shapes;
        if (profile_steps > 0) {
            be.reset();
            be.set_enabled(true);
            double wall = 0.0;
            for (int i = 0; i < profile_steps; ++i, ++step_index) {
                const moe::Batch batch = random_batch(cfg.vocab_size, B, T, seed, step_index);
                wall += train_step(model, opt, batch, lr, nullptr).total();
            }
            be.set_enabled(false);
            const auto& st = be.stats();
            const double ops = be.total_seconds();
            const double gemm_s = st[TimingBackend::kGemm].seconds;
            gemm_share = gemm_s / wall;
            gemm_gflops = be.gemm_flops() / gemm_s / 1e9;
            std::printf("\nprofile of %d steps: %.1f ms/step, in backend ops %.1f%%, outside %.1f ms/step\n",
                        profile_steps, wall / profile_steps * 1e3, 100.0 * ops / wall,
                        (wall - ops) / profile_steps * 1e3);
            std::vector<int> order(TimingBackend::kOpCount);
            for (int i = 0; i < TimingBackend::kOpCount; ++i) order[i] = i;
            std::sort(order.begin(), order.end(),
                      [&](int a, int b) { return st[a].seconds > st[b].seconds; });
            std::printf("  %-24s %10s %8s %7s %10s\n", "op", "ms/step", "share", "calls", "us/call");
            for (int i = 0; i < std::min<int>(top, TimingBackend::kOpCount); ++i) {
                const auto& s = st[order[i]];
                if (s.calls == 0) break;
                std::printf("  %-24s %10.2f %7.1f%% %7lld %10.1f\n", TimingBackend::kOpNames[order[i]],
                            s.seconds / profile_steps * 1e3, 100.0 * s.seconds / wall,
                            static_cast<long long>(s.calls / profile_steps),
                            s.seconds / double(s.calls) * 1e6);
            }
            std::printf("GEMM: %.1f%% of the step, %.2f GFLOP/step, %.1f GFLOP/s achieved\n",
                        100.0 * gemm_share, be.gemm_flops() / profile_steps / 1e9, gemm_gflops);
            shapes.assign(be.gemm_shapes().begin(), be.gemm_shapes().end());
            std::sort(shapes.begin(), shapes.end(),
                      [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
        }

        // 3. OpenBLAS alone.
        double blas_ref = 0.0;
        if (!no_blas) {
            openblas_set_num_threads(threads);
            blas_ref = blas_gflops(false, true, 2048, 512, 512);
            std::printf("\nOpenBLAS sgemm alone (%d threads): NT 2048x512x512 %.1f GFLOP/s\n",
                        threads, blas_ref);
            std::printf("  %-22s %9s %8s %12s %12s\n", "top GEMM shapes", "ms/step", "calls",
                        "engine GF/s", "alone GF/s");
            for (size_t i = 0; i < shapes.size() && i < size_t(std::max(0, top / 2)); ++i) {
                const auto& [s, g] = shapes[i];
                const auto& [ta, tb, M, N, K] = s;
                std::printf("  %-22s %9.2f %8lld %12.1f %12.1f\n", shape_name(s).c_str(),
                            g.seconds / profile_steps * 1e3,
                            static_cast<long long>(g.calls / profile_steps),
                            g.flops / g.seconds / 1e9, blas_gflops(ta, tb, M, N, K));
            }
        }

        std::printf("BENCH tok_s=%.1f tok_s_best=%.1f step_ms=%.2f gemm_share=%.4f "
                    "gemm_gflops=%.2f blas_gflops=%.2f\n",
                    tokens / med, tokens / best, med * 1e3, gemm_share, gemm_gflops, blas_ref);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "moe-bench-train: %s\n", e.what());
        return 1;
    }
}
