#include "worker/worker_server.h"

#include <QCoreApplication>
#include <QCryptographicHash>
#include <QDir>
#include <QDirIterator>
#include <QFile>
#include <QFileInfo>
#include <QHostAddress>
#include <QSslConfiguration>
#include <QSslServer>
#include <QSslSocket>
#include <QStandardPaths>
#include <QThread>
#include <QThreadPool>

#include <filesystem>

#include <spdlog/spdlog.h>

#include "backend_factory.h"
#include "core/device.h"
#include "core/driver_gpus.h"
#include "auth.h"
#include "core/error.h"
#include "framed_socket.h"
#include "inspect/checkpoint_inspector.h"
#include "inspect/weight_quantization.h"
#include "messages.h"
#include "worker/generation_job.h"
#include "worker/process_session.h"
#include "parallel/parallel_layout.h"
#include "session_codec.h"
#include "store/project.h"
#include "core/allocator.h"
#include "train/memory_plan.h"
#include "train/training_checkpoint.h"

namespace moe::worker {

using nlohmann::json;
using remote::ProtocolError;

namespace {

std::string str(const QString& s) { return s.toStdString(); }
QString qs(const std::string& s) { return QString::fromStdString(s); }

// Run names become file names: letters, digits, '-', '_', '.'; nothing else, no leading dot.
QString safe_name(const std::string& name) {
    QString out;
    for (QChar c : QString::fromStdString(name).left(80))
        out += (c.isLetterOrNumber() && c.unicode() < 128) || c == '-' || c == '_' || c == '.' ? c : QChar('_');
    while (out.startsWith('.')) out.remove(0, 1);
    return out.isEmpty() ? QString("run") : out;
}

QStringList nvidia_gpus() {
    QStringList out;
    for (const std::string& gpu : moe::driver_gpus()) out << QString::fromStdString(gpu);
    return out;
}

}  // namespace

// ---------------------------------------------------------------- WorkerSession

WorkerSession::WorkerSession(WorkerServer* server, int id, QString run_rel, QString run_abs,
                             std::unique_ptr<moe::Session> session)
    : server_(server),
      id_(id),
      run_rel_(std::move(run_rel)),
      run_abs_(std::move(run_abs)),
      session_(session ? std::move(session) : std::make_unique<moe::LocalSession>()) {
    session_->set_listener([this](const moe::SessionEvent& e) { on_event(e); });
}

WorkerSession::~WorkerSession() {
    session_->stop();
    session_.reset();  // joins the engine thread (or ends the job) while this object is whole
    // ~LocalSession joins; events after this point go nowhere.
}

void WorkerSession::on_event(const moe::SessionEvent& e) {
    // Engine thread: no socket, no Qt object of the server; a queue and one posted wake-up.
    if (e.kind == moe::SessionEvent::Kind::Step && snapshot_wanted_.exchange(false)) take_snapshot();
    {
        std::lock_guard lock(mutex_);
        incoming_.push_back(e);
    }
    if (!wake_posted_.exchange(true))
        QMetaObject::invokeMethod(server_, "pump_session", Qt::QueuedConnection, Q_ARG(int, id_));
}

bool WorkerSession::drain() {
    std::deque<moe::SessionEvent> events;
    wake_posted_ = false;
    {
        std::lock_guard lock(mutex_);
        events.swap(incoming_);
    }
    const size_t cap = std::max<size_t>(16, server_->options().backlog_events);
    for (const moe::SessionEvent& e : events) {
        json m{{"type", "event"}, {"session", id_}, {"seq", next_seq()}, {"event", remote::to_json(e)}};
        const std::string f = remote::encode_frame(m.dump(-1, ' ', false, json::error_handler_t::replace), {},
                                                   remote::kDefaultMaxFrame * 4);
        backlog_.push_back(QByteArray(f.data(), qsizetype(f.size())));
        while (backlog_.size() > cap) {
            backlog_.pop_front();
            ++first_seq_;
        }
    }
    return !events.empty();
}

void WorkerSession::request_snapshot(std::function<void(QString, QString)> done) {
    {
        std::lock_guard lock(snapshot_mutex_);
        snapshot_waiters_.push_back(std::move(done));
    }
    if (session_->state() == moe::SessionState::Running) {
        snapshot_wanted_ = true;  // taken after the next step, on the engine thread
        // The run may finish before another step: check again shortly.
        QTimer::singleShot(2000, server_, [this, id = id_, srv = QPointer<WorkerServer>(server_)] {
            if (!srv || !srv->session(id)) return;
            if (session_->state() != moe::SessionState::Running && snapshot_wanted_.exchange(false)) take_snapshot();
        });
    } else {
        take_snapshot();  // paused, finished or failed: nothing is being written
    }
}

void WorkerSession::take_snapshot() {
    namespace fs = std::filesystem;
    std::vector<std::function<void(QString, QString)>> waiters;
    int n = 0;
    {
        std::lock_guard lock(snapshot_mutex_);
        waiters.swap(snapshot_waiters_);
        n = ++snapshot_counter_;
    }
    if (waiters.empty()) return;
    QString rel = QString(".snapshots/session-%1-%2.h5").arg(id_).arg(n);
    QString error;
    try {
        const fs::path root = server_->options().runs_dir.toStdString();
        fs::create_directories(root / ".snapshots");
        // Older snapshots of this session go: one per session is enough.
        for (const auto& entry : fs::directory_iterator(root / ".snapshots"))
            if (entry.path().filename().string().rfind("session-" + std::to_string(id_) + "-", 0) == 0)
                fs::remove(entry.path());
        fs::copy_file(run_abs_.toStdString(), root / rel.toStdString(), fs::copy_options::overwrite_existing);
    } catch (const std::exception& e) {
        error = QString("snapshot of %1 failed: %2").arg(run_rel_, QString::fromUtf8(e.what()));
        rel.clear();
    }
    QMetaObject::invokeMethod(server_, [waiters, rel, error] {
        for (const auto& w : waiters) w(rel, error);
    }, Qt::QueuedConnection);
}

// ---------------------------------------------------------------- WorkerServer

WorkerServer::WorkerServer(WorkerOptions options, QObject* parent)
    : QObject(parent),
      options_(std::move(options)),
      inspectors_(size_t(std::max(options_.loaded_models, 1)), options_.threads) {
    model_pool_.setMaxThreadCount(std::max(options_.model_threads, 1));
    QDir().mkpath(options_.runs_dir);
    options_.runs_dir = QFileInfo(options_.runs_dir).canonicalFilePath();
}

WorkerServer::~WorkerServer() {
    for (ClientConnection* c : connections_) {
        c->cancel_generations();
        c->deleteLater();
    }
    model_pool_.waitForDone();  // its jobs use inspectors_
    // Each session's destructor stops its run cleanly (checkpoint, closed run file).
    sessions_.clear();
}

bool WorkerServer::listen(QString* error) {
    QHostAddress address;
    if (!address.setAddress(options_.host)) {
        if (error) *error = QString("cannot listen on host \"%1\": not an IP address").arg(options_.host);
        return false;
    }
    if (tls()) {
        if (!QSslSocket::supportsSsl()) {
            if (error) *error = "TLS requested but this Qt has no working TLS backend (install libssl3)";
            return false;
        }
        QFile cf(options_.tls_cert), kf(options_.tls_key);
        if (!cf.open(QIODevice::ReadOnly)) {
            if (error) *error = QString("cannot read TLS certificate %1: %2").arg(options_.tls_cert, cf.errorString());
            return false;
        }
        if (!kf.open(QIODevice::ReadOnly)) {
            if (error) *error = QString("cannot read TLS key %1: %2").arg(options_.tls_key, kf.errorString());
            return false;
        }
        cert_ = QSslCertificate(&cf, QSsl::Pem);
        const QByteArray key_pem = kf.readAll();
        for (QSsl::KeyAlgorithm alg : {QSsl::Ec, QSsl::Rsa, QSsl::Dsa}) {
            key_ = QSslKey(key_pem, alg, QSsl::Pem);
            if (!key_.isNull()) break;
        }
        if (cert_.isNull()) {
            if (error) *error = QString("%1 is not a PEM certificate").arg(options_.tls_cert);
            return false;
        }
        if (key_.isNull()) {
            if (error) *error = QString("%1 is not an unencrypted PEM private key (EC, RSA or DSA)").arg(options_.tls_key);
            return false;
        }
        auto* ssl = new QSslServer(this);
        QSslConfiguration conf = QSslConfiguration::defaultConfiguration();
        conf.setLocalCertificate(cert_);
        conf.setPrivateKey(key_);
        conf.setPeerVerifyMode(QSslSocket::VerifyNone);
        conf.setProtocol(QSsl::TlsV1_2OrLater);
        ssl->setSslConfiguration(conf);
        connect(ssl, &QSslServer::errorOccurred, this, [](QSslSocket* s, QAbstractSocket::SocketError) {
            spdlog::warn("TLS connection from {} failed: {}", s->peerAddress().toString().toStdString(),
                         s->errorString().toStdString());
        });
        server_ = ssl;
    } else {
        server_ = new QTcpServer(this);
    }
    server_->setMaxPendingConnections(options_.max_connections);
    if (!server_->listen(address, options_.port)) {
        if (error)
            *error = QString("cannot listen on %1:%2: %3").arg(options_.host).arg(options_.port).arg(server_->errorString());
        return false;
    }
    // QSslServer emits pendingConnectionAvailable once the TLS handshake is done.
    connect(server_, &QTcpServer::pendingConnectionAvailable, this, [this] {
        while (server_->hasPendingConnections()) accept(server_->nextPendingConnection());
    });
    return true;
}

quint16 WorkerServer::port() const { return server_ ? server_->serverPort() : 0; }

QString WorkerServer::tls_fingerprint() const {
    if (cert_.isNull()) return {};
    return QString::fromLatin1(cert_.digest(QCryptographicHash::Sha256).toHex(':'));
}

json WorkerServer::devices() const {
    json out = json::array();
    const int cores = QThread::idealThreadCount();
    out.push_back({{"id", "cpu"}, {"kind", "cpu"}, {"name", "CPU (" + std::to_string(cores) + " threads)"},
                   {"threads", cores}, {"available", true}});
    std::string problem;
    const std::vector<moe::app::DeviceChoice> devices = moe::app::available_devices(&problem);
    for (size_t k = 1; k < devices.size(); ++k)  // [0] is the CPU
        out.push_back({{"id", devices[k].id}, {"kind", "gpu"}, {"name", devices[k].label},
                       {"available", true}});
    if (devices.size() == 1) {  // no usable GPU: list what the driver reports, and why not
        int i = 0;
        for (const QString& g : nvidia_gpus())
            out.push_back({{"id", "cuda:" + std::to_string(i++)}, {"kind", "gpu"}, {"name", str(g)},
                           {"available", false}, {"reason", problem}});
    }
    return out;
}

std::string WorkerServer::confine_data_path(const std::string& path) const {
    namespace fs = std::filesystem;
    std::vector<std::pair<QString, const char*>> roots;
    if (!options_.data_dir.isEmpty()) roots.push_back({options_.data_dir, "data folder"});
    roots.push_back({options_.runs_dir, "runs folder"});
    const bool absolute = !path.empty() && path.front() == '/';
    std::string last_error;
    for (const auto& [root, what] : roots) {
        std::error_code ec;
        const fs::path real_root = fs::canonical(root.toStdString(), ec);
        if (ec) continue;
        try {
            if (!absolute) return remote::resolve_inside(real_root, path).string();
            // An absolute path is fine when it resolves (links included) inside the root.
            const fs::path real = fs::weakly_canonical(path, ec);
            if (ec) continue;
            const std::string r = real_root.string(), p = real.string();
            if (p == r || (p.size() > r.size() && p.compare(0, r.size(), r) == 0 && p[r.size()] == '/'))
                return p;
        } catch (const ProtocolError& e) {
            last_error = e.what();
        }
    }
    std::string allowed = "the runs folder";
    if (!options_.data_dir.isEmpty()) allowed = "the data folder or the runs folder";
    throw ProtocolError("path_outside_root",
                        "training.data.path \"" + path.substr(0, 200) + "\" is not inside " + allowed +
                            " of this worker" + (last_error.empty() ? std::string() : " (" + last_error + ")") +
                            "; the worker reads training text only from there (moe-worker --data-dir)");
}

WorkerSession* WorkerServer::session(int id) const {
    auto it = sessions_.find(id);
    return it == sessions_.end() ? nullptr : it->second.get();
}

json WorkerServer::session_info(WorkerSession& s) const {
    return {{"session", s.id()}, {"state", moe::to_string(s.session().state())}, {"run_file", str(s.run_rel())},
            {"steps_done", s.session().steps_done()}, {"first_seq", s.first_seq()}, {"next_seq", s.next_seq()}};
}

void WorkerServer::accept(QTcpSocket* socket) {
    const QString peer = socket->peerAddress().toString();
    // One address may hold only a few unfinished handshakes, and a full worker makes room by
    // closing the oldest connection that has not authenticated: idle connections (from one peer
    // or many) never lock real clients out until the handshake timeout. A real client completes
    // its handshake in milliseconds, long before it could be the oldest.
    auto close_oldest_pending = [this](const QString* from) {
        for (ClientConnection* c : connections_)
            if (!c->authenticated() && (!from || c->peer() == *from)) {
                spdlog::warn("closing an unauthenticated connection from {} to make room",
                             c->peer().toStdString());
                c->close_with_error("too_many_connections",
                                    "closed to make room: authenticate sooner");
                return;
            }
    };
    int pending_from_peer = 0;
    for (ClientConnection* c : connections_)
        if (!c->authenticated() && c->peer() == peer) ++pending_from_peer;
    if (pending_from_peer >= options_.max_unauthenticated_per_address) close_oldest_pending(&peer);
    if (int(connections_.size()) >= options_.max_connections) close_oldest_pending(nullptr);
    if (int(connections_.size()) >= options_.max_connections) {
        remote::FramedSocket f(socket, 1024);
        f.send(remote::make_error(0, "too_many_connections",
                                  "the worker already serves " + std::to_string(connections_.size()) + " connections"));
        socket->disconnectFromHost();
        connect(socket, &QTcpSocket::disconnected, socket, &QObject::deleteLater);
        return;
    }
    connections_.push_back(new ClientConnection(this, socket));
}

void WorkerServer::connection_closed(ClientConnection* c) {
    std::erase(connections_, c);
    c->deleteLater();
}

void WorkerServer::pump_session(int id) {
    WorkerSession* s = session(id);
    if (!s || !s->drain()) return;
    for (ClientConnection* c : connections_) c->pump();
}

// ---------------------------------------------------------------- ClientConnection

ClientConnection::ClientConnection(WorkerServer* server, QTcpSocket* socket)
    : QObject(server), server_(server), socket_(socket), peer_(socket->peerAddress().toString()) {
    socket_->setParent(this);
    // Until authenticated a peer may only send small frames.
    framed_ = new remote::FramedSocket(socket_, remote::kPreAuthMaxFrame, this);
    handshake_ = std::make_unique<remote::ServerHandshake>(server->options().token,
                                                           std::string("moe-worker ") + MOE_VERSION, server->tls());
    connect(framed_, &remote::FramedSocket::message, this, &ClientConnection::on_message);
    connect(framed_, &remote::FramedSocket::protocol_error, this, [this](const QString& code, const QString& msg) {
        spdlog::warn("closing connection from {}: {} ({})", socket_->peerAddress().toString().toStdString(),
                     msg.toStdString(), code.toStdString());
    });
    connect(socket_, &QTcpSocket::disconnected, this, &ClientConnection::close_now);
    connect(socket_, &QTcpSocket::errorOccurred, this, [this](QAbstractSocket::SocketError) {
        if (socket_->state() == QAbstractSocket::UnconnectedState) close_now();
    });
    connect(socket_, &QTcpSocket::bytesWritten, this, [this] {
        pump();
        release_progress();
    });
    handshake_timer_.setSingleShot(true);
    connect(&handshake_timer_, &QTimer::timeout, this, [this] {
        if (!authenticated_) framed_->close_with_error("handshake_timeout", "no authentication within the time limit");
    });
    handshake_timer_.start(server->options().handshake_timeout_ms);
}

ClientConnection::~ClientConnection() { cancel_generations(); }

void ClientConnection::cancel_generations() {
    for (auto& [id, job] : generations_) job->cancel = true;
}

void ClientConnection::release_progress() {
    if (closed_ || socket_->bytesToWrite() > (256 << 10)) return;
    for (auto& [id, job] : generations_) job->progress_pending = false;
}

void ClientConnection::close_now() {
    if (closed_) return;
    closed_ = true;
    cancel_generations();  // nobody is left to read the text
    server_->connection_closed(this);
}

void ClientConnection::close_with_error(const std::string& code, const std::string& message) {
    if (closed_) return;
    framed_->close_with_error(code, message);
    close_now();  // leaves the server's list at once (the socket closes when its bytes are out)
}

void ClientConnection::reply(const json& m, const QByteArray& binary) {
    if (!closed_) framed_->send(m, binary);
}

void ClientConnection::reply_error(int64_t id, const std::string& code, const std::string& message) {
    reply(remote::make_error(id, code, message));
}

void ClientConnection::on_message(const json& m, const QByteArray&) {
    if (closed_) return;
    if (!authenticated_) {
        remote::HandshakeStep step = handshake_->on_message(m);
        for (const json& r : step.replies) reply(r);
        if (step.close) {
            spdlog::warn("rejected connection from {}: {}", socket_->peerAddress().toString().toStdString(),
                         step.replies.empty() ? "" : step.replies.back().value("message", ""));
            framed_->close_with_error("closed", "connection closed");
            return;
        }
        if (step.done) {
            authenticated_ = true;
            handshake_timer_.stop();
            framed_->set_max_frame(server_->options().max_frame);
            reply({{"type", "devices"}, {"devices", server_->devices()}});
        }
        return;
    }
    handle(m);
}

void ClientConnection::handle(const json& m) {
    int64_t id = 0;
    try {
        id = remote::get_int(m, "id", 0, INT64_MAX);
    } catch (const ProtocolError& e) {
        reply_error(0, e.code(), std::string("request without a valid \"id\": ") + e.what());
        return;
    }
    const std::string type = m.value("type", "");
    try {
        if (type == "ping") {
            reply(remote::make_result(id));
        } else if (type == "devices") {
            reply(remote::make_result(id, {{"devices", server_->devices()}}));
        } else if (type == "sessions") {
            json list = json::array();
            for (auto& [sid, s] : server_->sessions_) list.push_back(server_->session_info(*s));
            reply(remote::make_result(id, {{"sessions", list}}));
        } else if (type == "start") {
            reply(remote::make_result(id, start(m, false)));
        } else if (type == "resume_from") {
            reply(remote::make_result(id, start(m, true)));
        } else if (type == "command") {
            const int sid = int(remote::get_int(m, "session", 0, INT32_MAX));
            WorkerSession* s = server_->session(sid);
            if (!s) throw ProtocolError("no_such_session", "no session " + std::to_string(sid) + " on this worker");
            const std::string c = remote::get_string(m, "command", 32);
            if (c == "pause") s->session().pause();
            else if (c == "resume") s->session().resume();
            else if (c == "step") s->session().step_once();
            else if (c == "stop") s->session().stop();
            else if (c == "checkpoint") s->session().save_checkpoint_now();
            else throw ProtocolError("bad_request", "unknown command \"" + c + "\" (pause, resume, step, stop, checkpoint)");
            reply(remote::make_result(id));
        } else if (type == "subscribe") {
            const int sid = int(remote::get_int(m, "session", 0, INT32_MAX));
            WorkerSession* s = server_->session(sid);
            if (!s) throw ProtocolError("no_such_session", "no session " + std::to_string(sid) + " on this worker");
            s->drain();
            const int64_t from = remote::get_int_or(m, "from_seq", 0, INT64_MAX, 0);
            json r = server_->session_info(*s);
            r["gap"] = from < s->first_seq();
            reply(remote::make_result(id, r));
            subscriptions_[sid] = std::min(from, s->next_seq());
            pump();
        } else if (type == "unsubscribe") {
            subscriptions_.erase(int(remote::get_int(m, "session", 0, INT32_MAX)));
            reply(remote::make_result(id));
        } else if (type == "snapshot") {
            const int sid = int(remote::get_int(m, "session", 0, INT32_MAX));
            WorkerSession* s = server_->session(sid);
            if (!s) throw ProtocolError("no_such_session", "no session " + std::to_string(sid) + " on this worker");
            QPointer<ClientConnection> self(this);
            s->request_snapshot([self, id](QString rel, QString error) {
                if (!self) return;
                if (rel.isEmpty()) self->reply_error(id, "snapshot_failed", error.toStdString());
                else self->reply(remote::make_result(id, {{"path", rel.toStdString()}}));
            });
        } else if (type == "list_files") {
            reply(remote::make_result(id, {{"files", list_files()}}));
        } else if (type == "file_info") {
            file_info(id, m);
        } else if (type == "download") {
            download(id, m);
        } else if (type == "inspect") {
            inspect(id, m);
        } else if (type == "quantize") {
            quantize(id, m);
        } else if (type == "generate") {
            generate(id, m);
        } else if (type == "cancel") {
            cancel(id, m);
        } else {
            throw ProtocolError("unknown_request", "unknown request type \"" + type.substr(0, 40) + "\"");
        }
    } catch (const ProtocolError& e) {
        reply_error(id, e.code(), e.what());
    } catch (const moe::ConfigError& e) {
        json err = remote::make_error(id, "config_error", e.what());
        err["field"] = e.field();
        reply(err);
    } catch (const moe::Error& e) {
        reply_error(id, "engine_error", e.what());
    } catch (const std::exception& e) {
        reply_error(id, "internal", e.what());
    }
}

json ClientConnection::start(const json& m, bool resume) {
    namespace fs = std::filesystem;
    const QDir root(server_->options().runs_dir);
    QString name;
    moe::Project project;
    QString checkpoint;
    if (resume) {
        checkpoint = qs(remote::resolve_inside(root.path().toStdString(), remote::get_string(m, "checkpoint")).string());
        if (!QFileInfo(checkpoint).isDir())
            throw ProtocolError("not_found", "checkpoint " + remote::get_string(m, "checkpoint") + " is not a folder");
        name = safe_name(m.value("name", QFileInfo(checkpoint).fileName().toStdString() + "-resumed"));
        // The checkpoint's project names its training text: it must be readable here too.
        const moe::TrainingState st = moe::load_training_state(str(checkpoint));
        if (!st.project.training.data.path.empty()) server_->confine_data_path(st.project.training.data.path);
    } else {
        project = moe::Project::from_json(remote::get_object(m, "project"));
        project.validate();
        // Every path a project carries stays inside the runs (or data) folder.
        if (!project.training.data.path.empty())
            project.training.data.path = server_->confine_data_path(project.training.data.path);
        // A run too large for this machine is refused in the reply, naming the field, rather
        // than failing later as a session (a GPU run is checked against its device when the
        // session's trainer is made).
        if (moe::parse_device(project.training.device, "training.device").is_host())
            moe::check_training_fits(project, moe::host_allocator());
        name = safe_name(m.value("name", project.name));
    }
    // Bounded as moe-train's --threads; more than the machine has is capped by the backend.
    int threads = int(remote::get_int_or(m, "threads", 0, moe::kMaxThreads, server_->options().threads));
    QString stem = name;
    for (int i = 2; QFileInfo::exists(root.filePath(stem + ".h5")) || QFileInfo::exists(root.filePath(stem + ".ckpt")); ++i)
        stem = name + QString("-%1").arg(i);
    const moe::TrainerPaths paths{str(root.filePath(stem + ".h5")), str(root.filePath(stem + ".ckpt"))};
    // Several processes: mpirun runs moe-train with the layout (one rank per GPU on CUDA).
    std::unique_ptr<moe::Session> job;
    if (m.contains("parallel")) {
        const moe::ParallelLayout layout = moe::ParallelLayout::parse(remote::get_string(m, "parallel", 64), "parallel");
        const std::string device = resume ? m.value("device", std::string()) : project.training.device;
        if (!device.empty() && !moe::parse_device(device, "training.device").is_host()) {
            int gpus = 0;
            for (const json& d : server_->devices()) gpus += d.value("kind", "") == "gpu" && d.value("available", false);
            if (layout.world() > gpus)
                throw moe::ConfigError("parallel", layout.to_string() + " needs " + std::to_string(layout.world()) +
                                                       " GPUs (one rank each); this worker has " + std::to_string(gpus));
        }
        const QString mpirun = QStandardPaths::findExecutable("mpirun");
        if (mpirun.isEmpty()) throw ProtocolError("not_available", "this worker has no mpirun (OpenMPI) on its PATH");
        const QString train = QDir(QCoreApplication::applicationDirPath()).filePath("moe-train");
        if (!QFileInfo(train).isExecutable())
            throw ProtocolError("not_available", "no moe-train next to this moe-worker (" + str(train) + ")");
        job = std::make_unique<ProcessSession>(mpirun, train, layout.to_string(), layout.world());
    }
    const int sid = server_->next_session_++;
    auto ws = std::make_unique<WorkerSession>(server_, sid, stem + ".h5", root.filePath(stem + ".h5"), std::move(job));
    if (resume) {
        const int64_t total = remote::get_int_or(m, "total_steps", 0, INT64_MAX, 0);
        // Optional: the device to continue on (a checkpoint from another machine's GPU).
        const std::string device = m.contains("device") ? remote::get_string(m, "device", 16) : "";
        if (!device.empty()) moe::parse_device(device, "device");
        ws->session().resume_from(str(checkpoint), paths, threads, total, device);
    } else {
        ws->session().start(project, paths, threads);
    }
    server_->sessions_[sid] = std::move(ws);
    spdlog::info("session {} started: {}", sid, paths.run_file);
    return {{"session", sid}, {"run_file", str(stem + ".h5")}, {"checkpoints", str(stem + ".ckpt")}};
}

json ClientConnection::list_files() const {
    json out = json::array();
    const QString root = server_->options().runs_dir;
    QDirIterator it(root, QDir::Files | QDir::NoSymLinks, QDirIterator::Subdirectories);
    while (it.hasNext() && out.size() < 10000) {
        it.next();
        const QFileInfo f = it.fileInfo();
        const QString rel = QDir(root).relativeFilePath(f.filePath());
        if (rel.startsWith(".snapshots/")) continue;
        out.push_back({{"path", str(rel)}, {"size", f.size()}});
    }
    return out;
}

void ClientConnection::file_info(int64_t id, const json& m) {
    const auto path = remote::resolve_inside(server_->options().runs_dir.toStdString(), remote::get_string(m, "path"));
    const QString p = qs(path.string());
    if (!QFileInfo(p).isFile()) throw ProtocolError("not_found", "no file " + remote::get_string(m, "path") + " in the runs folder");
    // Hashing a large checkpoint takes a while: on the thread pool, answered when done.
    QPointer<ClientConnection> self(this);
    const std::string rel = remote::get_string(m, "path");
    QThreadPool::globalInstance()->start([self, p, id, rel] {
        QFile f(p);
        json r;
        if (!f.open(QIODevice::ReadOnly)) {
            r = remote::make_error(id, "io_error", "cannot read " + rel + ": " + f.errorString().toStdString());
        } else {
            QCryptographicHash h(QCryptographicHash::Sha256);
            h.addData(&f);
            r = remote::make_result(id, {{"path", rel}, {"size", f.size()}, {"sha256", h.result().toHex().toStdString()}});
        }
        QMetaObject::invokeMethod(qApp, [self, r] {
            if (self) self->reply(r);
        }, Qt::QueuedConnection);
    });
}

void ClientConnection::download(int64_t id, const json& m) {
    const std::string rel = remote::get_string(m, "path");
    const auto path = remote::resolve_inside(server_->options().runs_dir.toStdString(), rel);
    const int64_t offset = remote::get_int(m, "offset", 0, INT64_MAX);
    const int64_t length = remote::get_int_or(m, "length", 1, remote::kMaxChunk, 1 << 20);
    if (length + 4096 > int64_t(server_->options().max_frame))
        throw ProtocolError("bad_request", "field \"length\" = " + std::to_string(length) + " exceeds the frame limit");
    QFile f(qs(path.string()));
    if (!QFileInfo(f.fileName()).isFile()) throw ProtocolError("not_found", "no file " + rel + " in the runs folder");
    if (!f.open(QIODevice::ReadOnly)) throw ProtocolError("io_error", "cannot read " + rel + ": " + str(f.errorString()));
    const int64_t size = f.size();
    if (offset > size)
        throw ProtocolError("bad_request", "offset " + std::to_string(offset) + " is past the end of " + rel + " (" +
                                               std::to_string(size) + " bytes)");
    f.seek(offset);
    const QByteArray data = f.read(length);
    reply(remote::make_result(id, {{"path", rel}, {"offset", offset}, {"size", size},
                                   {"eof", offset + data.size() >= size}}),
          data);
}

namespace {
// A request's optional "device" ("cpu", "cuda:N"; default cpu), checked before any work.
std::string request_device(const json& m) {
    if (!m.contains("device")) return "cpu";
    const std::string d = remote::get_string(m, "device", 16);
    try {
        moe::parse_device(d, "device");
    } catch (const std::exception& e) {
        throw ProtocolError("bad_request", e.what());
    }
    return d;
}
}  // namespace

void ClientConnection::inspect(int64_t id, const json& m) {
    const std::string rel = remote::get_string(m, "checkpoint");
    const auto path = remote::resolve_inside(server_->options().runs_dir.toStdString(), rel);
    const std::string text = remote::get_string(m, "text", 1 << 16);
    const bool attention = remote::get_bool_or(m, "attention", false);
    const std::string device = request_device(m);
    QPointer<ClientConnection> self(this);
    InspectorCache* cache = &server_->inspectors();
    server_->model_pool().start([self, cache, path, rel, text, attention, device, id] {
        json r;
        try {
            InspectorCache::Lease inspector = cache->acquire(path.string(), device);
            r = remote::make_result(id, {{"inspection", inspection_json(inspector->inspect_text(text), attention)}});
        } catch (const std::exception& e) {
            r = remote::make_error(id, "engine_error", "inspecting " + rel + ": " + e.what());
        }
        QMetaObject::invokeMethod(qApp, [self, r] {
            if (self) self->reply(r);
        }, Qt::QueuedConnection);
    });
}

// Inference with quantized weights of a checkpoint in the runs folder, on the thread pool
// (seconds for the small presets), like inspect.
void ClientConnection::quantize(int64_t id, const json& m) {
    const std::string rel = remote::get_string(m, "checkpoint");
    const auto path = remote::resolve_inside(server_->options().runs_dir.toStdString(), rel);
    std::vector<moe::WeightFormat> formats;
    if (m.contains("formats")) {
        if (!m["formats"].is_array() || m["formats"].empty() || m["formats"].size() > 16)
            throw ProtocolError("bad_request", "formats: expected an array of 1 to 16 format names");
        for (const json& f : m["formats"]) {
            if (!f.is_string()) throw ProtocolError("bad_request", "formats: expected strings");
            formats.push_back(moe::WeightFormat::parse(f.get<std::string>().substr(0, 40), "formats"));
        }
    } else {
        formats = moe::default_weight_formats();
    }
    const std::string device = request_device(m);
    QPointer<ClientConnection> self(this);
    server_->model_pool().start([self, path, rel, formats, device, id] {
        json r;
        try {
            const moe::CheckpointWeightFormats res =
                moe::evaluate_checkpoint_weight_formats(path.string(), formats, 1, device);
            json rows = json::array();
            for (const auto& x : res.results)
                rows.push_back({{"format", x.format},
                                {"bits_per_weight", x.bits_per_weight},
                                {"weight_rel_error", x.weight_rel_error},
                                {"val_loss", x.val_loss},
                                {"loss_change", x.loss_change},
                                {"routing_exact", x.routing.exact},
                                {"routing_overlap", x.routing.overlap},
                                {"routing_top1", x.routing.top1}});
            r = remote::make_result(id, {{"step", res.step}, {"formats", rows}});
        } catch (const std::exception& e) {
            r = remote::make_error(id, "engine_error", "quantizing " + rel + ": " + e.what());
        }
        QMetaObject::invokeMethod(qApp, [self, r] {
            if (self) self->reply(r);
        }, Qt::QueuedConnection);
    });
}

// Text generation on the model pool, progress streamed while it runs (generation_job.h).
void ClientConnection::generate(int64_t id, const json& m) {
    if (generations_.count(id)) throw ProtocolError("bad_request", "a generation with id " + std::to_string(id) + " is running");
    const GenerationRequest request = GenerationRequest::parse(m, server_->options().runs_dir.toStdString());
    auto job = std::make_shared<GenerationJob>();
    generations_[id] = job;
    QPointer<ClientConnection> self(this);
    InspectorCache* cache = &server_->inspectors();
    server_->model_pool().start([self, cache, request, job, id] {
        json r;
        try {
            r = remote::make_result(id, run_generation(request, *cache, *job, [self, id](json body) {
                body["type"] = "progress";
                body["id"] = id;
                QMetaObject::invokeMethod(qApp, [self, body] {
                    if (self) self->reply(body);
                }, Qt::QueuedConnection);
            }));
        } catch (const moe::ConfigError& e) {
            r = remote::make_error(id, "config_error", "generating with " + request.checkpoint + ": " + e.what());
            r["field"] = e.field();
        } catch (const std::exception& e) {
            r = remote::make_error(id, "engine_error", "generating with " + request.checkpoint + ": " + e.what());
        }
        QMetaObject::invokeMethod(qApp, [self, r, id] {
            if (!self) return;
            self->generations_.erase(id);
            self->reply(r);
        }, Qt::QueuedConnection);
    });
}

void ClientConnection::cancel(int64_t id, const json& m) {
    const int64_t target = remote::get_int(m, "request", 1, INT64_MAX);
    auto it = generations_.find(target);
    // Not running (any more): nothing to do; the generation's own answer says how it ended.
    if (it != generations_.end()) it->second->cancel = true;
    reply(remote::make_result(id, {{"cancelled", it != generations_.end()}}));
}

void ClientConnection::pump() {
    if (closed_ || !authenticated_) return;
    const qint64 cap = server_->options().max_client_queue;
    for (auto& [sid, next] : subscriptions_) {
        WorkerSession* s = server_->session(sid);
        if (!s) continue;
        if (next < s->first_seq()) {
            // Fell out of the backlog: say so and continue from the oldest event kept.
            reply({{"type", "gap"}, {"session", sid}, {"from_seq", next}, {"resume_seq", s->first_seq()}});
            next = s->first_seq();
        }
        while (next < s->next_seq() && socket_->bytesToWrite() < cap) {
            framed_->send_raw(s->frame(next));
            ++next;
        }
    }
}

}  // namespace moe::worker
