#pragma once
// ProcessSession: a training run of several processes on the worker (docs/parallelism.md):
// `mpirun -np N moe-train PROJECT --parallel LAYOUT` started as a child process, one rank per
// GPU when the project trains on CUDA. It is followed the way a client follows any run: rank
// 0's run file is read as it grows (a Step event per metrics row, so at the run's log_every),
// rank 0's output gives the checkpoints and the log, the process's end the final state (its
// last error line when it failed). Stop sends Ctrl-C to the job: the ranks agree on the step,
// rank 0 saves a checkpoint, every rank ends. Pause and single steps are not offered for such
// runs (the ranks would have to agree on every command; a log line says so).
//
// Lives on the worker's event-loop thread (QProcess, timers); the listener is called there.
#include <QObject>
#include <QProcess>
#include <QString>
#include <QTimer>

#include <memory>
#include <string>

#include "session/session.h"

namespace moe {
class RunReader;
}

namespace moe::worker {

class ProcessSession final : public QObject, public moe::Session {
    Q_OBJECT
public:
    // mpirun and moe-train: the executables; layout: "ep=E,dp=D[,zero=1]" (checked already).
    ProcessSession(QString mpirun, QString moe_train, std::string layout, int ranks,
                   QObject* parent = nullptr);
    ~ProcessSession() override;  // a running job is stopped (Ctrl-C, then killed after 30 s)

    void set_listener(moe::SessionListener listener) override { listener_ = std::move(listener); }
    void start(const moe::Project& project, const moe::TrainerPaths& paths,
               int threads = 0) override;
    void resume_from(const std::string& checkpoint_dir, const moe::TrainerPaths& paths,
                     int threads = 0, int64_t total_steps = 0,
                     const std::string& device = "") override;
    void pause() override { unsupported("pause"); }
    void resume() override { unsupported("resume"); }
    void step_once() override { unsupported("step"); }
    void stop() override;
    void save_checkpoint_now() override { unsupported("checkpoint"); }
    moe::SessionState state() const override { return state_; }
    std::string run_file() const override { return run_file_; }
    int64_t steps_done() const override { return steps_done_; }

private:
    void launch(const QStringList& train_args, int64_t total_steps);
    void poll();  // new metrics rows of the run file as Step events
    void on_output();
    void on_finished(int code, QProcess::ExitStatus status);
    void emit_event(moe::SessionEvent e);
    void set_state(moe::SessionState s);
    void unsupported(const char* what);

    QString mpirun_, moe_train_;
    std::string layout_;
    int ranks_;
    moe::SessionListener listener_;
    moe::SessionState state_ = moe::SessionState::Idle;
    std::string run_file_, last_error_;
    int64_t steps_done_ = 0, total_steps_ = 0, rows_seen_ = 0;
    bool stop_asked_ = false;
    QProcess process_;
    QTimer poll_timer_;
    QByteArray pending_output_;
    std::unique_ptr<moe::RunReader> reader_;
};

}  // namespace moe::worker
