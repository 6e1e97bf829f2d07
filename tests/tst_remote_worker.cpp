// moe-worker as a real process on 127.0.0.1, driven over real sockets: a run of the shrunk
// tiny preset followed live, routing inspected, the run file downloaded and compared byte for
// byte; a client dropped mid-run that reconnects without losing or repeating an event; a worker
// killed mid-run whose run file still opens; every attack (wrong/no token, replayed handshake,
// oversized, random and truncated frames, path traversal) rejected with its error code while
// the worker keeps serving a good client; 20 clients watching one run.
#include <QtTest>

#include <QProcess>
#include <QStandardPaths>
#include <QRegularExpression>
#include <QTcpSocket>
#include <QTemporaryDir>

#include <filesystem>
#include <fstream>
#include <memory>
#include <tuple>

#include "auth.h"
#include "frame_codec.h"
#include "messages.h"
#include "model_fixtures.h"
#include "remote_connection.h"
#include "remote_session.h"
#include "generate/generator.h"
#include "inspect/checkpoint_inspector.h"
#include "store/run_reader.h"

using namespace moe;
using namespace moe::remote;
using nlohmann::json;

namespace {

Project tiny(int64_t steps) {
    Project p = test::shrunk_tiny_tasks(steps);
    p.name = "remote-test";
    p.training.log_every = 5;
    p.training.eval_every = 10;
    p.training.routing_every = 10;
    p.training.threads = 1;
    return p;
}

// A moe-worker process with its own token file and runs folder.
struct Worker {
    QTemporaryDir dir;
    QProcess proc;
    quint16 port = 0;
    QByteArray token;
    QString runs() const { return dir.filePath("runs"); }

    bool start(QStringList extra = {}) {
        proc.setProgram(MOE_WORKER_EXE);
        proc.setArguments(QStringList{"--port", "0", "--runs-dir", runs(), "--token-file", dir.filePath("token")} + extra);
        proc.setProcessChannelMode(QProcess::MergedChannels);
        proc.start();
        if (!proc.waitForStarted(10000)) return false;
        QByteArray out;
        const QRegularExpression re("listening on 127\\.0\\.0\\.1:(\\d+)");
        QElapsedTimer t;
        t.start();
        while (t.elapsed() < 30000) {
            proc.waitForReadyRead(200);
            out += proc.readAll();
            const auto m = re.match(QString::fromUtf8(out));
            if (m.hasMatch()) {
                port = quint16(m.captured(1).toUInt());
                break;
            }
        }
        if (!port) {
            qWarning() << "worker output:" << out;
            return false;
        }
        QFile f(dir.filePath("token"));
        f.open(QIODevice::ReadOnly);
        token = f.readAll().trimmed();
        // The generated token is printed once, at first start.
        return out.contains(token);
    }
    ~Worker() {
        if (proc.state() != QProcess::NotRunning) {
            proc.terminate();
            if (!proc.waitForFinished(20000)) proc.kill();
            proc.waitForFinished(5000);
        }
    }
};

RemoteConnection::Options options(const Worker& w, QByteArray token = {}) {
    RemoteConnection::Options o;
    o.host = "127.0.0.1";
    o.port = w.port;
    o.token = token.isEmpty() ? w.token : token;
    return o;
}

// Sends a request and waits for its answer.
json call(RemoteConnection& c, json m, QByteArray* binary = nullptr, int ms = 30000) {
    json out;
    bool done = false;
    c.request(std::move(m), [&](const json& r, const QByteArray& b) {
        out = r;
        if (binary) *binary = b;
        done = true;
    });
    if (!QTest::qWaitFor([&] { return done; }, ms)) return json{{"type", "error"}, {"code", "test_timeout"}};
    return out;
}

bool connect_ok(RemoteConnection& c, const RemoteConnection::Options& o) {
    c.open(o);
    return QTest::qWaitFor([&] { return c.state() == RemoteConnection::State::Connected ||
                                        c.state() == RemoteConnection::State::Failed; }, 15000) &&
           c.state() == RemoteConnection::State::Connected;
}

// A raw socket speaking frames by hand (the attacks).
struct Raw {
    QTcpSocket s;
    FrameDecoder d{64u << 20};
    bool open(quint16 port) {
        s.connectToHost("127.0.0.1", port);
        return s.waitForConnected(5000);
    }
    void send(const json& m) {
        const std::string f = encode_frame(m.dump());
        s.write(f.data(), qint64(f.size()));
        s.flush();
    }
    void send_bytes(const QByteArray& b) {
        s.write(b);
        s.flush();
    }
    // Next message, or a {"type":"closed"} when the worker closed the connection first.
    json next(int ms = 10000) {
        QElapsedTimer t;
        t.start();
        while (t.elapsed() < ms) {
            if (auto f = d.next()) return parse_message(f->json);
            if (s.bytesAvailable() == 0 && !s.waitForReadyRead(100)) {
                if (s.state() != QAbstractSocket::ConnectedState && s.bytesAvailable() == 0) return {{"type", "closed"}};
                continue;
            }
            const QByteArray b = s.readAll();
            d.feed(b.constData(), size_t(b.size()));
        }
        return {{"type", "timeout"}};
    }
    bool closed_by_peer(int ms = 5000) {
        QElapsedTimer t;
        t.start();
        while (t.elapsed() < ms) {
            if (s.state() == QAbstractSocket::UnconnectedState) return true;
            s.waitForReadyRead(100);
            s.readAll();
        }
        return s.state() == QAbstractSocket::UnconnectedState;
    }
};

QByteArray file_bytes(const QString& path) {
    QFile f(path);
    f.open(QIODevice::ReadOnly);
    return f.readAll();
}

}  // namespace

