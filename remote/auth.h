#pragma once
// Authentication of the remote protocol: a shared token proven by HMAC-SHA256 over nonces from
// both peers (the token never crosses the wire; a recorded handshake cannot be replayed because
// the worker's nonce is new on every connection), and the token file the worker keeps.
// The handshake state machines are socket-free so tests can drive them message by message.
#include <QByteArray>
#include <QString>

#include <nlohmann/json.hpp>

#include <optional>

namespace moe::remote {

QByteArray new_nonce();  // kNonceBytes from the system CSPRNG
QByteArray client_proof(const QByteArray& token, const QByteArray& client_nonce, const QByteArray& server_nonce);
QByteArray server_proof(const QByteArray& token, const QByteArray& client_nonce, const QByteArray& server_nonce);
bool constant_time_equal(const QByteArray& a, const QByteArray& b);

// ~/.config/moe-workbench/worker-token
QString default_token_path();
// Reads the token (64 hex characters) of `path`, or creates it (directory 0700, file 0600,
// `created` set) when it does not exist. Throws std::runtime_error naming the path when the
// file cannot be read or written, holds no valid token, or is readable by group or others.
QByteArray load_or_create_token(const QString& path, bool* created = nullptr);

// What one step of a handshake produced: messages to send, and whether the connection is now
// authenticated, or must be closed (after sending `reply`, an error).
struct HandshakeStep {
    std::vector<nlohmann::json> replies;
    bool done = false;
    bool close = false;
};

class ServerHandshake {
public:
    ServerHandshake(QByteArray token, std::string server_name, bool tls);
    // Feeds one message of an unauthenticated peer.
    HandshakeStep on_message(const nlohmann::json& m);
    bool done() const { return state_ == State::Done; }

private:
    enum class State { AwaitHello, AwaitAuth, Done, Closed };
    HandshakeStep fail(const std::string& code, const std::string& message);
    QByteArray token_, client_nonce_, server_nonce_;
    std::string name_;
    bool tls_;
    State state_ = State::AwaitHello;
};

class ClientHandshake {
public:
    explicit ClientHandshake(QByteArray token, std::string client_name = "moe-workbench");
    nlohmann::json hello();
    // On failure `error` says why (version mismatch, wrong token, unproven server).
    HandshakeStep on_message(const nlohmann::json& m);
    bool done() const { return done_; }
    const std::string& error() const { return error_; }
    const nlohmann::json& welcome() const { return welcome_; }
    // The challenge as the client saw it (tests replay it).
    const nlohmann::json& challenge() const { return challenge_; }

private:
    QByteArray token_, client_nonce_, server_nonce_;
    std::string name_, error_;
    nlohmann::json challenge_, welcome_;
    bool done_ = false;
};

}  // namespace moe::remote
