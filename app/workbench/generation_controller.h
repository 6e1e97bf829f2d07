#pragma once
// GenerationController: the routing inspector's Generate. It continues the text with the chosen
// checkpoint on a worker thread (its own CheckpointInspector: the model and the KV cache of
// engine/generate) and, while tokens arrive, re-inspects the growing text so the inspector and
// the sparsity view show every MoE layer routing each new token - live, at most ten updates a
// second. Stop ends the run after the current token; the final text lands in the text box.
// For a run on a moe-worker the worker generates on the device the run trained on and streams
// the same live routing ("generate" with progress; Stop sends "cancel").
#include <QFutureWatcher>
#include <QObject>
#include <QPointer>
#include <QTimer>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "inspect/routing_inspection.h"

namespace moe::views {
class RoutingInspectorView;
}

namespace moe::remote {
class RemoteConnection;
}

namespace moe::workbench {

class InspectionController;

class GenerationController : public QObject {
    Q_OBJECT
public:
    GenerationController(views::RoutingInspectorView* view, InspectionController* inspection,
                         QObject* parent = nullptr);
    ~GenerationController() override;  // stops a running generation and waits for it

    bool running() const { return running_; }
    int updates_shown() const { return updates_; }  // live inspections shown so far
    // Speculative decoding of the last generation (0 drafted when it was off).
    int64_t drafted() const { return drafted_; }
    int64_t accepted() const { return accepted_; }

signals:
    void generation_done(bool ok, int new_tokens);

public slots:
    void generate(const QString& text, const QString& checkpoint, int new_tokens,
                  double temperature);
    void stop();

private:
    // What the worker shares with the GUI thread.
    struct Live {
        std::mutex mutex;
        std::optional<Inspection> latest;  // newest snapshot not yet shown
        int generated = 0;
        std::atomic<bool> stop{false};
    };
    struct Outcome {
        std::string text;  // prompt and generated, decoded
        int generated = 0;
        std::string stop_reason, error;
        double tokens_per_second = 0.0;
        int64_t drafted = 0, accepted = 0;
    };
    void poll();      // timer: shows the newest snapshot
    void finished();  // the worker is done
    // A run on a moe-worker: the worker generates and streams progress (docs/remote-protocol.md).
    void generate_on_worker(const QString& text, const QString& dir, int new_tokens, double temperature,
                            bool speculative);
    void worker_finished(const nlohmann::json& m);
    void show_done(const QString& error, const QString& text, int generated, double tokens_per_second,
                   const QString& stop_reason, int64_t drafted = 0, int64_t accepted = 0);

    QPointer<views::RoutingInspectorView> view_;
    QPointer<InspectionController> inspection_;
    std::shared_ptr<Live> live_;
    QFutureWatcher<Outcome> watcher_;
    QTimer timer_;
    QString checkpoint_;
    bool running_ = false;
    int64_t drafted_ = 0, accepted_ = 0;
    int updates_ = 0;
    int64_t worker_request_ = 0;  // the running "generate" on a worker (0: none)
    QPointer<remote::RemoteConnection> worker_;
};

}  // namespace moe::workbench
