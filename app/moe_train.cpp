// moe-train: the headless command line of MoE Workbench.
//   moe-train PROJECT.json [--steps N] [--out RUN.h5] [--threads N]   train (the default)
//     [--device cpu|cuda:N]  where to compute (app/backend_factory.h); default: the project's
//   moe-train --resume CHECKPOINT_DIR [--steps N] [--out RUN.h5]      continue a run exactly
//   moe-train PROJECT.json --summary             model size, active parameters, FLOPs, memory
//   moe-train PROJECT.json --step                one forward/backward pass on a random batch
//   moe-train PROJECT.json --save-init DIR        the initialized model as an HF checkpoint
//   moe-train --logits CKPT_DIR --tokens FILE --out OUT.safetensors
//   moe-train --quant-eval CKPT_DIR [--formats fp8,int8,int4-g128] [--reference REF_DIR]   quantized weights
//   moe-train --export-quantized CKPT_DIR --format int4-g128 --out DIR   weights stored quantized
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <ctime>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "backend_factory.h"
#include "backend/backend_registry.h"
#include "openmp_wait_policy.h"
#include "parallel_launch.h"
#include "backend/cpu/cpu_backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/token_lines.h"
#include "inspect/weight_quantization.h"
#include "model/model.h"
#include "model/summary.h"
#include "store/model_checkpoint.h"
#include "store/project.h"
#include "store/run_reader.h"
#include "store/safetensors.h"
#include "train/trainer.h"
#include "train/training_checkpoint.h"
#include "train/memory_plan.h"
#include "core/system_memory.h"
#include "model/size_check.h"

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
    const std::unique_ptr<moe::Backend> be =
        moe::make_backend(project.training.device, threads, "training.device");
    moe::Backend& backend = *be;
    moe::check_training_fits(project, backend.allocator(), backend.prefers_fused_attention());
    moe::Model model(project.model, backend);
    model.init_weights(static_cast<uint64_t>(project.training.seed));
    const auto& tr = project.training;
    const moe::Batch batch = random_batch(project.model.vocab_size, tr.batch_size, tr.seq_len,
                                          static_cast<uint64_t>(tr.seed) + 1);
    moe::ForwardOptions options;
    options.mtp_lambda = tr.mtp.lambda_at(0, tr.steps);

    std::printf("\nOne training step on a random batch (%lld x %lld tokens, %s):\n",
                static_cast<long long>(tr.batch_size), static_cast<long long>(tr.seq_len),
                backend.describe().c_str());
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

    const moe::Tensor& grads = model.parameters().grad_arena();
    const double sq = backend.sum_squares(grads.data(), grads.numel());
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

// Training throughput on the project's device: one untimed step, then `steps` timed optimizer
// steps through the Trainer (forward, backward, clipping, AdamW, the run file's rows), no
// checkpoints; prints the median tokens/s and the model FLOP utilization against peak_tflops.
int bench_steps(moe::Project project, int64_t steps, int threads, double peak_tflops) {
    project.training.steps = steps + 1 + 1000000;  // never "finished": no final eval/checkpoint
    project.training.optimizer.schedule.total_steps = project.training.steps;
    project.training.eval_every = 0;
    project.training.routing_every = 0;
    project.training.checkpoint_every = 0;
    project.training.precision.record_every = 0;
    const std::string run = (std::filesystem::temp_directory_path() /
                             ("moe-bench-" + std::to_string(::getpid()) + ".h5")).string();
    double train_flops = 0.0;
    {
        const moe::ModelSummary s = moe::summarize(project.model, project.training.seq_len);
        train_flops = s.train_flops_per_token;
    }
    std::vector<double> rates;
    {
        moe::Trainer trainer(project, {run, ""}, threads);
        std::printf("bench: %s, %s, precision %s, batch %lld x %lld tokens, MTP depth %lld\n",
                    project.name.c_str(), trainer.backend().describe().c_str(),
                    project.training.precision.mode.c_str(),
                    static_cast<long long>(project.training.batch_size),
                    static_cast<long long>(project.training.seq_len),
                    static_cast<long long>(project.model.num_nextn_predict_layers));
        trainer.step();  // allocation, first launches
        for (int64_t i = 0; i < steps; ++i) {
            const moe::StepReport r = trainer.step();
            rates.push_back(r.tokens_per_s);
            std::printf("  step %lld: loss %.4f, %.0f tokens/s\n", static_cast<long long>(r.step),
                        r.loss, r.tokens_per_s);
        }
        trainer.close();
    }
    std::filesystem::remove(run);
    std::sort(rates.begin(), rates.end());
    const double med = rates[rates.size() / 2];
    const double tflops = med * train_flops / 1e12;
    std::printf("BENCH tokens_per_s=%.1f train_gflop_per_token=%.3f achieved_tflops=%.2f", med,
                train_flops / 1e9, tflops);
    if (peak_tflops > 0) std::printf(" mfu=%.4f peak_tflops=%.1f", tflops / peak_tflops, peak_tflops);
    std::printf("\n");
    return 0;
}

