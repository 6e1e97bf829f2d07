// The run file (HDF5, SWMR): exact round trips of every row kind, live reading while the writer
// is open, an independent reader (h5py), a writer killed with SIGKILL, a full disk, damaged and
// foreign files, and the overwrite guard.
#include <QtTest>

#include <fcntl.h>
#include <hdf5.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "store/run_reader.h"
#include "store/run_writer.h"
#include "test_support.h"

using namespace moe;
using nlohmann::json;

namespace {

RunHeader make_header(int64_t layers = 2, int64_t experts = 8, int64_t k = 2, int64_t probe = 5) {
    RunHeader h;
    h.project_json = R"({"name": "tiny", "model": "presets/tiny.json"})";
    h.config_json = R"({"hidden_size": 64, "n_routed_experts": 8})";
    h.name = "run-äöü";  // UTF-8 must survive
    h.device = "cpu (2 threads)";
    for (int64_t l = 0; l < layers; ++l) h.moe_layer_indices.push_back(1 + l);
    h.n_experts = experts;
    h.top_k = k;
    h.label_names = {"code", "math", "prose"};
    h.probe_text = "def f(x): return x + 1";
    for (int64_t t = 0; t < probe; ++t) {
        h.probe_tokens.push_back(static_cast<int32_t>(100 + 7 * t));
        h.probe_labels.push_back(static_cast<int32_t>(t % 3));
    }
    return h;
}

// Row contents are exact binary fractions of the row index, so float and double compare exactly.
MetricsRow metrics_row(int64_t i) {
    const double x = static_cast<double>(i);
    return MetricsRow{10 * i, 4096 * i, 0.5 * x, 4.0 - x / 64, 4.5 - x / 32, x / 1024, 1e-3 + x / 4096,
                      1.0 + x / 8, 1000.0 + x, 65536.0, static_cast<int32_t>(i % 5 == 4)};
}

EvalRow eval_row(int64_t i, int64_t labels) {
    EvalRow r{100 * i, 3.0 - i / 16.0, {}, {}};
    for (int64_t l = 0; l < labels; ++l) {
        r.label_loss.push_back(3.0 + l - i / 8.0);
        r.label_accuracy.push_back((i + l) / 64.0);
    }
    return r;
}

ExpertsRow experts_row(int64_t i, int64_t L, int64_t E) {
    ExpertsRow r{20 * i, {}, {}, {}};
    for (int64_t j = 0; j < L * E; ++j) {
        r.load.push_back(static_cast<float>(i * 1000 + j));
        r.bias.push_back(static_cast<float>(j - i) / 256.0f);
    }
    for (int64_t l = 0; l < L; ++l) r.maxvio.push_back(static_cast<float>(i + l) / 4.0f);
    return r;
}

RoutingRow routing_row(int64_t i, int64_t L, int64_t T, int64_t K, int64_t E) {
    RoutingRow r{50 * i, {}, {}, {}};
    for (int64_t j = 0; j < L * T * K; ++j) {
        r.topk.push_back(static_cast<int32_t>((i + j) % E));
        r.weights.push_back(static_cast<float>(j % 4) / 4.0f + static_cast<float>(i) / 128.0f);
    }
    for (int64_t j = 0; j < L * T * E; ++j) r.scores.push_back(static_cast<float>(j + i) / 512.0f);
    return r;
}

bool same(const MetricsRow& a, const MetricsRow& b) {
    return a.step == b.step && a.tokens == b.tokens && a.wall_s == b.wall_s && a.loss == b.loss &&
           a.mtp_loss == b.mtp_loss && a.aux_loss == b.aux_loss && a.lr == b.lr && a.grad_norm == b.grad_norm &&
           a.tokens_per_s == b.tokens_per_s && a.loss_scale == b.loss_scale && a.skipped == b.skipped;
}
bool same(const EvalRow& a, const EvalRow& b) {
    return a.step == b.step && a.loss == b.loss && a.label_loss == b.label_loss &&
           a.label_accuracy == b.label_accuracy;
}
bool same(const ExpertsRow& a, const ExpertsRow& b) {
    return a.step == b.step && a.load == b.load && a.bias == b.bias && a.maxvio == b.maxvio;
}
bool same(const RoutingRow& a, const RoutingRow& b) {
    return a.step == b.step && a.topk == b.topk && a.weights == b.weights && a.scores == b.scores;
}

// Appends row i of every kind (what the writer child of the kill test does per step).
void append_all(RunWriter& w, int64_t i) {
    const RunHeader& h = w.header();
    w.append(metrics_row(i));
    w.append(eval_row(i, h.n_labels()));
    w.append(experts_row(i, h.n_layers(), h.n_experts));
    w.append(routing_row(i, h.n_layers(), h.n_probe(), h.top_k, h.n_experts));
}

QString error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return QString::fromStdString(e.what());
    }
    return QString();
}

