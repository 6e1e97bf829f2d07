#include "workbench/run_controller.h"

#include <QElapsedTimer>
#include <QFileInfo>
#include <QPointer>

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "quant/error_metrics.h"
#include "remote_connection.h"

namespace moe::workbench {

RunController::RunController(const QString& path, QObject* parent)
    : QObject(parent), path_(path), reader_(std::make_unique<RunReader>(path.toStdString())) {
    live_ = reader_->live();
    const RunHeader& h = reader_->header();
    try {
        main_layers_ = nlohmann::json::parse(h.config_json).value("num_hidden_layers", int64_t(0));
    } catch (const std::exception&) {
        main_layers_ = 0;
    }
    try {
        const nlohmann::json tr = nlohmann::json::parse(h.project_json).at("training");
        planned_steps_ = tr.value("steps", int64_t(0));
        if (tr.contains("mtp")) mtp_schedule_ = MtpSchedule::from_json(tr.at("mtp"));
    } catch (const std::exception&) {
        // No project in the header (a foreign file): the engine's default schedule.
    }
    // HF indices past the main layers are MTP modules: "layer 3", ..., "MTP 1".
    for (int64_t l = 0; l < h.n_layers(); ++l) {
        const int64_t hf = h.moe_layer_indices[size_t(l)];
        experts_.layer_names << layer_name(hf);
    }
    experts_.experts = int(h.n_experts);
    // Expert parallelism: which rank holds which expert (the layout's ep, "ep=E,dp=D").
    if (h.parallel_layout.starts_with("ep=")) experts_.expert_ranks = std::max(1, std::atoi(h.parallel_layout.c_str() + 3));
    read_new_metrics();
    read_new_experts();
    read_eval();
    read_quant_steps();
    // ~5 Hz polling is live enough for curves and costs a few extent reads.
    poll_timer_.setInterval(200);
    connect(&poll_timer_, &QTimer::timeout, this, &RunController::poll);
    if (live_) poll_timer_.start();
    update_timer_.setSingleShot(true);
    update_timer_.setInterval(33);
    connect(&update_timer_, &QTimer::timeout, this, &RunController::updated);
}

RunController::~RunController() = default;

QString RunController::name() const {
    const QString n = QString::fromStdString(reader_->header().name);
    return n.isEmpty() ? QFileInfo(path_).completeBaseName() : n;
}

void RunController::follow_session() {
    from_session_ = true;
    step_.clear(), tokens_.clear(), wall_s_.clear(), loss_.clear(), mtp_loss_.clear(), aux_loss_.clear();
    lr_.clear(), grad_norm_.clear(), tokens_per_s_.clear();
    loss_scale_.clear(), skipped_.clear();
}

void RunController::add_step(const StepReport& r) {
    if (!from_session_) return;
    step_.push_back(double(r.step));
    tokens_.push_back(double(r.tokens));
    wall_s_.push_back(r.wall_s);
    loss_.push_back(r.skipped ? NAN : r.loss);
    mtp_loss_.push_back(r.skipped ? NAN : unweighted_mtp(r.mtp_loss, r.step));
    aux_loss_.push_back(r.skipped ? NAN : r.aux_loss);
    lr_.push_back(r.lr);
    grad_norm_.push_back(r.grad_norm);
    tokens_per_s_.push_back(r.tokens_per_s);
    if (reader_->header().precision == "fp16") {
        loss_scale_.push_back(r.loss_scale);
        skipped_.push_back(r.skipped ? 1.0 : 0.0);
    }
    schedule_update();
}

void RunController::poll() {
    QElapsedTimer timer;
    timer.start();
    try {
        if (reader_->refresh()) {
            read_new_metrics();
            read_eval();
            read_new_experts();
            read_quant_steps();
            schedule_update();
        }
    } catch (const std::exception&) {
        // A file being written may be momentarily inconsistent; the next poll tries again.
    }
    longest_poll_ms_ = std::max(longest_poll_ms_, timer.nsecsElapsed() / 1e6);
}

void RunController::set_writer_done() {
    poll();
    poll_timer_.stop();
    live_ = false;
    // Re-read from scratch: the finished file holds every row, flushed or not before.
    try {
        reader_ = std::make_unique<RunReader>(path_.toStdString());
        if (!from_session_) {
            metrics_read_ = 0;
            step_.clear(), tokens_.clear(), wall_s_.clear(), loss_.clear(), mtp_loss_.clear(), aux_loss_.clear();
            lr_.clear(), grad_norm_.clear(), tokens_per_s_.clear();
            loss_scale_.clear(), skipped_.clear();
            read_new_metrics();
        }
        read_eval();
        read_new_experts();
        read_quant_steps();
    } catch (const std::exception&) {
    }
    schedule_update();
}

void RunController::set_worker(remote::RemoteConnection* connection, const QString& remote_run_file) {
    worker_ = connection;
    remote_run_file_ = remote_run_file;
}

remote::RemoteConnection* RunController::worker() const { return worker_.data(); }

void RunController::reopen() {
    try {
        auto fresh = std::make_unique<RunReader>(path_.toStdString());
        reader_ = std::move(fresh);
        read_new_metrics();
        read_eval();
        read_new_experts();
        schedule_update();
    } catch (const std::exception&) {
        // Keep the previous copy: the next update brings a readable one.
    }
}

void RunController::read_new_metrics() {
    if (from_session_) return;
    const MetricsColumns m = reader_->metrics_since(metrics_read_);
    // Only fp16 scales its loss; for the other precisions the column holds 0 or 1.
    const bool fp16 = reader_->header().precision == "fp16";
    for (int64_t i = 0; i < m.size(); ++i) {
        const bool skip = m.skipped[size_t(i)] != 0;
        step_.push_back(double(m.step[size_t(i)]));
        tokens_.push_back(double(m.tokens[size_t(i)]));
        wall_s_.push_back(m.wall_s[size_t(i)]);
        loss_.push_back(skip ? NAN : m.loss[size_t(i)]);
        mtp_loss_.push_back(skip ? NAN : unweighted_mtp(m.mtp_loss[size_t(i)], m.step[size_t(i)]));
        aux_loss_.push_back(skip ? NAN : m.aux_loss[size_t(i)]);
        lr_.push_back(m.lr[size_t(i)]);
        grad_norm_.push_back(m.grad_norm[size_t(i)]);
        tokens_per_s_.push_back(m.tokens_per_s[size_t(i)]);
        if (fp16) {
            loss_scale_.push_back(m.loss_scale[size_t(i)]);
            skipped_.push_back(skip ? 1.0 : 0.0);
        }
    }
    metrics_read_ += m.size();
}

// Step s was trained with the weight of step s - 1 (the trainer counts from 0). A weight of 0
// leaves nothing to divide: that point is missing, not zero.
double RunController::unweighted_mtp(double logged, int64_t step) const {
    const double lambda = mtp_schedule_.lambda_at(std::max<int64_t>(0, step - 1), planned_steps_);
    return lambda > 0 ? logged / lambda : NAN;
}

void RunController::read_eval() {
    if (reader_->eval_count() != int64_t(eval_.size())) eval_ = reader_->eval();
}

void RunController::read_new_experts() {
    // Only the rows not read yet: a live run grows by one row per log_every steps.
    const int64_t n = reader_->experts_count(), have = experts_.step_count();
    if (n <= have) return;
    // A file opened from disk: its bias (half the bytes) is read when the bias tab is shown;
    // should rows still arrive (a writer elsewhere), it is read before they are appended.
    const bool lazy_bias = have == 0 && !from_session_ && !worker_;
    if (!lazy_bias && experts_.load_bias) {  // rows arrive after a lazy start: read it now
        experts_.bias = experts_.load_bias();
        experts_.load_bias = nullptr;
    }
    ExpertsRows r = reader_->experts_rows(have, n - have, true, !lazy_bias);  // one read per dataset
    for (int64_t s : r.step) experts_.steps.push_back(double(s));
    // The first read is moved in, not copied (0.67 GB for 100k steps x 26 layers x 64 experts).
    auto append = [](std::vector<float>& to, std::vector<float>& from) {
        if (to.empty()) to = std::move(from);
        else to.insert(to.end(), from.begin(), from.end());
    };
    append(experts_.load, r.load);
    append(experts_.bias, r.bias);
    if (lazy_bias) {
        const std::string path = path_.toStdString();
        experts_.load_bias = [path, n] {
            try {
                return RunReader(path).experts_rows(0, n, false, true).bias;
            } catch (const std::exception&) {
                return std::vector<float>{};  // the view disables its bias tab
            }
        };
    }
    append(experts_.maxvio, r.maxvio);
}

views::RunCurves RunController::curves() const {
    views::RunCurves c;
    c.run_name = name();
    c.precision = precision();
    c.loss_scale = loss_scale_;
    c.skipped = skipped_;
    c.step = step_;
    c.tokens = tokens_;
    c.wall_s = wall_s_;
    c.loss = loss_;
    c.mtp_loss = mtp_loss_;
    c.aux_loss = aux_loss_;
    c.lr = lr_;
    c.grad_norm = grad_norm_;
    c.tokens_per_s = tokens_per_s_;
    const RunHeader& h = reader_->header();
    for (const std::string& l : h.label_names) c.eval.labels << QString::fromStdString(l);
    c.eval.label_loss.resize(h.label_names.size());
    for (const EvalRow& e : eval_) {
        c.eval.step.push_back(double(e.step));
        c.eval.loss.push_back(e.loss);
        for (size_t l = 0; l < c.eval.label_loss.size(); ++l)
            c.eval.label_loss[l].push_back(l < e.label_loss.size() ? e.label_loss[l] : NAN);
    }
    return c;
}

QString RunController::layer_name(int64_t hf) const {
    return main_layers_ > 0 && hf >= main_layers_ ? QString("MTP %1").arg(hf - main_layers_ + 1) : QString("layer %1").arg(hf);
}

void RunController::read_quant_steps() {
    const RunHeader& h = reader_->header();
    if (h.n_quant() == 0) return;
    const int64_t n = reader_->quant_count();
    if (n == int64_t(quant_steps_.size())) return;
    // The steps come with any tensor's series: one read per dataset.
    const QuantErrorSeries s = reader_->quant_error_series(0);
    quant_steps_.assign(s.step.begin(), s.step.end());
}

views::QuantRunData RunController::quant_data() const {
    const RunHeader& h = reader_->header();
    views::QuantRunData d;
    d.run_name = name();
    d.precision = precision();
    d.live = live_;
    for (size_t q = 0; q < h.quant_tensors.size(); ++q) {
        const QString key = QString::fromStdString(h.quant_tensors[q]);
        const QString role = q < h.quant_roles.size() ? QString::fromStdString(h.quant_roles[q]) : QString();
        d.tensors.push_back({key, views::quant_role_from(role, key)});
    }
    for (size_t g = 0; g < h.scale_tensors.size() && g < h.scale_grid_rows.size() && g < h.scale_grid_cols.size(); ++g)
        d.scale_grids.push_back({QString::fromStdString(h.scale_tensors[g]), int(h.scale_grid_rows[g]),
                                 int(h.scale_grid_cols[g])});
    d.bins.lo = Log2Histogram::kLo;
    d.bins.hi = Log2Histogram::kHi;
    d.bins.count = Log2Histogram::kBins;
    d.steps = quant_steps_;
    // The loaders go through this controller (its reader is replaced when the writer finishes)
    // and give nothing once it is gone or while the file is momentarily unreadable.
    const QPointer<RunController> self(const_cast<RunController*>(this));
    d.load_row = [self](int r) {
        views::QuantRowData out;
        if (!self) return out;
        try {
            QuantRow q = self->reader_->quant(r);
            out.step = double(q.step);
            out.rel_error = std::move(q.rel_error);
            out.snr_db = std::move(q.snr_db);
            out.amax = std::move(q.amax);
            out.frac_saturated = std::move(q.frac_saturated);
            out.frac_flushed = std::move(q.frac_flushed);
            out.value_hist = std::move(q.value_hist);
            out.value_zeros = std::move(q.value_zeros);
            out.error_hist = std::move(q.error_hist);
            out.scales = std::move(q.scales);
        } catch (const std::exception&) {
        }
        return out;
    };
    d.load_series = [self](int t) {
        views::QuantSeries out;
        if (!self) return out;
        try {
            const QuantErrorSeries s = self->reader_->quant_error_series(t);
            out.step.assign(s.step.begin(), s.step.end());
            out.rel_error.assign(s.rel_error.begin(), s.rel_error.end());
            out.snr_db.assign(s.snr_db.begin(), s.snr_db.end());
        } catch (const std::exception&) {
        }
        return out;
    };
    return d;
}

views::CommunicationData RunController::communication_data() const {
    const RunHeader& h = reader_->header();
    views::CommunicationData d;
    d.ranks = int(h.world_size);
    d.layout = h.world_size > 1 ? QString::fromStdString(h.parallel_layout) : QString();
    const ParallelRows rows = reader_->parallel_rows();
    for (int64_t s : rows.step) d.steps.push_back(double(s));
    if (rows.columns.size() != size_t(kParallelColumns)) return d;
    d.step_s = rows.columns[0];
    d.all_reduce_bytes = rows.columns[1];
    d.all_reduce_s = rows.columns[2];
    d.all_to_all_bytes = rows.columns[3];
    d.all_to_all_s = rows.columns[4];
    d.tokens_sent = rows.columns[5];
    d.tokens_received = rows.columns[6];
    return d;
}

views::SparsityOverTraining RunController::sparsity_over_training() const {
    const RunHeader& h = reader_->header();
    views::SparsityOverTraining o;
    o.near_zero_threshold = h.near_zero_threshold;
    if (reader_->sparsity_count() == 0) return o;
    const SparsityRows rows = reader_->sparsity_rows();
    const std::vector<double> steps(rows.step.begin(), rows.step.end());
    const size_t n = steps.size();
    const size_t F = size_t(h.n_ffn_layers()), L = size_t(h.n_layers());
    if (F > 0 && rows.near_zero.size() >= n * F)
        for (size_t f = 0; f < F; ++f) {
            views::Series s{layer_name(h.ffn_layer_indices[f]), steps, std::vector<double>(n)};
            for (size_t i = 0; i < n; ++i) s.y[i] = rows.near_zero[i * F + f];
            o.near_zero.push_back(std::move(s));
        }
    if (L > 0 && rows.unused_experts.size() >= n * L)
        for (size_t l = 0; l < L; ++l) {
            views::Series s{experts_.layer_names.value(int(l)), steps, std::vector<double>(n)};
            for (size_t i = 0; i < n; ++i) s.y[i] = rows.unused_experts[i * L + l];
            o.never_chosen.push_back(std::move(s));
        }
    return o;
}

void RunController::schedule_update() {
    if (!update_timer_.isActive()) update_timer_.start();
}

views::Series RunController::series(const QString& metric) const {
    views::Series s;
    s.name = name();
    if (metric == "eval_loss") {
        for (const EvalRow& e : eval_) {
            s.x.push_back(double(e.step));
            s.y.push_back(e.loss);
        }
        return s;
    }
    const std::vector<double>* y = nullptr;
    if (metric == "loss") y = &loss_;
    else if (metric == "mtp_loss") y = &mtp_loss_;
    else if (metric == "aux_loss") y = &aux_loss_;
    else if (metric == "lr") y = &lr_;
    else if (metric == "grad_norm") y = &grad_norm_;
    else if (metric == "tokens_per_s") y = &tokens_per_s_;
    if (!y) return s;
    s.x = step_;
    s.y = *y;
    return s;
}

views::Matrix RunController::expert_load(int layer) const {
    views::Matrix m;
    if (layer < 0 || layer >= reader_->header().n_layers() || reader_->experts_count() == 0) return m;
    const FloatMatrix f = reader_->expert_load_matrix(layer);
    m.rows = int(f.rows);
    m.cols = int(f.cols);
    m.values.assign(f.values.begin(), f.values.end());
    for (int c = 0; c < m.cols; ++c) m.col_labels << QString::number(c);
    return m;
}

views::Matrix RunController::expert_bias(int layer) const {
    views::Matrix m;
    const int64_t n = reader_->experts_count();
    const RunHeader& h = reader_->header();
    if (layer < 0 || layer >= h.n_layers() || n == 0) return m;
    const ExpertsRow row = reader_->experts(n - 1);
    m.rows = 1;
    m.cols = int(h.n_experts);
    for (int64_t e = 0; e < h.n_experts; ++e) m.values.push_back(row.bias[size_t(layer * h.n_experts + e)]);
    return m;
}

}  // namespace moe::workbench
