#include "framed_socket.h"

#include <QTimer>

#include "messages.h"

namespace moe::remote {

FramedSocket::FramedSocket(QTcpSocket* socket, uint32_t max_frame, QObject* parent)
    : QObject(parent), socket_(socket), decoder_(max_frame) {
    connect(socket_, &QTcpSocket::readyRead, this, &FramedSocket::read_available);
}

bool FramedSocket::send(const nlohmann::json& m, const QByteArray& binary) {
    try {
        const std::string body = m.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        const std::string f = encode_frame(body, std::string_view(binary.constData(), size_t(binary.size())),
                                           kDefaultMaxFrame * 4);
        socket_->write(f.data(), qint64(f.size()));
        return true;
    } catch (const ProtocolError&) {
        return false;
    }
}

void FramedSocket::close_with_error(const std::string& code, const std::string& message) {
    if (closing_) return;
    closing_ = true;
    send(make_error(0, code, message));
    socket_->disconnectFromHost();  // after the pending bytes are written
    QPointer<QTcpSocket> s = socket_;
    QTimer::singleShot(1000, socket_, [s] {
        if (s && s->state() != QAbstractSocket::UnconnectedState) s->abort();
    });
}

void FramedSocket::read_available() {
    char buf[64 * 1024];
    while (!closing_ && socket_->bytesAvailable() > 0) {
        const qint64 n = socket_->read(buf, sizeof buf);
        if (n <= 0) break;
        try {
            decoder_.feed(buf, size_t(n));
            while (auto f = decoder_.next()) {
                nlohmann::json m = parse_message(f->json);
                emit message(m, QByteArray(f->binary.data(), qsizetype(f->binary.size())));
                if (closing_ || socket_->state() != QAbstractSocket::ConnectedState) return;
            }
        } catch (const ProtocolError& e) {
            emit protocol_error(QString::fromStdString(e.code()), QString::fromUtf8(e.what()));
            close_with_error(e.code(), e.what());
            return;
        }
    }
}

}  // namespace moe::remote
