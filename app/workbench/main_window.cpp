#include "workbench/main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDateTime>
#include <QDir>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QFileDialog>
#include <QFileInfo>
#include <QFontDatabase>
#include <QInputDialog>
#include <QPushButton>
#include <QTime>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QPointer>
#include <QScrollArea>
#include <QSettings>
#include <QStatusBar>
#include <QStyle>
#include <QToolBar>

#include <algorithm>
#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "communication_view.h"
#include "expert_load_view.h"
#include "model/summary.h"
#include "model_view.h"
#include "plot_style.h"
#include "quantization_view.h"
#include "routing_inspector_view.h"
#include "sparsity_view.h"
#include "store/project.h"
#include "train/training_checkpoint.h"
#include "training_curves_view.h"
#include "remote_connection.h"
#include "workbench/connect_dialog.h"
#include "workbench/generation_controller.h"
#include "workbench/inspection_controller.h"
#include "workbench/lesson_runner.h"
#include "workbench/lessons_panel.h"
#include "workbench/log_bridge.h"
#include "workbench/presentation_mode.h"
#include "workbench/project_form.h"
#include "workbench/project_paths.h"
#include "workbench/pruning_report.h"
#include "workbench/run_browser.h"
#include "workbench/run_controller.h"
#include "workbench/run_launcher.h"
#include "workbench/weight_formats_dialog.h"
#include "workbench/session_controller.h"

namespace moe::workbench {

namespace {

constexpr int kRecentMax = 8;

QString format_eta(double s) {
    if (!(s > 0) || !std::isfinite(s)) return "–";
    const qint64 t = qint64(std::llround(s));
    return QString("%1:%2:%3").arg(t / 3600).arg((t / 60) % 60, 2, 10, QChar('0')).arg(t % 60, 2, 10, QChar('0'));
}

}  // namespace

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent) {
    setObjectName("MainWindow");
    setWindowTitle(tr("MoE Workbench"));
    setDockNestingEnabled(true);
    setDockOptions(AnimatedDocks | AllowNestedDocks | AllowTabbedDocks);
    resize(1440, 900);

    session_ = new SessionController(this);
    engine_ = new remote::RemoteConnection(this);
    build_docks();
    build_actions();
    build_status_bar();

    connect(LogBridge::instance(), &LogBridge::line, this, &MainWindow::append_log);
    connect(session_, &SessionController::state_changed, this, &MainWindow::on_state);
    connect(session_, &SessionController::stepped, this, &MainWindow::on_step);
    connect(session_, &SessionController::failed, this, &MainWindow::on_failed);
    connect(session_, &SessionController::run_started, this, &MainWindow::on_run_started);
    connect(session_, &SessionController::checkpoint_saved, this, [this](const QString& dir) {
        statusBar()->showMessage(tr("checkpoint saved: %1").arg(dir), 5000);
        inspection_->refresh_checkpoints();  // a new step-* to inspect
    });
    connect(launcher_, &RunLauncher::start_requested, this, &MainWindow::start_run);
    connect(engine_, &remote::RemoteConnection::state_changed, this, &MainWindow::on_engine_state);
    connect(engine_, &remote::RemoteConnection::connection_error, this,
            [this](const QString& e) { append_log("warning", tr("engine: %1").arg(e)); });
    connect(session_, &SessionController::run_file_updated, this, [this](const QString& path) {
        if (RunController* c = run(path)) c->reopen();
        schedule_views();
    });
    connect(launcher_, &RunLauncher::project_opened, this, [this](const QString& p) { add_recent("recent/projects", p); });
    connect(launcher_, &RunLauncher::message, this, [this](const QString& m) { append_log("warning", m); });
    connect(browser_, &RunBrowser::selection_changed, this, &MainWindow::show_runs);

    // Views redraw at most ~30 times a second, however many runs report new rows.
    views_timer_.setSingleShot(true);
    views_timer_.setInterval(33);
    connect(&views_timer_, &QTimer::timeout, this, &MainWindow::refresh_views);

    set_runs_dir(default_runs_dir());
    launcher_->set_presets_dir(find_projects_dir());
    lessons_panel_->load(QDir(find_projects_dir()).filePath("lessons"), find_projects_dir());
    // Every plot keeps a minimum text size (legible at 1280x720 and on a projector).
    views::apply_plot_style_all(this, views::PlotStyle::normal());
    restore_settings();
    update_actions();
}

MainWindow::~MainWindow() = default;

QDockWidget* MainWindow::add_dock(const QString& title, const QString& name, QWidget* content) {
    auto* dock = new QDockWidget(title, this);
    dock->setObjectName(name);  // saveState/restoreState key
    dock->setWidget(content);
    return dock;
}

