#pragma once
// Session: the one interface the GUI drives to run training. LocalSession runs the engine on a
// thread of this process; RemoteSession (remote/, over TCP to moe-worker) implements the same
// calls. Every call returns at once: commands are queued and the engine handles them between
// optimizer steps. What happens is reported through the listener, called on the engine's thread
// (the GUI marshals it to its own thread).
#include <cstdint>
#include <functional>
#include <string>

#include "store/project.h"
#include "train/train_reports.h"
#include "train/trainer.h"

namespace moe {

enum class SessionState {
    Idle,      // nothing started yet
    Running,   // stepping continuously
    Paused,    // waiting for resume() or step_once()
    Stopping,  // stop() asked: finishing the current step, checkpointing, closing the run file
    Finished,  // all steps done, or stopped; the run file is closed
    Failed,    // the engine threw; the message is in the Failed event
};

const char* to_string(SessionState state);

struct SessionEvent {
    // RunFileUpdated: run_file() was replaced by a newer copy (a remote session's local mirror
    // of the worker's run file); readers reopen it. A LocalSession never sends it.
    enum class Kind { StateChanged, Step, Eval, Checkpoint, Log, Failed, RunFileUpdated };
    Kind kind = Kind::Log;
    SessionState state = SessionState::Idle;  // StateChanged: the new state (others: current)
    StepReport step;                          // Step
    EvalReport eval;                          // Eval
    std::string message;  // Log: the line; Failed: the error; Checkpoint: the directory
    std::string field;    // Failed by a ConfigError: the field it names (e.g. "training.steps")
};

using SessionListener = std::function<void(const SessionEvent&)>;

class Session {
public:
    virtual ~Session() = default;

    // Set before start(); events before that are dropped.
    virtual void set_listener(SessionListener listener) = 0;

    // A new run of `project` writing paths.run_file (and checkpoints under
    // paths.checkpoint_root). `threads` > 0 overrides the project's CPU threads.
    // Starting while a run is active throws Error; after Finished/Failed a new run may start.
    virtual void start(const Project& project, const TrainerPaths& paths, int threads = 0) = 0;
    // Continues a checkpoint (a step-NNNNNNNN directory) into a new run file; total_steps > 0
    // raises the run's length; a non-empty device ("cpu", "cuda:0") replaces the checkpoint's.
    virtual void resume_from(const std::string& checkpoint_dir, const TrainerPaths& paths,
                             int threads = 0, int64_t total_steps = 0,
                             const std::string& device = "") = 0;

    virtual void pause() = 0;
    virtual void resume() = 0;
    virtual void step_once() = 0;          // one optimizer step; only while Paused
    virtual void stop() = 0;               // finish the step, checkpoint, close the run file
    virtual void save_checkpoint_now() = 0;

    virtual SessionState state() const = 0;
    virtual std::string run_file() const = 0;  // "" before start
    virtual int64_t steps_done() const = 0;
};

}  // namespace moe
