#pragma once
// "Connect to engine…": host, port, token and TLS of a moe-worker; the recent servers (host,
// port and TLS only: the token is never stored, it is asked for each time); the connection's
// state as it changes. On a first TLS connection the certificate's SHA-256 fingerprint is shown
// to be compared with what moe-worker printed; once accepted it is pinned (QSettings
// "remote/trusted/HOST:PORT") and a different certificate later is refused.
#include <QDialog>

#include "remote_connection.h"

class QCheckBox;
class QComboBox;
class QLabel;
class QLineEdit;
class QPushButton;
class QSpinBox;

namespace moe::workbench {

class ConnectDialog : public QDialog {
    Q_OBJECT

public:
    ConnectDialog(moe::remote::RemoteConnection* connection, QWidget* parent = nullptr);

    // Fills the fields (tests, a moe:// URL) and connects.
    void connect_to(const QString& host, int port, const QString& token, bool tls);
    static QStringList recent_servers();
    QLabel* state_label() const { return state_; }

private:
    void update_state();
    void pick_recent(int index);

    moe::remote::RemoteConnection* c_;
    QComboBox* host_ = nullptr;
    QSpinBox* port_ = nullptr;
    QLineEdit* token_ = nullptr;
    QCheckBox* tls_ = nullptr;
    QLabel* state_ = nullptr;
    QPushButton *connect_ = nullptr, *disconnect_ = nullptr;
};

}  // namespace moe::workbench
