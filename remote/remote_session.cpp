#include "remote_session.h"

#include <QFileInfo>

#include "core/error.h"
#include "session_codec.h"
#include "store/run_reader.h"

namespace moe::remote {

using nlohmann::json;

RemoteSession::RemoteSession(RemoteConnection* connection, SessionListener listener)
    : c_(connection), ctx_(std::make_unique<QObject>()), listener_(std::move(listener)) {
    if (c_) {
        QObject::connect(c_, &RemoteConnection::message, ctx_.get(), [this](const json& m) { on_message(m); });
        // After a reconnect: continue the stream exactly where it stopped.
        QObject::connect(c_, &RemoteConnection::connected, ctx_.get(), [this] {
            if (id_ > 0) subscribe();
        });
        QObject::connect(c_, &RemoteConnection::state_changed, ctx_.get(), [this](RemoteConnection::State s) {
            if (id_ > 0 && s == RemoteConnection::State::Reconnecting) {
                SessionEvent e;
                e.kind = SessionEvent::Kind::Log;
                e.message = "connection to " + c_->address().toStdString() +
                            " lost; reconnecting (the run goes on on the worker)";
                on_event(e);
            }
        });
    }
    sync_timer_.setInterval(5000);
    QObject::connect(&sync_timer_, &QTimer::timeout, ctx_.get(), [this] {
        if (!mirror_ready_ || holding_ || syncing_) return;
        if (state_ != SessionState::Running && state_ != SessionState::Paused) return;
        sync_now([this](QString error) {
            if (!error.isEmpty()) return;
            SessionEvent e;
            e.kind = SessionEvent::Kind::RunFileUpdated;
            e.message = mirror_;
            on_event(e);
        });
    });
}

RemoteSession::~RemoteSession() {
    sync_timer_.stop();
    if (c_ && id_ > 0 && c_->state() == RemoteConnection::State::Connected)
        c_->request({{"type", "unsubscribe"}, {"session", id_}}, {});
    ctx_.reset();  // drops every connection and pending callback target
}

void RemoteSession::set_listener(SessionListener listener) { listener_ = std::move(listener); }

void RemoteSession::fail_locally(const std::string& message, const std::string& field) {
    SessionEvent e;
    e.kind = SessionEvent::Kind::Failed;
    e.message = message;
    e.field = field;
    e.state = SessionState::Failed;
    deliver(e);
    e.kind = SessionEvent::Kind::StateChanged;
    deliver(e);
}

void RemoteSession::launch(json request, const TrainerPaths& paths) {
    if (!c_ || c_->state() != RemoteConnection::State::Connected)
        throw Error("not connected to the worker" + (c_ ? " at " + c_->address().toStdString() : std::string()) +
                    ": connect first (File > Connect to engine…)");
    if (state_ == SessionState::Running || state_ == SessionState::Paused || state_ == SessionState::Stopping)
        throw Error("a run is active in this session: stop it first");
    if (id_ > 0) c_->request({{"type", "unsubscribe"}, {"session", id_}}, {});
    id_ = 0;
    state_ = SessionState::Idle;
    steps_done_ = last_delivered_step_ = 0;
    next_seq_ = 0;
    held_.clear();
    holding_ = mirror_ready_ = gap_pending_ = final_fetched_ = false;
    mirror_ = paths.run_file;
    remote_run_.clear();
    request["name"] = QFileInfo(QString::fromStdString(paths.run_file)).completeBaseName().toStdString();
    QPointer<QObject> alive = ctx_.get();
    c_->request(std::move(request), [this, alive](const json& m, const QByteArray&) {
        if (!alive) return;
        if (m.value("type", "") == "error")
            return fail_locally("the worker at " + c_->address().toStdString() + " refused the run: " +
                                    m.value("message", m.value("code", "")),
                                m.value("field", ""));
        id_ = m.value("session", 0);
        remote_run_ = m.value("run_file", "");
        subscribe();
    });
}

void RemoteSession::start(const Project& project, const TrainerPaths& paths, int threads) {
    nlohmann::json m{{"type", "start"}, {"project", project.to_json()}, {"threads", threads}};
    if (!parallel_.empty()) m["parallel"] = parallel_;
    launch(m, paths);
}

void RemoteSession::resume_from(const std::string& checkpoint_dir, const TrainerPaths& paths, int threads,
                                int64_t total_steps, const std::string& device) {
    nlohmann::json m{{"type", "resume_from"}, {"checkpoint", checkpoint_dir}, {"threads", threads},
                     {"total_steps", total_steps}};
    if (!device.empty()) m["device"] = device;
    launch(m, paths);
}

void RemoteSession::attach(int session_id, const std::string& remote_run_file, const std::string& local_mirror) {
    id_ = session_id;
    remote_run_ = remote_run_file;
    mirror_ = local_mirror;
    next_seq_ = 0;
    subscribe();
}

void RemoteSession::command(const char* what) {
    if (!c_ || id_ <= 0) return;
    QPointer<QObject> alive = ctx_.get();
    c_->request({{"type", "command"}, {"session", id_}, {"command", what}}, [this, alive, what](const json& m, const QByteArray&) {
        if (!alive || m.value("type", "") != "error") return;
        SessionEvent e;
        e.kind = SessionEvent::Kind::Log;
        e.message = std::string(what) + " not sent: " + m.value("message", "");
        on_event(e);
    });
}

void RemoteSession::pause() { command("pause"); }
void RemoteSession::resume() { command("resume"); }
void RemoteSession::step_once() { command("step"); }
void RemoteSession::save_checkpoint_now() { command("checkpoint"); }
void RemoteSession::stop() {
    if (state_ == SessionState::Finished || state_ == SessionState::Failed) return;
    command("stop");
}

void RemoteSession::subscribe() {
    if (!c_ || id_ <= 0) return;
    QPointer<QObject> alive = ctx_.get();
    c_->request({{"type", "subscribe"}, {"session", id_}, {"from_seq", next_seq_}}, [this, alive](const json& m, const QByteArray&) {
        if (!alive || m.value("type", "") != "error") return;
        SessionEvent e;
        e.kind = SessionEvent::Kind::Log;
        e.message = "cannot follow session " + std::to_string(id_) + ": " + m.value("message", "");
        on_event(e);
    });
}

void RemoteSession::on_message(const json& m) {
    if (id_ <= 0 || m.value("session", -1) != id_) return;
    const std::string type = m.value("type", "");
    if (type == "event") {
        const int64_t seq = m.value("seq", int64_t(-1));
        if (seq < next_seq_) return;  // already passed on (a replay after reconnecting)
        next_seq_ = seq + 1;
        try {
            on_event(event_from_json(m.at("event")));
        } catch (const std::exception& e) {
            SessionEvent log;
            log.kind = SessionEvent::Kind::Log;
            log.message = std::string("malformed event from the worker: ") + e.what();
            on_event(log);
        }
    } else if (type == "gap") {
        // The worker dropped events we never got: continue from what it has, and fill the
        // missing steps from the run file's metrics rows.
        next_seq_ = std::max(next_seq_, m.value("resume_seq", next_seq_));
        ++gaps_;
        gap_pending_ = true;
        if (!holding_) {
            holding_ = true;
            const int64_t after = last_delivered_step_;
            sync_now([this, after](QString error) {
                gap_pending_ = false;
                if (error.isEmpty()) {
                    try {
                        // Steps before the first one still in the stream.
                        int64_t until = INT64_MAX;
                        for (const SessionEvent& e : held_)
                            if (e.kind == SessionEvent::Kind::Step) {
                                until = e.step.step;
                                break;
                            }
                        RunReader r(mirror_);
                        const MetricsColumns cols = r.metrics();
                        for (int64_t i = 0; i < cols.size(); ++i) {
                            const MetricsRow row = cols.row(i);
                            if (row.step <= after || row.step >= until) continue;
                            SessionEvent e;
                            e.kind = SessionEvent::Kind::Step;
                            e.step = step_from_row(row, 0);
                            deliver(e);
                        }
                    } catch (const std::exception& ex) {
                        error = QString::fromUtf8(ex.what());
                    }
                }
                if (!error.isEmpty()) {
                    SessionEvent e;
                    e.kind = SessionEvent::Kind::Log;
                    e.message = "missing steps could not be re-read from the run file: " + error.toStdString();
                    deliver(e);
                }
                release();
            });
        }
    }
}

namespace {
bool is_live(SessionState s) { return s == SessionState::Running || s == SessionState::Paused; }
bool is_end(SessionState s) { return s == SessionState::Finished || s == SessionState::Failed; }
}  // namespace

void RemoteSession::on_event(SessionEvent e) {
    if (holding_) {
        held_.push_back(std::move(e));
        return;
    }
    held_.push_back(std::move(e));
    release();
}

void RemoteSession::release() {
    holding_ = false;
    while (!held_.empty()) {
        SessionEvent& e = held_.front();
        if (e.kind == SessionEvent::Kind::StateChanged && is_live(e.state) && !mirror_ready_ && !mirror_.empty()) {
            // The first Running/Paused: the GUI opens the run file next, so fetch it first.
            holding_ = true;
            sync_now([this](QString error) {
                mirror_ready_ = true;
                if (!error.isEmpty()) {
                    SessionEvent log;
                    log.kind = SessionEvent::Kind::Log;
                    log.message = "the run file could not be copied from the worker: " + error.toStdString();
                    deliver(log);
                }
                sync_timer_.start();
                release();
            });
            return;
        }
        if (e.kind == SessionEvent::Kind::StateChanged && is_end(e.state) && mirror_ready_ && !remote_run_.empty() &&
            !final_fetched_ && c_ && c_->state() == RemoteConnection::State::Connected) {
            // The run has ended and its file is closed: fetch the final file, then say so.
            holding_ = true;
            final_fetched_ = true;
            sync_timer_.stop();
            download_file(c_, QString::fromStdString(remote_run_), QString::fromStdString(mirror_),
                          [this](QString error) {
                              if (!error.isEmpty()) {
                                  SessionEvent log;
                                  log.kind = SessionEvent::Kind::Log;
                                  log.message = "the final run file could not be copied from the worker: " +
                                                error.toStdString();
                                  deliver(log);
                              }
                              release();
                          },
                          ctx_.get());
            return;
        }
        SessionEvent next = std::move(e);
        held_.pop_front();
        deliver(next);
    }
}

void RemoteSession::deliver(const SessionEvent& e) {
    if (e.kind == SessionEvent::Kind::StateChanged || e.kind == SessionEvent::Kind::Failed) state_ = e.state;
    if (e.kind == SessionEvent::Kind::Step) {
        steps_done_ = e.step.step;
        last_delivered_step_ = e.step.step;
    }
    if (is_end(state_)) sync_timer_.stop();
    if (listener_) listener_(e);
}

void RemoteSession::sync_now(std::function<void(QString)> done) {
    if (!c_ || id_ <= 0 || mirror_.empty()) {
        if (done) done("no remote run to copy");
        return;
    }
    // One download into the mirror at a time: a second caller shares the running one's result.
    sync_waiters_.push_back(std::move(done));
    if (syncing_) return;
    syncing_ = true;
    auto finish = [this](QString error) {
        syncing_ = false;
        auto waiters = std::move(sync_waiters_);
        sync_waiters_.clear();
        for (auto& w : waiters)
            if (w) w(error);
    };
    QPointer<QObject> alive = ctx_.get();
    c_->request({{"type", "snapshot"}, {"session", id_}}, [this, alive, finish](const json& m, const QByteArray&) {
        if (!alive) return;
        if (m.value("type", "") == "error") return finish(QString::fromStdString(m.value("message", "snapshot failed")));
        download_file(c_, QString::fromStdString(m.value("path", "")), QString::fromStdString(mirror_), finish,
                      ctx_.get());
    });
}

}  // namespace moe::remote