class TestRemoteWorker : public QObject {
    Q_OBJECT

    std::unique_ptr<Worker> worker_;

    // After every attack: a good client still gets in and is answered.
    void good_client_still_served() {
        RemoteConnection c;
        QVERIFY2(connect_ok(c, options(*worker_)), qPrintable(c.last_error()));
        QCOMPARE(call(c, {{"type", "ping"}})["type"].get<std::string>(), std::string("result"));
    }

private slots:
    void initTestCase() {
        worker_ = std::make_unique<Worker>();
        QVERIFY(worker_->start());
    }

    void run_followed_inspected_downloaded() {
        QTemporaryDir local;
        RemoteConnection c;
        QVERIFY2(connect_ok(c, options(*worker_)), qPrintable(c.last_error()));
        QVERIFY(!c.devices().empty());
        QCOMPARE(c.devices()[0]["kind"].get<std::string>(), std::string("cpu"));

        std::vector<SessionEvent> events;
        RemoteSession s(&c, [&](const SessionEvent& e) { events.push_back(e); });
        Project p = tiny(30);
        p.training.checkpoint_every = 10;
        const TrainerPaths paths{local.filePath("mirror.h5").toStdString(), local.filePath("mirror.ckpt").toStdString()};
        s.start(p, paths, 1);
        QVERIFY(QTest::qWaitFor([&] { return s.state() == SessionState::Finished || s.state() == SessionState::Failed; }, 120000));
        QCOMPARE(s.state(), SessionState::Finished);
        std::vector<int64_t> steps;
        bool saw_eval = false, running_before_mirror = false;
        for (const SessionEvent& e : events) {
            if (e.kind == SessionEvent::Kind::Step) steps.push_back(e.step.step);
            if (e.kind == SessionEvent::Kind::Eval) saw_eval = true;
            if (e.kind == SessionEvent::Kind::StateChanged && e.state == SessionState::Running &&
                !QFileInfo::exists(QString::fromStdString(paths.run_file)))
                running_before_mirror = true;
        }
        QCOMPARE(steps.size(), size_t(30));
        for (size_t i = 0; i < steps.size(); ++i) QCOMPARE(steps[i], int64_t(i + 1));
        QVERIFY(saw_eval);
        QVERIFY2(!running_before_mirror, "Running was passed on before the run file was copied");

        // The mirror is the worker's file, byte for byte.
        const QString remote_file = QDir(worker_->runs()).filePath(QString::fromStdString(s.remote_run_file()));
        QCOMPARE(file_bytes(QString::fromStdString(paths.run_file)), file_bytes(remote_file));
        RunReader r(paths.run_file);
        QCOMPARE(r.metrics_count(), int64_t(30));

        // An explicit download of the same file, resumed from a partial ".part".
        const QString again = local.filePath("again.h5");
        {
            QFile part(again + ".part");
            part.open(QIODevice::WriteOnly);
            part.write(file_bytes(remote_file).left(1000));
        }
        QString error = "pending";
        download_file(&c, QString::fromStdString(s.remote_run_file()), again, [&](QString e) { error = e; });
        QVERIFY(QTest::qWaitFor([&] { return error != "pending"; }, 30000));
        QVERIFY2(error.isEmpty(), qPrintable(error));
        QCOMPARE(file_bytes(again), file_bytes(remote_file));

        // Routing of a checkpoint, answered by the worker's engine.
        const json files = call(c, {{"type", "list_files"}});
        std::string ckpt;
        for (const json& f : files["files"]) {
            const std::string path = f["path"];
            if (path.find("step-00000010/config.json") != std::string::npos) ckpt = path.substr(0, path.size() - 12);
        }
        QVERIFY2(!ckpt.empty(), files.dump().c_str());
        const json ins = call(c, {{"type", "inspect"}, {"checkpoint", ckpt}, {"text", "2+3=5"}}, nullptr, 60000);
        QVERIFY2(ins["type"] == "result", ins.dump().c_str());
        QCOMPARE(ins["inspection"]["tokens"].size(), size_t(5));
        QCOMPARE(ins["inspection"]["layers"].size(), size_t(p.model.num_hidden_layers - p.model.first_k_dense_replace));
        // Inference with quantized weights of the same checkpoint, on the worker.
        const json q = call(c, {{"type", "quantize"}, {"checkpoint", ckpt}, {"formats", {"fp32", "fp8", "int4"}}},
                            nullptr, 60000);
        QVERIFY2(q["type"] == "result", q.dump().c_str());
        QCOMPARE(q["formats"].size(), size_t(3));
        QCOMPARE(q["formats"][0]["loss_change"].get<double>(), 0.0);
        QVERIFY(q["formats"][1]["weight_rel_error"].get<double>() > 0.01);
        QVERIFY(q["formats"][2]["weight_rel_error"].get<double>() > q["formats"][1]["weight_rel_error"].get<double>());
        const json bad_format = call(c, {{"type", "quantize"}, {"checkpoint", ckpt}, {"formats", {"int5"}}});
        QCOMPARE(bad_format["code"].get<std::string>(), std::string("config_error"));
        generation_on_the_worker(c, ckpt);
        if (QTest::currentTestFailed()) return;
        const json unknown = call(c, {{"type", "frobnicate"}});
        QCOMPARE(unknown["code"].get<std::string>(), std::string("unknown_request"));
    }

private:
    // "generate": the text continued on the worker with live progress (text so far and the
    // routing of every token), the same tokens as generating here from the same checkpoint;
    // cancelled at once it stops after its first token; bad fields name the field.
    void generation_on_the_worker(RemoteConnection& c, const std::string& ckpt) {
        std::vector<json> progress;
        json result;
        bool done = false;
        c.request({{"type", "generate"}, {"checkpoint", ckpt}, {"text", "12+7="}, {"max_new_tokens", 24},
                   {"interval_ms", 50}},
                  [&](const json& r, const QByteArray&) {
                      result = r;
                      done = true;
                  },
                  [&](const json& m) { progress.push_back(m); });
        QVERIFY(QTest::qWaitFor([&] { return done; }, 60000));
        QVERIFY2(result["type"] == "result", result.dump().c_str());
        QCOMPARE(result["prompt_tokens"].get<int64_t>(), int64_t(5));
        const std::vector<int32_t> remote_tokens = result["tokens"].get<std::vector<int32_t>>();
        QVERIFY(!remote_tokens.empty());
        QCOMPARE(result["generated"].get<int64_t>(), int64_t(remote_tokens.size()));
        QCOMPARE(result["inspection"]["tokens"].size(), 5 + remote_tokens.size());
        QVERIFY(result["first_token_seconds"].get<double>() > 0);
        // The same greedy tokens as this process makes from the checkpoint's files.
        CheckpointInspector here(QDir(worker_->runs()).filePath(QString::fromStdString(ckpt)).toStdString(), 1);
        GenerationSettings gs;
        gs.max_new_tokens = 24;
        const GenerationResult local = here.generate_text("12+7=", gs, {});
        QCOMPARE(remote_tokens, local.tokens);
        QCOMPARE(result["stop_reason"].get<std::string>(), local.stop_reason);
        std::vector<int32_t> all = here.encode("12+7=");
        all.insert(all.end(), local.tokens.begin(), local.tokens.end());
        QCOMPARE(result["text"].get<std::string>(), here.decode(all));
        // Progress: at least the first token's, each a growing prefix with its routing.
        QVERIFY(!progress.empty());
        int64_t before = 0;
        for (const json& m : progress) {
            const int64_t n = m["generated"].get<int64_t>();
            QVERIFY(n > before && n <= int64_t(remote_tokens.size()));
            before = n;
            QCOMPARE(m["inspection"]["tokens"].size(), size_t(5 + n));
            QVERIFY(here.decode(all).rfind(m["text"].get<std::string>(), 0) == 0);
        }

        // Cancelled as soon as it is sent: stopped long before its 4000 tokens (how many it
        // wrote before the cancel arrived depends on the machine's load: usually 1 or 2).
        json stopped;
        done = false;
        const int64_t gid = c.request({{"type", "generate"}, {"checkpoint", ckpt}, {"text", "12+7="},
                                       {"max_new_tokens", 4000}, {"live", false}},
                                      [&](const json& r, const QByteArray&) {
                                          stopped = r;
                                          done = true;
                                      });
        const json cancel = call(c, {{"type", "cancel"}, {"request", gid}});
        QVERIFY2(cancel["type"] == "result", cancel.dump().c_str());
        QVERIFY(QTest::qWaitFor([&] { return done; }, 60000));
        QVERIFY2(stopped["type"] == "result", stopped.dump().c_str());
        QCOMPARE(stopped["stop_reason"].get<std::string>(), std::string("stopped"));
        QVERIFY2(stopped["generated"].get<int64_t>() < 1000, stopped.dump().c_str());

        const json hot = call(c, {{"type", "generate"}, {"checkpoint", ckpt}, {"text", "x"}, {"temperature", -1}});
        QCOMPARE(hot["code"].get<std::string>(), std::string("bad_request"));
        QVERIFY2(hot["message"].get<std::string>().find("temperature") != std::string::npos, hot.dump().c_str());
        const json spec = call(c, {{"type", "generate"}, {"checkpoint", ckpt}, {"text", "x"}, {"temperature", 0.7},
                                   {"speculative", true}});
        QCOMPARE(spec["code"].get<std::string>(), std::string("config_error"));
        QVERIFY2(!spec["field"].get<std::string>().empty(), spec.dump().c_str());
        const json outside = call(c, {{"type", "generate"}, {"checkpoint", "../etc"}, {"text", "x"}});
        QCOMPARE(outside["code"].get<std::string>(), std::string("path_outside_root"));
    }

private slots:
    // A run of several processes on the worker (mpirun, 2 CPU ranks, expert parallelism):
    // followed like any run - every step, the final state, the mirrored run file with its
    // per-rank rows; a layout that does not fit is refused naming the field.
    void run_of_several_processes_on_the_worker() {
        if (QStandardPaths::findExecutable("mpirun").isEmpty()) QSKIP("no mpirun on this machine");
        QTemporaryDir local;
        RemoteConnection c;
        QVERIFY2(connect_ok(c, options(*worker_)), qPrintable(c.last_error()));
        std::vector<int64_t> steps;
        std::string failure;
        RemoteSession s(&c, [&](const SessionEvent& e) {
            if (e.kind == SessionEvent::Kind::Step) steps.push_back(e.step.step);
            if (e.kind == SessionEvent::Kind::Failed) failure = e.message;
        });
        Project p = tiny(10);
        p.name = "remote-ep2";
        p.training.batch_size = 4;
        s.set_parallel("ep=2,dp=1");
        const TrainerPaths paths{local.filePath("ep2.h5").toStdString(), {}};
        s.start(p, paths, 1);
        QVERIFY(QTest::qWaitFor([&] { return s.state() == SessionState::Finished || s.state() == SessionState::Failed; },
                                120000));
        QVERIFY2(s.state() == SessionState::Finished, failure.c_str());
        QCOMPARE(steps.size(), size_t(10));
        for (size_t i = 0; i < steps.size(); ++i) QCOMPARE(steps[i], int64_t(i + 1));
        RunReader mirror(paths.run_file);
        QCOMPARE(mirror.metrics_count(), int64_t(10));
        QCOMPARE(mirror.header().world_size, int64_t(2));
        QVERIFY(mirror.parallel_count() >= 2);

        RemoteSession bad(&c, [&](const SessionEvent& e) {
            if (e.kind == SessionEvent::Kind::Failed) failure = e.message;
        });
        bad.set_parallel("ep=3");
        failure.clear();
        bad.start(p, {local.filePath("bad.h5").toStdString(), {}}, 1);
        QVERIFY(QTest::qWaitFor([&] { return !failure.empty(); }, 30000));
        QVERIFY2(failure.find("8 routed experts") != std::string::npos || failure.find("ep") != std::string::npos,
                 failure.c_str());
    }

