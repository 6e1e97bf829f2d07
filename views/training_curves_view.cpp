#include "training_curves_view.h"

#include "colormap.h"
#include "explained.h"

#include <QCheckBox>
#include <QComboBox>
#include <QElapsedTimer>
#include <QFontMetrics>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QHelpEvent>
#include <QLabel>
#include <QMouseEvent>
#include <QPushButton>
#include <QSlider>
#include <QToolTip>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <algorithm>
#include <limits>

namespace moe::views {
namespace {

constexpr int kRefreshMs = 33;  // at most ~30 redraws per second
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct PanelInfo {
    const char* object_name;
    const char* title;
    const char* y_label;
    const Concept* concept_;
};

constexpr Concept kLossScale{
    "Loss scale (fp16)",
    "FP16 gradients underflow to zero below 2<sup>-24</sup>, so the loss is multiplied by this scale "
    "before the backward pass and the gradients divided by it after. The scale doubles after a run "
    "of good steps and halves when a gradient overflows; that step is skipped (crosses)."};

const PanelInfo kPanels[TrainingCurvesView::PanelCount] = {
    {"training-loss", "Training loss", "Loss (nats/token)", &explain::kLoss},
    {"eval-loss", "Evaluation loss", "Loss (nats/token)", &explain::kEvalLoss},
    {"aux-loss", "Auxiliary balance loss", "Aux loss", &explain::kAuxLoss},
    {"learning-rate", "Learning rate", "Learning rate", &explain::kLearningRate},
    {"grad-norm", "Gradient norm", "Global L2 norm", &explain::kGradNorm},
    {"throughput", "Throughput", "Tokens / s", &explain::kTokensPerSecond},
    {"loss-scale", "Loss scale (fp16)", "Loss scale", &kLossScale},
};

bool all_zero(const std::vector<double>& v) {
    return std::all_of(v.begin(), v.end(), [](double x) { return x == 0.0 || std::isnan(x); });
}

TrainingCurvesView::Panel panel_of(Metric m) {
    switch (m) {
    case Metric::Loss:
    case Metric::MtpLoss: return TrainingCurvesView::PanelLoss;
    case Metric::EvalLoss: return TrainingCurvesView::PanelEval;
    case Metric::AuxLoss: return TrainingCurvesView::PanelAux;
    case Metric::Lr: return TrainingCurvesView::PanelLr;
    case Metric::GradNorm: return TrainingCurvesView::PanelGrad;
    case Metric::TokensPerS: return TrainingCurvesView::PanelThroughput;
    case Metric::LossScale: return TrainingCurvesView::PanelLossScale;
    }
    return TrainingCurvesView::PanelLoss;
}

const std::vector<double>& column(const RunCurves& r, Metric m) {
    switch (m) {
    case Metric::Loss: return r.loss;
    case Metric::MtpLoss: return r.mtp_loss;
    case Metric::AuxLoss: return r.aux_loss;
    case Metric::Lr: return r.lr;
    case Metric::GradNorm: return r.grad_norm;
    case Metric::TokensPerS: return r.tokens_per_s;
    case Metric::EvalLoss: return r.eval.loss;
    case Metric::LossScale: return r.loss_scale;
    }
    return r.loss;
}

constexpr Metric kStepMetrics[] = {Metric::Loss, Metric::MtpLoss,  Metric::AuxLoss,   Metric::Lr,
                                   Metric::GradNorm, Metric::TokensPerS, Metric::LossScale};

// Curves drawn as logged, never smoothed: sparse evaluations, and the loss scale, whose jumps
// are the point.
bool unsmoothed(Metric m) { return m == Metric::EvalLoss || m == Metric::LossScale; }

// Loss scales are powers of two: label them 2^16 rather than 65536.
class PowerOfTwoTicker : public QCPAxisTickerLog {
protected:
    QString getTickLabel(double tick, const QLocale&, QChar, int) override {
        return QStringLiteral("2^%1").arg(std::log2(tick), 0, 'g', 3);
    }
};

// Steps and tokens read best with SI prefixes (250k, 1.5M) instead of 2.5·10^5.
class SiTicker : public QCPAxisTicker {
protected:
    QString getTickLabel(double tick, const QLocale&, QChar, int) override { return si_format(tick, 4); }
};

// A prefix of `old` is still `now`: sample a few positions rather than compare millions.
bool grew_from(const std::vector<double>& old, const std::vector<double>& now) {
    if (now.size() < old.size()) return false;
    if (old.empty()) return true;
    auto same = [](double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); };
    const std::size_t n = old.size();
    return same(old[0], now[0]) && same(old[n / 2], now[n / 2]) && same(old[n - 1], now[n - 1]);
}

void append_tail(std::vector<double>& into, const std::vector<double>& from) {
    into.insert(into.end(), from.begin() + static_cast<long>(into.size()), from.end());
}

void append_all(std::vector<double>& into, const std::vector<double>& more) {
    into.insert(into.end(), more.begin(), more.end());
}

QFont sized(QFont f, double points, bool bold = false) {
    f.setPointSizeF(points);
    f.setBold(bold);
    return f;
}

}  // namespace

TrainingCurvesView::TrainingCurvesView(QWidget* parent) : QWidget(parent) {
    update_timer_.setSingleShot(true);
    update_timer_.setInterval(kRefreshMs);
    connect(&update_timer_, &QTimer::timeout, this, &TrainingCurvesView::updatePlots);
    buildUi();
}

TrainingCurvesView::~TrainingCurvesView() = default;

