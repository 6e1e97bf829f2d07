#pragma once
// Trainer: runs a project's training, one optimizer step at a time, and records everything the
// workbench shows in the run file: per-step metrics, expert load and bias, evaluations, routing
// snapshots of a fixed probe text. Checkpoints every N steps; resumes bit-exactly.
//
// One step = grad_accum micro-batches (forward, backward) -> NaN/Inf guard -> global-norm
// clipping -> AdamW -> aux-loss-free bias update (counts over the whole global batch).
// The driver (moe-train, a GUI session) calls step() in a loop on its own thread and decides
// when to stop; the trainer itself never blocks on anything but its own computation and I/O.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "data/data_loader.h"
#include "model/model.h"
#include "parallel/parallel_layout.h"
#include "store/project.h"
#include "store/run_writer.h"
#include "train/adamw.h"
#include "train/bias_balancer.h"
#include "train/loss_scaler.h"
#include "train/train_reports.h"
#include "train/training_checkpoint.h"

namespace moe {

class QuantRecorder;
class WeightFakeQuant;

struct TrainerPaths {
    std::string run_file;         // HDF5 run file to create (must not exist)
    std::string checkpoint_root;  // checkpoints go to <root>/step-NNNNNNNN (empty: no checkpoints)
};

class Trainer {
public:
    // A new run on the project's training.device (make_backend). `threads` overrides the
    // project's thread count when > 0.
    // With several ranks (`parallel`, docs/parallelism.md) every rank constructs its Trainer
    // with the same project; rank 0 writes the run file and the checkpoints, the others only
    // train (paths are ignored there).
    Trainer(const Project& project, const TrainerPaths& paths, int threads = 0,
            ParallelContext parallel = ParallelContext::solo());
    // Continues the run saved in `checkpoint_dir` (a TrainingState directory) into a new run
    // file; the project is the checkpoint's, with `steps` raised to total_steps when > 0 and
    // the device replaced by `device` when not empty (a GPU run resumes on the CPU and back).
    static std::unique_ptr<Trainer> resume(const std::string& checkpoint_dir,
                                           const TrainerPaths& paths, int threads = 0,
                                           int64_t total_steps = 0,
                                           const std::string& device = "",
                                           ParallelContext parallel = ParallelContext::solo());
    ~Trainer();

    // One optimizer step plus its bookkeeping (run-file rows, evaluation, routing snapshot,
    // checkpoint as scheduled). Throws Error when the run must stop: repeated NaN/Inf steps, or
    // an update that made the weights non-finite. Nothing is saved then; the message names the
    // newest checkpoint whose weights were seen to train (a finite loss and gradients on the
    // step after it was saved), or says there is none. No checkpoint is ever written from
    // non-finite weights.
    StepReport step();
    bool finished() const { return step_ >= project_.training.steps; }

    EvalReport evaluate();                 // also appended to the run file
    std::string save_checkpoint();         // returns the directory ("" without a root)
    void close();                          // flushes and closes the run file

    const Project& project() const { return project_; }
    int64_t steps_done() const { return step_; }
    Model& model() { return *model_; }
    // QAT's fake quantization (null without QAT), e.g. for its learned clips.
    const WeightFakeQuant* qat() const { return qat_.get(); }
    Backend& backend() { return *backend_; }
    DataLoader& data() { return *data_; }
    const std::string& run_file() const { return paths_.run_file; }
    const ParallelContext& parallel() const { return par_; }
    bool writes() const { return run_ != nullptr; }  // rank 0: the run file is this trainer's
    const std::string& last_checkpoint() const { return last_checkpoint_; }
    // The newest checkpoint whose weights then trained without NaN/Inf ("" if none yet).
    const std::string& last_good_checkpoint() const { return last_good_checkpoint_; }
    // Called on the trainer's thread when an evaluation or checkpoint finishes.
    std::function<void(const EvalReport&)> on_eval;
    std::function<void(const std::string&)> on_checkpoint;

private:
    Trainer(const Project& project, const TrainerPaths& paths, int threads, bool fresh,
            ParallelContext parallel);
    // This rank's slice of global_batch_ into batch_ (the whole batch with one rank).
    void take_local_slice();
    // Data parallelism after the micro-batches: gradients, losses and expert counts summed
    // over the ranks; the per-rank communication figures gathered to rank 0.
    void reduce_over_ranks(StepReport& r);
    void write_parallel_row();
    void open_run_file(const std::string& device);
    void write_routing_snapshot();
    void write_sparsity_row();
    bool records_quant_at(int64_t step) const;  // step counted from 1
    TrainingState state() const;
    bool weights_finite() const;  // every weight finite
    std::string good_checkpoint_note() const;  // "the last good weights are in ..." or none

    Project project_;
    TrainerPaths paths_;
    std::unique_ptr<Backend> backend_;
    std::unique_ptr<Model> model_;
    std::unique_ptr<DataLoader> data_;
    std::unique_ptr<AdamW> optimizer_;
    std::unique_ptr<BiasBalancer> balancer_;
    std::unique_ptr<RunWriter> run_;
    std::unique_ptr<LossScaler> scaler_;
    std::unique_ptr<QuantRecorder> recorder_;  // quantized modes with record_every > 0
    std::unique_ptr<WeightFakeQuant> qat_;      // training.precision.qat enabled
    WeightFakeQuant* qat_now() const;            // qat_ when it is active at this step, else null
    ProbeBatch probe_;
    Batch batch_, global_batch_;
    ParallelContext par_;
    double step_s_ = 0.0;            // this rank's steps since the last /parallel row
    int64_t parallel_row_step_ = 0;  // the step of that row
    std::vector<MoeLayer*> moe_layers_;

    int64_t step_ = 0, tokens_ = 0, bad_steps_ = 0;
    double wall_s_ = 0, recent_rate_ = 0;
    std::string last_checkpoint_;
    int64_t last_checkpoint_step_ = -1;
    // The newest checkpoint whose weights then gave a finite loss and gradients (never pruned).
    std::string last_good_checkpoint_;
};

}  // namespace moe
