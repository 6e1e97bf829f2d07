#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>

#include "backend/backend_registry.h"
#include "core/error.h"
#include "core/json_fields.h"
#include "train/evaluator.h"
#include "train/grad_clip.h"
#include "train/memory_plan.h"
#include "train/weight_fake_quant.h"
#include "store/model_checkpoint.h"
#include "model/linear_precision.h"
#include "quant/quant_recorder.h"

namespace moe {

namespace {
// |a| below this counts as a near-zero SwiGLU output in /sparsity (docs/run-format.md).
constexpr float kNearZeroThreshold = 1e-3f;
}  // namespace

namespace {

using Clock = std::chrono::steady_clock;

void make_parent_dirs(const std::string& path) {
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(parent, ec);
        if (ec) throw FileError(parent.string(), "cannot create folder: " + ec.message());
    }
}

}  // namespace

Trainer::Trainer(const Project& project, const TrainerPaths& paths, int threads, ParallelContext parallel)
    : Trainer(project, paths, threads, true, std::move(parallel)) {}

Trainer::Trainer(const Project& project, const TrainerPaths& paths, int threads, bool fresh,
                 ParallelContext parallel)
    : project_(project), paths_(paths), par_(std::move(parallel)) {
    project_.validate();
    const int ranks = par_.world->size();
    if (project_.training.batch_size % ranks != 0)
        throw ConfigError("training.batch_size",
                          std::to_string(project_.training.batch_size) + " sequences do not split evenly over " +
                              std::to_string(ranks) + " ranks (" + par_.layout.to_string() +
                              "): use a multiple of " + std::to_string(ranks));
    // The balancing mode decides which balance loss the model computes (see apply_balance_mode).
    apply_balance_mode(project_.training.balance, project_.model);
    const TrainingSettings& tr = project_.training;
    backend_ = make_backend(tr.device, threads > 0 ? threads : static_cast<int>(tr.threads),
                            "training.device");
    // Before the model, optimizer and batches exist: a run that cannot fit is refused with the
    // field to change, not ended by an allocation failure halfway.
    check_training_fits(project_, backend_->allocator(), backend_->prefers_fused_attention());
    model_ = std::make_unique<Model>(project_.model, *backend_);
    model_->init_weights(static_cast<uint64_t>(tr.seed));
    model_->set_linear_recipe(tr.precision.recipe());
    // Expert parallelism: each MoE layer's routed experts split over the expert group.
    // A run of one rank under --parallel dispatches to itself: every path runs.
    if (par_.parallel() && (par_.layout.ep > 1 || par_.world->size() == 1))
        model_->set_expert_parallel(par_.experts.get());
    scaler_ = std::make_unique<LossScaler>(tr.precision.loss_scale, tr.precision.loss_scaling());
    data_ = std::make_unique<DataLoader>(tr.data, static_cast<uint64_t>(tr.seed), tr.batch_size,
                                         tr.seq_len);
    optimizer_ = std::make_unique<AdamW>(model_->parameters(), *backend_, tr.optimizer);
    // ZeRO-1: each rank keeps and updates a 1/ranks slice of the AdamW moments.
    if (par_.parallel() && par_.layout.zero) optimizer_->shard(*par_.world);
    balancer_ = std::make_unique<BiasBalancer>(tr.balance.bias_updates() ? tr.balance.gamma : 0.0);
    moe_layers_ = model_->moe_layers();
    probe_ = data_->probe_batch(tr.probe_tokens);
    if (tr.precision.qat.enabled())  // every rank, before any file is made
        qat_ = std::make_unique<WeightFakeQuant>(model_->parameters(), tr.precision.qat.spec(),
                                                 tr.precision.qat.scale_lr);
    if (fresh) {
        if (par_.root()) open_run_file(backend_->describe());
        write_routing_snapshot();  // step 0: routing of the untrained model
    }
}

Trainer::~Trainer() = default;