void TrainingCurvesView::buildUi() {
    auto* top = new QVBoxLayout(this);
    top->setContentsMargins(6, 6, 6, 6);
    top->setSpacing(4);

    auto* bar = new QHBoxLayout;
    bar->setSpacing(8);
    auto* x_label = new QLabel(QStringLiteral("X axis:"));
    x_combo_ = new QComboBox;
    x_combo_->addItem(QStringLiteral("Step"), int(XAxisKind::Step));
    x_combo_->addItem(QStringLiteral("Tokens"), int(XAxisKind::Tokens));
    x_combo_->addItem(QStringLiteral("Wall time"), int(XAxisKind::WallTime));
    set_explained(x_combo_, explain::kXAxis);
    connect(x_combo_, &QComboBox::currentIndexChanged, this,
            [this](int i) { setXAxis(static_cast<XAxisKind>(x_combo_->itemData(i).toInt())); });

    log_check_ = new QCheckBox(QStringLiteral("Log scale"));
    set_explained(log_check_, explain::kLogScale);
    connect(log_check_, &QCheckBox::toggled, this, &TrainingCurvesView::setLogY);

    auto* smooth_label = new QLabel(QStringLiteral("Smoothing:"));
    smooth_slider_ = new QSlider(Qt::Horizontal);
    smooth_slider_->setRange(0, 99);
    smooth_slider_->setValue(int(std::lround(smoothing_ * 100)));
    smooth_slider_->setFixedWidth(140);
    smooth_value_ = new QLabel;
    smooth_value_->setMinimumWidth(QFontMetrics(smooth_value_->font()).horizontalAdvance(QStringLiteral("0.00 ")));
    smooth_value_->setText(QString::number(smoothing_, 'f', 2));
    set_explained(smooth_slider_, explain::kSmoothing);
    set_explained(smooth_label, explain::kSmoothing);
    connect(smooth_slider_, &QSlider::valueChanged, this, [this](int v) { setSmoothing(v / 100.0); });

    follow_check_ = new QCheckBox(QStringLiteral("Follow live"));
    follow_check_->setChecked(follow_live_);
    set_explained(follow_check_, explain::kFollowLive);
    connect(follow_check_, &QCheckBox::toggled, this, &TrainingCurvesView::setFollowLive);

    auto* fit = new QPushButton(QStringLiteral("Fit all"));
    fit->setToolTip(QStringLiteral("Show every logged point (double-click a plot does the same)"));
    connect(fit, &QPushButton::clicked, this, &TrainingCurvesView::fitAll);

    run_legend_ = new QLabel;
    run_legend_->setTextFormat(Qt::RichText);
    // Its own row, wrapping: several long run names must not widen the view past the dock.
    run_legend_->setWordWrap(true);

    bar->addWidget(x_label);
    bar->addWidget(x_combo_);
    bar->addSpacing(6);
    bar->addWidget(log_check_);
    bar->addSpacing(6);
    bar->addWidget(smooth_label);
    bar->addWidget(smooth_slider_);
    bar->addWidget(smooth_value_);
    bar->addWidget(follow_check_);
    bar->addWidget(fit);
    bar->addStretch(1);
    top->addLayout(bar);
    top->addWidget(run_legend_);

    auto* grid = new QGridLayout;
    grid_ = grid;
    grid->setSpacing(4);
    for (int p = 0; p < PanelCount; ++p) {
        setupPlot(static_cast<Panel>(p));
        if (p == PanelLossScale) grid->addWidget(plots_[p], 2, 0, 1, 3);  // a strip under the six
        else grid->addWidget(plots_[p], p / 3, p % 3);
    }
    for (int c = 0; c < 3; ++c) grid->setColumnStretch(c, 1);
    for (int r = 0; r < 2; ++r) grid->setRowStretch(r, 2);
    grid->setRowStretch(2, 0);  // the loss-scale strip takes room only while it is shown
    plots_[PanelLossScale]->setMinimumHeight(150);
    plots_[PanelLossScale]->setVisible(false);
    top->addLayout(grid, 1);
    updateAxes();
}