QString open_error(const std::string& path) {
    return error_of([&] { RunReader r(path); });
}

void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

bool python_with_h5py() {
    if (!QFileInfo::exists("/usr/bin/python3")) return false;
    QProcess p;
    p.start("/usr/bin/python3", {"-c", "import h5py"});
    return p.waitForFinished(60000) && p.exitStatus() == QProcess::NormalExit && p.exitCode() == 0;
}

// Runs tests/run_file_check.py; returns its exit code and puts its output in `output`.
int h5py_check(const std::string& path, const json& expectations, QString* output) {
    QProcess py;
    py.setProcessChannelMode(QProcess::MergedChannels);
    py.start("/usr/bin/python3", {QString::fromStdString(test::source_path("tests/run_file_check.py")),
                                  QString::fromStdString(path), QString::fromStdString(expectations.dump())});
    if (!py.waitForFinished(120000)) return -1;
    *output = QString::fromUtf8(py.readAll());
    return py.exitStatus() == QProcess::NormalExit ? py.exitCode() : -1;
}

// Runs fn in a forked child; fn's string goes back through a pipe. The child never returns into
// the test framework (it _exits), so a crash or abort in it shows up as a signal status.
struct ChildResult {
    bool exited = false;  // exited normally (not killed by a signal)
    int code = -1;
    std::string message;
};

ChildResult run_in_child(const std::function<int(std::string&)>& fn) {
    int fds[2];
    if (pipe(fds) != 0) return {};
    const pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        std::string msg;
        int code = 99;
        try {
            code = fn(msg);
        } catch (const std::exception& e) {
            msg = std::string("unexpected exception: ") + e.what();
        }
        (void)!write(fds[1], msg.data(), msg.size());
        _exit(code);
    }
    close(fds[1]);
    ChildResult r;
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof(buf))) > 0) r.message.append(buf, static_cast<size_t>(n));
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    r.exited = WIFEXITED(status);
    r.code = r.exited ? WEXITSTATUS(status) : -WTERMSIG(status);
    return r;
}

// Child body of the full-disk tests: append until the writer reports an error. 0 = clear
// FileError caught (message returned), 2 = the disk never filled.
int write_until_error(const std::string& path, std::string& msg) {
    signal(SIGXFSZ, SIG_IGN);  // over RLIMIT_FSIZE, write() then fails with EFBIG instead
    try {
        RunWriter w(path, make_header(2, 64, 4, 32));
        for (int64_t i = 0; i < 100000; ++i) {
            append_all(w, i);
            w.flush();
        }
    } catch (const FileError& e) {
        msg = e.what();
        return 0;
    }
    msg = "no error after 100000 rows";
    return 2;
}

}  // namespace

class TestRunFile : public QObject {
    Q_OBJECT

private:
    QTemporaryDir tmp_;
    std::string path(const char* name) const { return tmp_.filePath(name).toStdString(); }

    // A finished run with `rows` rows of every kind.
    std::string write_run(const char* name, int64_t rows) {
        const std::string p = path(name);
        RunWriter w(p, make_header());
        for (int64_t i = 0; i < rows; ++i) append_all(w, i);
        w.close();
        return p;
    }

private slots:
    void initTestCase() {
        QVERIFY(tmp_.isValid());
        if (qEnvironmentVariableIsSet("MOE_KEEP_TEST_FILES")) {  // to look at them with h5py/h5dump
            tmp_.setAutoRemove(false);
            qInfo("test files kept in %s", qPrintable(tmp_.path()));
        }
    }