    void client_dropped_mid_run_reconnects_without_loss() {
        QTemporaryDir local;
        RemoteConnection c;
        QVERIFY(connect_ok(c, options(*worker_)));
        std::vector<int64_t> steps;
        RemoteSession s(&c, [&](const SessionEvent& e) {
            if (e.kind == SessionEvent::Kind::Step) steps.push_back(e.step.step);
        });
        s.start(tiny(600), {local.filePath("m.h5").toStdString(), {}}, 1);
        QVERIFY(QTest::qWaitFor([&] { return steps.size() >= 10; }, 60000));
        c.socket()->abort();  // the link drops; the run goes on over there
        QVERIFY(QTest::qWaitFor([&] { return c.state() == RemoteConnection::State::Reconnecting; }, 5000));
        QVERIFY(QTest::qWaitFor([&] { return c.state() == RemoteConnection::State::Connected; }, 10000));
        const size_t at_reconnect = steps.size();
        // Meanwhile another client sees the run still going.
        {
            RemoteConnection other;
            QVERIFY(connect_ok(other, options(*worker_)));
            const json list = call(other, {{"type", "sessions"}});
            bool found = false;
            for (const json& e : list["sessions"])
                if (e["session"] == s.remote_id()) found = true;
            QVERIFY(found);
        }
        QVERIFY(QTest::qWaitFor([&] { return s.state() == SessionState::Finished; }, 120000));
        QVERIFY2(at_reconnect < 600, "the run ended before the client reconnected: not a mid-run reconnect");
        QCOMPARE(steps.size(), size_t(600));
        for (size_t i = 0; i < steps.size(); ++i) QCOMPARE(steps[i], int64_t(i + 1));
        QCOMPARE(s.gaps_filled(), 0);
    }

