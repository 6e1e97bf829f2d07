// moe-train: the headless command line of MoE Workbench.
//   moe-train PROJECT.json --summary             model size, active parameters, FLOPs, memory
//   moe-train PROJECT.json --step                one forward/backward pass on a random batch
//   moe-train PROJECT.json --save-init DIR        the initialized model as an HF checkpoint
//   moe-train --logits CKPT_DIR --tokens FILE --out OUT.safetensors
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include <CLI/CLI.hpp>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/token_lines.h"
#include "model/model.h"
#include "model/summary.h"
#include "store/model_checkpoint.h"
#include "store/project.h"
#include "store/safetensors.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A batch of uniformly random tokens: enough to exercise every path of the model until the
// data pipeline exists.
moe::Batch random_batch(int64_t vocab, int64_t B, int64_t T, uint64_t seed) {
    moe::Batch b;
    b.batch = B;
    b.seq_len = T;
    b.tokens.resize(static_cast<size_t>(B * (T + 1)));
    for (size_t i = 0; i < b.tokens.size(); ++i)
        b.tokens[i] = static_cast<int32_t>(moe::random_bits(seed, 1, i) % uint64_t(vocab));
    return b;
}

void print_step(const moe::Project& project, int threads) {
    moe::CpuBackend backend(threads);
    moe::Model model(project.model, backend);
    model.init_weights(static_cast<uint64_t>(project.training.seed));
    const auto& tr = project.training;
    const moe::Batch batch = random_batch(project.model.vocab_size, tr.batch_size, tr.seq_len,
                                          static_cast<uint64_t>(tr.seed) + 1);
    moe::ForwardOptions options;
    options.mtp_lambda = tr.mtp.lambda_at(0, tr.steps);

    std::printf("\nOne training step on a random batch (%lld x %lld tokens, %d threads):\n",
                static_cast<long long>(tr.batch_size), static_cast<long long>(tr.seq_len),
                backend.threads());
    // The first step pays for buffer allocation; time the second.
    model.forward(batch, options);
    model.parameters().zero_grads();
    model.backward();
    auto t0 = Clock::now();
    const moe::LossReport r = model.forward(batch, options);
    const double t_fwd = seconds_since(t0);
    model.parameters().zero_grads();
    t0 = Clock::now();
    model.backward();
    const double t_bwd = seconds_since(t0);

    double sq = 0.0;
    for (const moe::Parameter* p : model.parameters().all())
        if (p->trainable)
            for (int64_t i = 0; i < p->grad.numel(); ++i) sq += double(p->grad[i]) * p->grad[i];
    const double tokens = double(tr.batch_size * tr.seq_len);
    std::printf("  loss %.4f (ln V = %.4f)  mtp %.4f  aux %.6f  total %.4f\n", r.loss,
                std::log(double(project.model.vocab_size)), r.mtp_loss, r.aux_loss, r.total);
    std::printf("  gradient norm %.4f\n", std::sqrt(sq));
    std::printf("  forward %.1f ms, backward %.1f ms, %.0f tokens/s\n", t_fwd * 1e3, t_bwd * 1e3,
                tokens / (t_fwd + t_bwd));
    for (moe::MoeLayer* layer : model.moe_layers()) {
        const auto& c = layer->expert_counts();
        int64_t lo = c[0], hi = c[0], sum = 0, unused = 0;
        for (int64_t x : c) {
            lo = std::min(lo, x);
            hi = std::max(hi, x);
            sum += x;
            unused += x == 0;
        }
        const double mean = double(sum) / double(c.size());
        std::printf("  layer %2lld experts: tokens min %lld max %lld, MaxVio %.3f, unused %lld\n",
                    static_cast<long long>(layer->layer_index()), static_cast<long long>(lo),
                    static_cast<long long>(hi), (double(hi) - mean) / mean,
                    static_cast<long long>(unused));
    }
}

int write_logits(const std::string& ckpt, const std::string& tokens_path, const std::string& out,
                 int threads, int64_t chunk) {
    const moe::ModelConfig cfg = moe::load_checkpoint_config(ckpt);
    moe::CpuBackend backend(threads);
    moe::Model model(cfg, backend);
    moe::load_model_weights(ckpt, model);
    const moe::TokenLines lines = moe::read_token_lines(tokens_path, cfg.vocab_size);
    const int64_t V = cfg.vocab_size, L = lines.length;
    moe::Tensor logits({lines.rows, L, V});
    for (int64_t r0 = 0; r0 < lines.rows; r0 += chunk) {
        const int64_t rows = std::min(chunk, lines.rows - r0);
        model.forward_logits(lines.ids.data() + r0 * L, rows, L);
        std::copy(model.logits().data(), model.logits().data() + rows * L * V,
                  logits.data() + r0 * L * V);
    }
    moe::SafetensorsWriter writer;
    writer.add_f32("logits", logits);
    writer.write(out);
    std::printf("wrote logits [%lld, %lld, %lld] to %s\n", static_cast<long long>(lines.rows),
                static_cast<long long>(L), static_cast<long long>(V), out.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"moe-train: train, inspect and evaluate DeepSeek-V3-style MoE models (headless)"};
    std::string project_path, logits_ckpt, tokens_path, out_path, save_init;
    bool summary = false, step = false;
    int threads = 0;
    int64_t chunk = 8;
    app.add_option("project", project_path, "Project file (projects/*.json) or an HF config.json");
    app.add_flag("--summary", summary, "Print parameters, active parameters, FLOPs and memory");
    app.add_flag("--step", step, "Run one forward/backward pass on a random batch and report it");
    app.add_option("--save-init", save_init, "Write the initialized model as a checkpoint directory");
    app.add_option("--logits", logits_ckpt, "Checkpoint directory (config.json + safetensors) to evaluate");
    app.add_option("--tokens", tokens_path, "Token file for --logits: one sequence of ids per line");
    app.add_option("--out", out_path, "Output file for --logits (safetensors, tensor 'logits')");
    app.add_option("--threads", threads, "CPU threads (0 = all cores; default: the project's)");
    app.add_option("--batch-rows", chunk, "Sequences evaluated at once by --logits")->check(CLI::PositiveNumber);
    CLI11_PARSE(app, argc, argv);

    try {
        if (!logits_ckpt.empty()) {
            if (tokens_path.empty() || out_path.empty())
                throw moe::Error("--logits needs --tokens FILE and --out OUT.safetensors");
            return write_logits(logits_ckpt, tokens_path, out_path, threads, chunk);
        }
        if (project_path.empty()) {
            std::fprintf(stderr, "%s", app.help().c_str());
            return 2;
        }
        const moe::Project project = moe::Project::load(project_path);
        const int run_threads = threads ? threads : static_cast<int>(project.training.threads);
        if (!summary && !step && save_init.empty()) summary = step = true;
        std::printf("Project %s: %s\n", project.name.c_str(), project.description.c_str());
        if (summary) {
            const moe::ModelSummary s = moe::summarize(project.model, project.training.seq_len);
            std::printf("%s", moe::format_summary(s).c_str());
        }
        if (!save_init.empty()) {
            moe::CpuBackend backend(run_threads);
            moe::Model model(project.model, backend);
            model.init_weights(static_cast<uint64_t>(project.training.seed));
            moe::save_model_checkpoint(save_init, model);
            std::printf("wrote the initialized model to %s\n", save_init.c_str());
        }
        if (step) print_step(project, run_threads);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "moe-train: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