// Refuses to replace an existing file or folder unless --overwrite was given.
void refuse_existing(const std::string& path, bool overwrite, const char* what) {
    std::error_code ec;
    if (overwrite || !std::filesystem::exists(path, ec)) return;
    if (std::filesystem::is_directory(path, ec) && std::filesystem::is_empty(path, ec)) return;
    throw moe::FileError(path, std::string("already exists; refusing to replace it with ") + what +
                                   " (choose another path, or add --overwrite to replace it)");
}

int write_logits(const std::string& ckpt, const std::string& tokens_path, const std::string& out,
                 const std::string& device, int threads, int64_t chunk, bool overwrite) {
    refuse_existing(out, overwrite, "the logits");
    if (std::filesystem::is_directory(out))
        throw moe::FileError(out, "is a folder; --out needs a file name for the logits");
    const moe::ModelConfig cfg = moe::load_checkpoint_config(ckpt);
    // The token file first: a bad file is reported before the model is built.
    const moe::TokenLines lines =
        moe::read_token_lines(tokens_path, cfg.vocab_size, cfg.max_position_embeddings);
    const int64_t V = cfg.vocab_size, L = lines.length;
    const double logits_bytes = 4.0 * double(lines.rows) * double(L) * double(V);
    if (logits_bytes > double(moe::host_memory_available()))
        throw moe::FileError(tokens_path, std::to_string(lines.rows) + " sequences of " +
                                              std::to_string(L) + " tokens make " +
                                              moe::format_memory(logits_bytes) +
                                              " of logits, more than this machine has available; "
                                              "split the file");
    const std::unique_ptr<moe::Backend> be =
        moe::make_backend(device.empty() ? "cpu" : device, threads, "--device");
    moe::Backend& backend = *be;
    moe::Model model(cfg, backend);
    moe::load_model_weights(ckpt, model);
    moe::Tensor logits({lines.rows, L, V});
    for (int64_t r0 = 0; r0 < lines.rows; r0 += chunk) {
        const int64_t rows = std::min(chunk, lines.rows - r0);
        model.forward_logits(lines.ids.data() + r0 * L, rows, L);
        model.logits().copy_to_host(logits.data() + r0 * L * V);  // [rows * L, V]
    }
    moe::SafetensorsWriter writer;
    writer.add_f32("logits", logits);
    writer.write(out);
    std::printf("wrote logits [%lld, %lld, %lld] to %s\n", static_cast<long long>(lines.rows),
                static_cast<long long>(L), static_cast<long long>(V), out.c_str());
    return 0;
}

