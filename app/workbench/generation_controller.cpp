#include "workbench/generation_controller.h"

#include <QtConcurrent>

#include <chrono>

#include "generate/generator.h"
#include "generation_controls.h"
#include "inspect/checkpoint_inspector.h"
#include "routing_inspector_view.h"
#include "workbench/inspection_controller.h"
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
    live_ = std::make_shared<Live>();
    view_->generationControls()->setRunning(true);
    view_->setBusy(true, tr("Loading %1 and writing %2 tokens…").arg(checkpoint).arg(new_tokens));
    GenerationSettings s;
    s.max_new_tokens = new_tokens;
    s.sampling.temperature = temperature;
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
        } catch (const std::exception& e) {
            out.error = e.what();
        }
        return out;
    }));
    timer_.start();
}

void GenerationController::stop() {
    if (live_) live_->stop = true;
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
    running_ = false;
    if (view_) {
        view_->generationControls()->setRunning(false);
        if (!out.error.empty()) {
            view_->setBusy(false);
            view_->setError(QString::fromStdString(out.error));
        } else {
            view_->setText(QString::fromUtf8(out.text.data(), int(out.text.size())));
            view_->setBusy(false, tr("Generated %1 tokens (%2 tokens/s, stopped: %3).")
                                      .arg(out.generated)
                                      .arg(out.tokens_per_second, 0, 'f', 0)
                                      .arg(QString::fromStdString(out.stop_reason)));
        }
    }
    live_.reset();
    emit generation_done(out.error.empty(), out.generated);
}

}  // namespace moe::workbench
