#include "workbench/generation_controller.h"

#include <QtConcurrent>

#include <chrono>

#include "generate/generator.h"
#include "generation_controls.h"
#include "inspect/checkpoint_inspector.h"
#include "routing_inspector_view.h"
#include "workbench/inspection_controller.h"
#include "remote_connection.h"
#include "session_codec.h"
#include "workbench/run_controller.h"

namespace moe::workbench {

GenerationController::GenerationController(views::RoutingInspectorView* view,
                                           InspectionController* inspection, QObject* parent)
    : QObject(parent), view_(view), inspection_(inspection) {
    connect(view, &views::RoutingInspectorView::generateRequested, this,
            &GenerationController::generate);
    connect(view, &views::RoutingInspectorView::stopGenerationRequested, this,
            &GenerationController::stop);
    connect(&watcher_, &QFutureWatcher<Outcome>::finished, this, &GenerationController::finished);
    timer_.setInterval(100);
    connect(&timer_, &QTimer::timeout, this, &GenerationController::poll);
}

GenerationController::~GenerationController() {
    if (worker_request_ && worker_) worker_->request({{"type", "cancel"}, {"request", worker_request_}}, {});
    if (live_) live_->stop = true;
    watcher_.waitForFinished();  // the worker stops after its current token
}

void GenerationController::generate(const QString& text, const QString& checkpoint, int new_tokens,
                                    double temperature) {
    if (running_ || !view_ || !inspection_) return;
    if (inspection_->busy()) {
        view_->setError(tr("An inspection is running; generate when it is done."));
        return;
    }
    const QString dir = inspection_->checkpoint_dir(checkpoint);
    if (dir.isEmpty()) {
        view_->setError(tr("Unknown checkpoint %1").arg(checkpoint));
        return;
    }
    running_ = true;
    updates_ = 0;
    checkpoint_ = checkpoint;
    // Speculative decoding is greedy: the temperature does not apply.
    const bool speculative = view_->generationControls()->speculative();
    if (inspection_->worker()) {
        generate_on_worker(text, dir, new_tokens, speculative ? 0.0 : temperature, speculative);
        return;
    }
    live_ = std::make_shared<Live>();
    view_->generationControls()->setRunning(true);
    view_->setBusy(true, tr("Loading %1 and writing %2 tokens…").arg(checkpoint).arg(new_tokens));
    GenerationSettings s;
    s.max_new_tokens = new_tokens;
    s.speculative = speculative;
    s.sampling.temperature = speculative ? 0.0 : temperature;
    s.sampling.seed = 0;
    const std::string dir_s = dir.toStdString(), prompt = text.toStdString();
    std::shared_ptr<Live> live = live_;
    watcher_.setFuture(QtConcurrent::run([dir_s, prompt, s, live]() {
        Outcome out;
        try {
            CheckpointInspector insp(dir_s, 1);
            using Clock = std::chrono::steady_clock;
            auto last = Clock::now() - std::chrono::seconds(1);
            std::vector<int32_t> final_tokens;
            const auto t0 = Clock::now();
            const GenerationResult r =
                insp.generate_text(prompt, s, [&](const std::vector<int32_t>& seq) {
                    final_tokens = seq;
                    // A fresh inspection of the whole text (routing of every token, attention):
                    // at most ten a second, so a fast model is not slowed down by the view.
                    if (Clock::now() - last >= std::chrono::milliseconds(100)) {
                        Inspection ins = insp.inspect(seq);
                        last = Clock::now();
                        const std::lock_guard<std::mutex> lock(live->mutex);
                        live->latest = std::move(ins);
                    }
                    {
                        const std::lock_guard<std::mutex> lock(live->mutex);
                        ++live->generated;
                    }
                    return !live->stop.load();
                });
            const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
            if (!final_tokens.empty()) {
                Inspection ins = insp.inspect(final_tokens);  // the last word, always shown
                const std::lock_guard<std::mutex> lock(live->mutex);
                live->latest = std::move(ins);
            }
            out.text = insp.decode(final_tokens);
            out.generated = static_cast<int>(r.tokens.size());
            out.stop_reason = r.stop_reason;
            out.tokens_per_second = seconds > 0 ? r.tokens.size() / seconds : 0.0;
            out.drafted = r.drafted;
            out.accepted = r.accepted;
        } catch (const std::exception& e) {
            out.error = e.what();
        }
        return out;
    }));
    timer_.start();
}

void GenerationController::stop() {
    if (live_) live_->stop = true;
    if (worker_request_ && worker_) worker_->request({{"type", "cancel"}, {"request", worker_request_}}, {});
}

void GenerationController::generate_on_worker(const QString& text, const QString& dir, int new_tokens,
                                              double temperature, bool speculative) {
    worker_ = inspection_->worker();
    view_->generationControls()->setRunning(true);
    const QString device = inspection_->worker_device();
    view_->setBusy(true, tr("Writing %1 tokens with %2 on the worker (%3)…").arg(new_tokens).arg(checkpoint_, device));
    QPointer<GenerationController> self(this);
    worker_request_ = worker_->request(
        {{"type", "generate"},
         {"checkpoint", dir.toStdString()},
         {"text", text.toStdString()},
         {"max_new_tokens", new_tokens},
         {"temperature", temperature},
         {"speculative", speculative},
         {"seed", 0},
         {"device", device.toStdString()},
         {"attention", true},
         {"interval_ms", 100}},
        [self](const nlohmann::json& m, const QByteArray&) {
            if (self) self->worker_finished(m);
        },
        [self](const nlohmann::json& m) {
            if (!self || !self->running_ || !self->inspection_ || !self->view_) return;
            if (m.contains("inspection")) {
                try {
                    self->inspection_->show_inspection(remote::inspection_from_json(m["inspection"]), self->checkpoint_);
                    ++self->updates_;
                } catch (const std::exception&) {
                    return;  // the final answer shows the whole text
                }
            }
            self->view_->setBusy(true, tr("Generating with %1 on the worker: %2 tokens so far…")
                                           .arg(self->checkpoint_)
                                           .arg(m.value("generated", int64_t(0))));
        });
}

void GenerationController::worker_finished(const nlohmann::json& m) {
    worker_request_ = 0;
    if (m.value("type", "") != "result") {
        show_done(QString::fromStdString(m.value("message", m.dump().substr(0, 200))), {}, 0, 0, {});
        return;
    }
    try {
        if (inspection_) inspection_->show_inspection(remote::inspection_from_json(m.at("inspection")), checkpoint_);
        ++updates_;
    } catch (const std::exception& e) {
        show_done(tr("The worker's answer is not readable: %1").arg(e.what()), {}, 0, 0, {});
        return;
    }
    show_done({}, QString::fromStdString(m.value("text", "")), int(m.value("generated", int64_t(0))),
              m.value("tokens_per_second", 0.0), QString::fromStdString(m.value("stop_reason", "")),
              m.value("drafted", int64_t(0)), m.value("accepted", int64_t(0)));
}

void GenerationController::poll() {
    if (!live_ || !inspection_ || !view_) return;
    std::optional<Inspection> ins;
    int generated = 0;
    {
        const std::lock_guard<std::mutex> lock(live_->mutex);
        ins.swap(live_->latest);
        generated = live_->generated;
    }
    if (!ins) return;
    inspection_->show_inspection(std::move(*ins), checkpoint_);
    ++updates_;
    if (running_)
        view_->setBusy(true,
                       tr("Generating with %1: %2 tokens so far…").arg(checkpoint_).arg(generated));
}

void GenerationController::finished() {
    const Outcome out = watcher_.result();
    poll();  // the final inspection
    timer_.stop();
    live_.reset();
    show_done(QString::fromStdString(out.error), QString::fromUtf8(out.text.data(), int(out.text.size())),
              out.generated, out.tokens_per_second, QString::fromStdString(out.stop_reason), out.drafted,
              out.accepted);
}

void GenerationController::show_done(const QString& error, const QString& text, int generated,
                                     double tokens_per_second, const QString& stop_reason,
                                     int64_t drafted, int64_t accepted) {
    drafted_ = drafted;
    accepted_ = accepted;
    running_ = false;
    if (view_) {
        view_->generationControls()->setRunning(false);
        if (!error.isEmpty()) {
            view_->setBusy(false);
            view_->setError(error);
        } else {
            view_->setText(text);
            QString done = tr("Generated %1 tokens (%2 tokens/s, stopped: %3).")
                               .arg(generated)
                               .arg(tokens_per_second, 0, 'f', 0)
                               .arg(stop_reason);
            if (drafted > 0)
                done += tr(" MTP drafts accepted: %1% (%2 of %3), so about %4 main-model "
                           "steps wrote %5 tokens.")
                            .arg(100.0 * double(accepted) / double(drafted), 0, 'f', 0)
                            .arg(accepted)
                            .arg(drafted)
                            .arg(generated - accepted)
                            .arg(generated);
            view_->setBusy(false, done);
        }
    }
    emit generation_done(error.isEmpty(), generated);
}

}  // namespace moe::workbench