    // A client away for longer than the worker's backlog: the stream says "gap" and the
    // missing steps come from the run file, still each exactly once.
    void gap_filled_from_the_run_file() {
        Worker w;
        QVERIFY(w.start({"--backlog-events", "40"}));
        QTemporaryDir local;
        RemoteConnection c;
        QVERIFY(connect_ok(c, options(w)));
        std::vector<int64_t> steps;
        RemoteSession s(&c, [&](const SessionEvent& e) {
            if (e.kind == SessionEvent::Kind::Step) steps.push_back(e.step.step);
        });
        // Long enough that the client is surely away mid-run: a short run on a quiet machine can
        // reach the client in one read, leaving nothing to miss.
        const int64_t total = 1000;
        s.start(tiny(total), {local.filePath("g.h5").toStdString(), {}}, 1);
        QVERIFY(QTest::qWaitFor([&] { return steps.size() >= 5; }, 60000));
        c.close();
        QVERIFY2(steps.size() + 100 < size_t(total), "the run was nearly over before the client left");
        RemoteConnection other;
        QVERIFY(connect_ok(other, options(w)));
        QVERIFY(QTest::qWaitFor([&] {
            const json l = call(other, {{"type", "sessions"}});
            return !l["sessions"].empty() && l["sessions"][0]["state"] == "finished";
        }, 120000));
        QVERIFY(connect_ok(c, options(w)));
        QVERIFY(QTest::qWaitFor([&] { return s.state() == SessionState::Finished; }, 60000));
        QCOMPARE(s.gaps_filled(), 1);
        QCOMPARE(steps.size(), size_t(total));
        for (size_t i = 0; i < steps.size(); ++i) QCOMPARE(steps[i], int64_t(i + 1));
    }

