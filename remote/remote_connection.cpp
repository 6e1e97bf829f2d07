#include "remote_connection.h"

#include <QCryptographicHash>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QSslConfiguration>
#include <QSslSocket>

#include "auth.h"
#include "framed_socket.h"
#include "messages.h"

namespace moe::remote {

using nlohmann::json;

RemoteConnection::RemoteConnection(QObject* parent) : QObject(parent) {
    retry_.setSingleShot(true);
    connect(&retry_, &QTimer::timeout, this, &RemoteConnection::connect_socket);
}

RemoteConnection::~RemoteConnection() {
    closing_ = true;
    pending_.clear();
    progress_.clear();
}

const char* RemoteConnection::to_string(State s) {
    switch (s) {
    case State::Disconnected: return "disconnected";
    case State::Connecting: return "connecting";
    case State::Connected: return "connected";
    case State::Reconnecting: return "reconnecting";
    case State::Failed: return "failed";
    }
    return "?";
}

void RemoteConnection::set_state(State s) {
    if (s == state_) return;
    state_ = s;
    emit state_changed(s);
}

void RemoteConnection::open(const Options& options) {
    close();
    options_ = options;
    closing_ = fatal_ = false;
    backoff_ms_ = 500;
    last_error_.clear();
    set_state(State::Connecting);
    connect_socket();
}

void RemoteConnection::close() {
    closing_ = true;
    retry_.stop();
    if (socket_) {
        socket_->disconnect(this);
        socket_->abort();
        socket_->deleteLater();
        socket_ = nullptr;
        framed_ = nullptr;
    }
    authenticated_ = false;
    fail_pending("connection_closed", "the connection was closed");
    set_state(State::Disconnected);
}

void RemoteConnection::connect_socket() {
    if (socket_) {
        socket_->disconnect(this);
        socket_->abort();
        socket_->deleteLater();
    }
    authenticated_ = false;
    fingerprint_checked_ = false;
    handshake_ = std::make_unique<ClientHandshake>(options_.token);
    if (options_.tls) {
        auto* ssl = new QSslSocket(this);
        QSslConfiguration conf = ssl->sslConfiguration();
        conf.setProtocol(QSsl::TlsV1_2OrLater);
        ssl->setSslConfiguration(conf);
        connect(ssl, &QSslSocket::sslErrors, this, &RemoteConnection::check_fingerprint);
        connect(ssl, &QSslSocket::encrypted, this, [this] {
            check_fingerprint({});
            if (socket_ && socket_->state() == QAbstractSocket::ConnectedState) on_socket_connected();
        });
        socket_ = ssl;
    } else {
        socket_ = new QTcpSocket(this);
        connect(socket_, &QTcpSocket::connected, this, &RemoteConnection::on_socket_connected);
    }
    framed_ = new FramedSocket(socket_, kDefaultMaxFrame * 4, socket_);
    connect(framed_, &FramedSocket::message, this, &RemoteConnection::on_message);
    connect(framed_, &FramedSocket::protocol_error, this, [this](const QString& code, const QString& msg) {
        last_error_ = QString("%1: the worker sent an invalid frame (%2)").arg(address(), msg);
    });
    connect(socket_, &QTcpSocket::disconnected, this, &RemoteConnection::on_disconnected);
    connect(socket_, &QTcpSocket::errorOccurred, this, [this](QAbstractSocket::SocketError) {
        if (!socket_) return;
        if (!fatal_) last_error_ = QString("%1: %2").arg(address(), socket_->errorString());
        if (socket_->state() != QAbstractSocket::ConnectedState) on_disconnected();
    });
    if (options_.tls)
        static_cast<QSslSocket*>(socket_)->connectToHostEncrypted(options_.host, options_.port);
    else
        socket_->connectToHost(options_.host, options_.port);
}

void RemoteConnection::check_fingerprint(const QList<QSslError>& errors) {
    auto* ssl = qobject_cast<QSslSocket*>(socket_);
    if (!ssl || fingerprint_checked_) {
        if (ssl && !errors.isEmpty() && fingerprint_checked_) ssl->ignoreSslErrors(errors);
        return;
    }
    const QSslCertificate cert = ssl->peerCertificate();
    if (cert.isNull()) return;
    fingerprint_ = QString::fromLatin1(cert.digest(QCryptographicHash::Sha256).toHex(':'));
    bool ok = false;
    if (!options_.trusted_fingerprint.isEmpty()) {
        ok = options_.trusted_fingerprint.compare(fingerprint_, Qt::CaseInsensitive) == 0;
        if (!ok) last_error_ = QString("%1: the worker's certificate changed (fingerprint %2, trusted %3): refusing to "
                                       "connect; if the worker made a new certificate, forget the old one")
                                   .arg(address(), fingerprint_, options_.trusted_fingerprint);
    } else if (confirm_fingerprint && confirm_fingerprint(fingerprint_)) {
        ok = true;
        options_.trusted_fingerprint = fingerprint_;
    } else {
        last_error_ = QString("%1: certificate %2 was not accepted").arg(address(), fingerprint_);
    }
    fingerprint_checked_ = ok;
    if (!ok) {
        fatal_ = true;
        emit connection_error(last_error_);
        ssl->abort();
        return;
    }
    if (!errors.isEmpty()) ssl->ignoreSslErrors(errors);  // self-signed, pinned by fingerprint
}

void RemoteConnection::on_socket_connected() {
    framed_->send(handshake_->hello());
}

void RemoteConnection::on_message(const json& m, const QByteArray& binary) {
    if (!authenticated_) {
        HandshakeStep s = handshake_->on_message(m);
        for (const json& r : s.replies) framed_->send(r);
        if (s.close) {
            fatal_ = true;  // wrong token, other protocol version: retrying will not help
            last_error_ = QString("%1: %2").arg(address(), QString::fromStdString(handshake_->error()));
            emit connection_error(last_error_);
            socket_->abort();
            return;
        }
        if (s.done) {
            authenticated_ = true;
            backoff_ms_ = 500;
        }
        return;
    }
    const std::string type = m.value("type", "");
    if (type == "devices") {
        devices_ = m.value("devices", json::array());
        last_error_.clear();
        set_state(State::Connected);
        emit connected();
        return;
    }
    if (type == "progress") {
        const auto it = progress_.find(m.value("id", int64_t(0)));
        if (it != progress_.end() && it->second) it->second(m);
        return;
    }
    if (type == "result" || type == "error") {
        const int64_t id = m.value("id", int64_t(0));
        progress_.erase(id);
        auto it = pending_.find(id);
        if (it == pending_.end()) {
            if (type == "error") last_error_ = QString::fromStdString(m.value("message", ""));
            return;
        }
        Reply r = std::move(it->second);
        pending_.erase(it);
        if (r) r(m, binary);
        return;
    }
    emit message(m);
}

void RemoteConnection::fail_pending(const std::string& code, const std::string& message) {
    auto pending = std::move(pending_);
    pending_.clear();
    progress_.clear();
    for (auto& [id, r] : pending)
        if (r) r(make_error(id, code, message), {});
}

void RemoteConnection::on_disconnected() {
    if (!socket_) return;
    socket_->disconnect(this);
    socket_->deleteLater();
    socket_ = nullptr;
    framed_ = nullptr;
    authenticated_ = false;
    fail_pending("connection_lost", "the connection to " + address().toStdString() + " was lost");
    if (closing_) return;
    if (fatal_ || !options_.reconnect) {
        set_state(State::Failed);
        emit connection_error(last_error_);
        return;
    }
    set_state(State::Reconnecting);
    retry_.start(backoff_ms_);
    backoff_ms_ = std::min(backoff_ms_ * 2, options_.max_backoff_ms);
}

int64_t RemoteConnection::request(json m, Reply reply) {
    if (state_ != State::Connected || !framed_) {
        if (reply)
            reply(make_error(0, "not_connected", "not connected to " + address().toStdString() +
                                                     (last_error_.isEmpty() ? "" : " (" + last_error_.toStdString() + ")")),
                  {});
        return 0;
    }
    const int64_t id = next_id_++;
    m["id"] = id;
    pending_[id] = std::move(reply);
    framed_->send(m);
    return id;
}

int64_t RemoteConnection::request(json m, Reply reply, Progress progress) {
    const int64_t id = request(std::move(m), std::move(reply));
    if (id != 0 && progress) progress_[id] = std::move(progress);
    return id;
}

// ---------------------------------------------------------------- download_file

namespace {

struct Download : QObject {
    QPointer<RemoteConnection> c;
    QString remote, local, part;
    std::function<void(QString)> done;
    QByteArray sha;
    int64_t size = 0;
    bool restarted = false;
    QFile out;

