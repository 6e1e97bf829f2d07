// The trainer end to end on real files: bit-exact resume, the NaN guard, what the run file
// holds (read back by the engine and by h5py), and a training process killed with SIGKILL or
// stopped with Ctrl-C.
#include <QtTest>

#include <QProcess>
#include <QTemporaryDir>

#include <csignal>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <thread>

#include "core/error.h"
#include "model_fixtures.h"
#include "store/run_reader.h"
#include "test_support.h"
#include "train/trainer.h"

using namespace moe;
using namespace moe::test;

namespace {

// A model small enough for a few seconds of training, with every feature on.
Project tiny_project(int64_t steps) {
    Project p;
    p.name = "trainer-test";
    p.model = tiny_full_config();
    p.model.vocab_size = 256;  // byte-level data
    p.model.initializer_range = 0.02;
    p.training.batch_size = 4;
    p.training.seq_len = 32;
    p.training.seed = 11;
    p.training.threads = 2;
    p.training.steps = steps;
    p.training.optimizer.schedule.total_steps = steps;
    p.training.optimizer.schedule.warmup_steps = 2;
    p.training.optimizer.grad_accum = 2;
    p.training.log_every = 2;
    p.training.eval_every = 4;
    p.training.eval_batches = 2;
    p.training.routing_every = 4;
    p.training.probe_tokens = 48;
    p.training.checkpoint_every = 4;
    p.training.keep_checkpoints = 10;
    return p;
}

std::string path_in(const QTemporaryDir& d, const char* name) { return d.filePath(name).toStdString(); }

std::vector<float> all_weights(Model& m) {
    std::vector<float> w;
    for (const Parameter* p : m.parameters().all()) w.insert(w.end(), p->value.data(), p->value.data() + p->value.numel());
    return w;
}

// Number of complete metric rows a (possibly live) run file holds; 0 while it cannot be opened.
int64_t rows_on_disk(const std::string& path) {
    try {
        return RunReader(path).metrics_count();
    } catch (const Error&) {
        return 0;
    }
}

// Starts moe-train on `p` writing `run`, and waits (60 s at most) until `rows` steps are on disk.
// Returns the rows seen.
int64_t start_and_wait(QProcess& train, const QTemporaryDir& dir, const Project& p,
                       const char* run, int64_t rows) {
    p.save(path_in(dir, "project.json"));
    train.start(MOE_TRAIN_EXE, {dir.filePath("project.json"), "--out", dir.filePath(run)});
    if (!train.waitForStarted()) return 0;
    int64_t seen = 0;
    for (int i = 0; i < 600 && seen < rows; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        seen = rows_on_disk(path_in(dir, run));
    }
    return seen;
}

}  // namespace

class TestTrainer : public QObject {
    Q_OBJECT

private slots:
    // A run stopped at step 4 and resumed to 8 gives exactly the losses, gradient norms and
    // weights of an uninterrupted run to 8 (same thread count).
    void resumeIsBitExact() {
        QTemporaryDir dir;
        const Project p = tiny_project(8);
        std::vector<StepReport> full;
        std::vector<float> full_weights;
        {
            Trainer t(p, {path_in(dir, "full.h5"), path_in(dir, "full.ckpt")});
            while (!t.finished()) full.push_back(t.step());
            full_weights = all_weights(t.model());
            t.close();
        }
        {
            Trainer t(p, {path_in(dir, "part.h5"), path_in(dir, "part.ckpt")});
            for (int i = 0; i < 4; ++i) t.step();  // the step-4 checkpoint is written here
            t.close();
        }
        const std::string ckpt = path_in(dir, "part.ckpt/step-00000004");
        QVERIFY(std::filesystem::exists(ckpt + "/trainer_state.json"));
        auto resumed = Trainer::resume(ckpt, {path_in(dir, "resumed.h5"), path_in(dir, "resumed.ckpt")});
        QCOMPARE(resumed->steps_done(), int64_t(4));
        std::vector<StepReport> rest;
        while (!resumed->finished()) rest.push_back(resumed->step());
        QCOMPARE(rest.size(), size_t(4));
        for (size_t i = 0; i < rest.size(); ++i) {
            const StepReport& a = full[4 + i];
            const StepReport& b = rest[i];
            QCOMPARE(b.step, a.step);
            QCOMPARE(b.tokens, a.tokens);
            QVERIFY2(std::memcmp(&a.loss, &b.loss, sizeof(double)) == 0,
                     qPrintable(QString("step %1: loss %2 vs %3").arg(a.step).arg(a.loss, 0, 'g', 17).arg(b.loss, 0, 'g', 17)));
            QVERIFY(std::memcmp(&a.mtp_loss, &b.mtp_loss, sizeof(double)) == 0);
            QVERIFY(std::memcmp(&a.grad_norm, &b.grad_norm, sizeof(double)) == 0);
            QCOMPARE(b.lr, a.lr);
        }
        const std::vector<float> w = all_weights(resumed->model());
        QVERIFY(w.size() == full_weights.size() && std::memcmp(w.data(), full_weights.data(), w.size() * 4) == 0);
        qInfo("resumed losses match bitwise: step 8 loss %.6f", rest.back().loss);
    }