void TrainingCurvesView::setupPlot(Panel panel) {
    const PanelInfo& info = kPanels[panel];
    auto* plot = new QCustomPlot(this);
    plots_[panel] = plot;
    plot->setObjectName(QString::fromLatin1(info.object_name));
    plot->setWindowTitle(QString::fromLatin1(info.title));
    plot->setMinimumSize(260, 190);
    plot->setAntialiasedElements(QCP::aePlottables);
    plot->setNoAntialiasingOnDrag(true);
    plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    // Only x is zoomed and dragged by hand; y always fits the visible data.
    plot->axisRect()->setRangeDrag(Qt::Horizontal);
    plot->axisRect()->setRangeZoom(Qt::Horizontal);
    plot->setMouseTracking(true);

    const QFont base = font();
    plot->plotLayout()->insertRow(0);
    auto* title = new QCPTextElement(plot, QString::fromLatin1(info.title), sized(base, 10, true));
    title->setMargins(QMargins(0, 4, 0, 0));
    plot->plotLayout()->addElement(0, 0, title);

    for (QCPAxis* axis : {plot->xAxis, plot->yAxis}) {
        axis->setTickLabelFont(sized(base, 8));
        axis->setLabelFont(sized(base, 9));
        axis->setLabelPadding(3);
        axis->setBasePen(QPen(QColor(0x60, 0x60, 0x60)));
        axis->setTickPen(QPen(QColor(0x60, 0x60, 0x60)));
        axis->setSubTickPen(QPen(QColor(0x90, 0x90, 0x90)));
        axis->grid()->setPen(QPen(QColor(0xe3, 0xe3, 0xe3), 0, Qt::SolidLine));
        axis->grid()->setSubGridPen(QPen(QColor(0xf2, 0xf2, 0xf2), 0, Qt::SolidLine));
    }
    plot->yAxis->grid()->setSubGridVisible(true);
    plot->yAxis->setLabel(QString::fromLatin1(info.y_label));
    plot->yAxis->setNumberFormat(QStringLiteral("g"));
    plot->yAxis->setNumberPrecision(4);

    plot->legend->setFont(sized(base, 8));
    plot->legend->setBrush(QColor(255, 255, 255, 215));
    plot->legend->setBorderPen(QPen(QColor(0xc8, 0xc8, 0xc8)));
    plot->legend->setIconSize(22, 10);
    plot->legend->setRowSpacing(-2);
    plot->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignRight);

    // Hover readout lives on QCustomPlot's top "overlay" layer, buffered on its own, so moving
    // the mouse redraws only it.
    plot->layer(QStringLiteral("overlay"))->setMode(QCPLayer::lmBuffered);
    Hover& h = hover_[panel];
    h.line = new QCPItemStraightLine(plot);
    h.line->setLayer(QStringLiteral("overlay"));
    h.line->setPen(QPen(QColor(0x70, 0x70, 0x70), 0, Qt::DashLine));
    h.line->setVisible(false);
    h.label = new QCPItemText(plot);
    h.label->setLayer(QStringLiteral("overlay"));
    h.label->setFont(sized(base, 8));
    h.label->setPadding(QMargins(5, 3, 5, 3));
    h.label->setBrush(QColor(255, 255, 255, 230));
    h.label->setPen(QPen(QColor(0xa0, 0xa0, 0xa0)));
    h.label->setTextAlignment(Qt::AlignLeft);
    h.label->position->setType(QCPItemPosition::ptAbsolute);
    h.label->setClipToAxisRect(false);
    h.label->setVisible(false);

    auto* note = new QCPItemText(plot);
    note->position->setType(QCPItemPosition::ptAxisRectRatio);
    note->position->setCoords(0.5, 0.5);
    note->setText(QStringLiteral("no run yet: Start training, or open a run"));
    note->setColor(QColor(0x90, 0x90, 0x90));
    note->setFont(sized(base, 9));
    empty_note_[panel] = note;

    connect(plot->xAxis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), this,
            [this, plot](const QCPRange& r) {
                if (!syncing_) applyXRange(r.lower, r.upper, plot);
            });
    connect(plot, &QCustomPlot::mouseDoubleClick, this, [this](QMouseEvent*) { fitAll(); });
    // Zooming or dragging by hand means "let me look here": stop following the newest data.
    connect(plot, &QCustomPlot::mousePress, this, [this](QMouseEvent* e) {
        if (e->button() == Qt::LeftButton) setFollowLive(false);
    });
    connect(plot, &QCustomPlot::mouseWheel, this, [this](QWheelEvent*) { setFollowLive(false); });
    connect(plot, &QCustomPlot::mouseMove, this, [this, plot](QMouseEvent* e) {
        const QPointF pos = e->position();
        hover_x_ = plot->axisRect()->rect().contains(pos.toPoint()) ? plot->xAxis->pixelToCoord(pos.x()) : kNaN;
        updateHover();
    });
    plot->installEventFilter(this);
    add_export_actions(this, plot, [this, panel] { return csvFor(panel); });
}

bool TrainingCurvesView::eventFilter(QObject* watched, QEvent* event) {
    for (int p = 0; p < PanelCount; ++p) {
        if (watched != plots_[p]) continue;
        if (event->type() == QEvent::Leave) {
            hover_x_ = kNaN;
            updateHover();
        } else if (event->type() == QEvent::ToolTip) {
            // Explain the metric when hovering the title or the axes, not over the data, where
            // the tooltip would cover the hover readout.
            auto* help = static_cast<QHelpEvent*>(event);
            if (!plots_[p]->axisRect()->rect().contains(help->pos()))
                QToolTip::showText(help->globalPos(), explained_html(*kPanels[p].concept_), plots_[p]);
            else
                QToolTip::hideText();
            return true;
        }
    }
    return QWidget::eventFilter(watched, event);
}

// ---- data in ----

namespace {
// Which graphs a run needs: its name, which columns are logged, its eval labels.
QString run_signature(const RunCurves& r) {
    QString sig = r.run_name + QLatin1Char('|') + r.precision + QLatin1Char('|');
    for (Metric m : kStepMetrics) sig += column(r, m).empty() ? QLatin1Char('0') : QLatin1Char('1');
    sig += r.eval.loss.empty() ? QLatin1Char('0') : QLatin1Char('1');
    return sig + r.eval.labels.join(QLatin1Char(',')) + QLatin1Char('\n');
}
}  // namespace

QString TrainingCurvesView::structureSignature(const std::vector<RunCurves>& runs) const {
    QString sig;
    for (const RunCurves& r : runs) sig += run_signature(r);
    return sig;
}

QString TrainingCurvesView::currentSignature() const {
    QString sig;
    for (const RunState& r : runs_) sig += run_signature(r.data);
    return sig;
}

void TrainingCurvesView::placeEval(RunState& r) {
    r.eval_tokens = interpolate_at(r.data.step, r.data.tokens, r.data.eval.step);
    r.eval_wall = interpolate_at(r.data.step, r.data.wall_s, r.data.eval.step);
}