    void attacks_are_rejected_and_the_worker_keeps_serving() {
        const quint16 port = worker_->port;
        {  // wrong token
            RemoteConnection c;
            QVERIFY(!connect_ok(c, options(*worker_, QByteArray(64, 'a'))));
            QVERIFY2(c.last_error().contains("auth_failed"), qPrintable(c.last_error()));
        }
        good_client_still_served();
        {  // no token: a request without any handshake
            Raw r;
            QVERIFY(r.open(port));
            r.send({{"type", "start"}, {"id", 1}});
            QCOMPARE(r.next()["code"].get<std::string>(), std::string("not_authenticated"));
            QVERIFY(r.closed_by_peer());
        }
        {  // auth without a proof
            Raw r;
            QVERIFY(r.open(port));
            r.send(ClientHandshake("x").hello());
            QCOMPARE(r.next()["type"].get<std::string>(), std::string("challenge"));
            r.send({{"type", "auth"}});
            QCOMPARE(r.next()["code"].get<std::string>(), std::string("auth_failed"));
        }
        {  // replayed handshake: a recorded good exchange sent again on a new connection
            Raw a;
            QVERIFY(a.open(port));
            ClientHandshake h(worker_->token);
            const json hello = h.hello();
            a.send(hello);
            const json auth = h.on_message(a.next()).replies.at(0);
            a.send(auth);
            QCOMPARE(a.next()["type"].get<std::string>(), std::string("welcome"));
            Raw b;
            QVERIFY(b.open(port));
            b.send(hello);
            QCOMPARE(b.next()["type"].get<std::string>(), std::string("challenge"));
            b.send(auth);
            QCOMPARE(b.next()["code"].get<std::string>(), std::string("auth_failed"));
        }
        {  // version mismatch
            Raw r;
            QVERIFY(r.open(port));
            json hello = ClientHandshake("x").hello();
            hello["protocol"] = 2;
            r.send(hello);
            QCOMPARE(r.next()["code"].get<std::string>(), std::string("version_mismatch"));
        }
        {  // a frame announcing 1 GiB: refused on its header
            Raw r;
            QVERIFY(r.open(port));
            QByteArray h("MOEW\x40\x00\x00\x00\x00\x00\x00\x00", 12);
            r.send_bytes(h);
            QCOMPARE(r.next()["code"].get<std::string>(), std::string("frame_too_large"));
            QVERIFY(r.closed_by_peer());
        }
        {  // 100 KiB before authenticating: over the pre-authentication limit
            Raw r;
            QVERIFY(r.open(port));
            json big{{"type", "hello"}, {"pad", std::string(100 << 10, 'x')}};
            r.send(big);
            QCOMPARE(r.next()["code"].get<std::string>(), std::string("frame_too_large"));
        }
        {  // random bytes
            Raw r;
            QVERIFY(r.open(port));
            QByteArray junk;
            for (int i = 0; i < 4096; ++i) junk.append(char((i * 7919) ^ (i >> 3)));
            r.send_bytes(junk);
            QCOMPARE(r.next()["code"].get<std::string>(), std::string("bad_magic"));
            QVERIFY(r.closed_by_peer());
        }
        {  // not JSON inside a well-formed frame
            Raw r;
            QVERIFY(r.open(port));
            const std::string f = encode_frame("{\"type\": nope");
            r.send_bytes(QByteArray(f.data(), qsizetype(f.size())));
            QCOMPARE(r.next()["code"].get<std::string>(), std::string("bad_json"));
        }
        {  // a truncated frame, then the client goes away
            Raw r;
            QVERIFY(r.open(port));
            const std::string f = encode_frame(ClientHandshake("x").hello().dump());
            r.send_bytes(QByteArray(f.data(), qsizetype(f.size() / 2)));
            r.s.disconnectFromHost();
        }
        good_client_still_served();

        // Path traversal, as an authenticated client.
        RemoteConnection c;
        QVERIFY(connect_ok(c, options(*worker_)));
        std::filesystem::create_symlink("/etc", std::filesystem::path(worker_->runs().toStdString()) / "etc-link");
        for (const char* bad : {"../token", "/etc/passwd", "a/../../token", "etc-link/passwd", "runs/../../token"}) {
            for (const char* type : {"download", "file_info"}) {
                const json r = call(c, {{"type", type}, {"path", bad}, {"offset", 0}});
                QVERIFY2(r["type"] == "error" && r["code"] == "path_outside_root", (std::string(bad) + " " + r.dump()).c_str());
            }
        }
        const json ckpt = call(c, {{"type", "inspect"}, {"checkpoint", "../"}, {"text", "x"}});
        QCOMPARE(ckpt["code"].get<std::string>(), std::string("path_outside_root"));
        const json quant = call(c, {{"type", "quantize"}, {"checkpoint", "/etc"}});
        QCOMPARE(quant["code"].get<std::string>(), std::string("path_outside_root"));
        const json resume = call(c, {{"type", "resume_from"}, {"checkpoint", "/tmp"}});
        QCOMPARE(resume["code"].get<std::string>(), std::string("path_outside_root"));
        const json neg = call(c, {{"type", "download"}, {"path", "x.h5"}, {"offset", -5}});
        QCOMPARE(neg["code"].get<std::string>(), std::string("bad_request"));
        const json huge = call(c, {{"type", "download"}, {"path", "x.h5"}, {"offset", 0}, {"length", 1 << 30}});
        QCOMPARE(huge["code"].get<std::string>(), std::string("bad_request"));
        json invalid = tiny(10).to_json();
        invalid["training"]["steps"] = -5;
        const json bad_project = call(c, {{"type", "start"}, {"project", invalid}});
        QCOMPARE(bad_project["code"].get<std::string>(), std::string("config_error"));
        QCOMPARE(bad_project["field"].get<std::string>(), std::string("training.steps"));
        QVERIFY(call(c, {{"type", "ping"}})["type"] == "result");
    }

