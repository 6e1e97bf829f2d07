#pragma once
// LogBridge: brings spdlog's lines (from any thread: the engine's above all) to the GUI thread.
// install() adds a sink to spdlog's default logger; each line becomes the `line` signal, emitted
// through a queued invocation, so receivers run on the GUI thread and never block the engine.
#include <QObject>
#include <QString>

namespace moe::workbench {

class LogBridge : public QObject {
    Q_OBJECT

public:
    // The process-wide bridge (created and installed on first use; lives on the GUI thread).
    static LogBridge* instance();

signals:
    void line(const QString& level, const QString& text);

private:
    LogBridge();
    void post(const QString& level, const QString& text);
};

}  // namespace moe::workbench