void TrainingCurvesView::setRuns(const std::vector<RunCurves>& runs) {
    const QString sig = structureSignature(runs);
    bool rebuilt = false;
    if (sig != signature_ || runs.size() != runs_.size()) {
        runs_.clear();
        runs_.reserve(runs.size());
        for (const RunCurves& r : runs) {
            runs_.push_back(RunState{r, {}, {}});
            placeEval(runs_.back());
        }
        signature_ = sig;
        rebuildCurves();
        rebuilt = true;
    } else {
        for (std::size_t i = 0; i < runs.size(); ++i) {
            RunState& st = runs_[i];
            const RunCurves& now = runs[i];
            bool grows = grew_from(st.data.step, now.step);
            for (Metric m : kStepMetrics) grows = grows && grew_from(column(st.data, m), column(now, m));
            grows = grows && grew_from(st.data.eval.step, now.eval.step);
            if (grows) {
                std::vector<std::size_t> old_sizes;
                for (const Curve& c : curves_)
                    if (c.run == int(i)) old_sizes.push_back(rawOf(c).size());
                append_tail(st.data.step, now.step);
                append_tail(st.data.tokens, now.tokens);
                append_tail(st.data.wall_s, now.wall_s);
                append_tail(st.data.loss, now.loss);
                append_tail(st.data.mtp_loss, now.mtp_loss);
                append_tail(st.data.aux_loss, now.aux_loss);
                append_tail(st.data.lr, now.lr);
                append_tail(st.data.grad_norm, now.grad_norm);
                append_tail(st.data.tokens_per_s, now.tokens_per_s);
                append_tail(st.data.loss_scale, now.loss_scale);
                append_tail(st.data.skipped, now.skipped);
                st.data.precision = now.precision;
                st.data.eval = now.eval;  // eval is small: copy it whole
                placeEval(st);
                std::size_t k = 0;
                for (Curve& c : curves_)
                    if (c.run == int(i)) smoothTail(c, old_sizes[k++]);
            } else {
                st.data = now;
                placeEval(st);
                for (Curve& c : curves_)
                    if (c.run == int(i)) resmooth(c);
            }
        }
    }
    if (rebuilt) updateRunLegend();
    dataChanged();
}

bool TrainingCurvesView::appendInto(RunState& st, const RunCurves& more) {
    append_all(st.data.step, more.step);
    append_all(st.data.tokens, more.tokens);
    append_all(st.data.wall_s, more.wall_s);
    append_all(st.data.loss, more.loss);
    append_all(st.data.mtp_loss, more.mtp_loss);
    append_all(st.data.aux_loss, more.aux_loss);
    append_all(st.data.lr, more.lr);
    append_all(st.data.grad_norm, more.grad_norm);
    append_all(st.data.tokens_per_s, more.tokens_per_s);
    append_all(st.data.loss_scale, more.loss_scale);
    append_all(st.data.skipped, more.skipped);
    EvalCurves& ev = st.data.eval;
    append_all(ev.step, more.eval.step);
    append_all(ev.loss, more.eval.loss);
    if (ev.labels.isEmpty() && !more.eval.labels.isEmpty()) {
        ev.labels = more.eval.labels;
        ev.label_loss.assign(static_cast<std::size_t>(ev.labels.size()), {});
    }
    for (std::size_t j = 0; j < ev.label_loss.size() && j < more.eval.label_loss.size(); ++j)
        append_all(ev.label_loss[j], more.eval.label_loss[j]);
    if (!more.eval.step.empty()) placeEval(st);
    return true;
}

void TrainingCurvesView::appendRows(const RunCurves& rows) {
    auto it = std::find_if(runs_.begin(), runs_.end(),
                           [&](const RunState& r) { return r.data.run_name == rows.run_name; });
    if (it == runs_.end()) {
        std::vector<RunCurves> all;
        for (const RunState& r : runs_) all.push_back(r.data);
        all.push_back(rows);
        setRuns(all);
        return;
    }
    const int run = int(it - runs_.begin());
    std::vector<std::size_t> old_sizes;
    for (const Curve& c : curves_)
        if (c.run == run) old_sizes.push_back(rawOf(c).size());
    appendInto(*it, rows);
    const QString sig = currentSignature();
    if (sig != signature_) {  // a column appeared: rebuild the graphs, data is already in place
        signature_ = sig;
        rebuildCurves();
        updateRunLegend();
    } else {
        std::size_t k = 0;
        for (Curve& c : curves_)
            if (c.run == run) smoothTail(c, old_sizes[k++]);
    }
    dataChanged();
}

void TrainingCurvesView::clear() { setRuns({}); }

// ---- curves and graphs ----