    void roundTripIsExact() {
        const std::string p = path("roundtrip.h5");
        const RunHeader h = make_header();
        const int64_t L = h.n_layers(), E = h.n_experts, K = h.top_k, T = h.n_probe();
        {
            RunWriter w(p, h);
            QVERIFY(!w.header().created.empty());
            QCOMPARE(w.header().engine_version, std::string(MOE_VERSION));
            for (int64_t i = 0; i < 7; ++i) w.append(metrics_row(i));
            for (int64_t i = 0; i < 3; ++i) w.append(eval_row(i, 3));
            for (int64_t i = 0; i < 4; ++i) w.append(experts_row(i, L, E));
            for (int64_t i = 0; i < 2; ++i) w.append(routing_row(i, L, T, K, E));
            QCOMPARE(w.metrics_rows(), int64_t(7));
            w.flush();
        }  // destructor closes

        RunReader r(p);
        const RunHeader& g = r.header();
        QCOMPARE(g.format, std::string(kRunFormat));
        QCOMPARE(g.format_version, kRunFormatVersion);
        QVERIFY(QRegularExpression("^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ$")
                    .match(QString::fromStdString(g.created)).hasMatch());
        QCOMPARE(g.engine_version, std::string(MOE_VERSION));
        QCOMPARE(g.project_json, h.project_json);
        QCOMPARE(g.config_json, h.config_json);
        QCOMPARE(g.name, h.name);
        QCOMPARE(g.device, h.device);
        QCOMPARE(g.moe_layer_indices, h.moe_layer_indices);
        QCOMPARE(g.n_experts, E);
        QCOMPARE(g.top_k, K);
        QCOMPARE(g.label_names, h.label_names);
        QCOMPARE(g.probe_tokens, h.probe_tokens);
        QCOMPARE(g.probe_text, h.probe_text);
        QCOMPARE(g.probe_labels, h.probe_labels);

        QCOMPARE(r.metrics_count(), int64_t(7));
        const MetricsColumns m = r.metrics();
        QCOMPARE(m.size(), int64_t(7));
        for (int64_t i = 0; i < 7; ++i) QVERIFY2(same(m.row(i), metrics_row(i)), qPrintable(QString::number(i)));
        const MetricsColumns tail = r.metrics_since(4);
        QCOMPARE(tail.first_row, int64_t(4));
        QCOMPARE(tail.size(), int64_t(3));
        QVERIFY(same(tail.row(0), metrics_row(4)));
        QCOMPARE(r.metrics_since(7).size(), int64_t(0));
        QCOMPARE(r.metrics_since(100).size(), int64_t(0));

        const auto ev = r.eval();
        QCOMPARE(ev.size(), size_t(3));
        for (int64_t i = 0; i < 3; ++i) QVERIFY(same(ev[i], eval_row(i, 3)));

        QCOMPARE(r.experts_count(), int64_t(4));
        for (int64_t i = 0; i < 4; ++i) QVERIFY(same(r.experts(i), experts_row(i, L, E)));
        const FloatMatrix load1 = r.expert_load_matrix(1);
        QCOMPARE(load1.rows, int64_t(4));
        QCOMPARE(load1.cols, E);
        for (int64_t s = 0; s < 4; ++s)
            for (int64_t e = 0; e < E; ++e) QCOMPARE(load1.at(s, e), experts_row(s, L, E).load[E + e]);

        QCOMPARE(r.routing_count(), int64_t(2));
        for (int64_t i = 0; i < 2; ++i) QVERIFY(same(r.routing(i), routing_row(i, L, T, K, E)));

        const QString bad_row = error_of([&] { r.experts(4); });
        QVERIFY2(bad_row.contains("/experts") && bad_row.contains("4"), qPrintable(bad_row));
        const QString bad_layer = error_of([&] { r.expert_load_matrix(2); });
        QVERIFY2(bad_layer.contains("layer 2"), qPrintable(bad_layer));
    }

