// moe-worker: the engine as a headless server, for a GPU machine driven from the workbench.
//   moe-worker [--host 127.0.0.1] [--port 7070] [--runs-dir DIR] [--token-file FILE]
//              [--tls-cert CERT --tls-key KEY | --tls-generate] [--allow-remote]
// Listens on 127.0.0.1 unless told otherwise; every client proves it knows the token
// (challenge-response, docs/remote-protocol.md). Ctrl-C stops every run cleanly.
#include <QCoreApplication>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QHostAddress>
#include <QProcess>
#include <QStandardPaths>
#include <QTimer>

#include <csignal>
#include <cstdio>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "auth.h"
#include "backend_factory.h"
#include "openmp_wait_policy.h"
#include "worker/worker_server.h"

namespace {

volatile std::sig_atomic_t g_quit = 0;
void on_signal(int) { g_quit = 1; }

QString config_dir() {
    return QDir(QStandardPaths::writableLocation(QStandardPaths::GenericConfigLocation)).filePath("moe-workbench");
}

// A self-signed certificate for `host` with the openssl command (Qt cannot make one).
bool generate_certificate(const QString& cert, const QString& key, const QString& host, QString* error) {
    QDir().mkpath(QFileInfo(cert).absolutePath());
    QProcess p;
    QStringList args{"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-keyout", key, "-out", cert, "-days", "3650", "-subj", "/CN=moe-worker",
                     "-addext", "subjectAltName=IP:" + host + ",DNS:localhost"};
    p.start("openssl", args);
    if (!p.waitForFinished(60000) || p.exitStatus() != QProcess::NormalExit || p.exitCode() != 0) {
        *error = "openssl could not make a certificate (is the openssl package installed?): " +
                 QString::fromLocal8Bit(p.readAllStandardError()).trimmed();
        return false;
    }
    QFile::setPermissions(key, QFile::ReadOwner | QFile::WriteOwner);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    moe::app::ensure_passive_openmp_waits(argv);
    moe::app::install_backend_factory();  // sessions may train on cuda:N
    QCoreApplication app(argc, argv);
    QCoreApplication::setApplicationName("moe-worker");

    CLI::App cli{"moe-worker: the MoE Workbench engine as a server (docs/remote-protocol.md)"};
    std::string host = "127.0.0.1", runs_dir, token_file, tls_cert, tls_key;
    int port = 7070, threads = 0;
    bool allow_remote = false, tls_generate = false, print_token = false;
    uint32_t max_frame_mib = 16;
    cli.add_option("--host", host, "address to listen on (default 127.0.0.1: this machine only)");
    cli.add_option("--port", port, "TCP port (0: any free port, printed)")->check(CLI::Range(0, 65535));
    cli.add_option("--runs-dir", runs_dir, "folder of run files and checkpoints (default ~/moe-worker-runs)");
    cli.add_option("--token-file", token_file, "token file (default ~/.config/moe-workbench/worker-token)");
    cli.add_option("--tls-cert", tls_cert, "PEM certificate: serve TLS");
    cli.add_option("--tls-key", tls_key, "PEM private key of --tls-cert");
    cli.add_flag("--tls-generate", tls_generate,
                 "serve TLS with a self-signed certificate kept in ~/.config/moe-workbench (made once with openssl)");
    cli.add_flag("--allow-remote", allow_remote, "allow --host to be an address other machines can reach");
    cli.add_flag("--print-token", print_token, "print the token and exit");
    cli.add_option("--max-frame-mib", max_frame_mib, "largest protocol frame accepted, MiB")->check(CLI::Range(1, 1024));
    cli.add_option("--threads", threads, "default CPU threads of a run (0: the project's)")
        ->check(CLI::Range(0, int(moe::kMaxThreads)));
    std::string data_dir;
    cli.add_option("--data-dir", data_dir,
                   "folder of training text that projects may name in training.data.path "
                   "(default: only the runs folder)");
    int loaded_models = 1, model_threads = 2;
    cli.add_option("--loaded-models", loaded_models,
                   "checkpoints kept loaded between inspect and generate requests (memory!)")
        ->check(CLI::Range(1, 64));
    cli.add_option("--model-jobs", model_threads, "inspect / quantize / generate requests run at once (more wait)")
        ->check(CLI::Range(1, 64));
    size_t backlog = 20000;
    cli.add_option("--backlog-events", backlog, "events kept per run for clients that reconnect")->check(CLI::Range(16, 10000000));
    try {
        cli.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return cli.exit(e);
    }

    const QString qtoken_file = token_file.empty() ? moe::remote::default_token_path() : QString::fromStdString(token_file);
    QByteArray token;
    bool created = false;
    try {
        token = moe::remote::load_or_create_token(qtoken_file, &created);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "moe-worker: %s\n", e.what());
        return 2;
    }
    if (print_token) {
        std::printf("%s\n", token.constData());
        return 0;
    }