void TrainingCurvesView::rebuildCurves() {
    for (int p = 0; p < PanelCount; ++p) {
        plots_[p]->clearGraphs();
        for (Curve& c : curves_)
            if (c.tracer && c.panel == p) plots_[p]->removeItem(c.tracer);
    }
    curves_.clear();
    const bool several = runs_.size() > 1;
    auto add = [&](int run, Metric metric, int label, const QString& name, QColor color, Qt::PenStyle style) {
        Curve c;
        c.run = run;
        c.metric = metric;
        c.label = label;
        c.panel = panel_of(metric);
        c.name = name;
        QCustomPlot* plot = plots_[c.panel];
        c.raw = plot->addGraph();
        QColor faint = color;
        faint.setAlphaF(0.25f);
        c.raw->setPen(QPen(faint, 0, style));
        c.raw->removeFromLegend();
        c.smooth = plot->addGraph();
        c.smooth->setName(name);
        c.smooth->setPen(QPen(color, 0, style));
        if (metric == Metric::EvalLoss) {
            // Evaluations are sparse: show each one as a dot, drawn as logged (no smoothing).
            c.smooth->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, color, 4));
            c.raw->setVisible(false);
        }
        if (metric == Metric::LossScale) c.smooth->setLineStyle(QCPGraph::lsStepLeft);
        c.tracer = new QCPItemTracer(plot);
        c.tracer->setLayer(QStringLiteral("overlay"));
        c.tracer->setStyle(QCPItemTracer::tsCircle);
        c.tracer->setSize(7);
        c.tracer->setPen(QPen(color.darker(110), 1.5));
        c.tracer->setBrush(Qt::white);
        c.tracer->setVisible(false);
        curves_.push_back(std::move(c));
        resmooth(curves_.back());
    };
    static const Qt::PenStyle label_styles[] = {Qt::DashLine, Qt::DotLine, Qt::DashDotLine, Qt::DashDotDotLine};
    for (int i = 0; i < int(runs_.size()); ++i) {
        const RunCurves& r = runs_[size_t(i)].data;
        const QColor color = category_color(i);
        const QString run = runLabel(i);
        auto with = [&](const QString& what) { return several ? run + QStringLiteral(" · ") + what : what; };
        if (!r.loss.empty()) add(i, Metric::Loss, -1, several ? run : QStringLiteral("loss"), color, Qt::SolidLine);
        // (with several runs the overall eval curve carries the run's name in the legend)
        if (!r.mtp_loss.empty()) add(i, Metric::MtpLoss, -1, with(QStringLiteral("MTP (unweighted)")), color, Qt::DashLine);
        // An aux-loss-free run logs an aux loss of exactly 0: say so instead of a flat line on a
        // +-1e-12 axis.
        if (!r.aux_loss.empty() && !all_zero(r.aux_loss)) add(i, Metric::AuxLoss, -1, run, color, Qt::SolidLine);
        if (!r.lr.empty()) add(i, Metric::Lr, -1, run, color, Qt::SolidLine);
        if (!r.grad_norm.empty()) add(i, Metric::GradNorm, -1, run, color, Qt::SolidLine);
        if (!r.tokens_per_s.empty()) add(i, Metric::TokensPerS, -1, run, color, Qt::SolidLine);
        if (!r.loss_scale.empty()) add(i, Metric::LossScale, -1, run, color, Qt::SolidLine);
        if (!r.eval.loss.empty()) {
            add(i, Metric::EvalLoss, -1, with(QStringLiteral("all")), color, Qt::SolidLine);
            if (several) curves_.back().smooth->setName(run);
        }
        for (int j = 0; j < r.eval.labels.size() && j < int(r.eval.label_loss.size()); ++j) {
            // One run: a colour per label. Several: the run's colour, a dash pattern per label.
            const QColor c = several ? color : category_color(j + 1);
            add(i, Metric::EvalLoss, j, with(r.eval.labels[j]), c, several ? label_styles[j % 4] : Qt::SolidLine);
        }
    }
    if (several) {
        // Several runs: the legend names runs by colour, and grey keys explain the line styles
        // once instead of listing every run x style combination.
        auto key = [&](Panel panel, const QString& name, Qt::PenStyle style) {
            QCPGraph* g = plots_[panel]->addGraph();
            g->setName(name);
            g->setPen(QPen(QColor(0x55, 0x55, 0x55), 1.4, style));
        };
        for (Curve& c : curves_) {
            const bool styled = c.metric == Metric::MtpLoss || (c.metric == Metric::EvalLoss && c.label >= 0);
            if (styled) c.smooth->removeFromLegend();
        }
        bool mtp = false;
        QStringList labels;
        for (const RunState& r : runs_) {
            mtp = mtp || !r.data.mtp_loss.empty();
            for (const QString& l : r.data.eval.labels)
                if (!labels.contains(l)) labels << l;
        }
        if (mtp) key(PanelLoss, QStringLiteral("MTP (dashed)"), Qt::DashLine);
        for (int j = 0; j < labels.size(); ++j) key(PanelEval, labels[j], label_styles[j % 4]);
    }
    // Skipped steps: red crosses on the loss-scale line, one legend entry for all runs.
    for (QCPGraph* g : skipped_marks_)
        if (g) plots_[PanelLossScale]->removeGraph(g);
    skipped_marks_.assign(runs_.size(), nullptr);
    bool legend_entry = false;
    for (int i = 0; i < int(runs_.size()); ++i) {
        if (runs_[size_t(i)].data.loss_scale.empty()) continue;
        QCPGraph* g = plots_[PanelLossScale]->addGraph();
        g->setLineStyle(QCPGraph::lsNone);
        g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssCross, QColor(0xd0, 0x20, 0x20), 7));
        g->setName(QStringLiteral("skipped step"));
        if (legend_entry) g->removeFromLegend();
        legend_entry = true;
        skipped_marks_[size_t(i)] = g;
    }
    plots_[PanelLossScale]->setVisible(legend_entry);
    grid_->setRowStretch(2, legend_entry ? 1 : 0);
    bool aux_logged = false;
    for (const RunState& r : runs_) aux_logged = aux_logged || !r.data.aux_loss.empty();
    for (int p = 0; p < PanelCount; ++p) {
        bool any = false;
        for (const Curve& c : curves_)
            if (c.panel == p) any = true;
        empty_note_[p]->setVisible(!any);
        // Before any run the whole view is empty: say what to do rather than "not logged".
        empty_note_[p]->setText(curves_.empty() ? QStringLiteral("no run yet: Start training, or open a run")
                                : p == PanelAux && aux_logged
                                    ? QStringLiteral("no auxiliary loss:\nthis run balances its experts\nwith the gate bias alone")
                                    : QStringLiteral("not logged"));
        // A one-entry legend says nothing the title does not.
        plots_[p]->legend->setVisible(plots_[p]->legend->itemCount() >= 2);
    }
}

std::span<const double> TrainingCurvesView::xOf(const Curve& c) const {
    const RunState& r = runs_[size_t(c.run)];
    if (c.metric == Metric::EvalLoss) {
        switch (x_kind_) {
        case XAxisKind::Step: return r.data.eval.step;
        case XAxisKind::Tokens: return r.eval_tokens;
        case XAxisKind::WallTime: return r.eval_wall;
        }
    }
    switch (x_kind_) {
    case XAxisKind::Step: return r.data.step;
    case XAxisKind::Tokens: return r.data.tokens;
    case XAxisKind::WallTime: return r.data.wall_s;
    }
    return {};
}

