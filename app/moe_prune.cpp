// moe-prune: makes a smaller checkpoint from a trained one (docs/pruning.md).
//   moe-prune CKPT --experts 0.25 [--by masked_loss|gate_mass|load] [--ungroup] --out DIR
//   moe-prune CKPT --channels 0.5 --out DIR
//   moe-prune CKPT --experts 0.25 --report            the ranking only, nothing written
// Options: --finetune STEPS [--lr X] trains the pruned model on the project's data afterwards;
// --project P gives the data when CKPT is a bare HF checkpoint (no trainer_state.json);
// --batches N training batches to measure on; --eval-batches N validation batches; --force.
// DIR gets config.json + model.safetensors (HF layout), pruning.json (measurements, what was
// removed, losses, sizes, times) and, with --finetune, finetune.h5 (the run) and finetuned/.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "backend/backend_registry.h"
#include "backend_factory.h"
#include "core/error.h"
#include "data/data_loader.h"
#include "model/model.h"
#include "model/summary.h"
#include "openmp_wait_policy.h"
#include "prune/channel_pruning.h"
#include "prune/channel_saliency.h"
#include "prune/expert_importance.h"
#include "prune/expert_pruning.h"
#include "prune/pruning_report.h"
#include "store/model_checkpoint.h"
#include "store/project.h"
#include "train/evaluator.h"
#include "train/trainer.h"
#include "train/training_checkpoint.h"

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Options {
    std::string checkpoint, project_path, out, by = "masked_loss", device = "cpu";
    double experts = -1.0, channels = -1.0, lr = 0.0;
    bool ungroup = false, force = false, report = false;
    int64_t batches = 8, eval_batches = 0, finetune = 0;
    int threads = 0;
};

// The project whose data the checkpoint trained on: its trainer_state.json, else --project.
moe::Project source_project(const Options& o, const moe::ModelConfig& model) {
    moe::Project p;
    if (!o.project_path.empty()) {
        p = moe::Project::load(o.project_path);
    } else if (fs::exists(fs::path(o.checkpoint) / "trainer_state.json")) {
        p = moe::load_training_state(o.checkpoint).project;
    } else {
        throw moe::FileError(o.checkpoint,
                             "has no trainer_state.json, so the data to measure on is "
                             "unknown: give --project PROJECT.json");
    }
    p.model = model;  // the checkpoint's shape; the project gives data and training settings
    return p;
}

std::vector<moe::Batch> training_batches(const moe::Project& p, int64_t n) {
    // Another seed than the run's own stream: batches the model has not just trained on.
    moe::DataLoader data(p.training.data, static_cast<uint64_t>(p.training.seed) + 7919,
                         p.training.batch_size, p.training.seq_len);
    std::vector<moe::Batch> out(static_cast<size_t>(n));
    for (moe::Batch& b : out) data.next_train_batch(b);
    return out;
}

nlohmann::json sizes(const moe::ModelConfig& c, int64_t seq_len) {
    const moe::ModelSummary s = moe::summarize(c, seq_len);
    return {{"total_params", s.total_params},
            {"mtp_params", s.mtp_params},
            {"active_params", s.active_params},
            {"forward_flops_per_token", s.forward_flops_per_token},
            {"train_flops_per_token", s.train_flops_per_token}};
}

void print_expert_report(const moe::ExpertImportance& imp, const moe::ExpertPrunePlan& plan) {
    std::printf("base loss %.4f on the measuring batches; ranked by %s (lowest first, * removed)\n",
                imp.base_loss, moe::to_string(plan.criterion).c_str());
    for (size_t i = 0; i < imp.layers.size(); ++i) {
        const moe::LayerExpertImportance& l = imp.layers[i];
        const std::vector<double>& score = moe::scores_of(l, plan.criterion);
        std::vector<size_t> order(score.size());
        for (size_t e = 0; e < order.size(); ++e) order[e] = e;
        std::stable_sort(order.begin(), order.end(),
                         [&](size_t a, size_t b) { return score[a] < score[b]; });
        std::printf("layer %lld:", static_cast<long long>(l.layer));
        for (size_t e : order) {
            const bool gone = std::find(plan.removed[i].begin(), plan.removed[i].end(),
                                        int64_t(e)) != plan.removed[i].end();
            std::printf(" %zu%s(%.3g)", e, gone ? "*" : "", score[e]);
        }
        std::printf("\n");
    }
    for (const std::string& n : plan.notes) std::printf("config: %s\n", n.c_str());
}

