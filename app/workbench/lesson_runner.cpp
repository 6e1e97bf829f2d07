#include "workbench/lesson_runner.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDateTime>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QSpinBox>
#include <QTimer>

#include <algorithm>

#include "generation_controls.h"
#include "routing_inspector_view.h"
#include "session/session.h"
#include "store/run_reader.h"
#include "view_highlighter.h"
#include "workbench/generation_controller.h"
#include "workbench/inspection_controller.h"
#include "workbench/main_window.h"
#include "workbench/run_controller.h"
#include "workbench/run_launcher.h"
#include "workbench/session_controller.h"

namespace moe::workbench {

LessonRunner::LessonRunner(MainWindow* window) : QObject(window), window_(window) {
    connect(window->session(), &SessionController::state_changed, this, &LessonRunner::on_state);
    connect(window->session(), &SessionController::stepped, this, &LessonRunner::on_step);
}

QString LessonRunner::runs_root() const {
    if (!runs_root_.isEmpty()) return runs_root_;
    return QDir(window_->session()->runs_dir()).filePath("lessons");
}

QString LessonRunner::run_path(const LessonRun& run) const {
    if (!lesson_) return {};
    return QDir(runs_root()).filePath(QString::fromStdString(lesson_->id + "/" + run.id + ".h5"));
}

Project LessonRunner::run_project(const LessonRun& run) const {
    Project p = run.project;
    TrainingSettings& t = p.training;
    if (step_limit_ > 0 && t.steps > step_limit_) {
        t.steps = step_limit_;
        auto shrink = [&](int64_t& every, int64_t parts) {
            if (every > 0) every = std::max<int64_t>(1, std::min(every, step_limit_ / parts));
        };
        shrink(t.log_every, 10);
        shrink(t.eval_every, 2);
        shrink(t.routing_every, 2);
        t.eval_batches = std::min<int64_t>(t.eval_batches, 2);
        if (t.optimizer.schedule.warmup_steps >= t.steps)
            t.optimizer.schedule.warmup_steps = t.steps / 10;
    }
    // The last step always leaves a checkpoint: inspection and generation use it.
    if (t.checkpoint_every <= 0 || t.steps % t.checkpoint_every != 0) t.checkpoint_every = t.steps;
    p.validate();
    return p;
}

bool LessonRunner::run_complete(const LessonRun& run) const {
    const QString path = run_path(run);
    if (!QFileInfo::exists(path)) return false;
    const int64_t steps = run_project(run).training.steps;
    try {
        const RunReader r(path.toStdString());
        const MetricsColumns m = r.metrics_since(std::max<int64_t>(0, r.metrics_count() - 1));
        if (m.size() == 0 || m.step.back() < steps) return false;
    } catch (const std::exception&) {
        return false;  // unreadable (cut short): made again
    }
    // Its last step's checkpoint: run_project makes every run end with one.
    const QString ckpt = InspectionController::checkpoint_root(path);
    return QFileInfo::exists(
        QDir(ckpt).filePath(QString("step-%1/config.json").arg(steps, 8, 10, QChar('0'))));
}

void LessonRunner::open(const Lesson& lesson) {
    close();
    lesson_ = lesson;
    go_to(0);
}

void LessonRunner::close() {
    ++generation_;
    if (window_)
        for (const std::string& v : lesson_views())
            views::clear_view_highlight(
                window_->view_widget(QString::fromStdString(lesson_view_dock(v))));
    lesson_.reset();
    step_ = -1;
    pending_action_ = false;
    waiting_step_ = -1;
    queue_.clear();  // a run training now finishes; it is kept for next time
    set_status({});
}

void LessonRunner::next() {
    if (lesson_ && step_ + 1 < step_count()) go_to(step_ + 1);
}

void LessonRunner::back() {
    if (lesson_ && step_ > 0) go_to(step_ - 1);
}

void LessonRunner::go_to(int step) {
    if (!lesson_ || step < 0 || step >= step_count() || !window_) return;
    ++generation_;
    step_ = step;
    waiting_step_ = -1;
    highlight_found_ = false;
    highlight_missing_.clear();
    for (const std::string& v : lesson_views())
        views::clear_view_highlight(
            window_->view_widget(QString::fromStdString(lesson_view_dock(v))));
    const LessonStep& s = lesson_->steps[size_t(step)];
    window_->raise_view(QString::fromStdString(lesson_view_dock(s.view)));
    emit step_shown(step);
    perform(step);
}

void LessonRunner::perform(int step) {
    const LessonStep& s = lesson_->steps[size_t(step)];
    const LessonAction& a = s.action;
    pending_action_ = a.kind != LessonAction::Kind::None;
    switch (a.kind) {
        case LessonAction::Kind::None:
            finish_step(step);
            return;
        case LessonAction::Kind::Model: {
            try {
                const QString preset =
                    QDir(window_->presets_dir()).filePath(QString::fromStdString(a.preset));
                window_->show_project_model(Project::load(preset.toStdString()));
            } catch (const std::exception& e) {
                fail(step, QString::fromStdString(e.what()));
                return;
            }
            finish_step(step);
            return;
        }
        case LessonAction::Kind::Train:
        case LessonAction::Kind::Inspect:
        case LessonAction::Kind::Generate: {
            const std::vector<std::string> needed =
                a.kind == LessonAction::Kind::Train ? a.runs : std::vector{a.run};
            for (const std::string& id : needed) {
                const LessonRun* r = lesson_->run(id);
                const QString qid = QString::fromStdString(id);
                if (!run_complete(*r) && !queue_.contains(qid) && training_ != qid) queue_ << qid;
            }
            pause_at_ = a.kind == LessonAction::Kind::Train ? a.pause_at : 0;
            waiting_step_ = step;
            if (training_.isEmpty())
                train_next();
            else
                set_status(tr("training %1…").arg(training_));
            // Show what exists now (finished runs), the live one joins as it starts.
            after_runs(step);
            return;
        }
    }
}

// Starts the next queued run, or, with none left, lets the waiting step go on.
void LessonRunner::train_next() {
    if (!lesson_ || !window_) return;
    while (!queue_.isEmpty()) {
        const QString id = queue_.takeFirst();
        const LessonRun* run = lesson_->run(id.toStdString());
        if (!run || run_complete(*run)) continue;
        SessionController* session = window_->session();
        if (session->active()) {  // someone else's run: go on when it ends
            queue_.prepend(id);
            set_status(tr("waiting for the current run to finish before training %1").arg(id));
            return;
        }
        const QString path = run_path(*run);
        const QString base = path.left(path.size() - 3);
        // A file cut short (a closed window, a crash) is kept aside, never overwritten.
        if (QFileInfo::exists(path)) {
            const QString aside =
                base + ".incomplete-" + QDateTime::currentDateTime().toString("yyyyMMdd-HHmmss");
            QFile::rename(path, aside + ".h5");
            QDir().rename(base + ".ckpt", aside + ".ckpt");
        }
        Project p;
        try {
            p = run_project(*run);
        } catch (const std::exception& e) {
            fail(waiting_step_, QString::fromStdString(e.what()));
            return;
        }
        training_ = id;
        paused_once_ = false;
        // A shortened run pauses at the same fraction of its length.
        pause_step_ =
            pause_at_ > 0
                ? std::max<int64_t>(1, pause_at_ * p.training.steps / run->project.training.steps)
                : 0;
        set_status(tr("training %1 (%2 steps)…").arg(id).arg(p.training.steps));
        if (!session->start_at(p, window_->launcher()->threads(), base)) {
            training_.clear();
            fail(waiting_step_, tr("could not start the lesson's run %1").arg(id));
            return;
        }
        return;
    }
    training_.clear();
    set_status({});
    if (waiting_step_ >= 0) after_runs(waiting_step_);
}

void LessonRunner::on_state(SessionState s) {
    if (s != SessionState::Finished && s != SessionState::Failed) return;
    if (!training_.isEmpty()) {
        const QString id = training_;
        training_.clear();
        if (s == SessionState::Failed) {
            queue_.clear();
            fail(waiting_step_, tr("the lesson's run %1 failed (see the log)").arg(id));
            return;
        }
    }
    train_next();  // also picks up runs that waited for someone else's
}

void LessonRunner::on_step(const StepReport& r) {
    if (training_.isEmpty()) return;
    set_status(tr("training %1: step %2 of %3").arg(training_).arg(r.step).arg(r.total_steps));
    if (pause_step_ <= 0 || paused_once_ || r.step < pause_step_) return;
    paused_once_ = true;
    window_->session()->pause();
    set_status(tr("paused at step %1 of %2: Resume (toolbar or Run menu) to go on")
                   .arg(r.step)
                   .arg(r.total_steps));
    // The step that asked for the pause is ready now, with the run live on screen; later steps
    // that need the whole run wait for it.
    if (waiting_step_ >= 0 && waiting_step_ == step_) {
        const int s = waiting_step_;
        waiting_step_ = -1;
        finish_step(s);
    }
}

// The step's runs are shown (finished ones, plus the live one); once none is missing the
// action goes on.
void LessonRunner::after_runs(int step) {
    if (!lesson_ || step != step_ || step != waiting_step_) return;  // done already, or moved on
    const LessonAction& a = lesson_->steps[size_t(step)].action;
    const std::vector<std::string> ids =
        a.kind == LessonAction::Kind::Train ? a.runs : std::vector{a.run};
    QStringList done;
    bool missing = false;
    for (const std::string& id : ids) {
        const LessonRun* r = lesson_->run(id);
        if (run_complete(*r))
            done << run_path(*r);
        else
            missing = true;
    }
    window_->show_lesson_runs(done);
    if (missing) return;  // train_next calls again when the queue is empty
    waiting_step_ = -1;
    if (a.kind == LessonAction::Kind::Train)
        finish_step(step);
    else
        inspect_or_generate(step);
}

QString LessonRunner::checkpoint_name(const QStringList& names, const std::string& which) const {
    if (names.isEmpty()) return {};
    if (which == "last" || which.empty()) return names.last();
    if (which == "first") return names.first();
    const int64_t step = std::stoll(which);
    for (const QString& n : names)
        if (n.startsWith("step-") && n.mid(5).toLongLong() == step) return n;
    return {};
}

void LessonRunner::inspect_or_generate(int step) {
    const LessonAction& a = lesson_->steps[size_t(step)].action;
    InspectionController* insp = window_->inspection();
    GenerationController* gen = window_->generation();
    const int gen_id = generation_;
    if (insp->busy() || gen->running()) {  // one job at a time: go on when it ends
        QTimer::singleShot(200, this, [this, step, gen_id] {
            if (gen_id == generation_) inspect_or_generate(step);
        });
        return;
    }
    const LessonRun* run = lesson_->run(a.run);
    const QString path = run_path(*run);
    window_->refresh_views_now();
    if (!insp->run() || QFileInfo(insp->run()->path()) != QFileInfo(path)) {
        fail(step, tr("the inspector does not show %1").arg(path));
        return;
    }
    insp->refresh_checkpoints();
    const QStringList names = insp->checkpoints();
    const QString ckpt = checkpoint_name(names, a.checkpoint);
    if (ckpt.isEmpty()) {
        fail(step, tr("run %1 has no checkpoint %2")
                       .arg(QString::fromStdString(a.run), QString::fromStdString(a.checkpoint)));
        return;
    }
    auto* view = qobject_cast<views::RoutingInspectorView*>(window_->view_widget("routingDock"));
    view->checkpointBox()->setCurrentText(ckpt);
    const QString text = QString::fromStdString(a.text);
    if (a.kind == LessonAction::Kind::Inspect) {
        const QString cmp = a.compare.empty() ? QString() : checkpoint_name(names, a.compare);
        const int at = cmp.isEmpty() ? 0 : view->comparisonBox()->findText(cmp);
        view->comparisonBox()->setCurrentIndex(std::max(0, at));
        view->setText(text);
        set_status(tr("inspecting with %1…").arg(ckpt));
        connect(
            insp, &InspectionController::inspection_done, this,
            [this, step, gen_id](bool ok) {
                job_done(step, gen_id, ok, tr("the inspection failed (see the inspector)"));
            },
            Qt::SingleShotConnection);
        view->requestInspection();
    } else {
        view->generationControls()->speculativeBox()->setChecked(a.speculative);
        view->generationControls()->tokensBox()->setValue(int(a.new_tokens));
        set_status(tr("writing %1 tokens with %2…").arg(a.new_tokens).arg(ckpt));
        connect(
            gen, &GenerationController::generation_done, this,
            [this, step, gen_id](bool ok, int) {
                job_done(step, gen_id, ok, tr("generation failed (see the inspector)"));
            },
            Qt::SingleShotConnection);
        gen->generate(text, ckpt, int(a.new_tokens), 0.0);
    }
}

// An inspection or generation a step started has ended (ignored when the lesson moved on).
void LessonRunner::job_done(int step, int gen_id, bool ok, const QString& failure) {
    if (gen_id != generation_) return;
    set_status({});
    if (ok)
        finish_step(step);
    else
        fail(step, failure);
}

void LessonRunner::finish_step(int step) {
    if (!lesson_ || step != step_) return;
    pending_action_ = false;
    // After the views took the new data (they redraw on a timer).
    const int gen_id = generation_;
    window_->refresh_views_now();
    QTimer::singleShot(0, this, [this, step, gen_id] {
        if (gen_id == generation_) place_highlight(step);
    });
}

void LessonRunner::place_highlight(int step) {
    const views::Highlight& h = lesson_->steps[size_t(step)].highlight;
    const QString dock =
        QString::fromStdString(lesson_view_dock(lesson_->steps[size_t(step)].view));
    highlight_missing_.clear();
    highlight_found_ =
        h.empty() || views::highlight_view(window_->view_widget(dock), h, &highlight_missing_);
    emit step_ready(step, highlight_found_, highlight_missing_);
}

void LessonRunner::fail(int step, const QString& message) {
    pending_action_ = false;
    set_status(message);
    emit action_failed(step, message);
}

void LessonRunner::set_status(const QString& s) {
    if (s == status_) return;
    status_ = s;
    emit status_changed(s);
}

}  // namespace moe::workbench
