#pragma once
// SessionController: the GUI side of a training Session. It owns the session (a LocalSession
// today, a remote one later), picks the run file and checkpoint folder, and re-emits the
// session's events as Qt signals on the GUI thread. Nothing here waits for the engine.
#include <QObject>
#include <QString>

#include <memory>

#include "session/session.h"

namespace moe::remote {
class RemoteConnection;
}

namespace moe::workbench {

class SessionController : public QObject {
    Q_OBJECT

public:
    explicit SessionController(QObject* parent = nullptr);
    ~SessionController() override;

    // Folder of new runs: <dir>/<project>-<time>.h5 and its checkpoints <...>.ckpt/step-N.
    void set_runs_dir(const QString& dir) { runs_dir_ = dir; }
    QString runs_dir() const { return runs_dir_; }

    SessionState state() const { return state_; }
    bool active() const;  // Running, Paused or Stopping
    QString run_file() const { return run_file_; }
    int64_t steps_done() const { return last_step_.step; }
    const StepReport& last_step() const { return last_step_; }

    // Where the next run goes: this process (LocalSession) or a moe-worker (RemoteSession over
    // `connection`). Refused (false) while a run is active.
    bool use_local();
    bool use_remote(moe::remote::RemoteConnection* connection);
    bool remote() const { return remote_; }
    // A remote run's file as the worker names it (relative to its runs folder); "" otherwise.
    QString remote_run_file() const;

    // false (and `failed`) when the session refuses at once; later errors come as `failed`.
    // parallel: a layout ("ep=2,dp=2") for a run of several processes on the worker; "" = one.
    bool start(const moe::Project& project, int threads, const QString& parallel = {});
    // A local run into <base>.h5 and <base>.ckpt (a lesson's run, kept under a fixed name).
    // Refused when <base>.h5 exists: nothing here overwrites a run.
    bool start_at(const moe::Project& project, int threads, const QString& base);
    bool resume_from(const QString& checkpoint_dir, int threads, int64_t total_steps = 0,
                     const QString& device = {});

public slots:
    void pause();
    void resume();
    void step_once();
    void stop();
    void save_checkpoint_now();

signals:
    void state_changed(moe::SessionState state);
    void run_started(const QString& run_file);  // the run file exists and can be read
    void stepped(const moe::StepReport& report);
    void evaluated(const moe::EvalReport& report);
    void checkpoint_saved(const QString& dir);
    void failed(const QString& message, const QString& field);
    // A remote run's local copy was refreshed from the worker: readers reopen it.
    void run_file_updated(const QString& run_file);

private:
    void handle(const SessionEvent& e);  // on the GUI thread
    void attach_listener();
    TrainerPaths new_paths(const std::string& name) const;
    void begin(const moe::Project& project, const TrainerPaths& paths, int threads);  // may throw

    std::unique_ptr<Session> session_;
    SessionState state_ = SessionState::Idle;
    StepReport last_step_;
    bool remote_ = false;
    QString runs_dir_, run_file_, pending_run_file_;
};

}  // namespace moe::workbench