std::span<const double> TrainingCurvesView::rawOf(const Curve& c) const {
    const RunCurves& r = runs_[size_t(c.run)].data;
    if (c.metric == Metric::EvalLoss && c.label >= 0) return r.eval.label_loss[size_t(c.label)];
    return column(r, c.metric);
}

std::span<const double> TrainingCurvesView::drawnOf(const Curve& c) const {
    return c.smoothed.empty() ? rawOf(c) : std::span<const double>(c.smoothed);
}

void TrainingCurvesView::resmooth(Curve& c) {
    c.ema = EmaState{};
    c.ema.weight = smoothing_;
    c.smoothed.clear();
    if (unsmoothed(c.metric) || smoothing_ <= 0.0) return;
    ema_smooth_append(rawOf(c), c.ema, c.smoothed);
}

void TrainingCurvesView::smoothTail(Curve& c, std::size_t old_size) {
    if (unsmoothed(c.metric) || smoothing_ <= 0.0) return;
    const auto raw = rawOf(c);
    if (c.smoothed.size() != old_size || old_size > raw.size()) {
        resmooth(c);
        return;
    }
    // EMA is causal: the new rows continue from the stored state.
    ema_smooth_append(raw.subspan(old_size), c.ema, c.smoothed);
}

// ---- controls ----

void TrainingCurvesView::setXAxis(XAxisKind kind) {
    if (kind == x_kind_) return;
    x_kind_ = kind;
    {
        const QSignalBlocker block(x_combo_);
        x_combo_->setCurrentIndex(x_combo_->findData(int(kind)));
    }
    updateAxes();
    range_set_ = false;  // the old range (and hover position) means nothing on the new axis
    hover_x_ = kNaN;
    updateHover();
    dataChanged();
}

void TrainingCurvesView::setLogY(bool on) {
    if (on == log_y_) return;
    log_y_ = on;
    const QSignalBlocker block(log_check_);
    log_check_->setChecked(on);
    updateAxes();
    scheduleUpdate();
}

void TrainingCurvesView::setSmoothing(double weight) {
    weight = std::clamp(weight, 0.0, 0.99);
    if (weight == smoothing_) return;
    smoothing_ = weight;
    {
        const QSignalBlocker block(smooth_slider_);
        smooth_slider_->setValue(int(std::lround(weight * 100)));
    }
    smooth_value_->setText(QString::number(weight, 'f', 2));
    for (Curve& c : curves_) resmooth(c);
    scheduleUpdate();
}

void TrainingCurvesView::setFollowLive(bool on) {
    if (on == follow_live_) return;
    follow_live_ = on;
    const QSignalBlocker block(follow_check_);
    follow_check_->setChecked(on);
    if (on) dataChanged();
}

void TrainingCurvesView::fitAll() {
    double lo, hi;
    if (dataXRange(lo, hi)) applyXRange(lo, hi, nullptr);
}

void TrainingCurvesView::updateAxes() {
    for (int p = 0; p < PanelCount; ++p) {
        QCustomPlot* plot = plots_[p];
        switch (x_kind_) {
        case XAxisKind::Step:
        case XAxisKind::Tokens: plot->xAxis->setTicker(QSharedPointer<SiTicker>::create()); break;
        case XAxisKind::WallTime: {
            auto ticker = QSharedPointer<QCPAxisTickerTime>::create();
            ticker->setTimeFormat(QStringLiteral("%h:%m:%s"));
            plot->xAxis->setTicker(ticker);
            break;
        }
        }
        plot->xAxis->setLabel(x_axis_title(x_kind_));
        if (p == PanelLossScale) {
            // Always log2: the scale moves by factors of two.
            plot->yAxis->setScaleType(QCPAxis::stLogarithmic);
            auto ticker = QSharedPointer<PowerOfTwoTicker>::create();
            ticker->setLogBase(2);
            ticker->setSubTickCount(0);
            plot->yAxis->setTicker(ticker);
        } else if (log_y_) {
            plot->yAxis->setScaleType(QCPAxis::stLogarithmic);
            auto ticker = QSharedPointer<QCPAxisTickerLog>::create();
            ticker->setLogBase(10);
            ticker->setSubTickCount(8);
            plot->yAxis->setTicker(ticker);
        } else {
            plot->yAxis->setScaleType(QCPAxis::stLinear);
            // Throughput reads best as 64k, not 6.4e+04.
            if (p == PanelThroughput) plot->yAxis->setTicker(QSharedPointer<SiTicker>::create());
            else plot->yAxis->setTicker(QSharedPointer<QCPAxisTicker>::create());
        }
        // Learning rates are small: 3·10^-4 instead of a mix of 0.0003 and 5e-05.
        if (p == PanelLr) {
            plot->yAxis->setNumberFormat(QStringLiteral("eb"));
            plot->yAxis->setNumberPrecision(2);
        }
    }
}

void TrainingCurvesView::updateRunLegend() {
    QString html;
    for (int i = 0; i < int(runs_.size()); ++i) {
        html += QStringLiteral("<span style='color:%1; font-size:large'>&#9632;</span>&nbsp;%2&nbsp;&nbsp;&nbsp;")
                    .arg(category_color(i).name(), runLabel(i).toHtmlEscaped());
    }
    run_legend_->setText(html);
}