std::unique_ptr<Trainer> Trainer::resume(const std::string& checkpoint_dir,
                                         const TrainerPaths& paths, int threads,
                                         int64_t total_steps, const std::string& device,
                                         ParallelContext parallel) {
    const TrainingState st = load_training_state(checkpoint_dir);
    // config.json and the trainer state are written together; anything else is a damaged or
    // hand-edited checkpoint, and which of them is right cannot be told.
    const std::string config_path = (std::filesystem::path(checkpoint_dir) / "config.json").string();
    const ModelConfig on_disk = load_checkpoint_config(checkpoint_dir);
    if (!(on_disk == st.project.model)) {
        std::string fields;
        for (const std::string& f : json_fields::differences(on_disk.to_json(), st.project.model.to_json()))
            fields += (fields.empty() ? "" : ", ") + f;
        throw FileError(config_path, "differs from the model in trainer_state.json (" + fields +
                                         "); the checkpoint cannot be resumed");
    }
    check_checkpoint_files(checkpoint_dir, st);
    const int64_t target = total_steps > 0 ? total_steps : st.project.training.steps;
    if (target <= st.step)
        throw Error("nothing to train: " + checkpoint_dir + " is at step " +
                    std::to_string(st.step) + " and the run would end at step " +
                    std::to_string(target) +
                    (total_steps > 0 ? std::string(" (the steps asked for)")
                                     : std::string(" (its training.steps)")) +
                    "; ask for more steps (moe-train --resume DIR --steps N with N > " +
                    std::to_string(st.step) + ")");
    // Unfinished checkpoint writes of the run being continued (rank 0's folder to tidy).
    if (parallel.root())
        remove_unfinished_checkpoints(std::filesystem::path(checkpoint_dir).parent_path().string());
    Project project = st.project;
    if (total_steps > 0) project.training.steps = total_steps;
    if (!device.empty()) project.training.device = device;
    std::unique_ptr<Trainer> t(new Trainer(project, paths, threads, false, std::move(parallel)));
    t->optimizer_->gather_state();  // sharded moments: whole while the file is read
    load_training_tensors(checkpoint_dir, *t->model_, *t->optimizer_);
    t->optimizer_->release_full_state();
    t->optimizer_->set_step_count(st.optimizer_step);
    t->data_->restore(st.data);
    t->step_ = st.step;
    t->tokens_ = st.tokens;
    t->wall_s_ = st.wall_s;
    t->bad_steps_ = st.bad_steps;
    t->scaler_->restore(st.loss_scale, st.loss_scale_good_steps);
    t->last_checkpoint_ = checkpoint_dir;
    t->last_checkpoint_step_ = st.step;
    // Resumable means loaded and finite; "good" still waits for a step that trains on them.
    if (t->par_.root()) t->open_run_file(t->backend_->describe());
    return t;
}

void Trainer::open_run_file(const std::string& device) {
    RunHeader h;
    h.project_json = project_.to_json().dump();
    h.config_json = project_.model.to_json().dump();
    h.name = project_.name;
    h.device = device;
    for (MoeLayer* l : moe_layers_) h.moe_layer_indices.push_back(l->layer_index());
    h.n_experts = project_.model.n_routed_experts;
    h.top_k = project_.model.num_experts_per_tok;
    h.label_names = data_->label_names();
    // The probe's inputs: its routing is recorded for these T_p tokens.
    const int64_t tp = probe_.batch.seq_len;
    h.probe_tokens.assign(probe_.batch.tokens.begin(), probe_.batch.tokens.begin() + tp);
    h.probe_text = probe_.text.substr(0, static_cast<size_t>(tp));
    h.probe_labels.assign(probe_.labels.begin(), probe_.labels.begin() + tp);

    // Precision: which casts /quant measures, and whose block scales it keeps (every projection
    // weight, and the inputs of layer 0's attention projections, whose shape is fixed).
    const TrainingSettings& tr = project_.training;
    const LinearRecipe recipe = tr.precision.recipe();
    h.precision = tr.precision.mode;
    if (recipe.quantized() && tr.precision.record_every > 0) {
        auto add_scale = [&](const std::string& key, int64_t rows, int64_t cols, TileShape tile) {
            h.scale_tensors.push_back(key);
            h.scale_grid_rows.push_back(tile_grid_rows(rows, tile));
            h.scale_grid_cols.push_back(tile_grid_cols(cols, tile));
        };
        for (const Parameter* p : model_->parameters().all()) {
            if (!is_projection_weight(p->name, p->value.rank())) continue;
            const int64_t out = p->value.shape()[0], in = p->value.shape()[1];
            for (auto [suffix, role] : {std::pair{"", QuantRole::Weight},
                                        std::pair{"@input", QuantRole::Activation},
                                        std::pair{"@grad", QuantRole::Gradient}}) {
                h.quant_tensors.push_back(p->name + suffix);
                h.quant_roles.push_back(to_string(role));
            }
            add_scale(p->name, out, in, recipe.weight().tile);
            if (p->name.starts_with("model.layers.0.self_attn.") &&
                !p->name.ends_with("o_proj.weight") && !p->name.ends_with("q_b_proj.weight") &&
                !p->name.ends_with("kv_b_proj.weight"))
                add_scale(p->name + "@input", tr.batch_size * tr.seq_len, in,
                          recipe.activation().tile);
        }
        recorder_ = std::make_unique<QuantRecorder>(h.quant_tensors, h.scale_tensors,
                                                    h.scale_grid_rows, h.scale_grid_cols);
    }
    h.ffn_layer_indices = model_->ffn_layer_indices();
    h.near_zero_threshold = kNearZeroThreshold;
    h.world_size = par_.world->size();
    h.parallel_layout = par_.layout.to_string();

    make_parent_dirs(paths_.run_file);
    run_ = std::make_unique<RunWriter>(paths_.run_file, h);
}