    // Format version 2: quantization error and sparsity rows, and their header attributes.
    void quantAndSparsityRoundTrip() {
        const std::string p = path("quant.h5");
        RunHeader h = make_header();
        h.precision = "fp8";
        h.quant_tensors = {"model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight@input",
                           "model.layers.0.mlp.up_proj.weight@grad"};
        h.quant_roles = {"weight", "activation", "gradient"};
        h.scale_tensors = {"model.layers.0.mlp.up_proj.weight"};
        h.scale_grid_rows = {2};
        h.scale_grid_cols = {3};
        h.ffn_layer_indices = {0, 1, 2};
        h.near_zero_threshold = 0.01;
        const int64_t Q = 3, B = kQuantHistogramBins;
        auto quant_row = [&](int64_t i) {
            QuantRow r;
            r.step = 10 * i;
            for (int64_t q = 0; q < Q; ++q) {
                r.rel_error.push_back(static_cast<float>(q + 1) / 64.0f + static_cast<float>(i) / 1024.0f);
                r.snr_db.push_back(30.0f + static_cast<float>(q) - static_cast<float>(i));
                r.amax.push_back(static_cast<float>(i + q) + 0.5f);
                r.frac_saturated.push_back(static_cast<float>(q) / 8.0f);
                r.frac_flushed.push_back(static_cast<float>(i) / 16.0f);
                r.value_zeros.push_back(static_cast<uint32_t>(q + i));
            }
            for (int64_t j = 0; j < Q * B; ++j) {
                r.value_hist.push_back(static_cast<uint32_t>(j * 3 + i));
                r.error_hist.push_back(static_cast<uint32_t>(4000000000u - j - i));  // needs uint32
            }
            for (int64_t j = 0; j < 6; ++j) r.scales.push_back(std::ldexp(1.0f, static_cast<int>(j - i)));
            return r;
        };
        {
            RunWriter w(p, h);
            for (int64_t i = 0; i < 3; ++i) w.append(quant_row(i));
            w.append(SparsityRow{5, {0.25f, 0.5f, 0.75f}, {0.0f, 0.125f}});
            w.append(SparsityRow{15, {0.5f, 0.5f, 0.5f}, {0.25f, 0.0f}});
            QCOMPARE(w.quant_rows(), int64_t(3));
            QCOMPARE(w.sparsity_rows(), int64_t(2));
            QuantRow bad = quant_row(0);
            bad.scales.pop_back();
            const QString msg = error_of([&] { w.append(bad); });
            QVERIFY2(msg.contains("/quant/scales") && msg.contains("6") && msg.contains("5"), qPrintable(msg));
            const QString msg2 = error_of([&] { w.append(SparsityRow{1, {0.0f}, {0.0f, 0.0f}}); });
            QVERIFY2(msg2.contains("/sparsity/near_zero"), qPrintable(msg2));
        }
        RunReader r(p);
        const RunHeader& g = r.header();
        QCOMPARE(g.precision, std::string("fp8"));
        QCOMPARE(g.quant_tensors, h.quant_tensors);
        QCOMPARE(g.quant_roles, h.quant_roles);
        QCOMPARE(g.scale_tensors, h.scale_tensors);
        QCOMPARE(g.scale_grid_rows, h.scale_grid_rows);
        QCOMPARE(g.scale_grid_cols, h.scale_grid_cols);
        QCOMPARE(g.ffn_layer_indices, h.ffn_layer_indices);
        QCOMPARE(g.near_zero_threshold, 0.01);
        QCOMPARE(r.quant_count(), int64_t(3));
        for (int64_t i = 0; i < 3; ++i) {
            const QuantRow a = r.quant(i), b = quant_row(i);
            QCOMPARE(a.step, b.step);
            QVERIFY(a.rel_error == b.rel_error && a.snr_db == b.snr_db && a.amax == b.amax);
            QVERIFY(a.frac_saturated == b.frac_saturated && a.frac_flushed == b.frac_flushed);
            QVERIFY(a.value_hist == b.value_hist && a.value_zeros == b.value_zeros);
            QVERIFY(a.error_hist == b.error_hist && a.scales == b.scales);
        }
        const QuantErrorSeries s = r.quant_error_series(1);
        QCOMPARE(s.step, (std::vector<int64_t>{0, 10, 20}));
        for (int64_t i = 0; i < 3; ++i) {
            QCOMPARE(s.rel_error[i], quant_row(i).rel_error[1]);
            QCOMPARE(s.snr_db[i], quant_row(i).snr_db[1]);
            QCOMPARE(s.amax[i], quant_row(i).amax[1]);
        }
        QVERIFY(error_of([&] { r.quant_error_series(3); }).contains("Q=3"));
        QVERIFY(error_of([&] { r.quant(3); }).contains("/quant"));
        const SparsityRows sp = r.sparsity_rows();
        QCOMPARE(sp.step, (std::vector<int64_t>{5, 15}));
        QCOMPARE(sp.near_zero, (std::vector<float>{0.25f, 0.5f, 0.75f, 0.5f, 0.5f, 0.5f}));
        QCOMPARE(sp.unused_experts, (std::vector<float>{0.0f, 0.125f, 0.25f, 0.0f}));
    }

    // A version-1 file (no /quant, /sparsity) still opens, with no rows of either.
    void versionOneFilesStillOpen() {
        const std::string p = write_run("v1.h5", 3);
        {
            hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
            QVERIFY(f >= 0);
            QVERIFY(H5Ldelete(f, "/quant", H5P_DEFAULT) >= 0);
            QVERIFY(H5Ldelete(f, "/sparsity", H5P_DEFAULT) >= 0);
            QVERIFY(H5Adelete(f, "precision") >= 0);
            hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
            const int64_t one = 1;
            QVERIFY(H5Awrite(a, H5T_NATIVE_INT64, &one) >= 0);
            H5Aclose(a);
            H5Fclose(f);
        }
        RunReader r(p);
        QCOMPARE(r.header().format_version, int64_t(1));
        QCOMPARE(r.header().precision, std::string("fp32"));
        QCOMPARE(r.metrics_count(), int64_t(3));
        QCOMPARE(r.quant_count(), int64_t(0));
        QCOMPARE(r.sparsity_count(), int64_t(0));
        QVERIFY(r.sparsity_rows().step.empty());
        r.refresh();
        QCOMPARE(r.quant_count(), int64_t(0));
    }

