#pragma once
// A QTcpSocket (or QSslSocket) speaking frames: reads at most 64 KiB per pass into a
// FrameDecoder (so one connection can never hold more than the frame limit plus one read),
// parses each frame's JSON and hands it on. Used by the worker and by the client.
#include <QObject>
#include <QPointer>
#include <QTcpSocket>

#include <functional>

#include <nlohmann/json.hpp>

#include "frame_codec.h"

namespace moe::remote {

class FramedSocket : public QObject {
    Q_OBJECT

public:
    FramedSocket(QTcpSocket* socket, uint32_t max_frame, QObject* parent = nullptr);
    QTcpSocket* socket() const { return socket_; }
    void set_max_frame(uint32_t n) { decoder_.set_max_size(n); }
    uint32_t max_frame() const { return decoder_.max_size(); }

    // Encodes and writes; false (nothing written) if the frame exceeds the limit.
    bool send(const nlohmann::json& m, const QByteArray& binary = {});
    void send_raw(const QByteArray& frame) { socket_->write(frame); }
    // Sends an error frame, then closes once it is written (or after a second at most).
    void close_with_error(const std::string& code, const std::string& message);

signals:
    void message(const nlohmann::json& m, const QByteArray& binary);
    // The peer broke the protocol; the socket is being closed.
    void protocol_error(const QString& code, const QString& message);

private:
    void read_available();

    QTcpSocket* socket_;
    FrameDecoder decoder_;
    bool closing_ = false;
};

}  // namespace moe::remote
