// LocalSession: the engine thread behind the GUI. Start, pause, step exactly once, resume, stop
// with a checkpoint; a resumed checkpoint; a bad project reported as a Failed event; the
// destructor stopping a running session cleanly.
#include <QtTest>

#include <QTemporaryDir>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "session/local_session.h"
#include "store/run_reader.h"
#include "model_fixtures.h"
#include "test_support.h"

using namespace moe;

namespace {

// tiny-tasks, shrunk to run 200 steps in seconds on one core.
Project tiny_project() {
    Project p = test::shrunk_tiny_tasks(200);
    p.name = "session-test";
    p.model.q_lora_rank = 16;
    p.model.kv_lora_rank = 16;
    TrainingSettings& t = p.training;
    t.optimizer.schedule.warmup_steps = 10;
    t.log_every = 5;
    t.eval_every = 50;
    t.routing_every = 50;
    return p;
}

// Collects a session's events (they arrive on the engine thread).
struct Recorder {
    std::mutex mutex;
    std::vector<SessionEvent> events;
    std::function<void(const SessionEvent&)> also;

    SessionListener listener() {
        return [this](const SessionEvent& e) {
            {
                std::lock_guard lock(mutex);
                events.push_back(e);
            }
            if (also) also(e);
        };
    }
    std::vector<SessionEvent> of(SessionEvent::Kind k) {
        std::lock_guard lock(mutex);
        std::vector<SessionEvent> out;
        for (const auto& e : events)
            if (e.kind == k) out.push_back(e);
        return out;
    }
};

// Polls without an event loop (the engine is Qt-free; so is this test).
bool wait_for(const std::function<bool()>& done, int ms = 60000) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
        if (done()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return done();
}

TrainerPaths paths_in(const QTemporaryDir& dir, const char* name) {
    return {dir.filePath(QString(name) + ".h5").toStdString(),
            dir.filePath(QString(name) + ".ckpt").toStdString()};
}

}  // namespace

class TestSession : public QObject {
    Q_OBJECT

private slots:
    void pauseStepResumeStop() {
        QTemporaryDir dir;
        Recorder rec;
        LocalSession session(rec.listener());
        // Pause from inside the first Step event: the command is queued before the engine looks
        // at its queue again, so the run pauses after exactly one step.
        bool paused_once = false;
        rec.also = [&](const SessionEvent& e) {
            if (e.kind == SessionEvent::Kind::Step && !paused_once) {
                paused_once = true;
                session.pause();
            }
        };
        QCOMPARE(session.state(), SessionState::Idle);
        session.start(tiny_project(), paths_in(dir, "run"));
        QVERIFY(wait_for([&] { return session.state() == SessionState::Paused; }));
        QCOMPARE(session.steps_done(), int64_t(1));
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        QCOMPARE(session.steps_done(), int64_t(1));  // paused means no steps

        session.step_once();
        QVERIFY(wait_for([&] { return session.steps_done() == 2; }));
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        QCOMPARE(session.steps_done(), int64_t(2));  // exactly one
        QCOMPARE(session.state(), SessionState::Paused);
        QCOMPARE(rec.of(SessionEvent::Kind::Step).size(), size_t(2));

        session.resume();
        QVERIFY(wait_for([&] { return session.steps_done() >= 5; }));
        session.stop();
        QVERIFY(wait_for([&] { return session.state() == SessionState::Finished; }));
        const int64_t done = session.steps_done();
        QVERIFY(done >= 5 && done < 200);

        // stop: Stopping then Finished, a checkpoint of the last step, a closed run file.
        std::vector<SessionState> states;
        for (const auto& e : rec.of(SessionEvent::Kind::StateChanged)) states.push_back(e.state);
        const std::vector<SessionState> expected{SessionState::Running, SessionState::Paused,
                                                 SessionState::Running, SessionState::Stopping,
                                                 SessionState::Finished};
        QVERIFY(states == expected);
        const auto cks = rec.of(SessionEvent::Kind::Checkpoint);
        QVERIFY(!cks.empty());
        QVERIFY(std::filesystem::is_directory(cks.back().message));
        QVERIFY(QString::fromStdString(cks.back().message).endsWith(QString("step-%1").arg(done, 8, 10, QChar('0'))));
        RunReader reader(session.run_file());
        QCOMPARE(reader.metrics_count(), done);
        QVERIFY(rec.of(SessionEvent::Kind::Failed).empty());
    }

    void saveCheckpointNowAndResume() {
        QTemporaryDir dir;
        Recorder rec;
        LocalSession session(rec.listener());
        session.set_start_paused(true);
        session.start(tiny_project(), paths_in(dir, "a"));
        QVERIFY(wait_for([&] { return session.state() == SessionState::Paused; }));
        for (int i = 0; i < 3; ++i) session.step_once();
        session.save_checkpoint_now();
        QVERIFY(wait_for([&] { return !rec.of(SessionEvent::Kind::Checkpoint).empty(); }));
        QCOMPARE(session.steps_done(), int64_t(3));
        const std::string ckpt = rec.of(SessionEvent::Kind::Checkpoint).back().message;
        session.stop();
        QVERIFY(wait_for([&] { return session.state() == SessionState::Finished; }));

        // The same session object runs the continuation, to 6 steps in all.
        session.set_start_paused(false);
        session.resume_from(ckpt, paths_in(dir, "b"), 0, 6);
        QVERIFY(wait_for([&] { return session.state() == SessionState::Finished; }));
        QCOMPARE(session.steps_done(), int64_t(6));
        const auto steps = rec.of(SessionEvent::Kind::Step);
        QCOMPARE(steps.back().step.step, int64_t(6));
        QCOMPARE(steps.back().step.total_steps, int64_t(6));
        QVERIFY(!rec.of(SessionEvent::Kind::Eval).empty());  // the last step evaluates
    }

    void badProjectFailsWithField() {
        QTemporaryDir dir;
        Recorder rec;
        Project p = tiny_project();
        p.model.topk_group = 3;  // more groups kept than exist
        {
            LocalSession session(rec.listener());
            session.start(p, paths_in(dir, "bad"));
            QVERIFY(wait_for([&] { return session.state() == SessionState::Failed; }));
            // The session accepts a new run after a failure.
            session.start(tiny_project(), paths_in(dir, "good"));
            QVERIFY(wait_for([&] { return session.steps_done() >= 1; }));
        }  // the destructor stops the good run
        const auto failed = rec.of(SessionEvent::Kind::Failed);
        QCOMPARE(failed.size(), size_t(1));
        QVERIFY2(failed[0].field.find("topk_group") != std::string::npos, failed[0].field.c_str());
        QVERIFY(failed[0].message.find("topk_group") != std::string::npos);
        QVERIFY(!std::filesystem::exists(dir.filePath("bad.h5").toStdString()));
    }

    void destructorStopsCleanly() {
        QTemporaryDir dir;
        Recorder rec;
        std::string run;
        {
            LocalSession session(rec.listener());
            session.start(tiny_project(), paths_in(dir, "d"));
            QVERIFY(wait_for([&] { return session.steps_done() >= 2; }));
            run = session.run_file();
        }
        QVERIFY(!rec.of(SessionEvent::Kind::Checkpoint).empty());
        RunReader reader(run);
        QCOMPARE(reader.metrics_count(), int64_t(rec.of(SessionEvent::Kind::Step).size()));  // all flushed
        QVERIFY(reader.metrics_count() >= 2);
        LocalSession().stop();  // harmless: nothing to stop
    }
};

QTEST_APPLESS_MAIN(TestSession)
#include "tst_session.moc"