void Trainer::write_routing_snapshot() {
    if (moe_layers_.empty()) return;
    const FakeQuantScope qat(qat_now());  // the routing of the model QAT trains
    ForwardOptions opt;
    opt.probe_routing = true;
    model_->forward(probe_.batch, opt);
    RoutingRow row;
    row.step = step_;
    for (const RoutingRecord& r : model_->routing()) {
        row.topk.insert(row.topk.end(), r.topk_idx.begin(), r.topk_idx.end());
        row.weights.insert(row.weights.end(), r.topk_weight.begin(), r.topk_weight.end());
        row.scores.insert(row.scores.end(), r.scores.begin(), r.scores.end());
    }
    if (run_) run_->append(row);
}

TrainingState Trainer::state() const {
    TrainingState s;
    s.step = step_;
    s.tokens = tokens_;
    s.wall_s = wall_s_;
    s.bad_steps = bad_steps_;
    s.optimizer_step = optimizer_->step_count();
    s.loss_scale = scaler_->scale();
    s.loss_scale_good_steps = scaler_->good_steps();
    s.data = data_->state();
    s.project = project_;
    s.run_file = paths_.run_file;
    return s;
}

StepReport Trainer::step() {
    if (finished()) throw Error("the run has already done its " +
                                std::to_string(project_.training.steps) + " steps");
    const auto t0 = Clock::now();
    const TrainingSettings& tr = project_.training;
    const int64_t accum = tr.optimizer.grad_accum;
    ForwardOptions opt;
    opt.mtp_lambda = tr.mtp.lambda_at(step_, tr.steps);

    model_->parameters().zero_grads();
    StepReport r;
    const double loss_scale = scaler_->scale();
    const bool record = records_quant_at(step_ + 1);
    // The recorder measures the first micro-batch's casts; cleared even if a pass throws.
    struct RecorderGuard {
        PrecisionContext& pc;
        ~RecorderGuard() { pc.recorder = nullptr; }
    } guard{model_->precision()};
    if (record) recorder_->begin();
    {
    // QAT: the passes see the fake-quantized weights; the masters are back before the update.
    const FakeQuantScope qat(qat_now());
    r.index_warmup = model_->config().index_topk > 0 && step_ < tr.index_warmup_steps;
    model_->set_index_warmup(r.index_warmup);
    for (int64_t a = 0; a < accum; ++a) {
        // Every rank draws the global batch (the stream's position does not depend on the
        // layout, so a run resumes under another one) and trains on its slice.
        data_->next_train_batch(global_batch_);
        take_local_slice();
        model_->precision().recorder = record && a == 0 ? recorder_.get() : nullptr;
        const LossReport lr = model_->forward(batch_, opt);
        model_->backward(static_cast<float>(loss_scale));
        model_->precision().recorder = nullptr;
        balancer_->accumulate(moe_layers_);
        r.loss += lr.loss / double(accum);
        r.mtp_loss += lr.mtp_loss / double(accum);
        r.aux_loss += lr.aux_loss / double(accum);
        r.indexer_loss += lr.indexer_loss / double(accum);
    }
    }
    reduce_over_ranks(r);
    // Gradients are sums over micro-batches (and ranks) of loss_scale * d loss: all divide out
    // here.
    const double unscale = 1.0 / (double(accum) * loss_scale * double(par_.world->size()));
    const GradNorm gn =
        global_grad_norm(model_->parameters(), *backend_, tr.optimizer.grad_clip, unscale);
    r.grad_norm = gn.norm;
    r.loss_scale = loss_scale;
    r.lr = tr.optimizer.schedule.lr_at(step_, tr.optimizer.lr);
    const bool finite_loss = std::isfinite(r.loss + r.mtp_loss + r.aux_loss);
    // fp16: an overflow in the gradients is the loss scale's business (skip, back off), not a
    // divergence; a non-finite loss always is.
    const bool apply = scaler_->update(finite_loss && gn.finite) && finite_loss;
    const bool expected_overflow = finite_loss && scaler_->last_was_overflow();
    if (apply) {
        // Learned QAT scales: the clips from this step's gradients, applied to the updated
        // masters (weight_fake_quant.h).
        WeightFakeQuant* learning = qat_now() && qat_->learns_scales() ? qat_.get() : nullptr;
        if (learning) learning->prepare_clips();
        optimizer_->step(r.lr, gn.factor * unscale);
        if (learning) learning->apply_clips();
        // The guard above saw finite gradients, but an update can still overflow (a learning
        // rate of 1e300): then the previous weights are gone, and the run cannot go on.
        if (!weights_finite()) {
            if (run_) run_->flush();
            throw Error("training stopped at step " + std::to_string(step_ + 1) +
                        ": the AdamW update at learning rate " + json_fields::format_number(r.lr) +
                        " made the weights non-finite (lower training.optimizer.lr); " +
                        good_checkpoint_note());
        }
        // The weights the last checkpoint holds just gave a finite loss and gradients.
        if (!last_checkpoint_.empty() && last_checkpoint_step_ == step_)
            last_good_checkpoint_ = last_checkpoint_;
        balancer_->update(moe_layers_, *backend_);
        bad_steps_ = 0;
        for (const auto& c : balancer_->last_counts()) r.maxvio.push_back(max_violation(c));
    } else {
        balancer_->reset();
        if (!expected_overflow) ++bad_steps_;
        r.skipped = true;
    }

    ++step_;
    tokens_ += accum * tr.batch_size * tr.seq_len;
    const double dt = std::chrono::duration<double>(Clock::now() - t0).count();
    wall_s_ += dt;
    recent_rate_ = recent_rate_ == 0 ? dt : 0.9 * recent_rate_ + 0.1 * dt;
    step_s_ += dt;
    r.step = step_;
    r.total_steps = tr.steps;
    r.tokens = tokens_;
    r.tokens_per_s = double(accum * tr.batch_size * tr.seq_len) / dt;
    r.wall_s = wall_s_;
    r.eta_s = recent_rate_ * double(tr.steps - step_);

    MetricsRow m;
    m.step = step_;
    m.tokens = tokens_;
    m.wall_s = wall_s_;
    m.loss = r.loss;
    m.mtp_loss = r.mtp_loss;
    m.aux_loss = r.aux_loss;
    m.lr = r.lr;
    m.grad_norm = r.grad_norm;
    m.tokens_per_s = r.tokens_per_s;
    m.loss_scale = loss_scale;
    m.skipped = r.skipped ? 1 : 0;
    if (run_) run_->append(m);

    // Every rank reaches the same decisions below (they see the same reduced figures), so the
    // collectives inside them line up.
    const bool log_now = !r.skipped && ((tr.log_every && step_ % tr.log_every == 0) || finished());
    if (log_now && par_.parallel()) write_parallel_row();
    if (log_now && run_) {
        ExpertsRow e;
        e.step = step_;
        for (size_t l = 0; l < moe_layers_.size(); ++l) {
            const auto& counts = balancer_->last_counts()[l];
            e.load.insert(e.load.end(), counts.begin(), counts.end());
            if (moe_layers_[l]->has_bias()) {
                const std::vector<float> bias = moe_layers_[l]->bias().value.to_host();
                e.bias.insert(e.bias.end(), bias.begin(), bias.end());
            } else {
                e.bias.insert(e.bias.end(), static_cast<size_t>(moe_layers_[l]->n_experts()), 0.0f);
            }
            e.maxvio.push_back(static_cast<float>(r.maxvio[l]));
        }
        if (!moe_layers_.empty()) run_->append(e);
        write_sparsity_row();
        run_->flush();
    }
    if (record && run_) {
        run_->append(recorder_->row(step_));
        run_->flush();
    }
    if ((tr.eval_every && step_ % tr.eval_every == 0) || finished()) evaluate();
    if ((tr.routing_every && step_ % tr.routing_every == 0) || finished()) {
        write_routing_snapshot();
        if (run_) run_->flush();
    }
    if (bad_steps_ > 0 && tr.max_bad_steps > 0 && bad_steps_ >= tr.max_bad_steps) {
        // The current weights gave NaN/Inf on every batch since the last update: they are not
        // saved (a checkpoint must hold weights that train). The newest checkpoint whose weights
        // were seen to give a finite loss and gradients is the one to go back to.
        if (run_) run_->flush();
        throw Error("training stopped at step " + std::to_string(step_) + ": the loss or the " +
                    "gradient was NaN/Inf for " + std::to_string(bad_steps_) +
                    " steps in a row (lower training.optimizer.lr or raise grad_clip); " +
                    good_checkpoint_note());
    }
    const bool scheduled = tr.checkpoint_every && step_ % tr.checkpoint_every == 0;
    if (scheduled || finished()) save_checkpoint();

    return r;
}