void MainWindow::build_docks() {
    launcher_ = new RunLauncher;
    browser_ = new RunBrowser;
    log_ = new QPlainTextEdit;
    log_->setObjectName("log");
    log_->setReadOnly(true);
    log_->setMaximumBlockCount(5000);
    log_->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));

    QDockWidget* launch = add_dock(tr("Run launcher"), "launcherDock", launcher_);
    QDockWidget* browse = add_dock(tr("Runs"), "browserDock", browser_);
    QDockWidget* logd = add_dock(tr("Log"), "logDock", log_);
    lesson_runner_ = new LessonRunner(this);
    lessons_panel_ = new LessonsPanel(lesson_runner_);
    QDockWidget* lessons = add_dock(tr("Lessons"), "lessonsDock", lessons_panel_);
    const std::pair<QString, QString> views[] = {
        {tr("Training curves"), "curvesDock"}, {tr("Expert load"), "expertLoadDock"},
        {tr("Routing inspector"), "routingDock"}, {tr("Sparsity"), "sparsityDock"},
        {tr("Quantization"), "quantDock"}, {tr("Communication"), "commDock"}, {tr("Model"), "modelDock"},
    };
    std::map<QString, QDockWidget*> docks;
    for (const auto& [title, name] : views) {
        QWidget* content = nullptr;
        if (name == "curvesDock") content = new views::TrainingCurvesView;
        else if (name == "expertLoadDock") content = new views::ExpertLoadView;
        else if (name == "routingDock") content = new views::RoutingInspectorView;
        else if (name == "sparsityDock") content = new views::SparsityView;
        else if (name == "quantDock") content = new views::QuantizationView;
        else if (name == "commDock") content = new views::CommunicationView;
        else content = new views::ModelView;
        content->setObjectName(name + "View");
        views_[name] = content;
        // A scroll area around each view: the views' own minimum sizes must not force the
        // window past a laptop screen (they scroll inside a small dock instead).
        auto* scroll = new QScrollArea;
        scroll->setWidget(content);
        scroll->setWidgetResizable(true);
        scroll->setFrameShape(QFrame::NoFrame);
        docks[name] = add_dock(title, name, scroll);
    }
    inspection_ = new InspectionController(qobject_cast<views::RoutingInspectorView*>(views_["routingDock"]),
                                           qobject_cast<views::SparsityView*>(views_["sparsityDock"]), this);
    generation_ = new GenerationController(qobject_cast<views::RoutingInspectorView*>(views_["routingDock"]),
                                           inspection_, this);
    // Default layout: launcher, runs and log as tabs on the left; the analysis views as tabs
    // filling the right, curves first, so each gets the whole area (the expert-load and
    // sparsity views have four plots each and need the height).
    addDockWidget(Qt::LeftDockWidgetArea, launch);
    tabifyDockWidget(launch, browse);
    tabifyDockWidget(launch, logd);  // a tab, not a strip: the views keep the window's height
    tabifyDockWidget(launch, lessons);
    launch->raise();
    addDockWidget(Qt::RightDockWidgetArea, docks["curvesDock"]);
    for (const char* n : {"expertLoadDock", "routingDock", "sparsityDock", "quantDock", "commDock", "modelDock"})
        tabifyDockWidget(docks["curvesDock"], docks[n]);
    docks["curvesDock"]->raise();
    resizeDocks({launch, docks["curvesDock"]}, {380, 1060}, Qt::Horizontal);
}

