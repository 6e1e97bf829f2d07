// Load test of moe-worker (docs/performance.md): training throughput of the tiny preset with
// no watching client versus N clients subscribed to the same run's event stream.
//   moe-bench-remote [--clients 20] [--steps 300] [--threads 1] [--rounds 2]
// Each round trains the same run twice on a fresh worker session, once watched only by the
// client that started it and once by N more, alternating the order; throughput is training
// tokens per second between step 20 and the last step, from the arrival times of the step
// events at the owner (the same lag at both ends) and from the trainer's own figures.
#include <QCoreApplication>
#include <QElapsedTimer>
#include <QProcess>
#include <QRegularExpression>
#include <QTemporaryDir>
#include <QTimer>

#include <algorithm>
#include <cstdio>
#include <memory>

#include <CLI/CLI.hpp>

#include "remote_connection.h"
#include "store/project.h"

using moe::remote::RemoteConnection;
using nlohmann::json;

namespace {

bool wait_until(const std::function<bool()>& done, int ms) {
    QElapsedTimer t;
    t.start();
    while (!done() && t.elapsed() < ms) QCoreApplication::processEvents(QEventLoop::AllEvents, 20);
    return done();
}

json call(RemoteConnection& c, json m) {
    json out;
    bool done = false;
    c.request(std::move(m), [&](const json& r, const QByteArray&) {
        out = r;
        done = true;
    });
    wait_until([&] { return done; }, 30000);
    return out;
}

struct Result {
    double wall_tok_s = 0, trainer_tok_s = 0;
    int64_t events_per_client = 0;
};

}  // namespace

int main(int argc, char** argv) {
    QCoreApplication app(argc, argv);
    CLI::App cli{"moe-worker load test"};
    int clients = 20, steps = 300, threads = 1, rounds = 2;
    cli.add_option("--clients", clients);
    cli.add_option("--steps", steps);
    cli.add_option("--threads", threads);
    cli.add_option("--rounds", rounds);
    CLI11_PARSE(cli, argc, argv);

    QTemporaryDir dir;
    QProcess worker;
    worker.setProcessChannelMode(QProcess::MergedChannels);
    worker.start(MOE_WORKER_EXE, {"--port", "0", "--runs-dir", dir.filePath("runs"), "--token-file", dir.filePath("token")});
    quint16 port = 0;
    QByteArray out;
    wait_until([&] {
        out += worker.readAll();
        const auto m = QRegularExpression("listening on 127\\.0\\.0\\.1:(\\d+)").match(QString::fromUtf8(out));
        if (m.hasMatch()) port = quint16(m.captured(1).toUInt());
        return port != 0;
    }, 30000);
    if (!port) {
        std::fprintf(stderr, "worker did not start: %s\n", out.constData());
        return 1;
    }
    QFile tf(dir.filePath("token"));
    tf.open(QIODevice::ReadOnly);
    RemoteConnection::Options o;
    o.port = port;
    o.token = tf.readAll().trimmed();

    moe::Project p = moe::Project::load(std::string(MOE_SOURCE_DIR) + "/projects/tiny-tasks.json");
    p.training.steps = steps;
    p.training.threads = threads;
    p.training.checkpoint_every = 0;

    auto run_once = [&](int watchers) {
        RemoteConnection owner;
        owner.open(o);
        wait_until([&] { return owner.state() == RemoteConnection::State::Connected; }, 10000);
        std::vector<std::unique_ptr<RemoteConnection>> cs;
        std::vector<int64_t> counts(size_t(watchers), 0);
        for (int i = 0; i < watchers; ++i) {
            cs.push_back(std::make_unique<RemoteConnection>());
            cs.back()->open(o);
        }
        wait_until([&] {
            return std::all_of(cs.begin(), cs.end(), [](auto& c) { return c->state() == RemoteConnection::State::Connected; });
        }, 20000);
        const json started = call(owner, {{"type", "start"}, {"project", p.to_json()}, {"threads", threads}, {"name", "load"}});
        const int sid = started.value("session", 0);
        for (int i = 0; i < watchers; ++i) {
            QObject::connect(cs[size_t(i)].get(), &RemoteConnection::message, &app, [&counts, i](const json& m) {
                if (m.value("type", "") == "event") ++counts[size_t(i)];
            });
            call(*cs[size_t(i)], {{"type", "subscribe"}, {"session", sid}});
        }
        QElapsedTimer clock;
        clock.start();
        double t20 = 0, tlast = 0;
        int64_t tok20 = 0, toklast = 0;
        std::vector<double> rates;
        bool finished = false;
        QObject::connect(&owner, &RemoteConnection::message, &app, [&](const json& m) {
            if (m.value("type", "") != "event" || m.value("session", 0) != sid) return;
            const json& e = m["event"];
            if (e["kind"] == "step") {
                const int64_t s = e["step"]["step"];
                if (s == 20) t20 = clock.nsecsElapsed() / 1e9, tok20 = e["step"]["tokens"];
                if (s > 20) {
                    tlast = clock.nsecsElapsed() / 1e9, toklast = e["step"]["tokens"];
                    if (e["step"]["tokens_per_s"].is_number()) rates.push_back(e["step"]["tokens_per_s"]);
                }
            }
            if (e["kind"] == "state" && (e["state"] == "finished" || e["state"] == "failed")) finished = true;
        });
        call(owner, {{"type", "subscribe"}, {"session", sid}});
        wait_until([&] { return finished; }, 3600 * 1000);
        wait_until([] { return false; }, 300);
        Result r;
        r.wall_tok_s = tlast > t20 ? double(toklast - tok20) / (tlast - t20) : 0;
        std::sort(rates.begin(), rates.end());
        r.trainer_tok_s = rates.empty() ? 0 : rates[rates.size() / 2];
        r.events_per_client = watchers ? *std::min_element(counts.begin(), counts.end()) : 0;
        return r;
    };

    std::printf("moe-worker load test: tiny-tasks, %d steps, %d training thread(s), %d watching clients\n", steps,
                threads, clients);
    std::vector<double> base, loaded;
    for (int r = 0; r < rounds; ++r) {
        for (int k = 0; k < 2; ++k) {
            const bool with = (k == 0) == (r % 2 == 1);
            const Result res = run_once(with ? clients : 0);
            std::printf("  round %d, %2d clients: %8.0f tokens/s (event arrival), trainer median %8.0f tokens/s%s\n", r + 1,
                        with ? clients : 0, res.wall_tok_s, res.trainer_tok_s,
                        with ? qPrintable(QString(", each client got %1 events").arg(res.events_per_client)) : "");
            std::fflush(stdout);
            (with ? loaded : base).push_back(res.wall_tok_s);
        }
    }
    auto mean = [](const std::vector<double>& v) {
        double s = 0;
        for (double x : v) s += x;
        return v.empty() ? 0 : s / double(v.size());
    };
    const double b = mean(base), l = mean(loaded);
    std::printf("mean: %.0f tokens/s without clients, %.0f with %d clients: %+.1f%%\n", b, l, clients,
                b > 0 ? 100.0 * (l - b) / b : 0.0);
    worker.terminate();
    worker.waitForFinished(20000);
    return 0;
}
