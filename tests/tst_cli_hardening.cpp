// moe-train as a hostile or careless user runs it (issue 13): every case a clear message and
// an exit status, never a crash, a hang or a destroyed file. Each test runs the real executable.
#include <QtTest>

#include <QProcess>
#include <QTemporaryDir>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "model_fixtures.h"
#include "store/project.h"
#include "store/safetensors.h"
#include "train/training_checkpoint.h"

using namespace moe;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

struct Result {
    int code = -1;
    bool crashed = false;
    QString out;  // stdout and stderr
};

// Runs moe-train with `args` (through bash when `ulimit_kb` > 0, to cap its address space).
Result run_train(const QStringList& args, int timeout_ms = 120000, long ulimit_kb = 0) {
    QProcess p;
    p.setProcessChannelMode(QProcess::MergedChannels);
    if (ulimit_kb > 0) {
        QStringList quoted;
        for (const QString& a : args) quoted << "'" + a + "'";
        p.start("bash", {"-c", QString("ulimit -v %1; exec '%2' %3")
                                   .arg(ulimit_kb)
                                   .arg(MOE_TRAIN_EXE)
                                   .arg(quoted.join(' '))});
    } else {
        p.start(MOE_TRAIN_EXE, args);
    }
    Result r;
    if (!p.waitForFinished(timeout_ms)) {
        p.kill();
        p.waitForFinished();
        r.out = "TIMEOUT: " + QString::fromUtf8(p.readAll());
        return r;
    }
    r.crashed = p.exitStatus() == QProcess::CrashExit;
    r.code = p.exitCode();
    r.out = QString::fromUtf8(p.readAll());
    return r;
}

Project small_project(const QString& name = "cli") {
    Project p = test::shrunk_tiny_tasks(6);
    p.name = name.toStdString();
    p.training.threads = 1;
    p.training.checkpoint_every = 3;
    return p;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// "it failed cleanly": exit status 1 or 2, no crash, and the message contains every part.
#define EXPECT_CLEAN_FAILURE(result, ...)                                            \
    do {                                                                             \
        const Result& r_ = (result);                                                 \
        QVERIFY2(!r_.crashed && r_.code != 0 && r_.code < 128, qPrintable(r_.out));  \
        for (const char* part_ : {__VA_ARGS__})                                      \
            QVERIFY2(r_.out.contains(QString::fromUtf8(part_)), qPrintable(r_.out)); \
    } while (0)

}  // namespace

class TestCliHardening : public QObject {
    Q_OBJECT

private slots:
    // Case 1: a project nested 100,000 levels deep crashed --summary with a stack overflow.
    void deeplyNestedProject() {
        QTemporaryDir dir;
        const QString path = dir.filePath("deep.json");
        std::ofstream(path.toStdString()) << std::string(100000, '[') << std::string(100000, ']');
        EXPECT_CLEAN_FAILURE(run_train({path, "--summary"}), "nested deeper than 64 levels");
    }

    // Case 2: hidden_size 2^63 - 1 passed validation; --summary printed negative totals.
    void absurdSizes() {
        QTemporaryDir dir;
        for (const auto& [field, value] : std::vector<std::pair<const char*, int64_t>>{
                 {"hidden_size", std::numeric_limits<int64_t>::max()},
                 {"hidden_size", 1000000000},
                 {"n_routed_experts", 100000}}) {
            json j = small_project().to_json();
            j["model"][field] = value;
            const QString path = dir.filePath("absurd.json");
            std::ofstream(path.toStdString()) << j.dump();
            const std::string shown = std::to_string(value);
            for (const char* mode : {"--summary", "--step"})
                EXPECT_CLEAN_FAILURE(run_train({path, mode}), field, shown.c_str());
        }
        // Representable and within every field's bound, too large for this process: refused
        // before allocating, naming the field and the memory, and no run file is left.
        Project p = small_project("big");
        p.training.batch_size = 4096;
        p.training.seq_len = 1024;
        p.model.max_position_embeddings = 1024;
        p.save(dir.filePath("big.json").toStdString());
        const QString run = dir.filePath("big.h5");
        const Result r = run_train({dir.filePath("big.json"), "--out", run}, 120000, 3000000);
        EXPECT_CLEAN_FAILURE(r, "training.batch_size 4096", "available on this machine");
        QVERIFY(!fs::exists(run.toStdString()));
    }

