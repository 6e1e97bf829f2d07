// The trainer end to end on real files: bit-exact resume, the NaN guard, what the run file
// holds (read back by the engine and by h5py), and a training process killed with SIGKILL or
// stopped with Ctrl-C.
#include <QtTest>

#include <QProcess>
#include <QTemporaryDir>

#include <csignal>
#include <cmath>
#include <cstring>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "model_fixtures.h"
#include "store/run_reader.h"
#include "test_support.h"
#include "backend/cpu/cpu_backend.h"
#include "train/memory_plan.h"
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

    // A run whose loss turns NaN/Inf skips those steps and stops after max_bad_steps. The
    // weights that gave the NaNs are not saved; the message names the newest checkpoint whose
    // weights were seen to train (finite loss and gradients on the step after it was saved).
    void nanGuardNamesTheLastGoodCheckpoint() {
        QTemporaryDir dir;
        Project p = tiny_project(30);
        p.training.max_bad_steps = 3;
        p.training.checkpoint_every = 4;
        Trainer t(p, {path_in(dir, "nan.h5"), path_in(dir, "nan.ckpt")});
        for (int i = 0; i < 5; ++i) QVERIFY(!t.step().skipped);  // step 5 trains on step 4's weights
        const std::string good = path_in(dir, "nan.ckpt/step-00000004");
        QCOMPARE(t.last_good_checkpoint(), good);
        // Poisoned head weights: every following loss is NaN.
        Parameter& head = t.model().parameters().at("lm_head.weight");
        head.value.fill(std::nanf(""));
        QString message;
        int skipped = 0;
        try {
            while (!t.finished()) skipped += t.step().skipped;
        } catch (const Error& e) {
            message = e.what();
        }
        qInfo("%s", qPrintable(message));
        QVERIFY2(message.contains("NaN") && message.contains(QString::fromStdString(good)),
                 qPrintable(message));
        QCOMPARE(skipped, 2);  // the third bad step throws
        QCOMPARE(list_checkpoints(path_in(dir, "nan.ckpt")).size(), size_t(1));  // nothing new
        t.close();
        const MetricsColumns m = RunReader(path_in(dir, "nan.h5")).metrics();
        QCOMPARE(m.skipped.back(), 1);
        // The named checkpoint resumes, and its weights are finite.
        auto again = Trainer::resume(good, {path_in(dir, "again.h5"), ""});
        QCOMPARE(again->steps_done(), int64_t(4));
        for (float w : all_weights(again->model())) QVERIFY(std::isfinite(w));
    }

    // lr 1e300: the first update overflows the weights. The run stops at once, saves nothing,
    // and says that no good checkpoint exists (it used to save a "good" one full of Inf).
    void overflowingUpdateSavesNothing() {
        for (const double lr : {1e300, 1e30}) {
            QTemporaryDir dir;
            Project p = tiny_project(30);
            p.training.optimizer.lr = lr;
            p.training.optimizer.grad_clip = 0;
            p.training.max_bad_steps = 3;
            p.training.checkpoint_every = 1;
            Trainer t(p, {path_in(dir, "inf.h5"), path_in(dir, "inf.ckpt")});
            QString message;
            try {
                while (!t.finished()) t.step();
            } catch (const Error& e) {
                message = e.what();
            }
            qInfo("lr %g: %s", lr, qPrintable(message));
            QVERIFY2(message.contains("no checkpoint with weights that trained"), qPrintable(message));
            if (lr == 1e300) QVERIFY2(message.contains("made the weights non-finite"), qPrintable(message));
            // lr 1e30 keeps the weights finite (~1e30) for one step: that checkpoint exists but
            // its weights never trained, so it is not named as good.
            for (const std::string& c : list_checkpoints(path_in(dir, "inf.ckpt"))) {
                QVERIFY(QString::fromStdString(c) != QString());
                QVERIFY(!message.contains(QString::fromStdString(c)));
            }
            t.close();
            QVERIFY(RunReader(path_in(dir, "inf.h5")).metrics_count() >= 0);
        }
        // And a checkpoint is never written from non-finite weights.
        QTemporaryDir dir;
        Trainer t(tiny_project(4), {path_in(dir, "x.h5"), path_in(dir, "x.ckpt")});
        t.model().parameters().at("model.norm.weight").value.fill(std::nanf(""));
        QVERIFY_THROWS_EXCEPTION(Error, t.save_checkpoint());
        QVERIFY(list_checkpoints(path_in(dir, "x.ckpt")).empty());
    }

    // --resume refuses damaged or mixed checkpoints and a request to train no further, before
    // a run file is created; leftovers of interrupted writes are removed.
    void resumeChecksTheCheckpoint() {
        QTemporaryDir dir;
        const Project p = tiny_project(8);
        {
            Trainer t(p, {path_in(dir, "a.h5"), path_in(dir, "a.ckpt")});
            while (!t.finished()) t.step();  // checkpoints at 4 and 8
            t.close();
        }
        namespace fs = std::filesystem;
        const fs::path c4 = path_in(dir, "a.ckpt/step-00000004"), c8 = path_in(dir, "a.ckpt/step-00000008");
        auto resume_error = [&](const fs::path& ckpt, int64_t steps, const char* run) -> QString {
            try {
                Trainer::resume(ckpt.string(), {path_in(dir, run), ""}, 0, steps);
            } catch (const std::exception& e) {
                if (fs::exists(path_in(dir, run))) return "a run file was created";
                return e.what();
            }
            return "resumed";
        };
        // Training to a step the checkpoint has already reached.
        for (int64_t steps : {int64_t(0), int64_t(8), int64_t(3)}) {
            const QString e = resume_error(c8, steps, "r0.h5");
            QVERIFY2(e.contains("nothing to train") && e.contains("step 8"), qPrintable(e));
        }
        auto copy = [&](const char* name) {
            const fs::path d = path_in(dir, name);
            fs::copy(c4, d, fs::copy_options::recursive);
            return d;
        };
        {  // config.json deleted, garbage, or another model
            const fs::path d = copy("no-config");
            fs::remove(d / "config.json");
            QVERIFY2(resume_error(d, 12, "r1.h5").contains("config.json"), qPrintable(resume_error(d, 12, "r1.h5")));
            const fs::path g = copy("garbage-config");
            std::ofstream(g / "config.json") << "{not json";
            QVERIFY2(resume_error(g, 12, "r2.h5").contains("not valid JSON"), qPrintable(resume_error(g, 12, "r2.h5")));
            const fs::path m = copy("other-config");
            ModelConfig other = p.model;
            other.rope_theta = 500000;
            other.save((m / "config.json").string());
            const QString e = resume_error(m, 12, "r3.h5");
            QVERIFY2(e.contains("differs from the model in trainer_state.json") && e.contains("rope_theta"), qPrintable(e));
        }
        {  // weights of another save (step 8) in step 4's folder
            const fs::path d = copy("mixed");
            fs::copy_file(c8 / "model.safetensors", d / "model.safetensors", fs::copy_options::overwrite_existing);
            const QString e = resume_error(d, 12, "r4.h5");
            QVERIFY2(e.contains("model.safetensors") && e.contains("does not belong to this checkpoint"), qPrintable(e));
        }
        // An interrupted write's folder next to the checkpoint goes away on resume.
        fs::create_directories(path_in(dir, "a.ckpt/step-00000012.tmp"));
        std::ofstream(path_in(dir, "a.ckpt/step-00000012.tmp/model.safetensors.tmp")) << "half";
        fs::create_directories(path_in(dir, "a.ckpt/keep-me.tmp"));  // not ours: left alone
        auto t = Trainer::resume(c8.string(), {path_in(dir, "b.h5"), ""}, 0, 10);
        QVERIFY(!fs::exists(path_in(dir, "a.ckpt/step-00000012.tmp")));
        QVERIFY(fs::exists(path_in(dir, "a.ckpt/keep-me.tmp")));
        QCOMPARE(t->project().training.steps, int64_t(10));

        // A project given with --resume: what may differ and what may not.
        Project same = p;
        same.training.steps = 20;
        same.training.device = "cpu";
        same.name = "renamed";
        QVERIFY(resume_conflicts(same, load_training_state(c8.string()).project).empty());
        Project changed = p;
        changed.training.optimizer.lr = 0.5;
        changed.model.hidden_size = 64;
        const auto conflicts = resume_conflicts(changed, load_training_state(c8.string()).project);
        QCOMPARE(conflicts.size(), size_t(2));
        QVERIFY(std::find(conflicts.begin(), conflicts.end(), "training.optimizer.lr") != conflicts.end());
        QVERIFY(std::find(conflicts.begin(), conflicts.end(), "model.hidden_size") != conflicts.end());
    }

    // A run too large for the machine is refused before anything is allocated, naming the field
    // to change and the memory; no run file is left behind.
    // The memory estimate: exact for weights, gradients and moments (the model's own parameter
    // count); with fused attention each query keeps one float per head instead of T.
    void trainingMemoryEstimate() {
        const ModelConfig cfg = tiny_full_config();
        CpuBackend cpu(1);
        Model m(cfg, cpu);
        const double params = double(m.parameters().count_all());
        const int64_t B = 3, T = 40;
        const TrainingMemory plain = estimate_training_memory(cfg, B, T);
        QCOMPARE(plain.weights, 4 * params);
        QCOMPARE(plain.optimizer, 2 * plain.gradients);
        const TrainingMemory fused = estimate_training_memory(cfg, B, T, /*fused_attention=*/true);
        const double layers = double(cfg.num_hidden_layers + cfg.num_nextn_predict_layers);
        QCOMPARE(plain.activations - fused.activations,
                 4.0 * B * T * layers * double(cfg.num_attention_heads) * double(T - 1));
        QCOMPARE(fused.weights, plain.weights);
    }

    void tooLargeRunsAreRefusedBeforeAllocating() {
        QTemporaryDir dir;
        Project p = tiny_project(4);
        p.model.max_position_embeddings = 1024;
        p.training.batch_size = 1 << 20;
        p.training.seq_len = 256;
        try {
            Trainer t(p, {path_in(dir, "big.h5"), ""});
            QFAIL("a 2^28-token batch was accepted");
        } catch (const ConfigError& e) {
            qInfo("%s", e.what());
            QCOMPARE(e.field(), std::string("training.batch_size"));
            QVERIFY2(QString(e.what()).contains("1048576") && QString(e.what()).contains("available on this machine"), e.what());
        }
        QVERIFY(!std::filesystem::exists(path_in(dir, "big.h5")));
        // The model alone: 5e12 parameters (within the parameter limit, beyond any host).
        ModelConfig huge = tiny_full_config();
        huge.hidden_size = 1 << 16;
        huge.n_routed_experts = 4096;
        huge.n_group = 1;
        huge.topk_group = 1;
        huge.moe_intermediate_size = 2048;
        huge.validate();
        CpuBackend cpu(1);
        try {
            Model m(huge, cpu);
            QFAIL("a 5e12-parameter model was built");
        } catch (const ConfigError& e) {
            qInfo("%s", e.what());
            QCOMPARE(e.field(), std::string("hidden_size"));
            QVERIFY2(QString(e.what()).contains("hidden_size 65536 is what makes it large"), e.what());
        }
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

    // Ctrl-C: moe-train finishes the step, writes a checkpoint, closes the file, and exits with
    // 130 (interrupted, as shells report SIGINT) and how to continue.
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
        QCOMPARE(train.exitCode(), 130);
        const QString out = QString::fromUtf8(train.readAllStandardOutput());
        QVERIFY2(out.contains("interrupted") && out.contains("--resume"), qPrintable(out));
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
