#pragma once
// RemoteConnection: the workbench's link to one moe-worker. Connects (TCP or TLS), runs the
// challenge-response handshake, sends requests and routes each answer to its callback, passes
// stream messages (events, gaps) on, and reconnects with backoff when the link drops (not after
// an authentication or version error: retrying cannot fix those). Lives on one thread with an
// event loop (the GUI's); nothing here blocks.
#include <QObject>
#include <QPointer>
#include <QSslError>
#include <QString>
#include <QTcpSocket>
#include <QTimer>

#include <functional>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

namespace moe::remote {

class FramedSocket;
class ClientHandshake;

class RemoteConnection : public QObject {
    Q_OBJECT

public:
    enum class State { Disconnected, Connecting, Connected, Reconnecting, Failed };
    struct Options {
        QString host = "127.0.0.1";
        quint16 port = 7070;
        QByteArray token;
        bool tls = false;
        QString trusted_fingerprint;  // SHA-256 hex with colons; empty: ask confirm_fingerprint
        bool reconnect = true;
        int max_backoff_ms = 8000;
    };
    // Reply: m["type"] is "result" or "error" (code, message); binary is a download's chunk.
    using Reply = std::function<void(const nlohmann::json& m, const QByteArray& binary)>;

    explicit RemoteConnection(QObject* parent = nullptr);
    ~RemoteConnection() override;

    void open(const Options& options);
    void close();  // no reconnect
    State state() const { return state_; }
    static const char* to_string(State s);
    QString address() const { return QString("%1:%2").arg(options_.host).arg(options_.port); }
    const Options& options() const { return options_; }
    QString last_error() const { return last_error_; }
    const nlohmann::json& devices() const { return devices_; }
    // The worker's certificate fingerprint (TLS), once seen.
    QString fingerprint() const { return fingerprint_; }

    // TLS trust on first use: called with the fingerprint of a certificate that is not the
    // trusted one; true accepts it (and it becomes the trusted one). Unset: refused.
    std::function<bool(const QString& fingerprint)> confirm_fingerprint;

    // Sends a request (an "id" is added); the reply comes later, or an error with code
    // "connection_lost" if the link drops first. Returns the id (0 when not connected: the
    // reply is called at once with code "not_connected").
    int64_t request(nlohmann::json m, Reply reply);
    // The same for requests that report while they run ("generate"): each {"type":"progress",
    // "id":...} message before the answer goes to `progress`.
    using Progress = std::function<void(const nlohmann::json& m)>;
    int64_t request(nlohmann::json m, Reply reply, Progress progress);

    QTcpSocket* socket() const { return socket_; }  // tests

signals:
    void state_changed(moe::remote::RemoteConnection::State state);
    void connected();                         // authenticated (again, after a reconnect)
    void message(const nlohmann::json& m);    // "event", "gap": stream messages
    void connection_error(const QString& text);

private:
    void connect_socket();
    void on_socket_connected();
    void on_message(const nlohmann::json& m, const QByteArray& binary);
    void on_disconnected();
    void fail_pending(const std::string& code, const std::string& message);
    void set_state(State s);
    void check_fingerprint(const QList<QSslError>& errors);

    Options options_;
    State state_ = State::Disconnected;
    QTcpSocket* socket_ = nullptr;
    FramedSocket* framed_ = nullptr;
    std::unique_ptr<ClientHandshake> handshake_;
    bool authenticated_ = false, closing_ = false, fatal_ = false, fingerprint_checked_ = false;
    int64_t next_id_ = 1;
    std::map<int64_t, Reply> pending_;
    std::map<int64_t, Progress> progress_;
    nlohmann::json devices_ = nlohmann::json::array();
    QString last_error_, fingerprint_;
    QTimer retry_;
    int backoff_ms_ = 500;
};

// Downloads one file of the worker's runs folder into `local_path`: chunks of 1 MiB written to
// "<local_path>.part" (an interrupted download continues from its size), SHA-256 checked against
// the worker's, then renamed over local_path. done(error): empty on success.
void download_file(RemoteConnection* c, const QString& remote_path, const QString& local_path,
                   std::function<void(QString error)> done, QObject* context = nullptr);

}  // namespace moe::remote