    // Case 3: --threads 100000 crashed, 5000 hung; the project's threads went unchecked.
    void threadCounts() {
        QTemporaryDir dir;
        small_project().save(dir.filePath("p.json").toStdString());
        for (const char* n : {"100000", "5000", "-3"})
            EXPECT_CLEAN_FAILURE(run_train({dir.filePath("p.json"), "--threads", n, "--step"}),
                                 "[0, 1024]");
        json j = small_project().to_json();
        j["training"]["threads"] = 100000;
        std::ofstream(dir.filePath("t.json").toStdString()) << j.dump();
        EXPECT_CLEAN_FAILURE(run_train({dir.filePath("t.json"), "--step"}), "training.threads",
                             "100000");
        // Within the bound but more than the machine has: capped with a warning, and it works.
        const Result ok = run_train({dir.filePath("p.json"), "--threads", "1000", "--step"});
        QVERIFY2(ok.code == 0 && ok.out.contains("CPU threads requested"), qPrintable(ok.out));
    }

    // Case 5 and 6: --logits --out and --save-init never replace a user's file without
    // --overwrite; with it, a checkpoint folder is replaced whole.
    void noSilentOverwrites() {
        QTemporaryDir dir;
        const Project p = small_project();
        p.save(dir.filePath("p.json").toStdString());
        const QString ckpt = dir.filePath("init");
        QCOMPARE(run_train({dir.filePath("p.json"), "--save-init", ckpt}).code, 0);
        std::ofstream(dir.filePath("tokens.txt").toStdString()) << "1 2 3 4\n5 6 7 8\n";
        const QString victim = dir.filePath("victim.h5");
        std::ofstream(victim.toStdString()) << "precious";
        const QStringList logits{"--logits", ckpt,  "--tokens", dir.filePath("tokens.txt"),
                                 "--out",    victim};
        EXPECT_CLEAN_FAILURE(run_train(logits), "already exists", "--overwrite");
        QCOMPARE(slurp(victim.toStdString()), std::string("precious"));
        QCOMPARE(run_train(logits + QStringList{"--overwrite"}).code, 0);
        QCOMPARE(SafetensorsReader(victim.toStdString()).find("logits")->shape, (Shape{2, 4, 256}));

        // A trained checkpoint: --save-init into it is refused and leaves it intact.
        QCOMPARE(run_train({dir.filePath("p.json"), "--out", dir.filePath("run.h5")}).code, 0);
        const std::string trained = dir.filePath("run.ckpt/step-00000006").toStdString();
        const std::string weights = slurp(trained + "/model.safetensors");
        EXPECT_CLEAN_FAILURE(
            run_train({dir.filePath("p.json"), "--save-init", QString::fromStdString(trained)}),
            "already exists");
        QCOMPARE(slurp(trained + "/model.safetensors"), weights);
        QVERIFY(fs::exists(trained + "/optimizer.safetensors"));
        // --overwrite: the whole folder is the new model (no optimizer state left to mix in).
        QCOMPARE(run_train({dir.filePath("p.json"), "--save-init", QString::fromStdString(trained),
                            "--overwrite"})
                     .code,
                 0);
        QVERIFY(!fs::exists(trained + "/optimizer.safetensors"));
        QVERIFY(slurp(trained + "/model.safetensors") != weights);
        EXPECT_CLEAN_FAILURE(run_train({"--resume", QString::fromStdString(trained)}),
                             "not a training checkpoint");
    }

    // --resume: a finished run, fewer steps, and a project that is not the checkpoint's.
    void resumeSaysWhatItWillDo() {
        QTemporaryDir dir;
        const Project p = small_project();
        p.save(dir.filePath("p.json").toStdString());
        QCOMPARE(run_train({dir.filePath("p.json"), "--out", dir.filePath("run.h5")}).code, 0);
        const QString ckpt = dir.filePath("run.ckpt/step-00000006");
        const QString out = dir.filePath("again.h5");
        EXPECT_CLEAN_FAILURE(run_train({"--resume", ckpt, "--out", out}), "nothing to train",
                             "step 6");
        EXPECT_CLEAN_FAILURE(run_train({"--resume", ckpt, "--steps", "4", "--out", out}),
                             "nothing to train");
        QVERIFY(!fs::exists(out.toStdString()));
        Project other = p;
        other.training.optimizer.lr *= 10;
        other.model.rope_theta = 1234;
        other.save(dir.filePath("other.json").toStdString());
        EXPECT_CLEAN_FAILURE(
            run_train({dir.filePath("other.json"), "--resume", ckpt, "--steps", "8", "--out", out}),
            "does not match the checkpoint", "training.optimizer.lr", "model.rope_theta");
        // The project itself, with more steps: accepted, and its steps are the new total.
        Project longer = p;
        longer.training.steps = 8;
        longer.save(dir.filePath("longer.json").toStdString());
        const Result ok = run_train({dir.filePath("longer.json"), "--resume", ckpt, "--out", out});
        QVERIFY2(ok.code == 0 && ok.out.contains("from step 6 to step 8"), qPrintable(ok.out));

        // A first run with --steps had its warmup shortened: the same project still matches.
        Project warm = p;
        warm.training.optimizer.schedule.warmup_steps = 4;  // of 6
        warm.save(dir.filePath("warm.json").toStdString());
        const Result first = run_train(
            {dir.filePath("warm.json"), "--steps", "3", "--out", dir.filePath("warm.h5")});
        QVERIFY2(first.code == 0 && first.out.contains("warmup shortened from 4 to 1"),
                 qPrintable(first.out));
        const Result more = run_train({dir.filePath("warm.json"), "--resume",
                                       dir.filePath("warm.ckpt/step-00000003"), "--steps", "5",
                                       "--out", dir.filePath("warm2.h5")});
        QVERIFY2(more.code == 0 && more.out.contains("from step 3 to step 5"),
                 qPrintable(more.out));
    }