    void liveReadingWhileWriterIsOpen() {
        const std::string p = path("live.h5");
        RunWriter w(p, make_header());
        w.flush();
        RunReader r(p);  // a second handle in the same process, SWMR read
        QVERIFY(r.live());
        QCOMPARE(r.metrics_count(), int64_t(0));
        QVERIFY(!r.refresh());

        for (int64_t i = 0; i < 3; ++i) append_all(w, i);
        w.flush();
        QVERIFY(r.refresh());
        QCOMPARE(r.metrics_count(), int64_t(3));
        QCOMPARE(r.experts_count(), int64_t(3));
        QCOMPARE(r.routing_count(), int64_t(3));

        // Incremental: the GUI keeps its row count and asks only for what is new.
        for (int64_t i = 3; i < 300; ++i) append_all(w, i);  // crosses a 256-row metrics chunk
        w.flush();
        QVERIFY(r.refresh());
        QVERIFY(!r.refresh());
        const MetricsColumns m = r.metrics_since(3);
        QCOMPARE(m.size(), int64_t(297));
        for (int64_t i = 0; i < m.size(); ++i) QVERIFY(same(m.row(i), metrics_row(3 + i)));
        QCOMPARE(r.eval().size(), size_t(300));
        QVERIFY(same(r.experts(299), experts_row(299, 2, 8)));
        QVERIFY(same(r.routing(150), routing_row(150, 2, 5, 2, 8)));
        QCOMPARE(r.expert_load_matrix(0).rows, int64_t(300));

        w.close();
        QVERIFY(!r.refresh());
        QCOMPARE(r.metrics_count(), int64_t(300));
        RunReader after(p);
        QCOMPARE(after.metrics_count(), int64_t(300));
    }

    void emptyLabelsAndProbe() {
        // Zero-sized inner dimensions (no labels, no probe) still give every dataset.
        RunHeader h = make_header(1, 4, 1, 0);
        h.label_names.clear();
        const std::string p = path("empty_dims.h5");
        {
            RunWriter w(p, h);
            for (int64_t i = 0; i < 3; ++i) append_all(w, i);
        }
        RunReader r(p);
        QVERIFY(r.header().label_names.empty());
        QVERIFY(r.header().probe_tokens.empty());
        QCOMPARE(r.eval_count(), int64_t(3));
        QCOMPARE(r.eval()[2].step, int64_t(200));
        QVERIFY(r.eval()[2].label_loss.empty());
        QCOMPARE(r.routing_count(), int64_t(3));
        QCOMPARE(r.routing(1).step, int64_t(50));
        QVERIFY(r.routing(1).scores.empty());
        QVERIFY(same(r.experts(2), experts_row(2, 1, 4)));
    }

    void appendChecksSizes() {
        RunWriter w(path("sizes.h5"), make_header());
        ExpertsRow e = experts_row(0, 2, 8);
        e.load.pop_back();
        QString msg = error_of([&] { w.append(e); });
        QVERIFY2(msg.contains("/experts/load") && msg.contains("expected 16") && msg.contains("got 15"),
                 qPrintable(msg));
        RoutingRow r = routing_row(0, 2, 5, 2, 8);
        r.scores.resize(3);
        msg = error_of([&] { w.append(r); });
        QVERIFY2(msg.contains("/routing/scores") && msg.contains("expected 80") && msg.contains("got 3"),
                 qPrintable(msg));
        EvalRow ev = eval_row(0, 2);
        msg = error_of([&] { w.append(ev); });
        QVERIFY2(msg.contains("/eval/label_loss") && msg.contains("expected 3"), qPrintable(msg));
        // A rejected row leaves the writer usable.
        w.append(experts_row(0, 2, 8));
        QCOMPARE(w.experts_rows(), int64_t(1));

        RunHeader bad = make_header();
        bad.top_k = 9;
        msg = error_of([&] { RunWriter x(path("bad_header.h5"), bad); });
        QVERIFY2(msg.contains("top_k") && msg.contains("9"), qPrintable(msg));
    }