void MainWindow::build_actions() {
    QStyle* st = style();
    auto make = [this](const QString& text, const QString& name, const QIcon& icon, const QString& tip) {
        auto* a = new QAction(icon, text, this);
        a->setObjectName(name);
        a->setToolTip(tip);
        return a;
    };
    act_start_ = make(tr("Start"), "actionStart", st->standardIcon(QStyle::SP_MediaPlay),
                      tr("Start training the launcher's project"));
    act_pause_ = make(tr("Pause"), "actionPause", st->standardIcon(QStyle::SP_MediaPause),
                      tr("Pause after the current step"));
    act_step_ = make(tr("Step"), "actionStep", st->standardIcon(QStyle::SP_MediaSkipForward),
                     tr("One optimizer step (while paused)"));
    act_resume_ = make(tr("Resume"), "actionResume", st->standardIcon(QStyle::SP_MediaSeekForward),
                       tr("Continue training"));
    act_stop_ = make(tr("Stop"), "actionStop", st->standardIcon(QStyle::SP_MediaStop),
                     tr("Finish the current step, save a checkpoint, close the run file"));
    act_checkpoint_ = make(tr("Save checkpoint"), "actionSaveCheckpoint", st->standardIcon(QStyle::SP_DialogSaveButton),
                           tr("Save a checkpoint now"));
    act_resume_ckpt_ = make(tr("Resume from checkpoint…"), "actionResumeCheckpoint",
                            st->standardIcon(QStyle::SP_DirOpenIcon), tr("Continue a saved step-* checkpoint"));
    act_step_->setShortcut(Qt::Key_F10);
    connect(act_start_, &QAction::triggered, this, [this] { launcher_->start_button()->click(); });
    connect(act_pause_, &QAction::triggered, session_, &SessionController::pause);
    connect(act_step_, &QAction::triggered, session_, &SessionController::step_once);
    connect(act_resume_, &QAction::triggered, session_, &SessionController::resume);
    connect(act_stop_, &QAction::triggered, session_, &SessionController::stop);
    connect(act_checkpoint_, &QAction::triggered, session_, &SessionController::save_checkpoint_now);
    connect(act_resume_ckpt_, &QAction::triggered, this, &MainWindow::resume_from_checkpoint);
    connect(launcher_->form(), &ProjectForm::changed, this, &MainWindow::update_actions);
    connect(launcher_->form(), &ProjectForm::changed, this, &MainWindow::update_model_view);

    QToolBar* run = addToolBar(tr("Run"));
    run->setObjectName("runToolbar");
    run->setToolButtonStyle(Qt::ToolButtonTextBesideIcon);
    for (QAction* a : {act_start_, act_pause_, act_step_, act_resume_, act_stop_}) run->addAction(a);
    run->addSeparator();
    run->addAction(act_checkpoint_);
    run->addAction(act_resume_ckpt_);

    QMenu* file = menuBar()->addMenu(tr("&File"));
    QAction* open_project = file->addAction(tr("Open project…"), this, [this] {
        const QString p = QFileDialog::getOpenFileName(this, tr("Open project"), find_projects_dir(),
                                                       tr("Projects (*.json)"));
        if (!p.isEmpty()) launcher_->open_project(p);
    });
    open_project->setShortcut(QKeySequence::Open);
    QMenu* recent_projects = file->addMenu(tr("Recent projects"));
    recent_projects->setObjectName("recentProjectsMenu");
    connect(recent_projects, &QMenu::aboutToShow, this,
            [this, recent_projects] { fill_recent_menu(recent_projects, "recent/projects", false); });
    file->addSeparator();
    file->addAction(tr("Open run…"), this, [this] {
        const QString p = QFileDialog::getOpenFileName(this, tr("Open run"), browser_->folder(),
                                                       tr("Run files (*.h5)"));
        if (!p.isEmpty()) open_run(p);
    });
    file->addAction(tr("Open runs folder…"), this, [this] {
        const QString d = QFileDialog::getExistingDirectory(this, tr("Runs folder"), browser_->folder());
        if (!d.isEmpty()) browser_->set_folder(d);
    });
    QAction* connect_engine = file->addAction(tr("Connect to engine…"), this, [this] {
        connect_dialog()->show();
        connect_dialog()->raise();
    });
    connect_engine->setObjectName("actionConnectEngine");
    connect_engine->setToolTip(tr("Train on a moe-worker on another machine (a GPU server)"));
    QMenu* recent_runs = file->addMenu(tr("Recent runs"));
    recent_runs->setObjectName("recentRunsMenu");
    connect(recent_runs, &QMenu::aboutToShow, this,
            [this, recent_runs] { fill_recent_menu(recent_runs, "recent/runs", true); });
    file->addSeparator();
    file->addAction(act_resume_ckpt_);
    file->addSeparator();
    QAction* quit = file->addAction(tr("Quit"), this, &QWidget::close);
    quit->setShortcut(QKeySequence::Quit);

    QMenu* runm = menuBar()->addMenu(tr("&Run"));
    for (QAction* a : {act_start_, act_pause_, act_step_, act_resume_, act_stop_, act_checkpoint_}) runm->addAction(a);
    runm->addSeparator();
    QAction* quant_weights = runm->addAction(tr("Evaluate quantized weights…"), this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(
            this, tr("Checkpoint to evaluate with fp8 / int8 / int4 weights (a step-* folder)"), session_->runs_dir());
        if (!dir.isEmpty()) weight_formats_dialog()->evaluate(dir);
    });
    quant_weights->setObjectName("actionQuantizedWeights");
    quant_weights->setToolTip(tr("Validation loss and routing of a checkpoint with its weights in fp8, int8, int4"));
    QAction* pruning = runm->addAction(tr("Open pruning report…"), this, [this] {
        const QString dir = QFileDialog::getExistingDirectory(
            this, tr("A checkpoint made by moe-prune (with pruning.json)"), session_->runs_dir());
        if (dir.isEmpty()) return;
        auto* w = findChild<PruningWindow*>();
        (w ? w : new PruningWindow(this))->open(dir);
    });
    pruning->setObjectName("actionPruningReport");
    pruning->setToolTip(tr("Experts or FFN channels a moe-prune run removed, and the scores it ranked them by"));

    QMenu* view = menuBar()->addMenu(tr("&View"));
    presentation_ = new PresentationMode(this);
    view->addAction(presentation_->toggle_action());
    view->addSeparator();
    for (QDockWidget* d : findChildren<QDockWidget*>()) view->addAction(d->toggleViewAction());
    view->addAction(run->toggleViewAction());

    // Lesson steps: Page Down / Page Up, what a presenter's clicker sends.
    QMenu* lessons = menuBar()->addMenu(tr("&Lessons"));
    QAction* next_step = lessons->addAction(tr("Next step"), lesson_runner_, &LessonRunner::next);
    next_step->setObjectName("actionLessonNext");
    next_step->setShortcut(Qt::Key_PageDown);
    QAction* prev_step = lessons->addAction(tr("Previous step"), lesson_runner_, &LessonRunner::back);
    prev_step->setObjectName("actionLessonBack");
    prev_step->setShortcut(Qt::Key_PageUp);
    lessons->addSeparator();
    lessons->addAction(tr("Show lessons"), this, [this] { raise_view("lessonsDock"); });
    for (QAction* a : {next_step, prev_step}) addAction(a);  // with the menu bar hidden too
}