QString TrainingCurvesView::runLabel(int run) const {
    const RunCurves& r = runs_[size_t(run)].data;
    bool differ = false;
    for (const RunState& other : runs_)
        differ = differ || (!other.data.precision.isEmpty() && other.data.precision != r.precision);
    return differ && !r.precision.isEmpty() ? QStringLiteral("%1 (%2)").arg(r.run_name, r.precision) : r.run_name;
}

void TrainingCurvesView::updateSkippedMarks() {
    QVector<QCPGraphData> points;
    for (int i = 0; i < int(skipped_marks_.size()); ++i) {
        QCPGraph* g = skipped_marks_[size_t(i)];
        if (!g) continue;
        const RunCurves& r = runs_[size_t(i)].data;
        Curve probe;
        probe.run = i;
        probe.metric = Metric::LossScale;
        const auto x = xOf(probe);
        points.clear();
        for (std::size_t k = 0; k < r.skipped.size() && k < r.loss_scale.size() && k < x.size(); ++k)
            if (r.skipped[k] != 0 && r.loss_scale[k] > 0) points.append(QCPGraphData(x[k], r.loss_scale[k]));
        g->data()->set(points, true);
    }
}

// ---- x range and redraw ----

bool TrainingCurvesView::dataXRange(double& lo, double& hi) const {
    bool found = false;
    lo = std::numeric_limits<double>::infinity();
    hi = -lo;
    for (const Curve& c : curves_) {
        const auto x = xOf(c);
        // x is ascending but may start or end with NaN (missing tokens/wall): scan inwards.
        for (double v : x)
            if (std::isfinite(v)) { lo = std::min(lo, v); found = true; break; }
        for (auto it = x.rbegin(); it != x.rend(); ++it)
            if (std::isfinite(*it)) { hi = std::max(hi, *it); break; }
    }
    if (!found) return false;
    if (hi <= lo) hi = lo + 1.0;
    return true;
}

void TrainingCurvesView::dataChanged() {
    double lo, hi;
    if (dataXRange(lo, hi)) {
        if (!range_set_) {
            x_lo_ = lo, x_hi_ = hi;
            range_set_ = true;
        } else if (follow_live_) {
            // Showing (almost) everything: keep showing everything. Zoomed: keep the window
            // width and slide it so the newest point stays at the right edge.
            const double width = x_hi_ - x_lo_;
            if (x_lo_ <= lo + 1e-9 * std::abs(width) || width >= hi - lo)
                x_lo_ = lo, x_hi_ = hi;
            else
                x_lo_ = hi - width, x_hi_ = hi;
        }
    } else {
        range_set_ = false;
    }
    scheduleUpdate();
}

void TrainingCurvesView::applyXRange(double lo, double hi, QCustomPlot* source) {
    if (!(hi > lo)) return;
    x_lo_ = lo, x_hi_ = hi;
    range_set_ = true;
    syncing_ = true;
    for (QCustomPlot* p : plots_)
        if (p != source) p->xAxis->setRange(lo, hi);
    syncing_ = false;
    scheduleUpdate();
}

void TrainingCurvesView::scheduleUpdate() {
    if (!update_timer_.isActive()) update_timer_.start();
}

void TrainingCurvesView::flush() {
    update_timer_.stop();
    updatePlots();
}

void TrainingCurvesView::updatePlots() {
    QElapsedTimer timer;
    timer.start();
    const double lo = x_lo_, hi = x_hi_, width = hi - lo;
    // Downsample a window 50% wider on each side, so a drag shows data before the next refresh.
    const double ext_lo = lo - 0.5 * width, ext_hi = hi + 0.5 * width;
    std::array<double, PanelCount> y_min, y_max;
    y_min.fill(std::numeric_limits<double>::infinity());
    y_max.fill(-std::numeric_limits<double>::infinity());
    QVector<QCPGraphData> buffer;
    auto fill = [&](QCPGraph* g, const XY& xy, bool log) {
        buffer.resize(qsizetype(xy.x.size()));
        for (std::size_t i = 0; i < xy.x.size(); ++i) {
            double v = xy.y[i];
            if (log && !(v > 0.0)) v = kNaN;  // a log axis cannot show <= 0: leave a gap
            buffer[qsizetype(i)] = QCPGraphData(xy.x[i], v);
        }
        g->data()->set(buffer, true);
    };
    for (Curve& c : curves_) {
        const int px = std::max(plots_[c.panel]->axisRect()->width(), 200);
        const std::size_t buckets = std::size_t(px) * 2;  // ~1 bucket (2 points) per visible pixel
        const auto x = xOf(c);
        const bool smoothed = !c.smoothed.empty();
        const XY drawn = downsample_minmax(x, drawnOf(c), ext_lo, ext_hi, buckets);
        const bool log = panelLog(c.panel);
        fill(c.smooth, drawn, log);
        // Dense min/max zig-zags drawn with a wide pen go through Qt's path stroker and cost
        // seconds; a one-pixel cosmetic pen takes the fast line path and looks the same there.
        const bool dense = double(drawn.x.size()) > 0.5 * px * (ext_hi - ext_lo) / std::max(width, 1e-300);
        QPen pen = c.smooth->pen();
        const double pen_width = dense ? 0.0 : (c.metric == Metric::EvalLoss ? 1.4 : 1.6);
        if (pen.widthF() != pen_width) {
            pen.setWidthF(pen_width);
            c.smooth->setPen(pen);
        }
        c.raw->setVisible(smoothed);
        if (smoothed) fill(c.raw, downsample_minmax(x, rawOf(c), ext_lo, ext_hi, buckets), log);
        else c.raw->data()->clear();
        // Fit y to what is drawn strongly (the smoothed curve), from the downsampled points
        // (they hold every bucket's extremes).
        for (std::size_t i = 0; i < drawn.x.size(); ++i) {
            const double xv = drawn.x[i], v = drawn.y[i];
            if (xv < lo || xv > hi || !std::isfinite(v) || (log && v <= 0.0)) continue;
            y_min[c.panel] = std::min(y_min[c.panel], v);
            y_max[c.panel] = std::max(y_max[c.panel], v);
        }
    }
    for (int p = 0; p < PanelCount; ++p) {
        QCustomPlot* plot = plots_[p];
        syncing_ = true;
        plot->xAxis->setRange(lo, hi);
        syncing_ = false;
        double a = y_min[p], b = y_max[p];
        const bool log = panelLog(p);
        if (a > b) {
            a = log ? 0.1 : 0.0, b = 1.0;
        } else if (p == PanelLossScale) {
            a /= 2, b *= b > a ? 4 : 8;  // whole factors of two, room for the legend
        } else if (log) {
            const double f = b > a ? std::pow(b / a, 0.06) : 2.0;
            a /= f, b *= f * (plot->legend->visible() ? std::pow(b / a, 0.12) : 1.0);
        } else {
            const double pad = b > a ? 0.06 * (b - a) : std::max(std::abs(a) * 0.1, 1e-12);
            // Extra headroom when a legend sits in the top right corner.
            a -= pad, b += pad * (plot->legend->visible() ? 3.0 : 1.0);
        }
        plot->yAxis->setRange(a, b);
        plot->replot(QCustomPlot::rpQueuedRefresh);
    }
    updateSkippedMarks();
    if (!std::isnan(hover_x_)) updateHover();
    last_update_ms_ = double(timer.nsecsElapsed()) / 1e6;
}