    void refusesToOverwrite() {
        const std::string p = write_run("existing.h5", 2);
        const QString msg = error_of([&] { RunWriter w(p, make_header()); });
        QVERIFY2(msg.contains(QString::fromStdString(p)) && msg.contains("overwrite"), qPrintable(msg));
        QCOMPARE(RunReader(p).metrics_count(), int64_t(2));  // untouched

        const std::string text = path("notes.txt");
        write_bytes(text, "not a run\n");
        QVERIFY(!error_of([&] { RunWriter w(text, make_header()); }).isEmpty());

        { RunWriter w(p, make_header(), /*overwrite=*/true); }
        QCOMPARE(RunReader(p).metrics_count(), int64_t(0));
    }

    void h5pyReadsTheFile() {
        if (!python_with_h5py())
            QSKIP("/usr/bin/python3 cannot import h5py (install python3-h5py): h5py check not run");
        const std::string p = write_run("for_h5py.h5", 5);
        json values, shapes;
        std::vector<double> loss;
        std::vector<int64_t> step;
        std::vector<float> load;
        for (int64_t i = 0; i < 5; ++i) {
            loss.push_back(metrics_row(i).loss);
            step.push_back(metrics_row(i).step);
            const auto e = experts_row(i, 2, 8).load;
            load.insert(load.end(), e.begin(), e.end());
        }
        const RunHeader h = make_header();
        json x = {
            {"attrs",
             {{"/",
               {{"format", kRunFormat}, {"format_version", kRunFormatVersion}, {"name", h.name},
                {"config", h.config_json}, {"project", h.project_json}, {"label_names", h.label_names},
                {"n_experts", 8}, {"top_k", 2}}},
              {"/experts", {{"layer_indices", h.moe_layer_indices}}},
              {"/routing", {{"probe_text", h.probe_text}}}}},
            {"shapes",
             {{"metrics/loss", {5}}, {"metrics/skipped", {5}}, {"eval/label_loss", {5, 3}},
              {"experts/load", {5, 2, 8}}, {"experts/maxvio", {5, 2}}, {"routing/probe_tokens", {5}},
              {"routing/topk", {5, 2, 5, 2}}, {"routing/scores", {5, 2, 5, 8}}}},
            {"values",
             {{"metrics/loss", loss}, {"metrics/step", step}, {"experts/load", load},
              {"routing/probe_tokens", h.probe_tokens}, {"routing/probe_labels", h.probe_labels},
              {"routing/topk", routing_row(0, 2, 5, 2, 8).topk}}}};
        // routing/topk holds 5 rows; compare the first one.
        x["prefix"]["routing/topk"] = x["values"]["routing/topk"];
        x["values"].erase("routing/topk");
        QString out;
        QCOMPARE(h5py_check(p, x, &out), 0);

        // The checker must be able to fail, or the test above proves nothing.
        json wrong = {{"shapes", {{"metrics/loss", {6}}}}};
        QCOMPARE(h5py_check(p, wrong, &out), 1);
        QVERIFY2(out.contains("metrics/loss"), qPrintable(out));
    }