void print_channel_report(const moe::ChannelPrunePlan& plan) {
    std::printf(
        "channel saliency over %lld batches; removing %lld channels per expert, %lld per "
        "dense FFN\n",
        static_cast<long long>(plan.saliency.batches), static_cast<long long>(plan.expert_removed),
        static_cast<long long>(plan.dense_removed));
    for (size_t i = 0; i < plan.saliency.ffns.size(); ++i) {
        const moe::FfnSaliency& f = plan.saliency.ffns[i];
        std::vector<double> s = f.saliency;
        std::sort(s.begin(), s.end());
        double gone = 0.0, total = 0.0;
        for (size_t k = 0; k < s.size(); ++k) {
            total += s[k];
            if (int64_t(k) < int64_t(plan.removed[i].size())) gone += s[k];
        }
        std::printf("%-44s min %.3g median %.3g max %.3g; removed %zu (%.1f%% of the saliency)\n",
                    f.prefix.c_str(), s.front(), s[s.size() / 2], s.back(), plan.removed[i].size(),
                    total > 0 ? 100.0 * gone / total : 0.0);
    }
}

void write_json(const std::string& path, const nlohmann::json& j) {
    std::ofstream f(path);
    f << j.dump(1) << "\n";
    if (!f) throw moe::FileError(path, "cannot write");
}

// Trains the pruned checkpoint in `dir` for `steps` steps on the project's data; the run file
// and the fine-tuned checkpoint go next to it. Returns the fine-tuned model's validation loss.
double finetune(const Options& o, moe::Project project, const std::string& dir, double& seconds,
                nlohmann::json& summary) {
    project.name += "-pruned";
    moe::fit_project_to_steps(project, o.finetune);
    if (o.lr > 0) project.training.optimizer.lr = o.lr;
    project.training.checkpoint_every = 0;
    project.training.eval_every = o.finetune;
    if (o.eval_batches > 0) project.training.eval_batches = o.eval_batches;
    project.training.device = o.device;
    const auto t0 = Clock::now();
    moe::Trainer trainer(project, {(fs::path(dir) / "finetune.h5").string(), ""}, o.threads);
    moe::load_model_weights(dir, trainer.model());  // starts from the pruned weights
    while (!trainer.finished()) trainer.step();
    seconds = seconds_since(t0);
    moe::save_model_checkpoint((fs::path(dir) / "finetuned").string(), trainer.model());
    const moe::EvalReport r =
        moe::evaluate(trainer.model(), trainer.data(), project.training.eval_batches,
                      project.training.mtp.lambda);
    trainer.close();
    summary["finetune_lr"] = project.training.optimizer.lr;
    return r.loss;
}