    void finish(const QString& error) {
        out.close();
        if (!error.isEmpty()) QFile::remove(part);  // a bad prefix must not be resumed
        auto d = std::move(done);
        deleteLater();
        if (d) d(error);
    }
    void start() {
        c->request({{"type", "file_info"}, {"path", remote.toStdString()}}, [this, self = QPointer<QObject>(this)](const json& m, const QByteArray&) {
            if (!self) return;
            if (m.value("type", "") == "error") return finish(QString::fromStdString(m.value("message", "file_info failed")));
            size = m.value("size", int64_t(0));
            sha = QByteArray::fromStdString(m.value("sha256", ""));
            QDir().mkpath(QFileInfo(local).absolutePath());
            out.setFileName(part);
            if (!out.open(QIODevice::ReadWrite)) return finish(QString("cannot write %1: %2").arg(part, out.errorString()));
            if (out.size() > size) out.resize(0);  // another file's prefix
            out.seek(out.size());                  // resume after what an earlier try wrote
            next();
        });
    }
    void next() {
        if (!c) return finish("connection gone");
        const int64_t offset = out.size();
        if (offset >= size) return verify();
        c->request({{"type", "download"}, {"path", remote.toStdString()}, {"offset", offset}, {"length", 1 << 20}},
                   [this, offset, self = QPointer<QObject>(this)](const json& m, const QByteArray& data) {
                       if (!self) return;
                       if (m.value("type", "") == "error")
                           return finish(QString::fromStdString(m.value("code", "") + ": " + m.value("message", "")));
                       if (m.value("offset", int64_t(-1)) != offset || (data.isEmpty() && offset < size))
                           return finish(QString("download of %1 returned an unexpected chunk").arg(remote));
                       if (out.write(data) != data.size()) return finish(QString("cannot write %1").arg(part));
                       next();
                   });
    }
    void verify() {
        out.flush();
        out.seek(0);
        QCryptographicHash h(QCryptographicHash::Sha256);
        h.addData(&out);
        if (h.result().toHex() != sha) {
            out.close();
            QFile::remove(part);
            if (!restarted) {  // a stale .part of an older version: start over once
                restarted = true;
                return start();
            }
            return finish(QString("checksum mismatch downloading %1: SHA-256 differs from the worker's").arg(remote));
        }
        out.close();
        QFile::remove(local);
        if (!QFile::rename(part, local)) return finish(QString("cannot move %1 to %2").arg(part, local));
        auto d = std::move(done);
        deleteLater();
        if (d) d({});
    }
};

}  // namespace

void download_file(RemoteConnection* c, const QString& remote_path, const QString& local_path,
                   std::function<void(QString)> done, QObject* context) {
    auto* d = new Download;
    d->setParent(context ? context : c);
    d->c = c;
    d->remote = remote_path;
    d->local = local_path;
    d->part = local_path + ".part";
    d->done = std::move(done);
    d->start();
}

}  // namespace moe::remote
