#pragma once
// LessonRunner: performs a lesson's steps in the workbench. Going to a step brings its view
// forward, performs its action (makes the lesson's runs that do not exist yet, one after the
// other on the local session, and keeps them under <runs folder>/lessons/<lesson>/; shows a
// preset's model; inspects or continues a text with a run's checkpoint) and, once the action's
// result is on screen, points at the step's highlight. Nothing here blocks the GUI thread:
// training, inspection and generation report back through signals.
#include <QObject>
#include <QPointer>
#include <QString>
#include <QStringList>

#include <optional>

#include "workbench/lesson.h"

namespace moe {
struct StepReport;
enum class SessionState;
}  // namespace moe

namespace moe::workbench {

class MainWindow;

class LessonRunner : public QObject {
    Q_OBJECT
public:
    explicit LessonRunner(MainWindow* window);

    // Starts a lesson at its first step (a copy is kept).
    void open(const Lesson& lesson);
    void close();
    const Lesson* lesson() const { return lesson_ ? &*lesson_ : nullptr; }
    int step() const { return step_; }
    int step_count() const { return lesson_ ? int(lesson_->steps.size()) : 0; }

    // Where a lesson's runs are kept: <root>/<lesson id>/<run id>.h5 (default: the session's
    // runs folder + "/lessons").
    void set_runs_root(const QString& dir) { runs_root_ = dir; }
    QString runs_root() const;
    QString run_path(const LessonRun& run) const;  // the .h5
    // The run's project as it trains (with the step limit applied).
    Project run_project(const LessonRun& run) const;
    // Caps the steps of runs made from now on (0: the lesson's own); a quick demo or a test.
    // Logging, evaluation, routing and checkpoint intervals shrink with it.
    void set_step_limit(int64_t steps) { step_limit_ = steps; }
    // True when the run's file holds all its steps and its last checkpoint exists.
    bool run_complete(const LessonRun& run) const;

    bool busy() const { return pending_action_; }  // the step's action is still under way
    QString status() const { return status_; }
    // The highlight of the step shown, once placed: found, and what was not found.
    bool highlight_found() const { return highlight_found_; }
    QString highlight_missing() const { return highlight_missing_; }

public slots:
    void go_to(int step);
    void next();
    void back();

signals:
    void step_shown(int step);  // text and view are up; the action may still run
    // The action is done and the highlight placed (found or not).
    void step_ready(int step, bool highlight_found, const QString& missing);
    void status_changed(const QString& status);
    void action_failed(int step, const QString& message);

private:
    void perform(int step);
    void train_next();
    void after_runs(int step);
    void inspect_or_generate(int step);
    void place_highlight(int step);
    void job_done(int step, int gen_id, bool ok, const QString& failure);
    void finish_step(int step);
    void fail(int step, const QString& message);
    void set_status(const QString& s);
    void on_state(moe::SessionState s);
    void on_step(const moe::StepReport& r);
    QString checkpoint_name(const QStringList& names, const std::string& which) const;

    QPointer<MainWindow> window_;
    std::optional<Lesson> lesson_;
    int step_ = -1;
    int generation_ = 0;  // bumped on every go_to: late results of an older step are dropped
    bool pending_action_ = false;
    QString runs_root_;
    int64_t step_limit_ = 0;
    QString status_;
    bool highlight_found_ = false;
    QString highlight_missing_;

    // Runs being made: the queue, the one training now, and where it pauses.
    QStringList queue_;       // run ids
    QString training_;        // run id, "" when none
    int64_t pause_at_ = 0;    // as the lesson says
    int64_t pause_step_ = 0;  // for the run training now (scaled with the step limit)
    bool paused_once_ = false;
    int waiting_step_ = -1;  // the step whose action waits for the queue
};

}  // namespace moe::workbench
