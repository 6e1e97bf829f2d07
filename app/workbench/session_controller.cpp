#include "workbench/session_controller.h"

#include <QDateTime>
#include <QDir>
#include <QFile>
#include <QFileInfo>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "remote_session.h"
#include "session/local_session.h"
#include "workbench/project_paths.h"

namespace moe::workbench {

SessionController::SessionController(QObject* parent)
    : QObject(parent), session_(std::make_unique<LocalSession>()), runs_dir_(default_runs_dir()) {
    attach_listener();
}

void SessionController::attach_listener() {
    // Called on the engine thread (local) or this thread (remote): copy the event and queue it
    // to this object's (GUI) thread, so both arrive the same way.
    session_->set_listener([this](const SessionEvent& e) {
        QMetaObject::invokeMethod(this, [this, e] { handle(e); }, Qt::QueuedConnection);
    });
}

bool SessionController::use_local() {
    if (active()) return false;
    if (!remote_) return true;
    session_ = std::make_unique<LocalSession>();
    remote_ = false;
    attach_listener();
    return true;
}

bool SessionController::use_remote(moe::remote::RemoteConnection* connection) {
    if (active() || !connection) return false;
    // A finished local session is stopped and joined here; a remote one keeps running on its
    // worker when replaced.
    session_ = std::make_unique<moe::remote::RemoteSession>(connection);
    remote_ = true;
    attach_listener();
    return true;
}

QString SessionController::remote_run_file() const {
    const auto* r = remote_ ? dynamic_cast<const moe::remote::RemoteSession*>(session_.get()) : nullptr;
    return r ? QString::fromStdString(r->remote_run_file()) : QString();
}

SessionController::~SessionController() {
    // Stops a running session cleanly (checkpoint, closed file); its last events are dropped
    // with this object.
    session_.reset();
}

bool SessionController::active() const {
    return state_ == SessionState::Running || state_ == SessionState::Paused ||
           state_ == SessionState::Stopping;
}

TrainerPaths SessionController::new_paths(const std::string& name) const {
    QDir().mkpath(runs_dir_);
    const QString stem = QString::fromStdString(name.empty() ? "run" : name) + "-" +
                         QDateTime::currentDateTime().toString("yyyyMMdd-HHmmss");
    QString base = QDir(runs_dir_).filePath(stem);
    for (int i = 2; QFile::exists(base + ".h5"); ++i) base = QDir(runs_dir_).filePath(stem + QString("-%1").arg(i));
    return {(base + ".h5").toStdString(), (base + ".ckpt").toStdString()};
}

bool SessionController::start(const moe::Project& project, int threads, const QString& parallel) {
    try {
        if (auto* r = dynamic_cast<moe::remote::RemoteSession*>(session_.get()))
            r->set_parallel(parallel.toStdString());
        else if (!parallel.isEmpty())
            throw Error("runs of several processes start on a worker (or with mpirun from a shell)");
        begin(project, new_paths(project.name), threads);
        return true;
    } catch (const std::exception& e) {
        emit failed(QString::fromStdString(e.what()), {});
        return false;
    }
}

void SessionController::begin(const moe::Project& project, const TrainerPaths& paths, int threads) {
    pending_run_file_ = QString::fromStdString(paths.run_file);
    last_step_ = {};
    session_->start(project, paths, threads);
}

bool SessionController::start_at(const moe::Project& project, int threads, const QString& base) {
    try {
        if (!use_local()) throw Error("a run is still active; stop it first");
        if (QFile::exists(base + ".h5")) throw Error((base + ".h5 exists already; not overwritten").toStdString());
        QDir().mkpath(QFileInfo(base).absolutePath());
        begin(project, {(base + ".h5").toStdString(), (base + ".ckpt").toStdString()}, threads);
        return true;
    } catch (const std::exception& e) {
        emit failed(QString::fromStdString(e.what()), {});
        return false;
    }
}

bool SessionController::resume_from(const QString& checkpoint_dir, int threads, int64_t total_steps,
                                    const QString& device) {
    try {
        // Named after the run the checkpoint belongs to: <run>.ckpt/step-N -> <run>-resumed-...
        QDir ckpt_root = QFileInfo(checkpoint_dir).dir();
        QString name = ckpt_root.dirName();
        if (name.endsWith(".ckpt")) name.chop(5);
        const TrainerPaths paths = new_paths((name + "-resumed").toStdString());
        pending_run_file_ = QString::fromStdString(paths.run_file);
        last_step_ = {};
        session_->resume_from(checkpoint_dir.toStdString(), paths, threads, total_steps,
                              device.toStdString());
        return true;
    } catch (const std::exception& e) {
        emit failed(QString::fromStdString(e.what()), {});
        return false;
    }
}

void SessionController::pause() { session_->pause(); }
void SessionController::resume() { session_->resume(); }
void SessionController::step_once() { session_->step_once(); }
void SessionController::stop() { session_->stop(); }
void SessionController::save_checkpoint_now() { session_->save_checkpoint_now(); }

void SessionController::handle(const SessionEvent& e) {
    using K = SessionEvent::Kind;
    switch (e.kind) {
    case K::StateChanged: {
        const SessionState before = state_;
        state_ = e.state;
        // The first Running/Paused of a run: the trainer has created its run file.
        if (before == SessionState::Idle || before == SessionState::Finished || before == SessionState::Failed)
            if (e.state == SessionState::Running || e.state == SessionState::Paused) {
                run_file_ = pending_run_file_;
                emit run_started(run_file_);
            }
        emit state_changed(e.state);
        break;
    }
    case K::Step:
        last_step_ = e.step;
        emit stepped(e.step);
        break;
    case K::Eval: emit evaluated(e.eval); break;
    case K::Checkpoint: emit checkpoint_saved(QString::fromStdString(e.message)); break;
    case K::Failed: emit failed(QString::fromStdString(e.message), QString::fromStdString(e.field)); break;
    case K::Log:
        // A local session's lines reach the log dock through spdlog already; a remote one's
        // come only as events.
        if (remote_) spdlog::info("[worker] {}", e.message);
        break;
    case K::RunFileUpdated: emit run_file_updated(run_file_); break;
    }
}

}  // namespace moe::workbench