void MainWindow::build_status_bar() {
    auto make = [this](const QString& name, int min_width) {
        auto* l = new QLabel;
        l->setObjectName(name);
        l->setMinimumWidth(min_width);
        statusBar()->addPermanentWidget(l);
        return l;
    };
    state_label_ = make("statusState", 80);
    step_label_ = make("statusStep", 120);
    loss_label_ = make("statusLoss", 110);
    speed_label_ = make("statusSpeed", 120);
    eta_label_ = make("statusEta", 100);
    engine_label_ = make("statusEngine", 140);
    state_label_->setText(tr("idle"));
    engine_label_->setText(tr("engine: this computer"));
}

void MainWindow::set_runs_dir(const QString& dir) {
    session_->set_runs_dir(dir);
    browser_->set_folder(dir);
}

WeightFormatsDialog* MainWindow::weight_formats_dialog() {
    if (!weight_formats_) weight_formats_ = new WeightFormatsDialog(this);
    return weight_formats_;
}

ConnectDialog* MainWindow::connect_dialog() {
    if (!connect_dialog_) connect_dialog_ = new ConnectDialog(engine_, this);
    return connect_dialog_;
}

void MainWindow::on_engine_state() {
    using S = remote::RemoteConnection::State;
    const S s = engine_->state();
    const QString where = engine_->address();
    switch (s) {
    case S::Connected: engine_label_->setText(tr("engine: %1").arg(where)); break;
    case S::Connecting: engine_label_->setText(tr("engine: connecting to %1").arg(where)); break;
    case S::Reconnecting: engine_label_->setText(tr("engine: %1 lost, retrying").arg(where)); break;
    case S::Failed: engine_label_->setText(tr("engine: %1 failed").arg(where)); break;
    case S::Disconnected: engine_label_->setText(tr("engine: this computer")); break;
    }
    engine_label_->setToolTip(engine_->last_error());
    if (s == S::Connected) {
        QStringList names, reasons, ids;
        QList<bool> available;
        for (const auto& d : engine_->devices()) {
            names << QString::fromStdString(d.value("name", "?"));
            ids << QString::fromStdString(d.value("id", "cpu"));
            available << d.value("available", false);
            reasons << QString::fromStdString(d.value("reason", ""));
        }
        launcher_->set_remote_devices(where, names, available, reasons, ids);
        append_log("info", tr("connected to engine %1 (%2 devices)").arg(where).arg(names.size()));
    } else if (s == S::Disconnected || s == S::Failed) {
        launcher_->set_remote_devices({}, {}, {}, {});
    }
}

void MainWindow::start_run(const moe::Project& project, int threads) {
    if (session_->active()) return;
    if (launcher_->remote_selected() ? !session_->use_remote(engine_) : !session_->use_local()) return;
    launcher_->set_run_active(true);  // no second Start while this one spins up
    const QString parallel = launcher_->remote_selected() ? launcher_->parallel_layout() : QString();
    if (!session_->start(project, threads, parallel)) launcher_->set_run_active(false);
    update_actions();
}