    QHostAddress address;
    if (!address.setAddress(QString::fromStdString(host))) {
        std::fprintf(stderr, "moe-worker: --host %s is not an IP address\n", host.c_str());
        return 2;
    }
    if (!address.isLoopback() && !allow_remote) {
        std::fprintf(stderr,
                     "moe-worker: --host %s can be reached from other machines; add --allow-remote to mean it "
                     "(or keep 127.0.0.1 and use an SSH tunnel)\n", host.c_str());
        return 2;
    }
    if (tls_cert.empty() != tls_key.empty()) {
        std::fprintf(stderr, "moe-worker: --tls-cert and --tls-key go together\n");
        return 2;
    }
    if (tls_generate && tls_cert.empty()) {
        tls_cert = (config_dir() + "/worker-cert.pem").toStdString();
        tls_key = (config_dir() + "/worker-key.pem").toStdString();
        if (!QFileInfo::exists(QString::fromStdString(tls_cert))) {
            QString error;
            if (!generate_certificate(QString::fromStdString(tls_cert), QString::fromStdString(tls_key),
                                      QString::fromStdString(host), &error)) {
                std::fprintf(stderr, "moe-worker: %s\n", error.toLocal8Bit().constData());
                return 2;
            }
            std::printf("moe-worker: made a self-signed certificate %s\n", tls_cert.c_str());
        }
    }

    moe::worker::WorkerOptions o;
    o.host = QString::fromStdString(host);
    o.port = quint16(port);
    o.runs_dir = runs_dir.empty() ? QDir::home().filePath("moe-worker-runs") : QString::fromStdString(runs_dir);
    o.token = token;
    o.tls_cert = QString::fromStdString(tls_cert);
    o.tls_key = QString::fromStdString(tls_key);
    o.max_frame = max_frame_mib << 20;
    o.threads = threads;
    o.loaded_models = loaded_models;
    o.model_threads = model_threads;
    if (!data_dir.empty()) {
        const QFileInfo d(QString::fromStdString(data_dir));
        if (!d.isDir()) {
            std::fprintf(stderr, "moe-worker: --data-dir %s is not a folder\n", data_dir.c_str());
            return 2;
        }
        o.data_dir = d.canonicalFilePath();
    }
    o.backlog_events = backlog;
    if (!QDir().mkpath(o.runs_dir)) {
        std::fprintf(stderr, "moe-worker: cannot create runs folder %s\n", o.runs_dir.toLocal8Bit().constData());
        return 2;
    }
    moe::worker::WorkerServer server(o);
    QString error;
    if (!server.listen(&error)) {
        std::fprintf(stderr, "moe-worker: %s\n", error.toLocal8Bit().constData());
        return 2;
    }
    if (!address.isLoopback() && !server.tls())
        std::fprintf(stderr,
                     "moe-worker: WARNING: listening on %s without TLS: the token is never sent, but everything "
                     "else (projects, metrics, files) crosses the network in clear. Use --tls-generate or an SSH tunnel.\n",
                     host.c_str());
    // "listening on HOST:PORT" is what scripts and tests wait for.
    std::printf("moe-worker %s listening on %s:%u (%s), runs in %s\n", MOE_VERSION, host.c_str(), unsigned(server.port()),
                server.tls() ? "TLS" : "plain TCP", server.options().runs_dir.toLocal8Bit().constData());
    if (server.tls()) std::printf("TLS certificate SHA-256 fingerprint: %s\n", server.tls_fingerprint().toLatin1().constData());
    if (created)
        std::printf("A token was generated and saved to %s (owner-only). It is shown only now:\n\n"
                    "    %s\n\n    moe://%s:%u/?token=%s\n\n",
                    qtoken_file.toLocal8Bit().constData(), token.constData(), host.c_str(), unsigned(server.port()),
                    token.constData());
    else
        std::printf("Token: in %s (moe-worker --print-token shows it)\n", qtoken_file.toLocal8Bit().constData());
    std::fflush(stdout);

    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    QTimer quit_poll;
    QObject::connect(&quit_poll, &QTimer::timeout, &app, [&] {
        if (g_quit) {
            std::printf("moe-worker: stopping (runs are checkpointed and closed)\n");
            std::fflush(stdout);
            app.quit();
        }
    });
    quit_poll.start(200);
    return app.exec();
}