bool Trainer::records_quant_at(int64_t step) const {
    const int64_t every = project_.training.precision.record_every;
    if (!recorder_ || every <= 0) return false;
    return step == 1 || step % every == 0 || step == project_.training.steps;
}

// Activation sparsity of the step's last micro-batch and the experts the step left unused.
void Trainer::write_sparsity_row() {
    SparsityRow row;
    row.step = step_;
    for (double f : model_->ffn_near_zero(kNearZeroThreshold))
        row.near_zero.push_back(static_cast<float>(f));
    for (const auto& counts : balancer_->last_counts()) {
        int64_t unused = 0;
        for (auto c : counts) unused += c == 0;
        row.unused_experts.push_back(
            counts.empty() ? 0.0f : static_cast<float>(double(unused) / double(counts.size())));
    }
    if (run_ && row.unused_experts.size() == moe_layers_.size() && !moe_layers_.empty()) run_->append(row);
}

WeightFakeQuant* Trainer::qat_now() const {
    return qat_ && project_.training.precision.qat.active_at(step_) ? qat_.get() : nullptr;
}

EvalReport Trainer::evaluate() {
    const TrainingSettings& tr = project_.training;
    const FakeQuantScope qat(qat_now());  // a QAT run is evaluated as the quantized model
    EvalReport rep = moe::evaluate(*model_, *data_, tr.eval_batches, tr.mtp.lambda_at(step_, tr.steps));
    rep.step = step_;
    EvalRow row;
    row.step = step_;
    row.loss = rep.loss;
    row.label_loss = rep.label_loss;
    row.label_accuracy = rep.label_accuracy;
    if (run_) {
        run_->append(row);
        run_->flush();
    }
    if (on_eval) on_eval(rep);
    return rep;
}

