#pragma once
// RunLauncher: pick a preset or open a project file, edit it (ProjectForm), see what it costs
// (parameters, active parameters, FLOPs, memory), choose where it runs, press Start.
#include <QWidget>

#include "store/project.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QPushButton;
class QSpinBox;

namespace moe::workbench {

class ProjectForm;

class RunLauncher : public QWidget {
    Q_OBJECT

public:
    explicit RunLauncher(QWidget* parent = nullptr);

    // Lists the presets of `dir` (*.json) and selects `select` (a file stem) when present.
    void set_presets_dir(const QString& dir, const QString& select = "tiny-tasks");
    // Loads a project file into the form; false (and a message) when it does not load.
    bool open_project(const QString& path);
    void set_project(const Project& project);

    Project project() const;
    int threads() const;
    QString project_path() const { return project_path_; }
    ProjectForm* form() const { return form_; }
    QPushButton* start_button() const { return start_; }
    // While a run is active the Start button stays off.
    void set_run_active(bool active);

    // Devices of a connected moe-worker, listed after this computer's in the device box
    // (`devices`: the worker's JSON list: id, name, kind, available, reason). An empty server
    // removes them (disconnected).
    void set_remote_devices(const QString& server, const QStringList& names, const QList<bool>& available,
                            const QStringList& reasons, const QStringList& ids = {});
    // The engine's name of the chosen device ("cpu", "cuda:0"), on this computer or the worker;
    // project() puts it in training.device.
    QString device_id() const;
    // True when the chosen device is on the worker.
    bool remote_selected() const;
    QComboBox* device_box() const { return device_; }
    // On a worker: how many processes train the run (one per GPU on a GPU device) and how they
    // share it (docs/parallelism.md). "" for one process.
    QString parallel_layout() const;
    QComboBox* processes_box() const { return processes_; }
    QLineEdit* layout_edit() const { return layout_; }

signals:
    void device_changed(bool remote);
    void start_requested(const moe::Project& project, int threads);
    void project_opened(const QString& path);
    void message(const QString& text);  // for the log

private:
    void update_summary();
    void update_start();
    void update_processes();  // the choices for the chosen device

    int local_devices_ = 1;  // this computer's entries at the top of the device box
    ProjectForm* form_ = nullptr;
    QComboBox* presets_ = nullptr;
    QLabel* summary_ = nullptr;
    QLabel* error_ = nullptr;
    QSpinBox* threads_ = nullptr;
    QListWidget* gpus_ = nullptr;
    QComboBox* device_ = nullptr;
    QComboBox* processes_ = nullptr;
    QLineEdit* layout_ = nullptr;
    QLabel* processes_label_ = nullptr;
    QLabel* layout_label_ = nullptr;
    int remote_gpus_ = 0;  // usable GPUs of the connected worker
    QPushButton* start_ = nullptr;
    QString presets_dir_, project_path_, shown_error_field_;
    bool run_active_ = false;
};

}  // namespace moe::workbench