    void killedWriterLeavesFlushedRows() {
        const std::string p = path("killed.h5");
        int fds[2];
        QCOMPARE(pipe(fds), 0);
        const pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            try {
                RunWriter w(p, make_header());
                for (int64_t i = 0;; ++i) {
                    append_all(w, i);
                    w.flush();
                    const int64_t flushed = i + 1;
                    if (write(fds[1], &flushed, sizeof(flushed)) != sizeof(flushed)) _exit(3);
                }
            } catch (...) {
                _exit(2);
            }
        }
        close(fds[1]);
        int64_t flushed = 0, v = 0;
        bool stalled = false;
        // Reads the child's progress; a child that stops reporting for 60 s (a hang, seen once
        // on a loaded machine) ends the wait instead of blocking the test until its timeout.
        auto wait_for = [&](int64_t rows) {
            while (flushed < rows) {
                pollfd pfd{fds[0], POLLIN, 0};
                if (poll(&pfd, 1, 60000) <= 0) {
                    stalled = true;
                    return;
                }
                if (read(fds[0], &v, sizeof(v)) != sizeof(v)) return;
                flushed = v;
            }
        };
        auto give_up_if_stalled = [&] {
            if (!stalled) return false;
            kill(pid, SIGKILL);
            waitpid(pid, nullptr, 0);
            close(fds[0]);
            return true;
        };
        // Live reading from another process (the in-process test shares the writer's HDF5 file
        // object; this one goes through the file on disk, as the GUI of a remote worker does).
        wait_for(20);
        if (give_up_if_stalled()) QFAIL(qPrintable(QString("the writer child stopped reporting after %1 rows").arg(flushed)));
        {
            RunReader live(p);
            QVERIFY(live.live());
            const int64_t seen = live.metrics_count();
            QVERIFY2(seen >= 20, qPrintable(QString::number(seen)));
            wait_for(seen + 30);
            if (give_up_if_stalled()) QFAIL(qPrintable(QString("the writer child stopped reporting after %1 rows").arg(flushed)));
            QVERIFY(live.refresh());
            QVERIFY(live.metrics_count() >= seen + 30);
            const MetricsColumns m = live.metrics_since(seen);
            for (int64_t i = 0; i < m.size(); ++i) QVERIFY(same(m.row(i), metrics_row(seen + i)));
            QVERIFY(same(live.routing(seen + 29), routing_row(seen + 29, 2, 5, 2, 8)));
        }
        wait_for(flushed + 20);
        if (give_up_if_stalled()) QFAIL(qPrintable(QString("the writer child stopped reporting after %1 rows").arg(flushed)));
        QCOMPARE(kill(pid, SIGKILL), 0);
        int status = 0;
        waitpid(pid, &status, 0);
        QVERIFY2(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the writer died before it was killed");
        while (read(fds[0], &v, sizeof(v)) == sizeof(v)) flushed = v;  // what it reported before dying
        close(fds[0]);
        QVERIFY(flushed >= 60);

        RunReader r(p);
        QVERIFY(r.live());  // the superblock still says "open for SWMR write"
        for (const int64_t n : {r.metrics_count(), r.eval_count(), r.experts_count(), r.routing_count()})
            QVERIFY2(n >= flushed, qPrintable(QString("%1 rows, %2 flushed").arg(n).arg(flushed)));
        const MetricsColumns m = r.metrics();
        const auto ev = r.eval();
        for (int64_t i = 0; i < flushed; ++i) {
            QVERIFY2(same(m.row(i), metrics_row(i)), qPrintable(QString("metrics row %1").arg(i)));
            QVERIFY(same(ev[i], eval_row(i, 3)));
            QVERIFY(same(r.experts(i), experts_row(i, 2, 8)));
            QVERIFY(same(r.routing(i), routing_row(i, 2, 5, 2, 8)));
        }
        // Rows past the last flush may or may not be there; report what this run left.
        int64_t extra_ok = 0;
        for (int64_t i = flushed; i < m.size(); ++i) extra_ok += same(m.row(i), metrics_row(i));
        qInfo("killed after %lld flushed rows; reader sees %lld metrics rows (%lld past the flush, %lld of them exact)",
              static_cast<long long>(flushed), static_cast<long long>(m.size()),
              static_cast<long long>(m.size() - flushed), static_cast<long long>(extra_ok));

        if (python_with_h5py()) {
            std::vector<int64_t> steps;
            for (int64_t i = 0; i < flushed; ++i) steps.push_back(metrics_row(i).step);
            json x = {{"swmr", true},
                      {"attrs", {{"/", {{"format", kRunFormat}}}}},
                      {"min_rows", {{"metrics/loss", flushed}, {"routing/scores", flushed}}},
                      {"prefix", {{"metrics/step", steps}}}};
            QString out;
            QVERIFY2(h5py_check(p, x, &out) == 0, qPrintable(out));
        }
    }

    void diskFullIsAClearError() {
        // RLIMIT_FSIZE makes write() fail (EFBIG) like a full disk does (ENOSPC), without root.
        const std::string p = path("full.h5");
        ChildResult c = run_in_child([&](std::string& msg) {
            rlimit lim{256 * 1024, 256 * 1024};
            if (setrlimit(RLIMIT_FSIZE, &lim) != 0) {
                msg = "setrlimit failed";
                return 3;
            }
            return write_until_error(p, msg);
        });
        QVERIFY2(c.exited, qPrintable("the writer crashed instead of reporting: " + QString::number(c.code)));
        QVERIFY2(c.code == 0, c.message.c_str());
        QVERIFY2(QString::fromStdString(c.message).contains(QString::fromStdString(p)), c.message.c_str());
        qInfo("file size limit: %s", c.message.substr(0, 300).c_str());
        QVERIFY2(QString::fromStdString(c.message).contains("File too large"), c.message.c_str());
        // The failed flush wrote a superblock whose end-of-file lies past what reached the disk,
        // so HDF5 1.10 calls the file truncated; the reader must say so, not crash.
        const QString reopen = open_error(p);
        if (!reopen.isEmpty())
            QVERIFY2(reopen.contains(QString::fromStdString(p)) && reopen.contains("truncated"), qPrintable(reopen));
        qInfo("reopening after the failure: %s", reopen.isEmpty() ? "opens" : qPrintable(reopen.left(300)));
    }