    // A project's paths and sizes are held to the request rules; idle connections cannot lock a
    // real client out; a bad request ends only itself while another session keeps training.
    void hostile_projects_and_idle_connections() {
        namespace fs = std::filesystem;
        RemoteConnection c;
        QVERIFY(connect_ok(c, options(*worker_)));
        const json started = call(c, {{"type", "start"}, {"project", tiny(100000).to_json()}, {"name", "survivor"}});
        QVERIFY2(started["type"] == "result", started.dump().c_str());
        const int survivor = started["session"];
        auto steps_of = [&](int sid) -> int64_t {
            const json listed = call(c, {{"type", "sessions"}});  // kept alive for the loop
            for (const json& s : listed.value("sessions", json::array()))
                if (s["session"] == sid) return s["steps_done"];
            return -1;
        };

        // Training text outside the runs folder: absolute, "..", a symlink out.
        QTemporaryDir outside;
        const std::string secret = outside.filePath("secret.txt").toStdString();
        std::ofstream(secret) << "the worker must never read this\n";
        fs::create_symlink(outside.path().toStdString(), fs::path(worker_->runs().toStdString()) / "out-link");
        for (const std::string& path : {secret, std::string("../token"), std::string("out-link/secret.txt")}) {
            Project p = tiny(5);
            p.training.data = DataSpec::from_json(json{{"source", "text"}, {"path", path}});
            const json r = call(c, {{"type", "start"}, {"project", p.to_json()}});
            QVERIFY2(r["type"] == "error" && r["code"] == "path_outside_root", (path + ": " + r.dump()).c_str());
        }
        // Absurd sizes and thread counts: config_error naming the field.
        for (const auto& [field, where, value] :
             std::vector<std::tuple<std::string, std::string, int64_t>>{
                 {"hidden_size", "model", INT64_MAX},
                 {"training.threads", "threads", 100000},
                 {"training.batch_size", "batch_size", 1000000000}}) {
            json p = tiny(5).to_json();
            if (where == "model") p["model"]["hidden_size"] = value;
            else p["training"][where] = value;
            const json r = call(c, {{"type", "start"}, {"project", p}});
            QVERIFY2(r["code"] == "config_error" && r["field"] == field, r.dump().c_str());
        }
        json big = tiny(5).to_json();  // fits every bound, not the machine
        big["training"]["batch_size"] = 1 << 20;
        big["training"]["seq_len"] = 256;
        const json too_big = call(c, {{"type", "start"}, {"project", big}});
        QVERIFY2(too_big["code"] == "config_error" && too_big["field"] == "training.batch_size" &&
                     too_big["message"].get<std::string>().find("available on this machine") != std::string::npos,
                 too_big.dump().c_str());
        {  // a message nested 100,000 levels deep, from an authenticated peer
            Raw a;
            QVERIFY(a.open(worker_->port));
            ClientHandshake h(worker_->token);
            a.send(h.hello());
            a.send(h.on_message(a.next()).replies.at(0));
            QCOMPARE(a.next()["type"].get<std::string>(), std::string("welcome"));
            a.next();  // devices
            const std::string body = R"({"type": "ping", "id": 1, "x": )" + std::string(100000, '[') +
                                     std::string(100000, ']') + "}";
            const std::string f = encode_frame(body);
            a.send_bytes(QByteArray(f.data(), qsizetype(f.size())));
            const json r = a.next();
            QVERIFY2(r["code"] == "bad_json" && r["message"].get<std::string>().find("nested deeper") != std::string::npos,
                     r.dump().c_str());
        }
        // Text inside the runs folder is fine (relative to it).
        std::ofstream(worker_->runs().toStdString() + "/corpus.txt") << "a small corpus\n\nof two documents\n";
        Project inside = tiny(5);
        inside.training.data = DataSpec::from_json(json{{"source", "text"}, {"path", "corpus.txt"}});
        const json ok = call(c, {{"type", "start"}, {"project", inside.to_json()}});
        QVERIFY2(ok["type"] == "result", ok.dump().c_str());
        call(c, {{"type", "command"}, {"session", ok["session"]}, {"command", "stop"}});

        // 70 idle connections from this address: the worker stays open to a real client.
        std::vector<std::unique_ptr<Raw>> idle;
        for (int i = 0; i < 70; ++i) {
            idle.push_back(std::make_unique<Raw>());
            QVERIFY(idle.back()->open(worker_->port));
        }
        QTest::qWait(200);
        good_client_still_served();
        int closed = 0;
        for (auto& r : idle) closed += r->closed_by_peer(50);
        QVERIFY2(closed >= 70 - 4, qPrintable(QString("only %1 idle connections closed").arg(closed)));

        // The survivor trained through all of it.
        const int64_t before = steps_of(survivor);
        QVERIFY(before > 0);
        QVERIFY2(QTest::qWaitFor([&] { return steps_of(survivor) > before; }, 30000),
                 (call(c, {{"type", "sessions"}}).dump() + "\n" + worker_->proc.readAll().toStdString()).c_str());
        QCOMPARE(call(c, {{"type", "command"}, {"session", survivor}, {"command", "stop"}})["type"].get<std::string>(),
                 std::string("result"));
    }