// Validation loss and routing of a checkpoint with its projection weights quantized to each
// format (engine/inspect/weight_quantization.h), as a table.
int quant_eval(const std::string& ckpt, const std::string& formats_csv, int threads,
               const std::string& device, const std::string& reference) {
    std::vector<moe::WeightFormat> formats;
    if (formats_csv.empty()) {
        formats = moe::default_weight_formats();
    } else {
        std::stringstream ss(formats_csv);
        for (std::string f; std::getline(ss, f, ',');) formats.push_back(moe::WeightFormat::parse(f, "--formats"));
    }
    const moe::CheckpointWeightFormats res = moe::evaluate_checkpoint_weight_formats(
        ckpt, formats, threads, device.empty() ? "cpu" : device, reference);
    std::printf("%s (step %lld): projection weights quantized, %lld validation batches, routing "
                "compared on %lld probe tokens\n",
                ckpt.c_str(), static_cast<long long>(res.step), static_cast<long long>(res.eval_batches),
                static_cast<long long>(res.probe_tokens));
    if (!res.stored_format.empty())
        std::printf("  weights stored as %s, dequantized on load: the fp32 row is that model\n",
                    res.stored_format.c_str());
    if (!reference.empty() && !res.results.empty())
        std::printf("  change and routing against the reference %s (val loss %.4f)\n", reference.c_str(),
                    res.results[0].reference_loss);
    std::printf("  %-15s %6s %10s %9s %9s %12s %10s\n", "format", "bits", "weight err", "val loss",
                "change", "routing same", "top-1 same");
    for (const auto& r : res.results)
        std::printf("  %-15s %6.2f %10.4f %9.4f %+8.2f%% %11.1f%% %9.1f%%\n", r.format.c_str(),
                    r.bits_per_weight, r.weight_rel_error, r.val_loss, 100.0 * r.loss_change,
                    100.0 * r.routing.exact, 100.0 * r.routing.top1);
    return 0;
}

// A checkpoint written again with its projection weights stored quantized
// (store/int_weights.h), refusing to replace an existing folder unless asked.
int export_quantized(const std::string& ckpt, const std::string& format, const std::string& out,
                     bool overwrite) {
    if (format.empty() || out.empty())
        throw moe::Error("--export-quantized needs --format (int8, int4-g128, int3, ...) and --out DIR");
    const moe::WeightFormat f = moe::WeightFormat::parse(format, "--format");
    if (f.kind != moe::WeightFormat::Kind::INT)
        throw moe::ConfigError("--format", "a quantized checkpoint stores int8, int4, int3 or int2 weights "
                                           "(per channel, -gN, -asym), got \"" + format + "\"");
    const moe::QuantizedExport e = moe::export_quantized_checkpoint(ckpt, out, f, overwrite);
    std::printf("wrote %s: step %lld, projection weights as %s; tensors %.2f MB (fp32 %.2f MB, %.1fx "
                "smaller)\n",
                out.c_str(), static_cast<long long>(e.step), f.name.c_str(), e.stored_bytes / 1e6,
                e.fp32_bytes / 1e6, double(e.fp32_bytes) / double(e.stored_bytes));
    return 0;
}