void MainWindow::resume_from_checkpoint() {
    if (launcher_->remote_selected()) {
        resume_remote_checkpoint();
        return;
    }
    const QString dir = QFileDialog::getExistingDirectory(this, tr("Resume from checkpoint (a step-* folder)"),
                                                          session_->runs_dir());
    if (dir.isEmpty() || session_->active()) return;
    if (!QFileInfo(dir).fileName().startsWith("step-")) {
        report_error(tr("Resume from checkpoint"), tr("%1 is not a step-* checkpoint folder").arg(dir));
        return;
    }
    int64_t step = 0, run_steps = 0;
    try {
        const moe::TrainingState st = moe::load_training_state(dir.toStdString());
        step = st.step;
        run_steps = st.project.training.steps;
    } catch (const std::exception& e) {
        report_error(tr("Resume from checkpoint"), QString::fromStdString(e.what()));
        return;
    }
    const int64_t target = ask_resume_target(dir, step, run_steps);
    if (target <= 0 || session_->active()) return;
    launcher_->set_run_active(true);
    if (!session_->resume_from(dir, launcher_->threads(), target, launcher_->device_id()))
        launcher_->set_run_active(false);
}

// Asks the step to train to. The default is the run's own end when the checkpoint is before it
// (a run cut short goes on as planned), else as many steps again (a finished run trains on).
// 0 when the user cancels.
int64_t MainWindow::ask_resume_target(const QString& dir, int64_t step, int64_t run_steps) {
    const int64_t limit = std::numeric_limits<int>::max();
    if (step >= limit) {
        report_error(tr("Resume from checkpoint"), tr("%1 is at step %2; continue it with moe-train --resume")
                                                       .arg(dir).arg(step));
        return 0;
    }
    const int64_t proposed = run_steps > step ? run_steps : step + std::max<int64_t>(run_steps, 1);
    bool ok = false;
    const int target = QInputDialog::getInt(
        this, tr("Resume from checkpoint"),
        tr("%1 is at step %2.\nTrain until step:").arg(QFileInfo(dir).fileName()).arg(step),
        int(std::min(proposed, limit)), int(step + 1), int(limit), 1, &ok);
    return ok ? target : 0;
}

// On a worker the checkpoint lives in the worker's runs folder: list its step-* folders (from
// list_files) and let the user pick one; the worker resumes it, this window follows the run.
void MainWindow::resume_remote_checkpoint() {
    if (session_->active()) return;
    QPointer<MainWindow> self(this);
    engine_->request({{"type", "list_files"}}, [self](const nlohmann::json& m, const QByteArray&) {
        if (!self) return;
        if (m.value("type", "") != "result") {
            self->report_error(tr("Resume from checkpoint"),
                               tr("The worker did not list its files: %1")
                                   .arg(QString::fromStdString(m.value("message", m.dump()))));
            return;
        }
        QStringList dirs;
        for (const auto& f : m["files"]) {
            const QString path = QString::fromStdString(f.value("path", ""));
            const int at = path.lastIndexOf("/step-");
            if (at < 0 || !path.endsWith("/config.json")) continue;
            const QString dir = path.left(path.size() - int(QString("/config.json").size()));
            if (!dirs.contains(dir)) dirs << dir;
        }
        if (dirs.isEmpty()) {
            self->report_error(tr("Resume from checkpoint"), tr("The worker has no checkpoints (step-* folders) yet."));
            return;
        }
        dirs.sort();
        bool ok = false;
        const QString dir = QInputDialog::getItem(self, tr("Resume from checkpoint on the worker"),
                                                  tr("Checkpoint in the worker's runs folder:"), dirs,
                                                  int(dirs.size()) - 1, false, &ok);
        if (!ok || dir.isEmpty() || self->session_->active()) return;
        // The step is in the folder's name; the run's planned length is the launcher's (the
        // worker's trainer_state.json is not read from here).
        const int64_t step = QFileInfo(dir).fileName().mid(5).toLongLong();
        const int64_t target = self->ask_resume_target(dir, step, self->launcher_->form()->project().training.steps);
        if (!self || target <= 0 || self->session_->active()) return;
        if (!self->session_->use_remote(self->engine_)) return;
        self->launcher_->set_run_active(true);
        if (!self->session_->resume_from(dir, self->launcher_->threads(), target, self->launcher_->device_id()))
            self->launcher_->set_run_active(false);
        self->update_actions();
    });
}

void MainWindow::on_run_started(const QString& path) {
    session_run_path_ = path;
    RunController* c = ensure_run(path);
    if (!c) return;
    c->follow_session();
    // Its checkpoints are on the worker: the inspector and Generate ask the worker.
    if (session_->remote()) c->set_worker(engine_, session_->remote_run_file());
    add_recent("recent/runs", path);
    schedule_views();
}

void MainWindow::on_state(SessionState s) {
    state_label_->setText(QString::fromLatin1(to_string(s)));
    const bool done = s == SessionState::Finished || s == SessionState::Failed;
    if (done) {
        launcher_->set_run_active(false);
        if (RunController* c = session_run()) c->set_writer_done();
    }
    update_actions();
}

