#include "session/local_session.h"

#include <spdlog/spdlog.h>

#include "core/error.h"

namespace moe {

const char* to_string(SessionState state) {
    switch (state) {
    case SessionState::Idle: return "idle";
    case SessionState::Running: return "running";
    case SessionState::Paused: return "paused";
    case SessionState::Stopping: return "stopping";
    case SessionState::Finished: return "finished";
    case SessionState::Failed: return "failed";
    }
    return "?";
}

LocalSession::LocalSession(SessionListener listener) : listener_(std::move(listener)) {}

LocalSession::~LocalSession() {
    // Stop cleanly: the current step ends, a checkpoint is written and the run file closed, so
    // closing the window never leaves a half-written run behind.
    stop();
    join();
}

void LocalSession::set_listener(SessionListener listener) {
    std::lock_guard lock(listener_mutex_);
    listener_ = std::move(listener);
}

void LocalSession::start(const Project& project, const TrainerPaths& paths, int threads) {
    launch([project, paths, threads] { return std::make_unique<Trainer>(project, paths, threads); },
           paths.run_file);
}

void LocalSession::resume_from(const std::string& checkpoint_dir, const TrainerPaths& paths,
                               int threads, int64_t total_steps, const std::string& device) {
    launch([=] { return Trainer::resume(checkpoint_dir, paths, threads, total_steps, device); },
           paths.run_file);
}

void LocalSession::launch(TrainerFactory factory, const std::string& run_file) {
    {
        std::lock_guard lock(mutex_);
        const bool done = state_ == SessionState::Finished || state_ == SessionState::Failed;
        if (thread_.joinable() && !done) throw Error("a run is active in this session: stop it first");
    }
    join();  // the previous run's thread has ended or is about to
    {
        std::lock_guard lock(mutex_);
        commands_.clear();
        state_ = SessionState::Idle;
        run_file_ = run_file;
        steps_done_ = 0;
    }
    thread_ = std::thread([this, f = std::move(factory)] { run(f); });
}

void LocalSession::push(Command c) {
    {
        std::lock_guard lock(mutex_);
        if (!thread_.joinable()) return;  // nothing to command
        commands_.push_back(c);
    }
    wake_.notify_one();
}

void LocalSession::pause() { push(Command::Pause); }
void LocalSession::resume() { push(Command::Resume); }
void LocalSession::step_once() { push(Command::Step); }
void LocalSession::save_checkpoint_now() { push(Command::Checkpoint); }

void LocalSession::stop() {
    {
        std::lock_guard lock(mutex_);
        if (state_ == SessionState::Finished || state_ == SessionState::Failed) return;
    }
    push(Command::Stop);
}

SessionState LocalSession::state() const {
    std::lock_guard lock(mutex_);
    return state_;
}

std::string LocalSession::run_file() const {
    std::lock_guard lock(mutex_);
    return run_file_;
}

int64_t LocalSession::steps_done() const {
    std::lock_guard lock(mutex_);
    return steps_done_;
}

void LocalSession::join() {
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void LocalSession::set_state(SessionState s) {
    {
        std::lock_guard lock(mutex_);
        if (state_ == s) return;
        state_ = s;
    }
    SessionEvent e;
    e.kind = SessionEvent::Kind::StateChanged;
    e.state = s;
    notify(std::move(e));
}

void LocalSession::notify(SessionEvent e) {
    if (e.kind != SessionEvent::Kind::StateChanged) e.state = state();
    std::lock_guard lock(listener_mutex_);
    if (listener_) listener_(e);
}

void LocalSession::log(const std::string& line) {
    // spdlog reaches every sink of this process (the GUI's log dock among them); the Log event
    // is for listeners that do not see this process's log (a remote client's mirror).
    spdlog::info("{}", line);
    SessionEvent e;
    e.kind = SessionEvent::Kind::Log;
    e.message = line;
    notify(std::move(e));
}

void LocalSession::fail(const std::string& message, const std::string& field) {
    spdlog::error("training failed: {}", message);
    {
        std::lock_guard lock(mutex_);
        state_ = SessionState::Failed;
    }
    SessionEvent e;
    e.kind = SessionEvent::Kind::Failed;
    e.message = message;
    e.field = field;
    notify(e);
    e.kind = SessionEvent::Kind::StateChanged;
    notify(std::move(e));
}

void LocalSession::run(TrainerFactory factory) {
    std::unique_ptr<Trainer> trainer;
    auto one_step = [&] {
        StepReport r = trainer->step();
        {
            std::lock_guard lock(mutex_);
            steps_done_ = r.step;
        }
        SessionEvent e;
        e.kind = SessionEvent::Kind::Step;
        e.step = std::move(r);
        notify(std::move(e));
    };
    auto finish = [&](const std::string& why) {
        trainer->close();
        log(why);
        set_state(SessionState::Finished);
    };
    try {
        trainer = factory();  // builds the model and data, creates the run file
        trainer->on_eval = [this](const EvalReport& r) {
            SessionEvent e;
            e.kind = SessionEvent::Kind::Eval;
            e.eval = r;
            notify(std::move(e));
        };
        trainer->on_checkpoint = [this](const std::string& dir) {
            log("checkpoint saved: " + dir);
            SessionEvent e;
            e.kind = SessionEvent::Kind::Checkpoint;
            e.message = dir;
            notify(std::move(e));
        };
        {
            std::lock_guard lock(mutex_);
            steps_done_ = trainer->steps_done();
        }
        log("run started: " + trainer->project().name + " -> " + trainer->run_file() + " (step " +
            std::to_string(trainer->steps_done()) + " of " +
            std::to_string(trainer->project().training.steps) + ")");
        set_state(start_paused_ ? SessionState::Paused : SessionState::Running);
        if (trainer->finished()) return finish("nothing to do: the run has done all its steps");

        for (;;) {
            Command cmd{};
            bool have = false;
            SessionState st;
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return !commands_.empty() || state_ == SessionState::Running; });
                if (!commands_.empty()) {
                    cmd = commands_.front();
                    commands_.pop_front();
                    have = true;
                }
                st = state_;
            }
            if (have) {
                switch (cmd) {
                case Command::Pause:
                    if (st == SessionState::Running) set_state(SessionState::Paused);
                    break;
                case Command::Resume:
                    if (st == SessionState::Paused) set_state(SessionState::Running);
                    break;
                case Command::Step:
                    if (st != SessionState::Paused) {
                        log("step ignored: pause the run first");
                        break;
                    }
                    one_step();
                    if (trainer->finished()) return finish("run finished: all steps done");
                    break;
                case Command::Checkpoint:
                    if (trainer->save_checkpoint().empty())
                        log("no checkpoint saved: the run has no checkpoint folder");
                    break;
                case Command::Stop:
                    set_state(SessionState::Stopping);
                    trainer->save_checkpoint();
                    return finish("run stopped at step " + std::to_string(trainer->steps_done()));
                }
                continue;  // every queued command is handled before the next step
            }
            one_step();
            if (trainer->finished()) return finish("run finished: all steps done");
        }
    } catch (const ConfigError& e) {
        fail(e.what(), e.field());
    } catch (const std::exception& e) {
        fail(e.what(), "");
    }
    // A failed run still closes its file, so everything flushed so far stays readable.
    if (trainer) {
        try {
            trainer->close();
        } catch (const std::exception& e) {
            spdlog::error("closing the run file failed: {}", e.what());
        }
    }
}

}  // namespace moe