// A run file's outcome in a few lines: final losses, the last evaluation per label, and load
// balance (MaxVio and dead experts averaged over the last quarter of the logged steps).
int report_run(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        throw moe::FileError(path, "no such file; --report needs a run file (runs/NAME.h5)");
    if (!std::filesystem::is_regular_file(path, ec))
        throw moe::FileError(path, "is not a file; --report needs a run file (runs/NAME.h5)");
    moe::RunReader r(path);
    const moe::RunHeader& h = r.header();
    const moe::MetricsColumns m = r.metrics();
    std::printf("run %s (%s): %lld steps logged\n", h.name.c_str(), path.c_str(),
                static_cast<long long>(m.size()));
    std::printf("  precision %s\n", h.precision.c_str());
    if (m.size() > 0) {
        const int64_t last = m.size() - 1;
        std::printf("  last step %lld: loss %.4f  mtp %.4f  aux %.6f  tokens %lld  wall %.0f s\n",
                    static_cast<long long>(m.step[last]), m.loss[last], m.mtp_loss[last],
                    m.aux_loss[last], static_cast<long long>(m.tokens[last]), m.wall_s[last]);
    }
    const std::vector<moe::EvalRow> ev = r.eval();
    if (!ev.empty()) {
        const moe::EvalRow& e = ev.back();
        std::printf("  eval at step %lld: loss %.4f\n", static_cast<long long>(e.step), e.loss);
        for (size_t i = 0; i < h.label_names.size() && i < e.label_loss.size(); ++i)
            std::printf("    %-12s loss %.4f  accuracy %5.1f%%\n", h.label_names[i].c_str(),
                        e.label_loss[i], 100.0 * e.label_accuracy[i]);
    }
    const int64_t S = r.experts_count();
    if (S > 0) {
        const int64_t from = S - std::max<int64_t>(1, S / 4);
        std::printf("  load balance over logged steps %lld..%lld (MaxVio = max load / mean - 1):\n",
                    static_cast<long long>(r.experts(from).step),
                    static_cast<long long>(r.experts(S - 1).step));
        double all = 0.0;
        for (int64_t l = 0; l < h.n_layers(); ++l) {
            double vio = 0.0, dead = 0.0;
            for (int64_t s = from; s < S; ++s) {
                const moe::ExpertsRow e = r.experts(s);
                vio += e.maxvio[l];
                for (int64_t x = 0; x < h.n_experts; ++x) dead += e.load[l * h.n_experts + x] == 0.0f;
            }
            const double n = double(S - from);
            all += vio / n;
            std::printf("    layer %2lld  MaxVio %.3f  dead experts %.2f\n",
                        static_cast<long long>(h.moe_layer_indices[l]), vio / n, dead / n);
        }
        std::printf("    mean MaxVio %.3f\n", all / double(h.n_layers()));
    }
    if (r.quant_count() > 0) {
        const moe::QuantRow q = r.quant(r.quant_count() - 1);
        std::printf("  quantization error at step %lld (mean over tensors):\n", static_cast<long long>(q.step));
        for (const char* role : {"weight", "activation", "gradient"}) {
            double err = 0, snr = 0, sat = 0;
            int64_t n = 0;
            for (int64_t i = 0; i < h.n_quant(); ++i)
                if (h.quant_roles[i] == role && q.amax[i] > 0) {
                    err += q.rel_error[i];
                    snr += q.snr_db[i];
                    sat += q.frac_saturated[i];
                    ++n;
                }
            if (n > 0)
                std::printf("    %-10s rel. error %.4f  SNR %.1f dB  saturated %.4f%%  (%lld tensors)\n", role,
                            err / double(n), snr / double(n), 100.0 * sat / double(n), static_cast<long long>(n));
        }
    }
    if (r.sparsity_count() > 0) {
        const moe::SparsityRows s = r.sparsity_rows();
        const size_t F = static_cast<size_t>(h.n_ffn_layers()), last = s.step.size() - 1;
        std::printf("  sparsity at step %lld: near-zero SwiGLU outputs (|a| < %g) per layer:",
                    static_cast<long long>(s.step[last]), h.near_zero_threshold);
        for (size_t l = 0; l < F; ++l) std::printf(" %.1f%%", 100.0 * s.near_zero[last * F + l]);
        std::printf("\n");
    }
    return 0;
}

std::atomic<int> g_interrupts{0};

// Exit status of a run stopped by Ctrl-C (after its checkpoint): 128 + SIGINT, as shells expect.
constexpr int kInterruptedExit = 130;

extern "C" void on_sigint(int) {
    // First Ctrl-C: stop after the current step. Second: give up at once, unless a checkpoint is
    // being written: that finishes first (seconds), so no half checkpoint is left. A third
    // Ctrl-C gives up even then; the next save or resume removes the unfinished folder.
    const int n = g_interrupts.fetch_add(1) + 1;
    if (n == 2 && moe::checkpoint_write_active()) {
        static const char msg[] =
            "\nfinishing the checkpoint being written; Ctrl-C again to abandon it\n";
        [[maybe_unused]] const auto w = ::write(STDERR_FILENO, msg, sizeof msg - 1);
        return;
    }
    if (n >= 2) {
        std::signal(SIGINT, SIG_DFL);
        std::raise(SIGINT);
    }
}

std::string format_duration(double s) {
    if (!std::isfinite(s) || s < 0) return "?";
    const long t = static_cast<long>(s + 0.5);
    char buf[32];
    if (t >= 3600)
        std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else
        std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
    return buf;
}

std::string default_run_path(const std::string& name) {
    const std::time_t now = std::time(nullptr);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", std::localtime(&now));
    return "runs/" + (name.empty() ? std::string("run") : name) + "-" + stamp + ".h5";
}

