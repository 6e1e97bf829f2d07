#include "workbench/log_bridge.h"

#include <QCoreApplication>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <mutex>

namespace moe::workbench {

namespace {

// A spdlog sink that hands every formatted line to the bridge.
class BridgeSink : public spdlog::sinks::base_sink<std::mutex> {
public:
    explicit BridgeSink(std::function<void(QString, QString)> post) : post_(std::move(post)) {}

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        const auto level = spdlog::level::to_string_view(msg.level);
        post_(QString::fromUtf8(level.data(), int(level.size())),
              QString::fromUtf8(msg.payload.data(), int(msg.payload.size())));
    }
    void flush_() override {}

private:
    std::function<void(QString, QString)> post_;
};

}  // namespace

LogBridge* LogBridge::instance() {
    static LogBridge* bridge = new LogBridge;  // lives as long as the process: sinks outlive windows
    return bridge;
}

LogBridge::LogBridge() {
    auto sink = std::make_shared<BridgeSink>([this](QString level, QString text) { post(level, text); });
    spdlog::default_logger()->sinks().push_back(std::move(sink));
}

void LogBridge::post(const QString& level, const QString& text) {
    // Queued even on the GUI thread, so a slot never runs inside a logging call.
    QMetaObject::invokeMethod(
        this, [this, level, text] { emit line(level, text); }, Qt::QueuedConnection);
}

}  // namespace moe::workbench