    void twenty_clients_watch_one_run() {
        RemoteConnection owner;
        QVERIFY(connect_ok(owner, options(*worker_)));
        const json started = call(owner, {{"type", "start"}, {"project", tiny(40).to_json()}, {"threads", 1}, {"name", "watched"}});
        QVERIFY2(started["type"] == "result", started.dump().c_str());
        const int sid = started["session"];
        std::vector<std::unique_ptr<RemoteConnection>> clients;
        std::vector<std::vector<int64_t>> seen(20);
        for (int i = 0; i < 20; ++i) {
            clients.push_back(std::make_unique<RemoteConnection>());
            RemoteConnection* c = clients.back().get();
            QObject::connect(c, &RemoteConnection::message, c, [&seen, i, sid](const json& m) {
                if (m.value("type", "") == "event" && m["session"] == sid) seen[size_t(i)].push_back(m["seq"]);
            });
            QVERIFY(connect_ok(*c, options(*worker_)));
            QVERIFY(call(*c, {{"type", "subscribe"}, {"session", sid}, {"from_seq", 0}})["type"] == "result");
        }
        QVERIFY(QTest::qWaitFor([&] {
            const json l = call(owner, {{"type", "sessions"}});
            for (const json& e : l["sessions"])
                if (e["session"] == sid) return e["state"] == "finished";
            return false;
        }, 120000));
        QTest::qWait(300);
        const json l = call(owner, {{"type", "sessions"}});
        int64_t total = 0;
        for (const json& e : l["sessions"])
            if (e["session"] == sid) total = e["next_seq"];
        for (const auto& s : seen) {
            QCOMPARE(int64_t(s.size()), total);
            for (size_t k = 0; k < s.size(); ++k) QCOMPARE(s[k], int64_t(k));
        }
    }