    void diskFullOnTinyTmpfs() {
        // A real ENOSPC: a 256 KiB tmpfs in a private mount namespace of the child (needs root or
        // CAP_SYS_ADMIN; skipped otherwise). The namespace and mount vanish with the child.
        const std::string dir = path("tmpfs");
        std::filesystem::create_directory(dir);
        const std::string p = dir + "/full.h5";
        ChildResult c = run_in_child([&](std::string& msg) {
            if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
                mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=256k") != 0) {
                msg = std::string("cannot mount a tmpfs: ") + std::strerror(errno);
                return 4;
            }
            return write_until_error(p, msg);
        });
        if (c.exited && c.code == 4) QSKIP(c.message.c_str());
        QVERIFY2(c.exited, qPrintable("the writer crashed instead of reporting: " + QString::number(c.code)));
        QVERIFY2(c.code == 0, c.message.c_str());
        const QString msg = QString::fromStdString(c.message);
        QVERIFY2(msg.contains(QString::fromStdString(p)) && msg.contains("No space left on device"), qPrintable(msg));
        qInfo("tmpfs full: %s", c.message.substr(0, 300).c_str());
    }

    void damagedAndForeignFilesAreRejected() {
        const std::string good = write_run("good.h5", 20);
        std::ifstream in(good, std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(in)), {});

        auto expect = [&](const std::string& p, const QStringList& words) {
            const QString msg = open_error(p);
            QVERIFY2(!msg.isEmpty(), ("no error for " + p).c_str());
            QVERIFY2(msg.contains(QString::fromStdString(p)), qPrintable(msg));
            for (const auto& w : words) QVERIFY2(msg.contains(w, Qt::CaseInsensitive), qPrintable(msg));
        };

        const std::string half = path("half.h5");
        write_bytes(half, bytes.substr(0, bytes.size() / 2));
        expect(half, {"truncated"});

        std::mt19937 rng(5);
        std::string noise(4096, '\0');
        for (auto& ch : noise) ch = static_cast<char>(rng());
        const std::string random = path("random.h5");
        write_bytes(random, noise);
        expect(random, {"not an HDF5 file"});

        const std::string text = path("text.h5");
        write_bytes(text, "step,loss\n1,4.0\n");
        expect(text, {"not an HDF5 file"});

        expect(path("does_not_exist.h5"), {"no such"});

        // A valid HDF5 file that is not a run.
        const std::string foreign = path("foreign.h5");
        {
            hid_t f = H5Fcreate(foreign.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
            QVERIFY(f >= 0);
            H5Fclose(f);
        }
        expect(foreign, {"attribute format", "missing", kRunFormat});

        // A run from a newer workbench.
        const std::string newer = path("newer.h5");
        write_bytes(newer, bytes);
        {
            hid_t f = H5Fopen(newer.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
            QVERIFY(f >= 0);
            hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
            const int64_t v = kRunFormatVersion + 1;
            H5Awrite(a, H5T_NATIVE_INT64, &v);
            H5Aclose(a);
            H5Fclose(f);
        }
        expect(newer, {"format_version", "version " + QString::number(kRunFormatVersion + 1), "newer"});

        // A run missing one dataset.
        const std::string missing = path("missing.h5");
        write_bytes(missing, bytes);
        {
            hid_t f = H5Fopen(missing.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
            QVERIFY(f >= 0);
            QVERIFY(H5Ldelete(f, "/experts/bias", H5P_DEFAULT) >= 0);
            H5Fclose(f);
        }
        expect(missing, {"/experts/bias", "missing", "float32 [rows, 2, 8]"});
    }

    void unevenColumnsGiveCompleteRowsOnly() {
        // What a writer killed between two column writes leaves: one column a row longer.
        const std::string p = write_run("uneven.h5", 9);
        {
            hid_t f = H5Fopen(p.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
            QVERIFY(f >= 0);
            hid_t d = H5Dopen2(f, "/metrics/loss", H5P_DEFAULT);
            const hsize_t n = 10;
            QVERIFY(H5Dset_extent(d, &n) >= 0);
            H5Dclose(d);
            d = H5Dopen2(f, "/experts/step", H5P_DEFAULT);
            QVERIFY(H5Dset_extent(d, &n) >= 0);
            H5Dclose(d);
            H5Fclose(f);
        }
        RunReader r(p);
        QCOMPARE(r.metrics_count(), int64_t(9));
        QCOMPARE(r.metrics().size(), int64_t(9));
        QCOMPARE(r.experts_count(), int64_t(9));
        QCOMPARE(r.expert_load_matrix(0).rows, int64_t(9));
    }
};

QTEST_APPLESS_MAIN(TestRunFile)
#include "tst_run_file.moc"
