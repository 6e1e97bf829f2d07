#pragma once
// LocalSession: a Trainer on its own std::thread. The caller's thread only queues commands
// (mutex + condition variable); the engine thread handles them between steps, so no call ever
// waits for a step to finish, except the destructor, which stops the run cleanly (checkpoint,
// closed run file) and joins. Any exception of the trainer becomes a Failed event: the engine
// never takes the GUI down with it.
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "session/session.h"

namespace moe {

class LocalSession : public Session {
public:
    explicit LocalSession(SessionListener listener = {});
    ~LocalSession() override;
    LocalSession(const LocalSession&) = delete;
    LocalSession& operator=(const LocalSession&) = delete;

    void set_listener(SessionListener listener) override;
    void start(const Project& project, const TrainerPaths& paths, int threads = 0) override;
    void resume_from(const std::string& checkpoint_dir, const TrainerPaths& paths,
                     int threads = 0, int64_t total_steps = 0,
                     const std::string& device = "") override;
    void pause() override;
    void resume() override;
    void step_once() override;
    void stop() override;
    void save_checkpoint_now() override;

    SessionState state() const override;
    std::string run_file() const override;
    int64_t steps_done() const override;

    // Starts Paused instead of Running (the GUI's "step from the first step" and tests).
    void set_start_paused(bool paused) { start_paused_ = paused; }

private:
    enum class Command { Pause, Resume, Step, Stop, Checkpoint };
    // How the engine thread builds its trainer (a new run or a resumed one).
    using TrainerFactory = std::function<std::unique_ptr<Trainer>()>;

    void launch(TrainerFactory factory, const std::string& run_file);
    void run(TrainerFactory factory);
    void set_state(SessionState s);
    void notify(SessionEvent e);
    void log(const std::string& line);
    void fail(const std::string& message, const std::string& field);
    void push(Command c);
    void join();

    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<Command> commands_;
    SessionState state_ = SessionState::Idle;
    std::string run_file_;
    int64_t steps_done_ = 0;
    bool start_paused_ = false;

    std::mutex listener_mutex_;
    SessionListener listener_;
    std::thread thread_;
};

}  // namespace moe