    // TLS with a certificate the user provides: the fingerprint the worker prints is the one the
    // client is asked to trust; a pinned but different fingerprint is refused.
    void tls_with_pinned_fingerprint() {
        if (QStandardPaths::findExecutable("openssl").isEmpty()) QSKIP("no openssl command to make a certificate");
        Worker w;
        const QString cert = w.dir.filePath("cert.pem"), key = w.dir.filePath("key.pem");
        QCOMPARE(QProcess::execute("openssl", {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                               "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=moe-worker"}), 0);
        QVERIFY(w.start({"--tls-cert", cert, "--tls-key", key}));
        RemoteConnection::Options o = options(w);
        o.tls = true;
        QString asked;
        RemoteConnection c;
        c.confirm_fingerprint = [&](const QString& fp) {
            asked = fp;
            return true;
        };
        QVERIFY2(connect_ok(c, o), qPrintable(c.last_error()));
        QCOMPARE(asked.count(':'), 31);  // SHA-256, hex pairs
        QVERIFY(call(c, {{"type", "ping"}})["type"] == "result");
        // Pinned: connects without asking.
        RemoteConnection again;
        o.trusted_fingerprint = asked;
        QVERIFY(connect_ok(again, o));
        // A different pinned fingerprint: refused, with both named.
        RemoteConnection other;
        o.trusted_fingerprint = QString(asked).replace(0, 2, asked.startsWith("00") ? "11" : "00");
        QVERIFY(!connect_ok(other, o));
        QVERIFY2(other.last_error().contains("certificate changed"), qPrintable(other.last_error()));
        // A plain-TCP client gets nowhere on the TLS port.
        RemoteConnection plain;
        o.tls = false;
        o.reconnect = false;
        QVERIFY(!connect_ok(plain, o));
    }

    void worker_killed_mid_run_leaves_a_readable_file() {
        Worker w;
        QVERIFY(w.start());
        RemoteConnection c;
        QVERIFY(connect_ok(c, options(w)));
        const json started = call(c, {{"type", "start"}, {"project", tiny(2000).to_json()}, {"threads", 1}, {"name", "killed"}});
        QVERIFY2(started["type"] == "result", started.dump().c_str());
        QVERIFY(call(c, {{"type", "subscribe"}, {"session", started["session"]}})["type"] == "result");
        int steps = 0;
        QObject::connect(&c, &RemoteConnection::message, &c, [&](const json& m) {
            if (m["type"] == "event" && m["event"]["kind"] == "step") ++steps;
        });
        QVERIFY(QTest::qWaitFor([&] { return steps >= 25; }, 60000));
        w.proc.kill();
        QVERIFY(w.proc.waitForFinished(10000));
        QVERIFY(QTest::qWaitFor([&] { return c.state() != RemoteConnection::State::Connected; }, 5000));
        c.close();
        RunReader r(QDir(w.runs()).filePath(QString::fromStdString(started["run_file"].get<std::string>())).toStdString());
        QVERIFY2(r.metrics_count() >= 1, "no metrics row survived the kill");
        QCOMPARE(r.header().name, std::string("remote-test"));
    }
};

QTEST_GUILESS_MAIN(TestRemoteWorker)
#include "tst_remote_worker.moc"