void MainWindow::on_step(const StepReport& r) {
    if (RunController* c = session_run()) c->add_step(r);
    step_label_->setText(tr("step %1 / %2").arg(r.step).arg(r.total_steps));
    loss_label_->setText(tr("loss %1").arg(r.loss, 0, 'f', 4));
    speed_label_->setText(tr("%1 tok/s").arg(r.tokens_per_s, 0, 'f', 0));
    eta_label_->setText(tr("ETA %1").arg(format_eta(r.eta_s)));
}

void MainWindow::on_failed(const QString& message, const QString& field) {
    launcher_->set_run_active(false);
    update_actions();
    report_error(tr("Training failed"), field.isEmpty() ? message : tr("%1\n\n(field: %2)").arg(message, field));
}

void MainWindow::update_actions() {
    const SessionState s = session_->state();
    const bool active = session_->active();
    act_start_->setEnabled(!active && launcher_->start_button()->isEnabled());
    act_pause_->setEnabled(s == SessionState::Running);
    act_step_->setEnabled(s == SessionState::Paused);
    act_resume_->setEnabled(s == SessionState::Paused);
    act_stop_->setEnabled(s == SessionState::Running || s == SessionState::Paused);
    act_checkpoint_->setEnabled(s == SessionState::Running || s == SessionState::Paused);
    act_resume_ckpt_->setEnabled(!active);
}

RunController* MainWindow::ensure_run(const QString& path) {
    if (auto it = runs_.find(path); it != runs_.end()) return it->second;
    try {
        auto* c = new RunController(path, this);
        connect(c, &RunController::updated, this, &MainWindow::schedule_views);
        runs_[path] = c;
        return c;
    } catch (const std::exception& e) {
        report_error(tr("Cannot open run"), QString::fromStdString(e.what()));
        return nullptr;
    }
}

bool MainWindow::open_run(const QString& path) {
    RunController* c = ensure_run(QFileInfo(path).absoluteFilePath());
    if (!c) return false;
    add_recent("recent/runs", c->path());
    if (!selected_.contains(c->path())) selected_ << c->path();
    schedule_views();
    return true;
}

void MainWindow::show_runs(const QStringList& paths) {
    selected_.clear();
    for (const QString& p : paths)
        if (ensure_run(p)) selected_ << p;
    schedule_views();
}

RunController* MainWindow::run(const QString& path) const {
    auto it = runs_.find(path);
    return it == runs_.end() ? nullptr : it->second;
}

RunController* MainWindow::session_run() const { return session_run_path_.isEmpty() ? nullptr : run(session_run_path_); }

QStringList MainWindow::shown_runs() const {
    QStringList out;
    if (!session_run_path_.isEmpty() && run(session_run_path_)) out << session_run_path_;
    for (const QString& p : selected_)
        if (!out.contains(p)) out << p;
    return out;
}

QWidget* MainWindow::view_widget(const QString& dock_name) const {
    auto it = views_.find(dock_name);
    return it == views_.end() ? nullptr : it->second;
}

void MainWindow::schedule_views() {
    if (!views_timer_.isActive()) views_timer_.start();
}

double MainWindow::longest_gui_work_ms() const {
    double ms = longest_refresh_ms_;
    for (const auto& [path, c] : runs_) ms = std::max(ms, c->longest_poll_ms());
    return ms;
}

void MainWindow::refresh_views() {
    QElapsedTimer timer;
    timer.start();
    const QStringList shown = shown_runs();
    std::vector<views::RunCurves> curves;
    for (const QString& p : shown) curves.push_back(run(p)->curves());
    if (auto* v = qobject_cast<views::TrainingCurvesView*>(view_widget("curvesDock"))) v->setRuns(curves);
    // Expert load of the first shown run (the live one when training); re-sent only on change.
    RunController* primary = shown.isEmpty() ? nullptr : run(shown.front());
    const int rows = primary ? primary->expert_load_data().step_count() : 0;
    const QString path = primary ? primary->path() : QString();
    if (auto* v = qobject_cast<views::ExpertLoadView*>(view_widget("expertLoadDock")))
        if (primary && (path != experts_shown_path_ || rows != experts_shown_rows_) &&
            primary->expert_load_data().valid()) {
            v->setData(primary->expert_load_data());
            experts_shown_path_ = path;
            experts_shown_rows_ = rows;
        }
    refresh_quant_view(shown);
    // Communication of the first shown run (several processes), re-sent when rows arrive.
    if (auto* v = qobject_cast<views::CommunicationView*>(view_widget("commDock"))) {
        const int64_t comm_rows = primary ? primary->communication_rows() : -1;
        if (path != comm_shown_path_ || comm_rows != comm_shown_rows_) {
            v->setData(primary ? primary->communication_data() : views::CommunicationData{});
            comm_shown_path_ = path;
            comm_shown_rows_ = comm_rows;
        }
    }
    // The inspector and sparsity views follow the same run; the model dock shows its model
    // when the shown run changes.
    inspection_->set_run(primary);
    inspection_->update_over_training();
    if (primary && path != primary_path_) {
        try {
            const RunHeader& h = primary->header();
            const ModelConfig cfg = ModelConfig::from_json(nlohmann::json::parse(h.config_json));
            int64_t seq_len = 0;
            try {
                seq_len = nlohmann::json::parse(h.project_json).at("training").value("seq_len", int64_t(0));
            } catch (const std::exception&) {
            }
            show_model(primary->name(), cfg, seq_len > 0 ? seq_len : cfg.max_position_embeddings, primary->path());
        } catch (const std::exception& e) {
            append_log("warning", tr("model of %1 not shown: %2").arg(primary->path(), QString::fromStdString(e.what())));
        }
    }
    primary_path_ = path;
    longest_refresh_ms_ = std::max(longest_refresh_ms_, timer.nsecsElapsed() / 1e6);
}