std::string Trainer::good_checkpoint_note() const {
    std::error_code ec;
    if (last_good_checkpoint_.empty() || !std::filesystem::exists(last_good_checkpoint_, ec))
        return "no checkpoint with weights that trained without NaN/Inf was saved in this run";
    return "the last good weights are in " + last_good_checkpoint_ +
           " (resume from there with a lower learning rate)";
}

bool Trainer::weights_finite() const {
    // One pass over the value arena (the CPU sums squares in double; a device summing in float
    // would also flag |w| > 1e19, which no trained weight reaches).
    const Tensor& w = model_->parameters().value_arena();
    return std::isfinite(backend_->sum_squares(w.data(), w.numel()));
}

std::string Trainer::save_checkpoint() {
    if (paths_.checkpoint_root.empty()) return {};
    // ZeRO-1: every rank brings its slice of the moments (collective), rank 0 writes them whole.
    optimizer_->gather_state();
    struct Release {
        AdamW& o;
        ~Release() { o.release_full_state(); }
    } release{*optimizer_};
    // The ranks hold the same weights and optimizer state: rank 0 saves.
    if (!par_.root()) return {};
    const std::string dir = checkpoint_dir_name(paths_.checkpoint_root, step_);
    if (dir == last_checkpoint_) return dir;  // this step is saved already
    // A checkpoint is a promise of usable weights (the guard relies on it).
    if (!weights_finite())
        throw Error("not saving a checkpoint at step " + std::to_string(step_) +
                    ": the weights are not finite");
    save_training_checkpoint(dir, *model_, *optimizer_, state());
    prune_checkpoints(paths_.checkpoint_root, project_.training.keep_checkpoints,
                      last_good_checkpoint_);
    last_checkpoint_ = dir;
    last_checkpoint_step_ = step_;
    if (run_) run_->flush();
    if (on_checkpoint) on_checkpoint(dir);
    return dir;
}