// Checkpoints of RUN.h5 go to RUN.ckpt/step-NNNNNNNN.
std::string checkpoint_root_for(const std::string& run_path) {
    std::filesystem::path p(run_path);
    p.replace_extension(".ckpt");
    return p.string();
}

int train(moe::Trainer& trainer, const moe::app::FaultPlan& fault = {}) {
    const moe::ParallelContext& par = trainer.parallel();
    // With several ranks only rank 0 talks (the others train silently).
    const bool speak = par.root();
    const bool tty = speak && ::isatty(STDOUT_FILENO);
    const moe::TrainingSettings& tr = trainer.project().training;
    trainer.on_eval = [&](const moe::EvalReport& e) {
        if (!speak) return;
        std::printf("%seval  step %lld  loss %.4f", tty ? "\r\033[K" : "",
                    static_cast<long long>(e.step), e.loss);
        for (size_t i = 0; i < e.labels.size(); ++i)
            std::printf("  %s %.3f/%.0f%%", e.labels[i].c_str(), e.label_loss[i],
                        100.0 * e.label_accuracy[i]);
        std::printf("\n");
        std::fflush(stdout);
    };
    trainer.on_checkpoint = [&](const std::string& dir) {
        std::printf("%scheckpoint %s\n", tty ? "\r\033[K" : "", dir.c_str());
        std::fflush(stdout);
    };
    std::signal(SIGINT, on_sigint);
    if (speak) {
        std::printf("unigram (byte-frequency) baseline on this data: %.4f nats/token\n",
                    trainer.data().unigram_baseline_loss(100000));
        std::printf("training %s: %lld steps of %lld x %lld tokens -> %s\n",
                    trainer.project().name.c_str(), static_cast<long long>(tr.steps),
                    static_cast<long long>(tr.batch_size * tr.optimizer.grad_accum),
                    static_cast<long long>(tr.seq_len), trainer.run_file().c_str());
        if (par.parallel())
            std::printf("ranks: %d (%s), %lld sequences each per micro-batch\n", par.world->size(),
                        par.layout.to_string().c_str(),
                        static_cast<long long>(tr.batch_size / par.world->size()));
    }
    const int64_t print_every = tr.log_every > 0 ? tr.log_every : 10;
    const int64_t first_step = trainer.steps_done();
    bool interrupted = false;
    while (!trainer.finished()) {
        // Ctrl-C reaches the ranks at different moments: they agree on it before each step,
        // so all of them stop at the same one.
        double stop = g_interrupts.load() > 0 ? 1.0 : 0.0;
        if (par.parallel()) par.world->all_reduce_max(&stop, 1);
        if (stop > 0) {
            std::printf("%sinterrupted at step %lld: saving a checkpoint\n", tty ? "\r\033[K" : "",
                        static_cast<long long>(trainer.steps_done()));
            trainer.save_checkpoint();
            interrupted = true;
            break;
        }
        fault.before_step(par, trainer.steps_done() + 1);
        moe::StepReport r;
        try {
            r = trainer.step();
        } catch (...) {
            // A run that fails before its first step (out of memory, bad data) leaves no run
            // file that looks like a run; later failures keep every row written so far.
            if (trainer.steps_done() == first_step && first_step == 0 && trainer.writes()) {
                trainer.close();
                std::error_code ec;
                std::filesystem::remove(trainer.run_file(), ec);
            }
            std::signal(SIGINT, SIG_DFL);
            throw;
        }
        if (speak && (tty || r.step % print_every == 0 || r.step == r.total_steps || r.skipped)) {
            // Sparse attention: the indexers' KL, and whether the step was the dense warm-up.
            char index[64] = "";
            if (trainer.project().model.index_topk > 0)
                std::snprintf(index, sizeof index, "  indexer KL %.4f%s", r.indexer_loss,
                              r.index_warmup ? " (dense warm-up)" : "");
            std::printf("%sstep %lld/%lld  loss %.4f  mtp %.4f  aux %.5f%s  lr %.2e  |g| %.3f  "
                        "%.0f tok/s  ETA %s%s%s",
                        tty ? "\r\033[K" : "", static_cast<long long>(r.step),
                        static_cast<long long>(r.total_steps), r.loss, r.mtp_loss, r.aux_loss,
                        index, r.lr, r.grad_norm, r.tokens_per_s, format_duration(r.eta_s).c_str(),
                        r.skipped ? "  SKIPPED (NaN/Inf)" : "", tty ? "" : "\n");
            std::fflush(stdout);
        }
    }
    trainer.close();
    std::signal(SIGINT, SIG_DFL);
    if (!speak) return interrupted ? kInterruptedExit : 0;
    std::printf("%srun file %s\n", tty ? "\n" : "", trainer.run_file().c_str());
    if (!trainer.last_checkpoint().empty())
        std::printf("last checkpoint %s\n", trainer.last_checkpoint().c_str());
    if (interrupted) {
        std::printf("interrupted: continue with moe-train --resume %s\n",
                    trainer.last_checkpoint().c_str());
        return kInterruptedExit;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    moe::app::ensure_passive_openmp_waits(argv);
    CLI::App app{"moe-train: train, inspect and evaluate DeepSeek-V3-style MoE models (headless)"};
    std::string project_path, logits_ckpt, tokens_path, out_path, save_init, resume_path, report;
    std::string device;
    bool summary = false, step = false;
    int threads = 0;
    int64_t chunk = 8, steps = 0;
    app.add_option("project", project_path, "Project file (projects/*.json) or an HF config.json");
    app.add_flag("--summary", summary, "Print parameters, active parameters, FLOPs and memory");
    // CLI11's own range messages read "Value 0 not in range 0.000000 to 1.79e308": say it plainly.
    auto at_least_one = CLI::Validator(
        [](std::string& text) -> std::string {
            long long v = 0;
            try {
                size_t used = 0;
                v = std::stoll(text, &used);
                if (used != text.size()) return "must be a whole number >= 1, got " + text;
            } catch (...) {
                return "must be a whole number >= 1, got " + text;
            }
            return v >= 1 ? std::string() : "must be >= 1, got " + text;
        },
        "N >= 1");
    app.add_option("--steps", steps, "Training steps (default: the project's training.steps)")
        ->check(at_least_one);
    app.add_option("--report", report, "Summarize a run file: losses, evaluation, load balance");
    app.add_option("--resume", resume_path, "Continue the run saved in this checkpoint directory");
    app.add_flag("--step", step, "Run one forward/backward pass on a random batch and report it");
    app.add_option("--save-init", save_init, "Write the initialized model as a checkpoint directory");
    app.add_option("--logits", logits_ckpt, "Checkpoint directory (config.json + safetensors) to evaluate");
    app.add_option("--tokens", tokens_path, "Token file for --logits: one sequence of ids per line");
    app.add_option("--out", out_path,
                   "Run file to write when training (default runs/NAME-TIME.h5; checkpoints go to "
                   "NAME-TIME.ckpt/), or the safetensors file for --logits");
    std::string quant_eval_ckpt, formats;
    app.add_option("--quant-eval", quant_eval_ckpt,
                   "Checkpoint directory: validation loss and routing with the projection weights "
                   "quantized to each of --formats");
    std::string quant_reference;
    app.add_option("--reference", quant_reference,
                   "For --quant-eval: compare loss and routing with this checkpoint (e.g. the fp32 run a "
                   "QAT run was fine-tuned from) instead of the checkpoint's own fp32 weights");
    app.add_option("--formats", formats, "For --quant-eval: comma-separated fp32, fp8, int8, int4, "
                   "int4-gN, ...-asym (default fp32,fp8,int8,int4-g128,int4)");
    std::string export_ckpt, export_format;
    app.add_option("--export-quantized", export_ckpt,
                   "Checkpoint directory to write again with its projection weights stored "
                   "quantized (to --out DIR, in --format; docs/precision.md)");
    app.add_option("--format", export_format, "For --export-quantized: int8, int4, int3, -gN, -asym");
    app.add_option("--threads", threads, "CPU threads (0 = all cores; default: the project's)")
        ->check(CLI::Validator(
            [](std::string& text) -> std::string {
                try {
                    size_t used = 0;
                    const long long v = std::stoll(text, &used);
                    if (used == text.size() && v >= 0 && v <= moe::kMaxThreads) return {};
                } catch (...) {
                }
                return "must be a whole number in [0, " + std::to_string(moe::kMaxThreads) +
                       "] (0 = all cores), got " + text;
            },
            "0..1024"));
    bool overwrite = false;
    app.add_flag("--overwrite", overwrite,
                 "Let --out (with --logits or --export-quantized) and --save-init replace an existing "
                 "file or folder");
    app.add_option("--device", device,
                   "Where to compute: cpu or cuda:N (default: the project's training.device)");
    int64_t bench = 0, bench_batch = 0, bench_seq = 0;
    double peak_tflops = 0.0;
    std::string precision;
    bool no_mtp = false;
    app.add_option("--bench-steps", bench,
                   "Benchmark: time this many training steps (after one untimed) on --device, "
                   "no checkpoints; prints tokens/s and MFU")->check(at_least_one);
    app.add_option("--batch", bench_batch, "Override training.batch_size")->check(at_least_one);
    app.add_option("--seq", bench_seq, "Override training.seq_len")->check(at_least_one);
    app.add_option("--precision", precision, "Override training.precision.mode (fp32, bf16, fp16, fp8)");
    std::string attention_math;
    app.add_option("--attention", attention_math,
                   "Override training.precision.attention: fp32, or bf16 (fused attention on tensor cores)");
    app.add_flag("--no-mtp", no_mtp, "Train without the MTP modules (num_nextn_predict_layers 0)");
    std::string parallel, fault_text;
    double comm_timeout = 300.0;
    app.add_option("--parallel", parallel,
                   "Several processes under mpirun/srun: ep=E,dp=D (E*D ranks; docs/parallelism.md)");
    app.add_option("--comm-timeout", comm_timeout,
                   "With --parallel: seconds a collective may wait for the other ranks before every rank "
                   "stops, naming the ranks that did not answer (default 300)");
    app.add_option("--inject-fault", fault_text,
                   "With --parallel: RANK:STEP:kill|hang|exit makes that rank fail at that step (to try the "
                   "fault handling)");
    app.add_option("--peak-tflops", peak_tflops, "For --bench-steps: the device's peak, for the MFU");
    app.add_option("--batch-rows", chunk, "Sequences evaluated at once by --logits")->check(at_least_one);
    CLI11_PARSE(app, argc, argv);

    moe::ParallelContext par = moe::ParallelContext::solo();
    try {
        moe::app::install_backend_factory();
        const moe::app::FaultPlan fault =
            fault_text.empty() ? moe::app::FaultPlan{} : moe::app::FaultPlan::parse(fault_text);
        par = moe::app::start_parallel(parallel, comm_timeout);
        if (!device.empty()) moe::parse_device(device, "--device");
        if (!logits_ckpt.empty()) {
            if (tokens_path.empty() || out_path.empty())
                throw moe::Error("--logits needs --tokens FILE and --out OUT.safetensors");
            return write_logits(logits_ckpt, tokens_path, out_path, device, threads, chunk,
                                overwrite);
        }
        if (!report.empty()) return report_run(report);
        if (!quant_eval_ckpt.empty())
            return quant_eval(quant_eval_ckpt, formats, threads, device, quant_reference);
        if (!export_ckpt.empty()) return export_quantized(export_ckpt, export_format, out_path, overwrite);
        if (!resume_path.empty()) {
            const moe::TrainingState st = moe::load_training_state(resume_path);
            int64_t total = steps;
            if (!project_path.empty()) {
                // A project given with --resume must be the checkpoint's (its steps may be more).
                const moe::Project given = moe::Project::load(project_path);
                const std::vector<std::string> conflicts = moe::resume_conflicts(given, st.project);
                if (!conflicts.empty()) {
                    std::string list;
                    for (size_t i = 0; i < conflicts.size() && i < 12; ++i)
                        list += (i ? ", " : "") + conflicts[i];
                    if (conflicts.size() > 12)
                        list += " and " + std::to_string(conflicts.size() - 12) + " more";
                    throw moe::Error(project_path + " does not match the checkpoint " +
                                     resume_path + ": " + list +
                                     " differ (resume without the project, or start a new run)");
                }
                if (total == 0) total = given.training.steps;
            }
            const std::string run = out_path.empty() ? default_run_path(st.project.name) : out_path;
            const std::string placed =
                par.parallel() ? moe::app::place_rank(par, device.empty() ? st.project.training.device : device)
                               : device;
            auto trainer = moe::Trainer::resume(resume_path, {run, checkpoint_root_for(run)},
                                                threads, total, placed, par);
            if (par.root())
                std::printf("resuming %s from step %lld to step %lld\n", resume_path.c_str(),
                            static_cast<long long>(st.step),
                            static_cast<long long>(trainer->project().training.steps));
            const int rc = train(*trainer, fault);
            trainer.reset();
            moe::app::finish_parallel(par);
            return rc;
        }
        if (project_path.empty()) {
            std::fprintf(stderr, "%s", app.help().c_str());
            return 2;
        }
        moe::Project project = moe::Project::load(project_path);
        if (!device.empty()) project.training.device = device;
        project.training.device = moe::app::place_rank(par, project.training.device);
        if (bench_batch > 0) project.training.batch_size = bench_batch;
        if (bench_seq > 0) project.training.seq_len = bench_seq;
        if (!precision.empty()) project.training.precision.mode = precision;
        if (!attention_math.empty()) project.training.precision.attention = attention_math;
        if (no_mtp) project.model.num_nextn_predict_layers = 0;
        project.validate();
        if (bench > 0) return bench_steps(project, bench, threads, peak_tflops);
        const int run_threads = threads ? threads : static_cast<int>(project.training.threads);
        if (!summary && !step && save_init.empty()) {
            if (steps > 0) {  // a shorter or longer run gets its LR schedule fitted to it
                if (const int64_t was = moe::fit_project_to_steps(project, steps))
                    std::printf("note: warmup shortened from %lld to %lld steps for a %lld-step run\n",
                                static_cast<long long>(was),
                                static_cast<long long>(project.training.optimizer.schedule.warmup_steps),
                                static_cast<long long>(steps));
            }
            const std::string run = out_path.empty() ? default_run_path(project.name) : out_path;
            int rc = 0;
            {
                moe::Trainer trainer(project, {run, checkpoint_root_for(run)}, threads, par);
                rc = train(trainer, fault);
            }
            moe::app::finish_parallel(par);
            return rc;
        }
        std::printf("Project %s: %s\n", project.name.c_str(), project.description.c_str());
        if (summary) {
            const moe::ModelSummary s = moe::summarize(project.model, project.training.seq_len);
            std::printf("%s", moe::format_summary(s).c_str());
        }
        if (!save_init.empty()) {
            // Never into an existing checkpoint: its optimizer and trainer state would stay next
            // to new weights. With --overwrite the folder is replaced whole.
            refuse_existing(save_init, overwrite, "a new model");
            const std::unique_ptr<moe::Backend> backend = moe::make_backend("cpu", run_threads);
            moe::Model model(project.model, *backend);
            model.init_weights(static_cast<uint64_t>(project.training.seed));
            const std::string tmp = save_init + ".tmp";
            std::error_code ec;
            std::filesystem::remove_all(tmp, ec);
            try {
                moe::save_model_checkpoint(tmp, model);
            } catch (...) {
                std::filesystem::remove_all(tmp, ec);
                throw;
            }
            std::filesystem::remove_all(save_init, ec);
            std::filesystem::rename(tmp, save_init, ec);
            if (ec) throw moe::FileError(save_init, "cannot move the new checkpoint into place: " + ec.message());
            std::printf("wrote the initialized model to %s\n", save_init.c_str());
        }
        if (step) print_step(project, run_threads);
    } catch (const std::exception& e) {
        if (par.parallel()) moe::app::abort_parallel(par, e.what());
        std::fprintf(stderr, "moe-train: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