int run(const Options& o) {
    if ((o.experts >= 0) == (o.channels >= 0))
        throw moe::Error("give one of --experts FRACTION or --channels FRACTION");
    if (o.out.empty() && !o.report)
        throw moe::Error("give --out DIR for the pruned checkpoint (or --report)");
    if (o.finetune > 0 && o.out.empty()) throw moe::Error("--finetune needs --out DIR");
    if (!o.out.empty() && fs::exists(o.out) && !o.force)
        throw moe::FileError(o.out,
                             "already exists; refusing to replace it (choose another --out, or "
                             "add --force)");
    const bool by_experts = o.experts >= 0;
    const moe::ExpertCriterion criterion = moe::parse_expert_criterion(o.by);

    const moe::ModelConfig cfg = moe::load_checkpoint_config(o.checkpoint);
    moe::Project project = source_project(o, cfg);
    const int threads = o.threads ? o.threads : static_cast<int>(project.training.threads);
    const std::unique_ptr<moe::Backend> backend = moe::make_backend(o.device, threads, "--device");
    moe::Model model(cfg, *backend);
    moe::load_model_weights(o.checkpoint, model);
    const double lambda = project.training.mtp.lambda;
    const int64_t eval_n = o.eval_batches > 0 ? o.eval_batches : project.training.eval_batches;
    moe::DataLoader val(project.training.data, static_cast<uint64_t>(project.training.seed),
                        project.training.batch_size, project.training.seq_len);

    const auto t0 = Clock::now();
    const std::vector<moe::Batch> measure = training_batches(project, o.batches);
    nlohmann::json report;
    std::unique_ptr<moe::Model> pruned;
    if (by_experts) {
        const moe::ExpertImportance imp = moe::measure_expert_importance(
            model, measure, lambda, criterion == moe::ExpertCriterion::MaskedLoss);
        const moe::ExpertPrunePlan plan =
            moe::plan_expert_pruning(cfg, imp, criterion, o.experts, o.ungroup);
        if (o.report) print_expert_report(imp, plan);
        if (!o.out.empty()) pruned = moe::prune_experts(model, plan, *backend);
        report = moe::expert_pruning_json(imp, plan);
    } else {
        const moe::ChannelSaliency s = moe::measure_channel_saliency(model, measure, lambda);
        const moe::ChannelPrunePlan plan = moe::plan_channel_pruning(cfg, s, o.channels);
        if (o.report) print_channel_report(plan);
        if (!o.out.empty()) pruned = moe::prune_channels(model, plan, *backend);
        report = moe::channel_pruning_json(plan);
    }
    const double measure_s = seconds_since(t0);
    if (!pruned) return 0;

    nlohmann::json summary;
    summary["source"] = o.checkpoint;
    summary["measure_batches"] = o.batches;
    summary["measure_s"] = measure_s;
    summary["eval_batches"] = eval_n;
    summary["val_loss_before"] = moe::evaluate(model, val, eval_n, lambda).loss;
    summary["val_loss_pruned"] = moe::evaluate(*pruned, val, eval_n, lambda).loss;
    summary["before"] = sizes(cfg, project.training.seq_len);
    summary["after"] = sizes(pruned->config(), project.training.seq_len);

    // Written beside the final name and moved into place whole.
    const std::string tmp = o.out + ".tmp";
    std::error_code ec;
    fs::remove_all(tmp, ec);
    try {
        moe::save_model_checkpoint(tmp, *pruned, {{"pruned_from", o.checkpoint}});
        project.model = pruned->config();  // the fine-tune trains the pruned shape
        pruned.reset();
        if (o.finetune > 0) {
            double ft_s = 0.0;
            summary["val_loss_finetuned"] = finetune(o, project, tmp, ft_s, summary);
            summary["finetune_steps"] = o.finetune;
            summary["finetune_s"] = ft_s;
        }
        report["summary"] = summary;
        write_json((fs::path(tmp) / moe::kPruningReportFile).string(), report);
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
    fs::remove_all(o.out, ec);
    fs::rename(tmp, o.out, ec);
    if (ec)
        throw moe::FileError(o.out,
                             "cannot move the pruned checkpoint into place: " + ec.message());
    std::printf("wrote %s: val loss %.4f -> %.4f pruned", o.out.c_str(),
                summary["val_loss_before"].get<double>(), summary["val_loss_pruned"].get<double>());
    if (summary.contains("val_loss_finetuned"))
        std::printf(" -> %.4f after %lld fine-tuning steps",
                    summary["val_loss_finetuned"].get<double>(),
                    static_cast<long long>(o.finetune));
    const auto params = [&](const char* k) {
        return static_cast<long long>(summary[k]["total_params"].get<int64_t>() +
                                      summary[k]["mtp_params"].get<int64_t>());
    };
    std::printf("; parameters (MTP included) %lld -> %lld, forward FLOPs/token %.4g -> %.4g\n",
                params("before"), params("after"),
                summary["before"]["forward_flops_per_token"].get<double>(),
                summary["after"]["forward_flops_per_token"].get<double>());
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    moe::app::ensure_passive_openmp_waits(argv);
    CLI::App app{"moe-prune: remove experts or FFN channels from a checkpoint (docs/pruning.md)"};
    Options o;
    app.add_option("checkpoint", o.checkpoint,
                   "Checkpoint directory (config.json + model.safetensors)")
        ->required();
    app.add_option("--experts", o.experts, "Fraction of each MoE layer's routed experts to remove");
    app.add_option("--by", o.by, "Expert ranking: masked_loss (default), gate_mass or load");
    app.add_flag("--ungroup", o.ungroup,
                 "Rank a layer's experts together and set n_group to 1 (default: the same number "
                 "leaves every group)");
    app.add_option("--channels", o.channels, "Fraction of every FFN's hidden channels to remove");
    app.add_option("--out", o.out, "Directory for the pruned checkpoint and pruning.json");
    app.add_flag("--force", o.force, "Replace --out when it exists");
    app.add_flag("--report", o.report,
                 "Print the ranking (experts) or saliency summary (channels)");
    app.add_option(
        "--project", o.project_path,
        "Project whose data to measure on (default: the checkpoint's trainer_state.json)");
    app.add_option("--batches", o.batches, "Training batches to measure importance or saliency on")
        ->check(CLI::Range(int64_t(1), int64_t(100000)));
    app.add_option("--eval-batches", o.eval_batches,
                   "Validation batches for the losses (default: the project's eval_batches)")
        ->check(CLI::Range(int64_t(1), int64_t(100000)));
    app.add_option("--finetune", o.finetune, "Fine-tune the pruned model for this many steps")
        ->check(CLI::Range(int64_t(1), int64_t(100000000)));
    app.add_option("--lr", o.lr, "Peak learning rate of the fine-tune (default: the project's)")
        ->check(CLI::PositiveNumber);
    app.add_option("--threads", o.threads, "CPU threads (0 = the project's)")
        ->check(CLI::Range(0, 1024));
    app.add_option("--device", o.device, "Where to compute: cpu or cuda:N (default cpu)");
    CLI11_PARSE(app, argc, argv);
    try {
        moe::app::install_backend_factory();
        return run(o);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "moe-prune: error: %s\n", e.what());
        return 1;
    }
}