void MainWindow::refresh_quant_view(const QStringList& shown) {
    auto* v = qobject_cast<views::QuantizationView*>(view_widget("quantDock"));
    if (!v) return;
    // Every shown run, overlaid in "error over training"; re-sent only when a run or its row
    // count changed (rows are read from the file when the view shows them).
    QString signature;
    for (const QString& p : shown)
        signature += QString("%1|%2|%3\n").arg(p).arg(run(p)->quant_rows()).arg(run(p)->live());
    if (signature == quant_shown_signature_) return;
    quant_shown_signature_ = signature;
    views::QuantizationData data;
    for (const QString& p : shown) data.runs.push_back(run(p)->quant_data());
    v->setData(std::move(data));
}

void MainWindow::update_model_view() {
    if (!launcher_->form()->valid()) return;
    const Project p = launcher_->project();
    show_model(QString::fromStdString(p.name), p.model, p.training.seq_len, "project");
}

void MainWindow::show_model(const QString& name, const ModelConfig& model, int64_t seq_len, const QString& source) {
    auto* v = qobject_cast<views::ModelView*>(view_widget("modelDock"));
    if (!v) return;
    const ModelSummary s = summarize(model, seq_len);
    const ParameterBreakdown& b = s.params;
    views::ModelSummaryData d;
    d.name = name;
    model_source_ = source;
    const double experts_active = double(s.active_routed_experts);
    // Matmul parts cost 2 FLOPs per parameter a token passes through.
    auto part = [&d](const QString& name, double params, double active, double flops, const QString& note) {
        d.parts.push_back({name, params, active, flops, note, {}});
    };
    part(tr("embedding"), double(b.embedding), double(b.embedding), 0, tr("row lookup"));
    part(tr("attention (MLA)"), double(b.attention), double(b.attention),
         2.0 * double(b.attention) + s.attention_flops_per_token,
         s.sliding_window > 0 || s.index_topk > 0
             ? tr("%1 layers, %2").arg(model.num_hidden_layers).arg(QString::fromStdString(format_attention_saving(s)))
             : tr("%1 layers").arg(model.num_hidden_layers));
    part(tr("dense FFN"), double(b.dense_ffn), double(b.dense_ffn), 2.0 * double(b.dense_ffn),
         tr("%1 layers").arg(s.dense_layers));
    part(tr("routed experts"), double(b.routed_experts), experts_active, 2.0 * experts_active,
         tr("%1 of %2 per token").arg(model.num_experts_per_tok).arg(model.n_routed_experts));
    part(tr("shared experts"), double(b.shared_experts), double(b.shared_experts), 2.0 * double(b.shared_experts), {});
    part(tr("gates"), double(b.gates + b.gate_bias), double(b.gates + b.gate_bias), 2.0 * double(b.gates), {});
    part(tr("norms"), double(b.norms), double(b.norms), 0, {});
    part(tr("head"), double(b.head), double(b.head), 2.0 * double(b.head), {});
    part(tr("MTP modules"), double(s.mtp_params), double(s.mtp_params), s.mtp_forward_flops_per_token,
         tr("not in the totals"));
    const double per_attn = double(b.attention_per_layer);
    for (int64_t l = 0; l < model.num_hidden_layers; ++l) {
        const bool moe = model.is_moe_layer(l);
        const double ffn = moe ? double(b.routed_experts + b.shared_experts + b.gates) / double(std::max<int64_t>(1, s.moe_layers))
                               : double(b.dense_ffn) / double(std::max<int64_t>(1, s.dense_layers));
        const double active = moe ? double(s.active_routed_experts + b.shared_experts + b.gates) /
                                        double(std::max<int64_t>(1, s.moe_layers))
                                  : ffn;
        d.layers.push_back({tr("layer %1").arg(l), moe ? views::ModelSummaryData::LayerKind::Moe
                                                       : views::ModelSummaryData::LayerKind::Dense,
                            per_attn + ffn, per_attn + active});
    }
    for (int64_t m = 0; m < model.num_nextn_predict_layers; ++m)
        d.layers.push_back({tr("MTP %1").arg(m + 1), views::ModelSummaryData::LayerKind::Mtp,
                            double(s.mtp_params) / double(model.num_nextn_predict_layers),
                            double(s.mtp_params) / double(model.num_nextn_predict_layers)});
    d.total_params = double(s.total_params);
    d.total_active_params = double(s.active_params);
    d.total_flops_per_token = s.forward_flops_per_token;
    d.train_flops_per_token = s.train_flops_per_token;
    d.kv_cache_values_per_token = s.kv_cache_values_per_token;
    d.mha_kv_values_per_token = s.mha_kv_values_per_token;
    d.config_text = QString::fromStdString(model.to_json().dump(2));
    v->setSummary(std::move(d));
}

