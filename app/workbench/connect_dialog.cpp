#include "workbench/connect_dialog.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QUrl>
#include <QUrlQuery>
#include <QVBoxLayout>

namespace moe::workbench {

using moe::remote::RemoteConnection;

namespace {
constexpr int kRecentMax = 8;
QString trusted_key(const QString& address) { return "remote/trusted/" + QString(address).replace(':', '_'); }
}  // namespace

ConnectDialog::ConnectDialog(RemoteConnection* connection, QWidget* parent) : QDialog(parent), c_(connection) {
    setObjectName("connectDialog");
    setWindowTitle(tr("Connect to engine"));
    auto* top = new QVBoxLayout(this);
    auto* form = new QFormLayout;
    host_ = new QComboBox;
    host_->setObjectName("engineHost");
    host_->setEditable(true);
    host_->addItem("127.0.0.1");
    for (const QString& r : recent_servers()) host_->addItem(r);
    host_->setToolTip(tr("Address of the machine running moe-worker, or 127.0.0.1 through an SSH tunnel "
                         "(ssh -L 7070:127.0.0.1:7070 gpu-host). A moe:// URL printed by the worker works too."));
    port_ = new QSpinBox;
    port_->setObjectName("enginePort");
    port_->setRange(1, 65535);
    port_->setValue(7070);
    token_ = new QLineEdit;
    token_->setObjectName("engineToken");
    token_->setEchoMode(QLineEdit::Password);
    token_->setPlaceholderText(tr("printed by moe-worker at its first start (moe-worker --print-token)"));
    tls_ = new QCheckBox(tr("TLS (the worker was started with --tls-cert or --tls-generate)"));
    tls_->setObjectName("engineTls");
    form->addRow(tr("Host"), host_);
    form->addRow(tr("Port"), port_);
    form->addRow(tr("Token"), token_);
    form->addRow(QString(), tls_);
    top->addLayout(form);
    auto* note = new QLabel(tr("<small>The token is not stored; it never crosses the network (the worker "
                               "checks a proof of it).</small>"));
    note->setWordWrap(true);
    top->addWidget(note);
    state_ = new QLabel;
    state_->setObjectName("connectionState");
    state_->setWordWrap(true);
    top->addWidget(state_);
    auto* buttons = new QDialogButtonBox;
    connect_ = buttons->addButton(tr("Connect"), QDialogButtonBox::AcceptRole);
    connect_->setObjectName("connectButton");
    disconnect_ = buttons->addButton(tr("Disconnect"), QDialogButtonBox::DestructiveRole);
    disconnect_->setObjectName("disconnectButton");
    buttons->addButton(QDialogButtonBox::Close);
    top->addWidget(buttons);

    connect(host_, &QComboBox::activated, this, &ConnectDialog::pick_recent);
    connect(connect_, &QPushButton::clicked, this, [this] {
        QString host = host_->currentText().trimmed();
        QString token = token_->text().trimmed();
        int port = port_->value();
        // moe://host:port/?token=... as the worker prints it.
        if (host.startsWith("moe://")) {
            const QUrl url(host);
            host = url.host();
            if (url.port() > 0) port = url.port();
            const QString t = QUrlQuery(url).queryItemValue("token");
            if (!t.isEmpty()) token = t;
        } else if (host.count(':') == 1) {
            port = host.section(':', 1).toInt();
            host = host.section(':', 0, 0);
        }
        connect_to(host, port, token, tls_->isChecked());
    });
    connect(disconnect_, &QPushButton::clicked, c_, &RemoteConnection::close);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::hide);
    connect(c_, &RemoteConnection::state_changed, this, &ConnectDialog::update_state);
    connect(c_, &RemoteConnection::connection_error, this, &ConnectDialog::update_state);
    connect(c_, &RemoteConnection::connected, this, [this] {
        // Remembered: host, port and TLS. Never the token.
        QSettings s;
        QStringList list = s.value("remote/recent").toStringList();
        const QString entry = c_->address() + (c_->options().tls ? " tls" : "");
        list.removeAll(entry);
        list.prepend(entry);
        while (list.size() > kRecentMax) list.removeLast();
        s.setValue("remote/recent", list);
    });
    // Trust on first use: show the fingerprint and ask.
    c_->confirm_fingerprint = [this](const QString& fp) {
        const auto answer = QMessageBox::question(
            this, tr("New engine certificate"),
            tr("First TLS connection to %1.\n\nCertificate SHA-256 fingerprint:\n%2\n\nCompare it with the "
               "fingerprint moe-worker printed when it started. Trust this certificate?")
                .arg(c_->address(), fp));
        if (answer != QMessageBox::Yes) return false;
        QSettings().setValue(trusted_key(c_->address()), fp);
        return true;
    };
    update_state();
}

QStringList ConnectDialog::recent_servers() { return QSettings().value("remote/recent").toStringList(); }

void ConnectDialog::pick_recent(int index) {
    const QString entry = host_->itemText(index);
    if (!entry.contains(':')) return;
    const QString address = entry.section(' ', 0, 0);
    host_->setEditText(address.section(':', 0, 0));
    port_->setValue(address.section(':', 1).toInt());
    tls_->setChecked(entry.endsWith(" tls"));
}

void ConnectDialog::connect_to(const QString& host, int port, const QString& token, bool tls) {
    host_->setEditText(host);
    port_->setValue(port);
    tls_->setChecked(tls);
    if (token.isEmpty()) {
        state_->setText(tr("Enter the worker's token (moe-worker printed it; moe-worker --print-token shows it)."));
        return;
    }
    RemoteConnection::Options o;
    o.host = host;
    o.port = quint16(port);
    o.token = token.toUtf8();
    o.tls = tls;
    o.trusted_fingerprint = QSettings().value(trusted_key(QString("%1:%2").arg(host).arg(port))).toString();
    token_->clear();  // not kept in the form either
    c_->open(o);
}

void ConnectDialog::update_state() {
    using S = RemoteConnection::State;
    QString text;
    switch (c_->state()) {
    case S::Disconnected: text = tr("Not connected."); break;
    case S::Connecting: text = tr("Connecting to %1…").arg(c_->address()); break;
    case S::Connected:
        text = tr("Connected to %1%2.").arg(c_->address(), c_->options().tls ? tr(" (TLS, certificate %1)").arg(c_->fingerprint()) : QString());
        break;
    case S::Reconnecting: text = tr("Connection to %1 lost; retrying… (runs go on on the worker)").arg(c_->address()); break;
    case S::Failed: text = tr("Cannot connect: %1").arg(c_->last_error()); break;
    }
    state_->setText(text);
    disconnect_->setEnabled(c_->state() != S::Disconnected);
}

}  // namespace moe::workbench