    // Silent or vague cases of the issue.
    void clearMessages() {
        QTemporaryDir dir;
        small_project().save(dir.filePath("p.json").toStdString());
        EXPECT_CLEAN_FAILURE(run_train({dir.filePath("p.json"), "--steps", "0"}),
                             "must be >= 1, got 0");
        EXPECT_CLEAN_FAILURE(run_train({"--report", dir.path()}), "is not a file");
        EXPECT_CLEAN_FAILURE(run_train({"--report", dir.filePath("none.h5")}), "no such file");
        // A name that is a path would put the run outside runs/.
        json j = small_project().to_json();
        j["name"] = "../../escape";
        std::ofstream(dir.filePath("escape.json").toStdString()) << j.dump();
        EXPECT_CLEAN_FAILURE(run_train({dir.filePath("escape.json"), "--summary"}),
                             "name:", "../../escape");
        j["name"] = "runs/../x";
        std::ofstream(dir.filePath("slash.json").toStdString()) << j.dump();
        EXPECT_CLEAN_FAILURE(run_train({dir.filePath("slash.json"), "--summary"}), "name:", "'/'");
        // Duplicate keys: the last no longer wins silently.
        std::ofstream(dir.filePath("dup.json").toStdString())
            << R"({"name": "d", "training": {"batch_size": 4, "batch_size": 400}})";
        EXPECT_CLEAN_FAILURE(run_train({dir.filePath("dup.json"), "--summary"}),
                             "duplicate key \"batch_size\" in training");
        // Token files: a line longer than the model's positions; a 2M-token line.
        QCOMPARE(run_train({dir.filePath("p.json"), "--save-init", dir.filePath("ck")}).code, 0);
        const int64_t max_pos = small_project().model.max_position_embeddings;
        {
            std::ofstream t(dir.filePath("long.txt").toStdString());
            for (int64_t i = 0; i <= max_pos; ++i) t << (i % 200) << ' ';
            std::ofstream h(dir.filePath("huge.txt").toStdString());
            for (int64_t i = 0; i < 2000000; ++i) h << "7 ";
        }
        for (const char* f : {"long.txt", "huge.txt"})
            EXPECT_CLEAN_FAILURE(
                run_train({"--logits", dir.filePath("ck"), "--tokens", dir.filePath(f), "--out",
                           dir.filePath("l.safetensors")}),
                "line 1 has more than", "max_position_embeddings");
    }

    // A checkpoint with NaN weights: --logits and --quant-eval refuse it (they printed nan).
    void nanCheckpointIsRefused() {
        QTemporaryDir dir;
        small_project().save(dir.filePath("p.json").toStdString());
        QCOMPARE(run_train({dir.filePath("p.json"), "--out", dir.filePath("run.h5")}).code, 0);
        const QString ck = dir.filePath("run.ckpt/step-00000006");
        {  // poison one tensor in place
            const std::string path = (fs::path(ck.toStdString()) / "model.safetensors").string();
            SafetensorsReader reader(path);
            const SafetensorsEntry* e = reader.find("lm_head.weight");
            QVERIFY(e);
            const uint64_t at = reader.data_start() + e->begin;
            std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
            f.seekp(std::streamoff(at));
            const float nan = std::nanf("");
            f.write(reinterpret_cast<const char*>(&nan), sizeof nan);
        }
        std::ofstream(dir.filePath("tokens.txt").toStdString()) << "1 2 3\n";
        EXPECT_CLEAN_FAILURE(run_train({"--logits", ck, "--tokens", dir.filePath("tokens.txt"),
                                        "--out", dir.filePath("l.safetensors")}),
                             "NaN or Inf", "lm_head.weight");
        EXPECT_CLEAN_FAILURE(run_train({"--quant-eval", ck}), "NaN or Inf");
    }
};

QTEST_APPLESS_MAIN(TestCliHardening)
#include "tst_cli_hardening.moc"