    // The loss goes down and the run file holds every kind of row.
    void runFileContents() {
        QTemporaryDir dir;
        const Project p = tiny_project(8);
        std::vector<StepReport> steps;
        {
            Trainer t(p, {path_in(dir, "run.h5"), path_in(dir, "run.ckpt")});
            while (!t.finished()) steps.push_back(t.step());
            t.close();
        }
        QVERIFY(steps.back().loss < steps.front().loss);
        RunReader r(path_in(dir, "run.h5"));
        const RunHeader& h = r.header();
        QCOMPARE(h.n_layers(), int64_t(2));             // layer 1 and the MTP layer 2
        QCOMPARE(h.moe_layer_indices, (std::vector<int64_t>{1, 2}));
        QCOMPARE(h.n_labels(), int64_t(6));              // the six synthetic tasks
        QCOMPARE(h.n_probe(), int64_t(47));
        const MetricsColumns m = r.metrics();
        QCOMPARE(m.size(), int64_t(8));
        for (int64_t i = 0; i < 8; ++i) {
            QCOMPARE(m.step[i], i + 1);
            QCOMPARE(m.loss[i], steps[i].loss);
            QCOMPARE(m.tokens[i], (i + 1) * 2 * 4 * 32);
        }
        QCOMPARE(r.eval_count(), int64_t(2));            // steps 4 and 8
        QCOMPARE(r.experts_count(), int64_t(4));         // steps 2, 4, 6, 8
        const ExpertsRow e = r.experts(3);
        double routed = 0;
        for (int64_t i = 0; i < 8; ++i) routed += e.load[i];  // layer 1
        QCOMPARE(routed, double(2 * 4 * 32 * 2));        // accum x B x T tokens x top-2
        QCOMPARE(r.routing_count(), int64_t(3));         // steps 0, 4, 8
        QCOMPARE(r.routing(0).step, int64_t(0));
        QCOMPARE(r.routing(2).topk.size(), size_t(2 * 47 * 2));
        // The bias moved (aux-loss-free balancing is the default mode).
        bool moved = false;
        for (float b : e.bias) moved |= b != 0.0f;
        QVERIFY(moved);

        // h5py reads the same run.
        QProcess py;
        const QString expect = QString(R"({"shapes": {"metrics/loss": [8], "experts/load": [4, 2, 8],
            "routing/topk": [3, 2, 47, 2], "eval/label_loss": [2, 6]},
            "values": {"metrics/step": [1,2,3,4,5,6,7,8]},
            "attrs": {"/": {"format": "moe-workbench-run", "name": "trainer-test"}}})");
        py.start(MOE_REFERENCE_PYTHON, {QString::fromStdString(source_path("tests/run_file_check.py")),
                                        dir.filePath("run.h5"), expect});
        QVERIFY(py.waitForFinished(60000));
        QVERIFY2(py.exitCode() == 0, py.readAllStandardOutput().constData());
    }

    // A run whose loss turns NaN/Inf skips those steps, stops after max_bad_steps, and leaves a
    // checkpoint that loads.
    void nanGuardStopsWithACheckpoint() {
        QTemporaryDir dir;
        Project p = tiny_project(30);
        p.training.optimizer.lr = 1e30;  // blows the weights up at once
        p.training.optimizer.grad_clip = 0;
        p.training.max_bad_steps = 3;
        p.training.checkpoint_every = 0;
        Trainer t(p, {path_in(dir, "nan.h5"), path_in(dir, "nan.ckpt")});
        QString message;
        int skipped = 0;
        try {
            while (!t.finished()) skipped += t.step().skipped;
        } catch (const Error& e) {
            message = e.what();
        }
        qInfo("%s", qPrintable(message));
        QVERIFY2(message.contains("NaN"), qPrintable(message));
        QVERIFY(message.contains("nan.ckpt"));
        QVERIFY(skipped >= 2);
        t.close();
        RunReader r(path_in(dir, "nan.h5"));
        const MetricsColumns m = r.metrics();
        QVERIFY(m.size() >= 3);
        QCOMPARE(m.skipped.back(), 1);
        QVERIFY(!t.last_checkpoint().empty());
        auto again = Trainer::resume(t.last_checkpoint(), {path_in(dir, "again.h5"), ""});
        QCOMPARE(again->steps_done(), t.steps_done());
    }

    // moe-train killed with SIGKILL mid-run: the run file opens and holds every flushed row.
    void killedTrainingLeavesAReadableRun() {
        QTemporaryDir dir;
        Project p = tiny_project(100000);
        p.training.log_every = 1;  // flush every step
        p.training.eval_every = 0;
        p.training.routing_every = 0;
        p.training.checkpoint_every = 0;
        QProcess train;
        const int64_t seen = start_and_wait(train, dir, p, "killed.h5", 5);
        QVERIFY2(seen >= 5, "training did not write 5 steps in time");
        ::kill(static_cast<pid_t>(train.processId()), SIGKILL);
        QVERIFY(train.waitForFinished(10000));
        RunReader r(path_in(dir, "killed.h5"));
        const MetricsColumns m = r.metrics();
        qInfo("after SIGKILL: %lld complete metric rows", static_cast<long long>(m.size()));
        QVERIFY(m.size() >= seen);
        for (int64_t i = 0; i < m.size(); ++i) {
            QCOMPARE(m.step[i], i + 1);
            QVERIFY(std::isfinite(m.loss[i]) && m.loss[i] > 0);
        }
        QVERIFY(r.experts_count() >= seen - 1);
    }

    // Ctrl-C: moe-train finishes the step, writes a checkpoint, closes the file, exits 0.
    void interruptSavesACheckpoint() {
        QTemporaryDir dir;
        Project p = tiny_project(100000);
        p.training.log_every = 1;
        p.training.eval_every = 0;
        p.training.checkpoint_every = 0;
        QProcess train;
        const int64_t seen = start_and_wait(train, dir, p, "int.h5", 3);
        QVERIFY(seen >= 3);
        ::kill(static_cast<pid_t>(train.processId()), SIGINT);
        QVERIFY(train.waitForFinished(60000));
        QCOMPARE(train.exitCode(), 0);
        const QString out = QString::fromUtf8(train.readAllStandardOutput());
        QVERIFY2(out.contains("interrupted"), qPrintable(out));
        const auto ckpts = list_checkpoints(path_in(dir, "int.ckpt"));
        QCOMPARE(ckpts.size(), size_t(1));
        RunReader r(path_in(dir, "int.h5"));
        const TrainingState st = load_training_state(ckpts[0]);
        QCOMPARE(st.step, r.metrics_count());
        // Closed cleanly: h5py opens it without SWMR (a killed writer's file needs swmr=True).
        QProcess py;
        py.start(MOE_REFERENCE_PYTHON, {QString::fromStdString(source_path("tests/run_file_check.py")),
                                        dir.filePath("int.h5"),
                                        QString(R"({"min_rows": {"metrics/loss": %1}})").arg(st.step)});
        QVERIFY(py.waitForFinished(60000));
        QVERIFY2(py.exitCode() == 0, (py.readAllStandardOutput() + py.readAllStandardError()).constData());
    }
};

QTEST_APPLESS_MAIN(TestTrainer)
#include "tst_trainer.moc"
