#pragma once
// RunController: one run file, finished or still being written, translated into the views'
// plain data (views/plot_data.h). A live file is polled (RunReader::refresh) a few times a
// second and only the new rows are read; `updated` is coalesced so views redraw at most ~30
// times a second however fast rows arrive.
#include <QObject>
#include <QPointer>
#include <QString>
#include <QTimer>

#include <memory>
#include <vector>

#include "communication_data.h"
#include "expert_load_data.h"
#include "plot_data.h"
#include "quantization_data.h"
#include "run_curves.h"
#include "sparsity_data.h"
#include "store/run_reader.h"
#include "train/optimizer_settings.h"
#include "train/train_reports.h"

namespace moe::remote {
class RemoteConnection;
}

namespace moe::workbench {

class RunController : public QObject {
    Q_OBJECT

public:
    // Opens the file; throws moe::Error (FileError) when it is not a readable run file.
    explicit RunController(const QString& path, QObject* parent = nullptr);
    ~RunController() override;

    QString path() const { return path_; }
    QString name() const;  // run name from the header, else the file's stem
    const RunHeader& header() const { return reader_->header(); }
    bool live() const { return live_; }

    // Metrics as curves over the step: "loss", "mtp_loss", "aux_loss", "lr", "grad_norm",
    // "tokens_per_s"; "eval_loss" over evaluation steps. Named after the run.
    views::Series series(const QString& metric) const;
    int64_t metric_rows() const { return int64_t(step_.size()); }
    int64_t eval_rows() const { return int64_t(eval_.size()); }
    int64_t expert_rows() const { return reader_->experts_count(); }
    int64_t routing_rows() const { return reader_->routing_count(); }
    // The probe's routing at logged routing row i (0 .. routing_rows()-1).
    RoutingRow routing(int64_t i) const { return reader_->routing(i); }
    // Main decoder layers of the run's model (from the header's config_json; 0 if unreadable):
    // MoE layer indices at or past it are MTP modules.
    int64_t main_layers() const { return main_layers_; }
    // Tokens per expert over the logged steps of one MoE layer: rows = steps, cols = experts.
    views::Matrix expert_load(int layer) const;
    // The latest balancing bias of one layer (1 x E).
    views::Matrix expert_bias(int layer) const;

    // The views' plain data: every metric and evaluation column; every logged expert row.
    views::RunCurves curves() const;
    const views::ExpertLoadData& expert_load_data() const { return experts_; }

    // "fp32", "bf16", "fp16" or "fp8" (format version 2; "fp32" for older files).
    QString precision() const { return QString::fromStdString(reader_->header().precision); }
    // /quant as the Quantization view's data. Only the steps are held; a row (every tensor's
    // histograms, ~1 MB for the tiny preset) or one tensor's series is read from the file when
    // the view asks, so a long run costs no memory here.
    views::QuantRunData quant_data() const;
    int64_t quant_rows() const { return int64_t(quant_steps_.size()); }
    // /sparsity: near-zero SwiGLU outputs per FFN layer and unused experts per MoE layer.
    views::SparsityOverTraining sparsity_over_training() const;
    int64_t sparsity_rows() const { return reader_->sparsity_count(); }
    // /parallel: each rank's communication per step (runs of several processes).
    views::CommunicationData communication_data() const;
    int64_t communication_rows() const { return reader_->parallel_count(); }

    // Metrics of a live session arrive as step reports (every step) rather than as file rows
    // (flushed every log_every steps); the file still provides experts, evals and routing.
    void follow_session();
    void add_step(const StepReport& r);
    // Polls the file now (the timer does it while live); stops polling when the writer is done.
    void poll();
    void set_writer_done();
    // The file at path() was replaced by a newer copy (a remote run's mirror): reads it again,
    // keeping the metrics that came from the session.
    void reopen();
    double longest_poll_ms() const { return longest_poll_ms_; }

    // A run that trained on a moe-worker: path() is the local mirror, the checkpoints stay on
    // the worker (remote_run_file: its run file, relative to the worker's runs folder).
    void set_worker(remote::RemoteConnection* connection, const QString& remote_run_file);
    remote::RemoteConnection* worker() const;  // nullptr: a local run (or the link is gone)
    QString remote_run_file() const { return remote_run_file_; }

signals:
    void updated();  // coalesced, at most ~30 per second

private:
    QPointer<remote::RemoteConnection> worker_;
    QString remote_run_file_;
    void read_new_metrics();
    void read_eval();
    void read_new_experts();
    void read_quant_steps();
    void schedule_update();
    QString layer_name(int64_t hf_index) const;  // "layer 3", or "MTP 1" past the main layers

    QString path_;
    std::unique_ptr<RunReader> reader_;
    bool live_ = false, from_session_ = false;
    int64_t metrics_read_ = 0;
    double longest_poll_ms_ = 0;
    int64_t main_layers_ = 0;
    // The MTP loss is logged after its weight lambda; the curves show it unweighted.
    MtpSchedule mtp_schedule_;
    int64_t planned_steps_ = 0;
    double unweighted_mtp(double logged, int64_t step) const;
    std::vector<double> step_, tokens_, wall_s_, loss_, mtp_loss_, aux_loss_, lr_, grad_norm_, tokens_per_s_;
    std::vector<double> loss_scale_, skipped_;  // kept for fp16 runs only
    std::vector<double> quant_steps_;
    std::vector<EvalRow> eval_;
    views::ExpertLoadData experts_;
    QTimer poll_timer_, update_timer_;
};

}  // namespace moe::workbench
