#pragma once
// MainWindow: the workbench. Docks: run launcher, run browser, training curves, expert load,
// routing inspector, sparsity, quantization, model, log. A run-control toolbar drives the SessionController;
// RunControllers turn run files (live or finished) into the views' data. Window geometry, dock
// layout and the recent projects and runs persist in QSettings.
#include <QMainWindow>
#include <QPointer>
#include <QStringList>
#include <QTimer>

#include <map>

#include "session/session.h"

class QDockWidget;
class QLabel;
class QMenu;
class QPlainTextEdit;

namespace moe::remote {
class RemoteConnection;
}

namespace moe::workbench {

class ConnectDialog;
class GenerationController;
class InspectionController;
class LessonRunner;
class LessonsPanel;
class PresentationMode;
class RunBrowser;
class WeightFormatsDialog;
class RunController;
class RunLauncher;
class SessionController;

class MainWindow : public QMainWindow {
    Q_OBJECT

public:
    explicit MainWindow(QWidget* parent = nullptr);
    ~MainWindow() override;

    RunLauncher* launcher() const { return launcher_; }
    RunBrowser* browser() const { return browser_; }
    SessionController* session() const { return session_; }
    QPlainTextEdit* log_view() const { return log_; }
    InspectionController* inspection() const { return inspection_; }
    GenerationController* generation() const { return generation_; }
    // The link to a moe-worker (File > Connect to engine…); its devices join the launcher's.
    moe::remote::RemoteConnection* engine() const { return engine_; }
    ConnectDialog* connect_dialog();
    // Run > Evaluate quantized weights…: a checkpoint's loss and routing in fp8 / int8 / int4.
    WeightFormatsDialog* weight_formats_dialog();

    // Where new runs go (also the browser's folder).
    void set_runs_dir(const QString& dir);
    // Opens a run file (live or finished) and shows it; false, with a message, when it cannot
    // be read. The window stays usable either way.
    bool open_run(const QString& path);
    // Overlays these runs (plus the live session's run) in the curves.
    void show_runs(const QStringList& paths);
    RunController* run(const QString& path) const;
    RunController* session_run() const;  // the live session's run, if any
    QStringList shown_runs() const;
    QString last_error() const { return last_error_; }
    // The longest time the GUI thread spent in one view refresh or run-file poll (ms): what
    // this window itself can block the event loop for.
    double longest_gui_work_ms() const;

    void save_settings() const;
    void restore_settings();
    QStringList recent_projects() const;
    QStringList recent_runs() const;

    // Views' dock contents by dock name ("curvesDock", "expertLoadDock", "routingDock",
    // "sparsityDock", "quantDock", "modelDock").
    QWidget* view_widget(const QString& dock_name) const;
    // Lessons (the Lessons dock) and presentation mode (View > Presentation, F11).
    LessonRunner* lesson_runner() const { return lesson_runner_; }
    LessonsPanel* lessons_panel() const { return lessons_panel_; }
    PresentationMode* presentation() const { return presentation_; }
    bool lesson_open() const;
    QString presets_dir() const;
    // Brings a view's dock to the front (tabs raised, hidden docks shown).
    void raise_view(const QString& dock_name);
    // Shows exactly these runs (a finished session run is no longer added in front).
    void show_lesson_runs(const QStringList& paths);
    // Applies pending run data to the views now instead of on the next redraw tick.
    void refresh_views_now();
    // The Model view shows a project's model (a preset that is not trained).
    void show_project_model(const moe::Project& project);

    // What the model dock shows: "project" (the launcher's) or a run file's path.
    QString model_source() const { return model_source_; }

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void build_docks();
    void build_actions();
    void build_status_bar();
    QDockWidget* add_dock(const QString& title, const QString& name, QWidget* content);
    void start_run(const moe::Project& project, int threads);
    void resume_from_checkpoint();
    void on_state(moe::SessionState state);
    void on_step(const moe::StepReport& r);
    void on_failed(const QString& message, const QString& field);
    void on_run_started(const QString& path);
    void append_log(const QString& level, const QString& text);
    void report_error(const QString& title, const QString& text);
    void add_recent(const char* key, const QString& path);
    void fill_recent_menu(QMenu* menu, const char* key, bool runs);
    void update_actions();
    void on_engine_state();
    void resume_remote_checkpoint();
    int64_t ask_resume_target(const QString& dir, int64_t step, int64_t run_steps);
    void schedule_views();
    void refresh_views();
    void refresh_quant_view(const QStringList& shown);
    RunController* ensure_run(const QString& path);
    void update_model_view();  // from the launcher's project
    void show_model(const QString& name, const ModelConfig& model, int64_t seq_len, const QString& source);

    SessionController* session_ = nullptr;
    RunLauncher* launcher_ = nullptr;
    RunBrowser* browser_ = nullptr;
    QPlainTextEdit* log_ = nullptr;
    InspectionController* inspection_ = nullptr;
    GenerationController* generation_ = nullptr;
    moe::remote::RemoteConnection* engine_ = nullptr;
    ConnectDialog* connect_dialog_ = nullptr;
    WeightFormatsDialog* weight_formats_ = nullptr;
    QLabel* engine_label_ = nullptr;
    QString model_source_, primary_path_;
    std::map<QString, QWidget*> views_;
    std::map<QString, RunController*> runs_;
    QStringList selected_;
    QString session_run_path_, last_error_;
    QTimer views_timer_;
    double longest_refresh_ms_ = 0;
    QString experts_shown_path_;
    QString comm_shown_path_;
    int64_t comm_shown_rows_ = -2;
    int experts_shown_rows_ = -1;
    QString quant_shown_signature_;
    LessonRunner* lesson_runner_ = nullptr;
    LessonsPanel* lessons_panel_ = nullptr;
    PresentationMode* presentation_ = nullptr;

    QAction *act_start_ = nullptr, *act_pause_ = nullptr, *act_step_ = nullptr, *act_resume_ = nullptr,
            *act_stop_ = nullptr, *act_checkpoint_ = nullptr, *act_resume_ckpt_ = nullptr;
    QLabel *state_label_ = nullptr, *step_label_ = nullptr, *loss_label_ = nullptr,
           *speed_label_ = nullptr, *eta_label_ = nullptr;
};

}  // namespace moe::workbench