void Trainer::take_local_slice() {
    const int ranks = par_.world->size();
    if (ranks == 1) {
        std::swap(batch_, global_batch_);
        return;
    }
    const int64_t local = global_batch_.batch / ranks, row = global_batch_.seq_len + 1;
    batch_.batch = local;
    batch_.seq_len = global_batch_.seq_len;
    const auto first = global_batch_.tokens.begin() + par_.rank() * local * row;
    batch_.tokens.assign(first, first + local * row);
}

void Trainer::reduce_over_ranks(StepReport& r) {
    if (!par_.parallel()) return;
    Communicator& world = *par_.world;
    Tensor& grads = model_->parameters().grad_arena();
    world.all_reduce_sum(grads.data(), grads.numel());
    double losses[3] = {r.loss, r.mtp_loss, r.aux_loss};
    world.all_reduce_sum(losses, 3);
    const double n = double(world.size());
    r.loss = losses[0] / n;
    r.mtp_loss = losses[1] / n;
    r.aux_loss = losses[2] / n;
    balancer_->all_reduce(world);  // the bias moves by the global load, the same on every rank
}

// Per rank, per step since the last row: this rank's step time and what it sent.
void Trainer::write_parallel_row() {
    Communicator& world = *par_.world;
    // The figures of every communicator this rank uses (the expert all-to-all runs on the
    // expert group's).
    CommStats s = world.stats();
    for (Communicator* c : {par_.experts.get(), par_.data.get()}) {
        const CommStats& x = c->stats();
        s.all_reduce_bytes += x.all_reduce_bytes;
        s.all_reduce_s += x.all_reduce_s;
        s.all_to_all_bytes += x.all_to_all_bytes;
        s.all_to_all_s += x.all_to_all_s;
        s.tokens_sent += x.tokens_sent;
        s.tokens_received += x.tokens_received;
    }
    const int64_t steps = std::max<int64_t>(1, step_ - parallel_row_step_);
    const double mine[kParallelColumns] = {step_s_ / double(steps),
                                           double(s.all_reduce_bytes) / double(steps),
                                           s.all_reduce_s / double(steps),
                                           double(s.all_to_all_bytes) / double(steps),
                                           s.all_to_all_s / double(steps),
                                           double(s.tokens_sent) / double(steps),
                                           double(s.tokens_received) / double(steps)};
    std::vector<double> all(size_t(world.size()) * kParallelColumns);
    world.all_gather(mine, kParallelColumns, all.data());
    for (Communicator* c : {par_.world.get(), par_.experts.get(), par_.data.get()}) c->stats().reset();
    step_s_ = 0.0;
    parallel_row_step_ = step_;
    if (!run_) return;
    ParallelRow row;
    row.step = step_;
    row.values = std::move(all);
    run_->append(row);
}

void Trainer::close() {
    if (run_) {
        run_->close();
        run_.reset();
    }
}

}  // namespace moe
