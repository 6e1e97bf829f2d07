#include "auth.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QMessageAuthenticationCode>
#include <QRandomGenerator>
#include <QStandardPaths>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdexcept>

#include "messages.h"

namespace moe::remote {

QByteArray new_nonce() {
    QByteArray n(int(kNonceBytes), '\0');
    QRandomGenerator::system()->generate(reinterpret_cast<quint32*>(n.data()),
                                         reinterpret_cast<quint32*>(n.data() + n.size()));
    return n;
}

QByteArray client_proof(const QByteArray& token, const QByteArray& cn, const QByteArray& sn) {
    return QMessageAuthenticationCode::hash(QByteArray("moe-worker/1 client proof|") + cn + sn, token,
                                            QCryptographicHash::Sha256);
}

QByteArray server_proof(const QByteArray& token, const QByteArray& cn, const QByteArray& sn) {
    return QMessageAuthenticationCode::hash(QByteArray("moe-worker/1 server proof|") + sn + cn, token,
                                            QCryptographicHash::Sha256);
}

bool constant_time_equal(const QByteArray& a, const QByteArray& b) {
    if (a.size() != b.size()) return false;
    unsigned char diff = 0;
    for (qsizetype i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

QString default_token_path() {
    return QDir(QStandardPaths::writableLocation(QStandardPaths::GenericConfigLocation))
        .filePath("moe-workbench/worker-token");
}

QByteArray load_or_create_token(const QString& path, bool* created) {
    if (created) *created = false;
    const QByteArray p = QFile::encodeName(path);
    struct stat st {};
    if (::stat(p.constData(), &st) == 0) {
        if (!S_ISREG(st.st_mode)) throw std::runtime_error("token file " + path.toStdString() + " is not a regular file");
        if (st.st_mode & 077) {
            char mode[8];
            std::snprintf(mode, sizeof mode, "%04o", unsigned(st.st_mode & 07777));
            throw std::runtime_error("token file " + path.toStdString() + " is readable by others (mode " + mode +
                                     "): run chmod 600 " + path.toStdString());
        }
        QFile f(path);
        if (!f.open(QIODevice::ReadOnly))
            throw std::runtime_error("cannot read token file " + path.toStdString() + ": " + f.errorString().toStdString());
        const QByteArray token = f.readAll().trimmed();
        bool hex = token.size() >= 32;
        for (char c : token) hex = hex && std::isxdigit(static_cast<unsigned char>(c));
        if (!hex)
            throw std::runtime_error("token file " + path.toStdString() +
                                     " does not hold a token (at least 32 hex characters); delete it to make a new one");
        return token;
    }
    const QString dir = QFileInfo(path).absolutePath();
    if (!QDir().mkpath(dir)) throw std::runtime_error("cannot create folder " + dir.toStdString() + " for the token file");
    ::chmod(QFile::encodeName(dir).constData(), 0700);
    const QByteArray token = new_nonce().toHex();  // 64 hex characters, 256 bits
    // O_EXCL with mode 0600: the file is never, even briefly, readable by others.
    const int fd = ::open(p.constData(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) throw std::runtime_error("cannot create token file " + path.toStdString() + ": " + std::strerror(errno));
    const QByteArray line = token + "\n";
    const bool ok = ::write(fd, line.constData(), size_t(line.size())) == line.size();
    ::close(fd);
    if (!ok) throw std::runtime_error("cannot write token file " + path.toStdString());
    if (created) *created = true;
    return token;
}

namespace {

QByteArray qbytes(const std::string& s) { return QByteArray(s.data(), qsizetype(s.size())); }
std::string sbytes(const QByteArray& b) { return std::string(b.constData(), size_t(b.size())); }

}  // namespace

ServerHandshake::ServerHandshake(QByteArray token, std::string server_name, bool tls)
    : token_(std::move(token)), name_(std::move(server_name)), tls_(tls) {}

HandshakeStep ServerHandshake::fail(const std::string& code, const std::string& message) {
    state_ = State::Closed;
    HandshakeStep s;
    s.replies.push_back(make_error(0, code, message));
    s.close = true;
    return s;
}

HandshakeStep ServerHandshake::on_message(const nlohmann::json& m) {
    const std::string type = m.value("type", "");
    try {
        switch (state_) {
        case State::AwaitHello: {
            if (type != "hello")
                return fail("not_authenticated", "\"" + type.substr(0, 40) +
                                                     "\" before the handshake: send \"hello\" first");
            const int64_t version = get_int(m, "protocol", 0, 1 << 20);
            if (version != kProtocolVersion)
                return fail("version_mismatch", "client speaks protocol " + std::to_string(version) +
                                                    ", this worker speaks " + std::to_string(kProtocolVersion));
            client_nonce_ = qbytes(from_base64(get_string(m, "nonce", 128), "nonce"));
            if (size_t(client_nonce_.size()) != kNonceBytes)
                return fail("bad_request", "field \"nonce\" must hold " + std::to_string(kNonceBytes) + " bytes");
            server_nonce_ = new_nonce();
            state_ = State::AwaitAuth;
            HandshakeStep s;
            s.replies.push_back({{"type", "challenge"},
                                 {"protocol", kProtocolVersion},
                                 {"server", name_},
                                 {"tls", tls_},
                                 {"nonce", to_base64(sbytes(server_nonce_))}});
            return s;
        }
        case State::AwaitAuth: {
            if (type != "auth")
                return fail("not_authenticated", "\"" + type.substr(0, 40) + "\" before authentication: send \"auth\"");
            if (!m.contains("proof") || !m["proof"].is_string() || m["proof"].get_ref<const std::string&>().empty())
                return fail("auth_failed", "no token proof: the client must authenticate with the worker's token");
            const QByteArray proof = qbytes(from_base64(get_string(m, "proof", 128), "proof"));
            if (!constant_time_equal(proof, client_proof(token_, client_nonce_, server_nonce_)))
                return fail("auth_failed", "wrong token (the proof does not match this worker's token)");
            state_ = State::Done;
            HandshakeStep s;
            s.done = true;
            s.replies.push_back({{"type", "welcome"},
                                 {"proof", to_base64(sbytes(server_proof(token_, client_nonce_, server_nonce_)))}});
            return s;
        }
        case State::Done:
        case State::Closed: return fail("bad_message", "handshake already finished");
        }
    } catch (const ProtocolError& e) {
        return fail(e.code(), e.what());
    }
    return fail("internal", "unreachable");
}

ClientHandshake::ClientHandshake(QByteArray token, std::string client_name)
    : token_(std::move(token)), name_(std::move(client_name)) {}

nlohmann::json ClientHandshake::hello() {
    client_nonce_ = new_nonce();
    return {{"type", "hello"}, {"protocol", kProtocolVersion}, {"client", name_},
            {"nonce", to_base64(sbytes(client_nonce_))}};
}

HandshakeStep ClientHandshake::on_message(const nlohmann::json& m) {
    HandshakeStep s;
    const std::string type = m.value("type", "");
    try {
        if (type == "error") {
            error_ = m.value("code", "error") + ": " + m.value("message", "");
            s.close = true;
        } else if (type == "challenge" && server_nonce_.isEmpty()) {
            const int64_t version = get_int(m, "protocol", 0, 1 << 20);
            if (version != kProtocolVersion) {
                error_ = "version_mismatch: the worker speaks protocol " + std::to_string(version) +
                         ", this workbench speaks " + std::to_string(kProtocolVersion);
                s.close = true;
                return s;
            }
            server_nonce_ = qbytes(from_base64(get_string(m, "nonce", 128), "nonce"));
            if (size_t(server_nonce_.size()) != kNonceBytes) throw ProtocolError("bad_message", "short server nonce");
            challenge_ = m;
            s.replies.push_back({{"type", "auth"}, {"proof", to_base64(sbytes(client_proof(token_, client_nonce_, server_nonce_)))}});
        } else if (type == "welcome" && !server_nonce_.isEmpty()) {
            const QByteArray proof = qbytes(from_base64(get_string(m, "proof", 128), "proof"));
            if (!constant_time_equal(proof, server_proof(token_, client_nonce_, server_nonce_))) {
                error_ = "auth_failed: the worker could not prove it knows the token (wrong server?)";
                s.close = true;
                return s;
            }
            welcome_ = m;
            done_ = s.done = true;
        } else {
            error_ = "bad_message: unexpected \"" + type.substr(0, 40) + "\" during the handshake";
            s.close = true;
        }
    } catch (const ProtocolError& e) {
        error_ = e.code() + ": " + e.what();
        s.close = true;
    }
    return s;
}

}  // namespace moe::remote
