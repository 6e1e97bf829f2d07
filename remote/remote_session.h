#pragma once
// RemoteSession: a training session on a moe-worker, behind the same Session interface as
// LocalSession, so the workbench's views cannot tell the difference.
//
// - start()/resume_from() send the request; the worker names its run after paths.run_file's
//   stem. paths.run_file becomes the local mirror of the worker's run file: a consistent
//   snapshot is downloaded (SHA-256 checked) before the first Running/Paused state is passed
//   on, so "run_started" always finds a readable file, then every sync_interval while the run
//   goes on (a RunFileUpdated event each time), and the final file when it ends.
// - Events carry the worker's sequence numbers. After a lost connection the session
//   re-subscribes from the next number it needs: nothing is lost or passed on twice. When the
//   worker no longer holds those events ("gap"), the missing steps are re-read from the run
//   file's metrics rows (every log_every steps) before the stream continues.
// - The destructor leaves the run going on the worker (it only stops listening).
// Use on the thread of the RemoteConnection (it needs that thread's event loop); the listener
// is called on that thread.
#include <QObject>
#include <QPointer>
#include <QString>
#include <QTimer>

#include <deque>
#include <memory>

#include "remote_connection.h"
#include "session/session.h"

namespace moe::remote {

class RemoteSession : public Session {
public:
    explicit RemoteSession(RemoteConnection* connection, SessionListener listener = {});
    ~RemoteSession() override;
    RemoteSession(const RemoteSession&) = delete;
    RemoteSession& operator=(const RemoteSession&) = delete;

    void set_listener(SessionListener listener) override;
    void start(const Project& project, const TrainerPaths& paths, int threads = 0) override;
    // checkpoint_dir: a step-* folder on the worker, relative to its runs folder.
    void resume_from(const std::string& checkpoint_dir, const TrainerPaths& paths, int threads = 0,
                     int64_t total_steps = 0, const std::string& device = "") override;
    void pause() override;
    void resume() override;
    void step_once() override;
    void stop() override;
    void save_checkpoint_now() override;
    SessionState state() const override { return state_; }
    std::string run_file() const override { return mirror_; }
    int64_t steps_done() const override { return steps_done_; }

    // Follows a session already running on the worker (e.g. after the workbench restarted).
    void attach(int session_id, const std::string& remote_run_file, const std::string& local_mirror);

    int remote_id() const { return id_; }
    const std::string& remote_run_file() const { return remote_run_; }
    int64_t next_seq() const { return next_seq_; }
    int gaps_filled() const { return gaps_; }
    void set_sync_interval_ms(int ms) { sync_timer_.setInterval(ms); }
    // The next start() runs as several processes on the worker (mpirun, "ep=E,dp=D"; "" = one).
    void set_parallel(std::string layout) { parallel_ = std::move(layout); }
    // Downloads a fresh snapshot into the mirror now (done(error) afterwards, "" when fine).
    void sync_now(std::function<void(QString)> done = {});

private:
    void command(const char* what);
    void subscribe();
    void on_message(const nlohmann::json& m);
    void on_event(SessionEvent e);
    void deliver(const SessionEvent& e);
    void release();
    void fail_locally(const std::string& message, const std::string& field);
    void launch(nlohmann::json request, const TrainerPaths& paths);

    QPointer<RemoteConnection> c_;
    std::unique_ptr<QObject> ctx_;  // receiver of connections and timers; gone with this
    SessionListener listener_;
    SessionState state_ = SessionState::Idle;
    int64_t steps_done_ = 0;
    int id_ = 0;
    std::string remote_run_, mirror_;
    int64_t next_seq_ = 0;
    // Events held back while the mirror is downloaded (before the first Running, at the end)
    // or while a gap is filled from the run file.
    std::deque<SessionEvent> held_;
    bool holding_ = false, mirror_ready_ = false, gap_pending_ = false, syncing_ = false, final_fetched_ = false;
    std::vector<std::function<void(QString)>> sync_waiters_;
    int64_t last_delivered_step_ = 0;
    int gaps_ = 0;
    std::string parallel_;
    QTimer sync_timer_;
};

}  // namespace moe::remote
