#pragma once
// WorkerServer: the network side of moe-worker. Accepts connections (TCP, or TLS when a
// certificate is configured), authenticates them (remote/auth.h), runs training sessions
// (LocalSession, one engine thread each) and streams their events to subscribed clients.
//
// Threads: everything here runs on the Qt event loop's thread, except the sessions' listeners,
// which run on the engine threads and only append to a mutex-guarded queue and post a wake-up:
// the engine never waits on a socket. Each client's unsent bytes are capped; a client past the
// cap is not written to until it drains, and one whose position left the backlog gets a "gap"
// message and continues from the oldest event kept (it re-reads missing rows from the run file).
#include <QByteArray>
#include <QObject>
#include <QPointer>
#include <QSslCertificate>
#include <QSslKey>
#include <QString>
#include <QTcpServer>
#include <QThreadPool>
#include <QTimer>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "session/local_session.h"
#include "worker/inspector_cache.h"

namespace moe::remote {
class FramedSocket;
class ServerHandshake;
}

namespace moe::worker {

struct WorkerOptions {
    QString host = "127.0.0.1";
    quint16 port = 7070;
    QString runs_dir;
    QString data_dir;                       // "": training text only from inside runs_dir
    QByteArray token;
    QString tls_cert, tls_key;   // both set: TLS
    uint32_t max_frame = 16u << 20;
    size_t backlog_events = 20000;         // events kept per session for resuming clients
    qint64 max_client_queue = 4 << 20;     // unsent bytes per client before it is held back
    int max_connections = 64;
    int max_unauthenticated_per_address = 4;  // handshakes in progress from one peer address
    int handshake_timeout_ms = 10000;
    int threads = 0;                        // default CPU threads of a session
    int loaded_models = 1;                  // checkpoints kept loaded for inspect / generate
    int model_threads = 2;                  // inspect/quantize/generate jobs at once (more wait)
};

class WorkerServer;
class ClientConnection;
struct GenerationJob;

// One training session on the worker, with its event backlog.
class WorkerSession {
public:
    // `session`: null for a LocalSession (one process, an engine thread of the worker).
    WorkerSession(WorkerServer* server, int id, QString run_rel, QString run_abs,
                  std::unique_ptr<moe::Session> session = nullptr);
    ~WorkerSession();

    int id() const { return id_; }
    moe::Session& session() { return *session_; }
    const QString& run_rel() const { return run_rel_; }
    const QString& run_abs() const { return run_abs_; }

    // Moves events from the engine thread's queue into the backlog; on the server's thread.
    // True if any arrived.
    bool drain();
    int64_t first_seq() const { return first_seq_; }
    int64_t next_seq() const { return first_seq_ + int64_t(backlog_.size()); }
    const QByteArray& frame(int64_t seq) const { return backlog_[size_t(seq - first_seq_)]; }

    // A consistent copy of the run file: taken on the engine thread right after a step (while
    // nothing is written), or at once when the session is not running.
    void request_snapshot(std::function<void(QString rel, QString error)> done);

private:
    void on_event(const moe::SessionEvent& e);  // engine thread
    void take_snapshot();                        // engine thread or server thread when idle

    WorkerServer* server_;
    int id_;
    QString run_rel_, run_abs_;
    std::mutex mutex_;
    std::deque<moe::SessionEvent> incoming_;
    std::atomic<bool> wake_posted_{false};
    std::atomic<bool> snapshot_wanted_{false};
    std::mutex snapshot_mutex_;
    std::vector<std::function<void(QString, QString)>> snapshot_waiters_;
    int snapshot_counter_ = 0;
    std::deque<QByteArray> backlog_;  // encoded event frames, seq first_seq_ + i
    int64_t first_seq_ = 0;
    // Last: its destructor stops the engine (or the job) before the rest goes. A LocalSession,
    // or a ProcessSession for a run of several processes.
    std::unique_ptr<moe::Session> session_;
};

class WorkerServer : public QObject {
    Q_OBJECT

public:
    explicit WorkerServer(WorkerOptions options, QObject* parent = nullptr);
    ~WorkerServer() override;

    // false and `error` (naming host and port) when it cannot listen.
    bool listen(QString* error);
    quint16 port() const;
    bool tls() const { return !options_.tls_cert.isEmpty(); }
    QString tls_fingerprint() const;  // SHA-256 of the certificate, hex with colons
    const WorkerOptions& options() const { return options_; }
    nlohmann::json devices() const;
    int connection_count() const { return int(connections_.size()); }

    // Called by a session's engine thread (through a queued call) when events are waiting.
    Q_INVOKABLE void pump_session(int id);
    WorkerSession* session(int id) const;
    InspectorCache& inspectors() { return inspectors_; }
    QThreadPool& model_pool() { return model_pool_; }

private:
    friend class ClientConnection;
    void accept(QTcpSocket* socket);
    nlohmann::json session_info(WorkerSession& s) const;
    void connection_closed(ClientConnection* c);
    // The data text path of a project from a request, confined to the runs or data folder:
    // returns it absolute, or throws ProtocolError("path_outside_root").
    std::string confine_data_path(const std::string& path) const;

    WorkerOptions options_;
    InspectorCache inspectors_;
    QThreadPool model_pool_;  // jobs with models, apart from the global pool's short file jobs
    QTcpServer* server_ = nullptr;
    QSslCertificate cert_;
    QSslKey key_;
    std::map<int, std::unique_ptr<WorkerSession>> sessions_;
    std::vector<ClientConnection*> connections_;
    int next_session_ = 1;
};

// One client: handshake, then requests; events of the sessions it subscribed to.
class ClientConnection : public QObject {
    Q_OBJECT

public:
    ClientConnection(WorkerServer* server, QTcpSocket* socket);
    ~ClientConnection() override;
    void pump();  // writes subscribed events while the client's queue has room
    bool authenticated() const { return authenticated_; }
    const QString& peer() const { return peer_; }
    void close_with_error(const std::string& code, const std::string& message);
    void cancel_generations();  // each stops after its current token

private:
    void on_message(const nlohmann::json& m, const QByteArray& binary);
    void handle(const nlohmann::json& m);
    void reply(const nlohmann::json& m, const QByteArray& binary = {});
    void reply_error(int64_t id, const std::string& code, const std::string& message);
    void close_now();

    // Requests.
    nlohmann::json start(const nlohmann::json& m, bool resume);
    void download(int64_t id, const nlohmann::json& m);
    void file_info(int64_t id, const nlohmann::json& m);
    void inspect(int64_t id, const nlohmann::json& m);
    void generate(int64_t id, const nlohmann::json& m);
    void cancel(int64_t id, const nlohmann::json& m);
    void release_progress();  // progress of generations may continue once the socket drained
    void quantize(int64_t id, const nlohmann::json& m);
    nlohmann::json list_files() const;

    WorkerServer* server_;
    QTcpSocket* socket_;
    remote::FramedSocket* framed_;
    std::unique_ptr<remote::ServerHandshake> handshake_;
    bool authenticated_ = false;
    QString peer_;  // the peer's address, for per-address limits
    bool closed_ = false;
    std::map<int, int64_t> subscriptions_;  // session -> next seq to send
    std::map<int64_t, std::shared_ptr<GenerationJob>> generations_;  // request id -> running job
    QTimer handshake_timer_;
};

}  // namespace moe::worker