bool MainWindow::lesson_open() const { return lesson_runner_ && lesson_runner_->lesson(); }

QString MainWindow::presets_dir() const { return find_projects_dir(); }

void MainWindow::raise_view(const QString& dock_name) {
    auto* d = findChild<QDockWidget*>(dock_name);
    if (!d) return;
    d->show();
    d->raise();
}

void MainWindow::show_lesson_runs(const QStringList& paths) {
    if (!session_->active()) session_run_path_.clear();
    show_runs(paths);
}

void MainWindow::refresh_views_now() {
    views_timer_.stop();
    refresh_views();
}

void MainWindow::show_project_model(const Project& p) {
    show_model(QString::fromStdString(p.name), p.model, p.training.seq_len, "project");
}

void MainWindow::append_log(const QString& level, const QString& text) {
    log_->appendPlainText(QString("%1 [%2] %3").arg(QTime::currentTime().toString("HH:mm:ss"), level, text));
}

void MainWindow::report_error(const QString& title, const QString& text) {
    last_error_ = text;
    append_log("error", text);
    // Window-modal and non-blocking: the event loop (and training) keeps running.
    auto* box = new QMessageBox(QMessageBox::Warning, title, text, QMessageBox::Ok, this);
    box->setObjectName("errorBox");
    box->setAttribute(Qt::WA_DeleteOnClose);
    box->open();
}

void MainWindow::add_recent(const char* key, const QString& path) {
    QSettings s;
    QStringList list = s.value(key).toStringList();
    list.removeAll(path);
    list.prepend(path);
    while (list.size() > kRecentMax) list.removeLast();
    s.setValue(key, list);
}

QStringList MainWindow::recent_projects() const { return QSettings().value("recent/projects").toStringList(); }
QStringList MainWindow::recent_runs() const { return QSettings().value("recent/runs").toStringList(); }

void MainWindow::fill_recent_menu(QMenu* menu, const char* key, bool runs) {
    menu->clear();
    const QStringList list = QSettings().value(key).toStringList();
    for (const QString& p : list) {
        QAction* a = menu->addAction(QFileInfo(p).fileName(), this, [this, p, runs] {
            if (runs) open_run(p);
            else launcher_->open_project(p);
        });
        a->setToolTip(p);
        a->setEnabled(QFileInfo::exists(p));
    }
    if (list.isEmpty()) menu->addAction(tr("(none)"))->setEnabled(false);
}

void MainWindow::save_settings() const {
    QSettings s;
    s.setValue("mainWindow/geometry", saveGeometry());
    s.setValue("mainWindow/state", saveState());
    s.setValue("runs/folder", browser_->folder());
}

void MainWindow::restore_settings() {
    QSettings s;
    if (s.contains("mainWindow/geometry")) restoreGeometry(s.value("mainWindow/geometry").toByteArray());
    if (s.contains("mainWindow/state")) restoreState(s.value("mainWindow/state").toByteArray());
    const QString folder = s.value("runs/folder").toString();
    if (!folder.isEmpty() && QFileInfo(folder).isDir()) set_runs_dir(folder);
}

void MainWindow::closeEvent(QCloseEvent* event) {
    save_settings();
    // The session's destructor stops the run cleanly (checkpoint, closed file) when we go.
    if (session_->active()) append_log("info", tr("stopping the run before closing"));
    QMainWindow::closeEvent(event);
}

}  // namespace moe::workbench
