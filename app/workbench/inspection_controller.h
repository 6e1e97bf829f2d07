#pragma once
// InspectionController: feeds the routing inspector and the sparsity view from one run. It lists
// the run's checkpoints (<run>.ckpt/step-*), offers the probe text (per label) and a few
// synthetic task texts as samples, and answers the inspector's Inspect by running
// CheckpointInspector on a worker thread (one cached inspector per checkpoint directory; the GUI
// thread never waits). Each finished inspection also fills the sparsity view's routing mask and
// attention; the run's expert rows fill its "never chosen" curves.
#include <QFutureWatcher>
#include <QObject>
#include <QPointer>
#include <QString>
#include <QStringList>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "inspect/routing_inspection.h"

namespace moe {
class CheckpointInspector;
}

namespace moe::remote {
class RemoteConnection;
}

namespace moe::views {
class RoutingInspectorView;
class SparsityView;
}  // namespace moe::views

namespace moe::workbench {

class RunController;

class InspectionController : public QObject {
    Q_OBJECT

public:
    InspectionController(views::RoutingInspectorView* routing, views::SparsityView* sparsity,
                         QObject* parent = nullptr);
    ~InspectionController() override;

    // The run inspected (nullptr: none). Re-lists checkpoints and samples when it changes.
    void set_run(RunController* run);
    RunController* run() const { return run_; }
    // Re-lists <run>.ckpt/step-* (after a checkpoint was saved).
    void refresh_checkpoints();
    // Checkpoint folder of a run file: x.h5 -> x.ckpt.
    static QString checkpoint_root(const QString& run_path);
    QStringList checkpoints() const;  // names as the view shows them, oldest first
    // "Never chosen" curves from the run's expert rows (call when rows arrive).
    void update_over_training();

    bool busy() const { return busy_; }
    int cached_inspectors() const { return static_cast<int>(cache_.size()); }
    const std::optional<Inspection>& last_inspection() const { return last_; }

    // The directory of a checkpoint the view lists ("" when unknown); for a run on a worker,
    // relative to the worker's runs folder.
    QString checkpoint_dir(const QString& name) const;
    // The worker that holds the run's checkpoints (nullptr: this computer) and the device its
    // inspections and generations run on there (the one the run trained on).
    remote::RemoteConnection* worker() const;
    QString worker_device() const;
    // Shows an inspection made elsewhere (GenerationController's live routing) like one of ours.
    void show_inspection(Inspection ins, const QString& checkpoint);

    // Samples offered for a run: the probe text whole and per label, plus synthetic tasks.
    static QList<QPair<QString, QString>> samples_for(const RunController& run);

signals:
    void inspection_done(bool ok);  // a result or an error reached the view

private:
    struct Result {
        std::shared_ptr<CheckpointInspector> a, b;
        std::optional<Inspection> ia, ib;
        std::string error;
    };
    void inspect(const QString& text, const QString& checkpoint, const QString& compare);
    void inspect_on_worker(const QString& text);  // job_names_/job_dirs_ set
    void worker_inspected(std::optional<Inspection> a, std::optional<Inspection> b, const QString& error);
    // Routing view, sparsity view and mask from an inspection; false (error shown) on failure.
    bool present(Inspection primary, const QString& name, const Inspection* comparison,
                 const QString& comparison_name);
    void finished();
    void show_mask();

    QPointer<views::RoutingInspectorView> routing_;
    QPointer<views::SparsityView> sparsity_;
    QPointer<RunController> run_;
    std::map<QString, QString> dirs_;  // checkpoint name -> directory
    std::map<QString, std::shared_ptr<CheckpointInspector>> cache_;  // by directory
    QFutureWatcher<Result> watcher_;
    bool busy_ = false;
    int generation_ = 0, job_generation_ = 0;  // results of a previous run are dropped
    QString job_names_[2], job_dirs_[2];
    std::optional<Inspection> last_;
    int over_training_rows_ = -1;
    int64_t over_training_sparsity_rows_ = -1;
};

}  // namespace moe::workbench