void TrainingCurvesView::updateHover() {
    const bool active = !std::isnan(hover_x_);
    for (int p = 0; p < PanelCount; ++p) {
        QCustomPlot* plot = plots_[p];
        Hover& h = hover_[p];
        QStringList lines;
        double snapped_x = hover_x_;
        for (Curve& c : curves_) {
            if (c.panel != p) continue;
            c.tracer->setVisible(false);
            if (!active) continue;
            const auto x = xOf(c);
            const long i = nearest_index(x, hover_x_);
            if (i < 0) continue;
            // Skip runs that have no point near the cursor (shorter runs, sparse eval).
            const double tolerance = 0.03 * (x_hi_ - x_lo_);
            if (std::abs(x[size_t(i)] - hover_x_) > tolerance && c.metric != Metric::EvalLoss) continue;
            const double y = drawnOf(c)[size_t(i)];
            if (!std::isfinite(y)) continue;
            c.tracer->position->setCoords(x[size_t(i)], y);
            c.tracer->setVisible(true);
            if (lines.isEmpty()) snapped_x = x[size_t(i)];
            lines << QStringLiteral("%1: %2").arg(c.name, QString::number(y, 'g', 5));
        }
        const bool show = active && !lines.isEmpty();
        h.line->setVisible(active);
        h.label->setVisible(show);
        if (active) {
            h.line->point1->setCoords(hover_x_, 0);
            h.line->point2->setCoords(hover_x_, 1);
        }
        if (show) {
            lines.prepend(x_value_format(x_kind_, snapped_x));
            h.label->setText(lines.join(QLatin1Char('\n')));
            const QRect rect = plot->axisRect()->rect();
            const double px = plot->xAxis->coordToPixel(hover_x_);
            const int text_w = QFontMetrics(h.label->font()).boundingRect(QRect(0, 0, 1000, 1000), 0, h.label->text()).width() + 12;
            const bool right = px + 10 + text_w < rect.right();
            const QRect text = QFontMetrics(h.label->font()).boundingRect(QRect(0, 0, 1000, 1000), 0, h.label->text());
            const double left = right ? px + 10 : px - 10 - text_w;
            double top = rect.top() + 6;
            // Keep the readout off the legend: drop it below when they would overlap.
            if (plot->legend->visible()) {
                const QRect legend = plot->legend->outerRect();
                if (QRectF(left, top, text_w, text.height() + 8).intersects(legend)) top = legend.bottom() + 6;
            }
            h.label->setPositionAlignment(Qt::AlignTop | (right ? Qt::AlignLeft : Qt::AlignRight));
            h.label->position->setCoords(right ? px + 10 : px - 10, top);
        }
        plot->layer(QStringLiteral("overlay"))->replot();
    }
}

// ---- access ----

QCPGraph* TrainingCurvesView::graph(int run, Metric metric, bool smoothed, int eval_label) const {
    for (const Curve& c : curves_)
        if (c.run == run && c.metric == metric && c.label == eval_label) return smoothed ? c.smooth : c.raw;
    return nullptr;
}

CsvContent TrainingCurvesView::csvFor(Panel panel) const {
    CsvContent out;
    out.x_name = x_kind_ == XAxisKind::Step ? QStringLiteral("step")
                 : x_kind_ == XAxisKind::Tokens ? QStringLiteral("tokens") : QStringLiteral("wall_s");
    const bool several = runs_.size() > 1;
    for (const Curve& c : curves_) {
        if (c.panel != panel) continue;
        const QString base = several || c.name == runs_[size_t(c.run)].data.run_name
                                 ? c.name
                                 : runs_[size_t(c.run)].data.run_name + QStringLiteral(" · ") + c.name;
        const auto x = xOf(c);
        const auto raw = rawOf(c);
        out.series.push_back(Series{base, {x.begin(), x.end()}, {raw.begin(), raw.end()}});
        if (!c.smoothed.empty())
            out.series.push_back(Series{base + QStringLiteral(" (smoothed %1)").arg(smoothing_),
                                        {x.begin(), x.end()}, c.smoothed});
    }
    return out;
}

}  // namespace moe::views
