#include "workbench/inspection_controller.h"

#include <QComboBox>
#include <QDir>
#include <QFileInfo>
#include <QtConcurrent/QtConcurrentRun>

#include <algorithm>
#include <exception>

#include "data/byte_tokenizer.h"
#include "data/synthetic_tasks.h"
#include "inspect/checkpoint_inspector.h"
#include "routing_inspector_view.h"
#include "sparsity_view.h"
#include "train/training_checkpoint.h"
#include "workbench/routing_inspection_adapter.h"
#include "workbench/run_controller.h"
#include "workbench/worker_checkpoints.h"

namespace moe::workbench {

namespace {

// Probe bytes as text: the packer's separator (0) ends a document, shown as a line break.
std::string probe_bytes(const std::vector<int32_t>& tokens) {
    std::string s;
    s.reserve(tokens.size());
    for (int32_t t : tokens) s.push_back(t == ByteTokenizer::kSeparator ? '\n' : char(uint8_t(t)));
    return s;
}

}  // namespace

InspectionController::InspectionController(views::RoutingInspectorView* routing, views::SparsityView* sparsity,
                                           QObject* parent)
    : QObject(parent), routing_(routing), sparsity_(sparsity) {
    connect(routing_, &views::RoutingInspectorView::inspectRequested, this, &InspectionController::inspect);
    connect(&watcher_, &QFutureWatcher<Result>::finished, this, &InspectionController::finished);
    // The sparsity mask follows the layer chosen in the inspector.
    connect(routing_->layerBox(), qOverload<int>(&QComboBox::currentIndexChanged), this,
            &InspectionController::show_mask);
    if (sparsity_)
        sparsity_->setNearZeroNote(tr("Not recorded by this run: run files do not store FFN activations yet."));
}

// The worker keeps its inspectors alive through shared_ptrs; a late result is simply dropped.
InspectionController::~InspectionController() = default;

QString InspectionController::checkpoint_root(const QString& run_path) {
    const QFileInfo f(run_path);
    return f.dir().filePath(f.completeBaseName() + ".ckpt");
}

void InspectionController::set_run(RunController* run) {
    if (run == run_) return;
    run_ = run;
    ++generation_;
    over_training_rows_ = -1;
    routing_->setSamples(run ? samples_for(*run) : QList<QPair<QString, QString>>{});
    if (run && routing_->text().isEmpty()) routing_->setText(QString::fromStdString(run->header().probe_text).left(200));
    refresh_checkpoints();
    update_over_training();
}

void InspectionController::refresh_checkpoints() {
    dirs_.clear();
    if (remote::RemoteConnection* w = worker()) {
        const int generation = generation_;
        const QString root = worker_checkpoint_root(run_->remote_run_file());
        list_worker_checkpoints(w, run_->remote_run_file(), this, [this, generation, root](CheckpointDirs dirs, QString error) {
            if (generation != generation_) return;  // another run is shown now
            dirs_ = std::move(dirs);
            routing_->setCheckpoints(checkpoints());
            if (!error.isEmpty()) routing_->setError(error);
            else if (dirs_.empty())
                routing_->setError(tr("This run has no checkpoints on the worker yet (%1/step-*): the inspector "
                                      "needs a saved model.").arg(root));
        });
        return;
    }
    QStringList names;
    if (run_)
        for (const std::string& d : list_checkpoints(checkpoint_root(run_->path()).toStdString())) {
            const QString dir = QString::fromStdString(d);
            const QString name = QFileInfo(dir).fileName();
            dirs_[name] = dir;
            names << name;
        }
    routing_->setCheckpoints(names);
    if (run_ && names.isEmpty())
        routing_->setError(tr("This run has no checkpoints yet (%1/step-*): the inspector needs a saved model.")
                               .arg(checkpoint_root(run_->path())));
}

QStringList InspectionController::checkpoints() const {
    QStringList out;
    for (const auto& [name, dir] : dirs_) out << name;
    return out;
}

QList<QPair<QString, QString>> InspectionController::samples_for(const RunController& run) {
    QList<QPair<QString, QString>> out;
    const RunHeader& h = run.header();
    if (!h.probe_tokens.empty()) {
        out.append({tr("probe text (all labels)"), QString::fromStdString(probe_bytes(h.probe_tokens)).trimmed()});
        // One sample per label: that label's probe tokens, in order.
        for (int64_t l = 0; l < h.n_labels(); ++l) {
            std::vector<int32_t> mine;
            for (size_t i = 0; i < h.probe_tokens.size() && i < h.probe_labels.size(); ++i)
                if (h.probe_labels[i] == l) mine.push_back(h.probe_tokens[i]);
            if (!mine.empty())
                out.append({tr("probe: %1").arg(QString::fromStdString(h.label_names[size_t(l)])),
                            QString::fromStdString(probe_bytes(mine)).trimmed()});
        }
    }
    // Fresh task documents (not the probe's): a few of each task, generated on the spot.
    const SyntheticTasks tasks(20250101);
    std::map<int32_t, std::string> by_label;
    for (uint64_t i = 0; i < 400 && by_label.size() < tasks.label_names().size(); ++i) {
        const Document d = tasks.document(i);
        std::string& s = by_label[d.label];
        if (std::count(s.begin(), s.end(), '\n') < 3) s += d.text + "\n";
    }
    for (const auto& [label, text] : by_label)
        out.append({tr("task: %1").arg(QString::fromStdString(tasks.label_names()[size_t(label)])),
                    QString::fromStdString(text).trimmed()});
    return out;
}

void InspectionController::inspect(const QString& text, const QString& checkpoint, const QString& compare) {
    if (busy_) return;
    const auto a = dirs_.find(checkpoint);
    if (a == dirs_.end()) {
        routing_->setError(tr("Unknown checkpoint %1").arg(checkpoint));
        return;
    }
    const auto b = compare.isEmpty() ? dirs_.end() : dirs_.find(compare);
    job_names_[0] = checkpoint;
    job_dirs_[0] = a->second;
    job_names_[1] = b == dirs_.end() ? QString() : compare;
    job_dirs_[1] = b == dirs_.end() ? QString() : b->second;
    job_generation_ = generation_;
    if (worker()) {
        inspect_on_worker(text);
        return;
    }
    auto cached = [this](const QString& dir) {
        auto it = cache_.find(dir);
        return it == cache_.end() ? nullptr : it->second;
    };
    Result start;
    start.a = cached(job_dirs_[0]);
    if (!job_dirs_[1].isEmpty()) start.b = job_dirs_[1] == job_dirs_[0] ? nullptr : cached(job_dirs_[1]);
    const std::string dir_a = job_dirs_[0].toStdString(), dir_b = job_dirs_[1].toStdString();
    const std::string utf8 = text.toStdString();
    busy_ = true;
    routing_->setBusy(true, start.a ? tr("Inspecting with %1…").arg(checkpoint)
                                    : tr("Loading %1 and inspecting…").arg(checkpoint));
    // Loading weights and the forward passes run on the pool; one job at a time, so each
    // inspector serves one call at a time.
    watcher_.setFuture(QtConcurrent::run([start, dir_a, dir_b, utf8]() mutable {
        Result r = std::move(start);
        try {
            if (!r.a) r.a = std::make_shared<CheckpointInspector>(dir_a, 1);
            r.ia = r.a->inspect_text(utf8);
            if (!dir_b.empty()) {
                if (dir_b == dir_a) r.b = r.a;
                else if (!r.b) r.b = std::make_shared<CheckpointInspector>(dir_b, 1);
                r.ib = r.b->inspect_text(utf8);
            }
        } catch (const std::exception& e) {
            r.error = e.what();
        }
        return r;
    }));
}

void InspectionController::finished() {
    busy_ = false;
    Result r = watcher_.result();
    if (r.a) cache_[job_dirs_[0]] = r.a;
    if (r.b) cache_[job_dirs_[1]] = r.b;
    routing_->setBusy(false);
    if (job_generation_ != generation_) return;  // the run changed meanwhile
    if (!r.error.empty() || !r.ia) {
        routing_->setError(QString::fromStdString(r.error));
        emit inspection_done(false);
        return;
    }
    if (!present(std::move(*r.ia), job_names_[0], r.ib ? &*r.ib : nullptr, job_names_[1])) {
        emit inspection_done(false);
        return;
    }
    emit inspection_done(true);
}

remote::RemoteConnection* InspectionController::worker() const { return run_ ? run_->worker() : nullptr; }

QString InspectionController::worker_device() const {
    return run_ ? training_device(run_->header().project_json) : QString("cpu");
}

// The same inspection, computed by the worker that holds the checkpoints: one request per
// checkpoint, the comparison's after the primary's.
void InspectionController::inspect_on_worker(const QString& text) {
    remote::RemoteConnection* w = worker();
    busy_ = true;
    routing_->setBusy(true, tr("Inspecting with %1 on the worker…").arg(job_names_[0]));
    const QString device = worker_device(), dir_b = job_dirs_[1];
    ::moe::workbench::inspect_on_worker(
        w, job_dirs_[0], text, device, this, [this, text, device, dir_b](std::optional<Inspection> a, QString error) {
            remote::RemoteConnection* w = worker();
            if (!a || dir_b.isEmpty() || !w) {
                worker_inspected(std::move(a), std::nullopt, error);
                return;
            }
            auto first = std::make_shared<Inspection>(std::move(*a));
            ::moe::workbench::inspect_on_worker(w, dir_b, text, device, this,
                                                [this, first](std::optional<Inspection> b, QString error) {
                                                    worker_inspected(std::move(*first), std::move(b), error);
                                                });
        });
}

void InspectionController::worker_inspected(std::optional<Inspection> a, std::optional<Inspection> b,
                                            const QString& error) {
    busy_ = false;
    routing_->setBusy(false);
    if (job_generation_ != generation_) return;
    if (!error.isEmpty() || !a) {
        routing_->setError(error);
        emit inspection_done(false);
        return;
    }
    emit inspection_done(present(std::move(*a), job_names_[0], b ? &*b : nullptr, job_names_[1]));
}

QString InspectionController::checkpoint_dir(const QString& name) const {
    const auto it = dirs_.find(name);
    return it == dirs_.end() ? QString() : it->second;
}

void InspectionController::show_inspection(Inspection ins, const QString& checkpoint) {
    present(std::move(ins), checkpoint, nullptr, QString());
}

bool InspectionController::present(Inspection primary, const QString& name,
                                   const Inspection* comparison, const QString& comparison_name) {
    try {
        views::RoutingInspectionData d = routing_view_data(primary, name.toStdString(), comparison,
                                                           comparison_name.toStdString());
        // Label x expert shares from the probe's latest logged routing.
        if (run_ && run_->routing_rows() > 0)
            add_specialization(d, run_->header(), run_->routing(run_->routing_rows() - 1), primary.layers);
        last_ = std::move(primary);
        routing_->setInspection(d);
    } catch (const std::exception& e) {
        routing_->setError(QString::fromStdString(e.what()));
        return false;
    }
    if (sparsity_) {
        const Inspection& ins = *last_;
        views::AttentionData att;
        att.layers = static_cast<int>(ins.attention.size());
        att.heads = static_cast<int>(ins.heads);
        att.T = static_cast<int>(ins.n_tokens());
        att.window = static_cast<int>(ins.sliding_window);
        for (const std::string& t : ins.token_text) att.tokens << QString::fromStdString(t);
        for (const auto& w : ins.attention) att.weights.insert(att.weights.end(), w.begin(), w.end());
        // Sparse attention: the chosen keys [T, K] of each layer as a query x key mask.
        if (ins.index_topk > 0 && ins.selected_keys.size() == ins.attention.size()) {
            const int64_t T = ins.n_tokens(), K = std::min(ins.index_topk, T);
            att.topk = static_cast<int>(ins.index_topk);
            att.chosen.assign(size_t(att.layers) * size_t(T * T), 0);
            for (size_t l = 0; l < ins.selected_keys.size(); ++l) {
                const std::vector<int32_t>& sel = ins.selected_keys[l];
                if (static_cast<int64_t>(sel.size()) != T * K) continue;
                for (int64_t q = 0; q < T; ++q)
                    for (int64_t c = 0; c < K; ++c) {
                        const int32_t key = sel[size_t(q * K + c)];
                        if (key >= 0 && key <= q) att.chosen[(l * size_t(T) + size_t(q)) * size_t(T) + size_t(key)] = 1;
                    }
            }
        }
        sparsity_->setAttention(std::move(att));
    }
    show_mask();
    return true;
}

void InspectionController::show_mask() {
    if (!sparsity_ || !last_ || last_->routing.empty()) return;
    const Inspection& ins = *last_;
    const int layer = std::clamp(routing_->currentLayer(), 0, static_cast<int>(ins.n_layers()) - 1);
    const RoutingRecord& rec = ins.routing[size_t(layer)];
    views::RoutingMaskData m;
    for (const std::string& t : ins.token_text) m.tokens << QString::fromStdString(t);
    m.experts = static_cast<int>(ins.E);
    m.layer_name = tr("layer %1").arg(ins.layers[size_t(layer)]);
    m.mask.assign(size_t(ins.n_tokens() * ins.E), 0);
    for (int64_t t = 0; t < ins.n_tokens(); ++t)
        for (int64_t k = 0; k < ins.K; ++k) {
            const int32_t e = rec.topk_idx[size_t(t * ins.K + k)];
            if (e >= 0 && e < ins.E) m.mask[size_t(t * ins.E + e)] = 1;
        }
    sparsity_->setRoutingMask(std::move(m));
}

void InspectionController::update_over_training() {
    if (!sparsity_) return;
    const int rows = run_ ? run_->expert_load_data().step_count() : 0;
    const int64_t sparsity_rows = run_ ? run_->sparsity_rows() : 0;
    if (rows == over_training_rows_ && sparsity_rows == over_training_sparsity_rows_) return;
    over_training_rows_ = rows;
    over_training_sparsity_rows_ = sparsity_rows;
    views::SparsityOverTraining o;
    if (run_ && sparsity_rows > 0) {
        // Format version 2 runs log both curves in /sparsity.
        o = run_->sparsity_over_training();
    } else if (run_) {
        const views::ExpertLoadData& x = run_->expert_load_data();
        // Per layer: share of routed experts that got no token at each logged step.
        for (int l = 0; l < x.layers() && x.valid(); ++l) {
            views::Series s{x.layer_names[l], x.steps, std::vector<double>(x.steps.size())};
            for (int st = 0; st < x.step_count(); ++st) {
                int zero = 0;
                for (int e = 0; e < x.experts; ++e) zero += x.load[x.index(st, l, e)] == 0.0f;
                s.y[size_t(st)] = double(zero) / double(x.experts);
            }
            o.never_chosen.push_back(std::move(s));
        }
    }
    if (!o.near_zero.empty())
        sparsity_->setNearZeroNote(QString());
    else if (run_ && run_->header().format_version >= 2 && run_->live())
        sparsity_->setNearZeroNote(tr("No sparsity rows yet: they are written at every logged step."));
    else
        sparsity_->setNearZeroNote(tr("Not recorded by this run: run files before format version 2 do not store FFN activations."));
    sparsity_->setSparsityOverTraining(std::move(o));
}

}  // namespace moe::workbench
