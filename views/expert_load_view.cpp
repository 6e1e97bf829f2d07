#include "expert_load_view.h"

#include "colormap.h"
#include "explained.h"
#include "plot_export.h"
#include "heatmap_plot.h"

#include <QComboBox>
#include <QElapsedTimer>
#include <QEvent>
#include <QHBoxLayout>
#include <QLabel>
#include <QLocale>
#include <QMouseEvent>
#include <QSlider>
#include <QSpinBox>
#include <QSplitter>
#include <QTabWidget>
#include <QTimer>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>
#include <limits>

namespace moe::views {

namespace {

QString maxvio_tip() { return explained_html(explain::kMaxVio); }
QString dead_tip()
{
    return explained_html("Dead experts",
                          "Experts the gate routed no token to in that logged batch. A dead expert gets no "
                          "gradient and wastes its parameters; the balancing bias should revive it within a "
                          "few hundred steps.");
}
QString bias_tip()
{
    return explained_html(QString::fromUtf8(explain::kBias.title),
                          QString::fromUtf8(explain::kBias.text) +
                              " DeepSeek-V3: b<sub>i</sub> += &gamma;&middot;sign(mean load &minus; load<sub>i</sub>)"
                              " after every step.<br>Orange: under-loaded, pushed up; blue: over-loaded, pushed down.");
}
QString load_tip()
{
    return explained_html("Expert load",
                          "Tokens the gate routed to each expert in the logged batch. As a share of the mean, 1 "
                          "is the fair share and 0 a dead expert.<br>Hover a training plot to show that step "
                          "here; click to keep it. Drag or wheel zooms the step axis; double-click resets. "
                          "Right-click to export.");
}

QString step_text(double step) { return QLocale().toString(static_cast<qlonglong>(std::llround(step))); }

// At most two points (min and max, in time order) per bucket of logged steps, so a line of
// 100,000 steps costs what a line of two screen widths costs and no spike disappears.
template <class F>
QVector<QCPGraphData> envelope(const std::vector<double> &keys, int i0, int n, int buckets, F value)
{
    QVector<QCPGraphData> out;
    if (buckets >= n) {
        out.reserve(n);
        for (int i = i0; i < i0 + n; ++i)
            out.append(QCPGraphData(keys[i], value(i)));
        return out;
    }
    out.reserve(2 * buckets);
    for (int b = 0; b < buckets; ++b) {
        const int a = i0 + static_cast<int>(static_cast<long long>(b) * n / buckets);
        const int e = i0 + static_cast<int>(static_cast<long long>(b + 1) * n / buckets);
        int imin = -1, imax = -1;
        double vmin = 0, vmax = 0;
        for (int i = a; i < e; ++i) {
            const double v = value(i);
            if (std::isnan(v))
                continue;
            if (imin < 0 || v < vmin)
                imin = i, vmin = v;
            if (imax < 0 || v > vmax)
                imax = i, vmax = v;
        }
        const double key = 0.5 * (keys[a] + keys[e - 1]);
        if (imin < 0) {
            out.append(QCPGraphData(key, std::nan("")));
        } else if (imin <= imax) {
            out.append(QCPGraphData(key, vmin));
            out.append(QCPGraphData(key, vmax));
        } else {
            out.append(QCPGraphData(key, vmax));
            out.append(QCPGraphData(key, vmin));
        }
    }
    return out;
}

void style_line_plot(QCustomPlot *plot)
{
    plot->setNoAntialiasingOnDrag(true);
    plot->xAxis->grid()->setSubGridVisible(false);
    plot->yAxis->grid()->setPen(QPen(QColor(220, 220, 220), 0, Qt::DotLine));
    plot->xAxis->grid()->setPen(QPen(QColor(220, 220, 220), 0, Qt::DotLine));
    plot->xAxis->grid()->setZeroLinePen(Qt::NoPen);
    // Room on the right so the last step label ("100k") is not dropped at the widget edge.
    plot->axisRect()->setMinimumMargins(QMargins(0, 0, 18, 0));
}

}  // namespace

ExpertLoadView::ExpertLoadView(QWidget *parent) : QWidget(parent)
{
    rebuild_timer_ = new QTimer(this);
    rebuild_timer_->setSingleShot(true);
    rebuild_timer_->setInterval(0);
    connect(rebuild_timer_, &QTimer::timeout, this, [this] {
        rebuildTrainingMaps();
        load_training_->replot(QCustomPlot::rpQueuedReplot);
        bias_training_->replot(QCustomPlot::rpQueuedReplot);
    });
    buildUi();
    showMarkers();
}

ExpertLoadView::~ExpertLoadView() = default;

// Reads a lazily loaded bias (ExpertLoadData::load_bias); true when it was read now. A bias
// of the wrong size is dropped with a warning.
bool ExpertLoadView::ensureBias()
{
    if (!data_.bias.empty() || !data_.load_bias) return false;
    std::vector<float> b = data_.load_bias();
    data_.load_bias = nullptr;
    if (b.size() != data_.load.size()) {
        qWarning("ExpertLoadView: the bias read on demand has %zu values, not %zu", b.size(), data_.load.size());
        tabs_->setTabEnabled(1, false);
        return false;
    }
    data_.bias = std::move(b);
    return true;
}

// Cursors, outlines and the mean line only mean something over data: an empty view shows none.
void ExpertLoadView::showMarkers()
{
    const bool any = data_.step_count() > 0;
    mean_line_->setVisible(any);
    for (QCPItemStraightLine *c : cursors_) c->setVisible(any);
    for (QCPItemRect *r : row_outlines_) r->setVisible(any);
}

void ExpertLoadView::buildUi()
{
    auto *root = new QVBoxLayout(this);
    root->setContentsMargins(6, 6, 6, 6);

    // Controls.
    auto *controls = new QHBoxLayout;
    layer_combo_ = new QComboBox;
    layer_combo_->setToolTip("MoE layer shown in the training heatmaps and the bar chart");
    unit_combo_ = new QComboBox;
    unit_combo_->addItems({"tokens", "share of mean"});
    unit_combo_->setToolTip("Tokens per expert, or load / mean load (1 = fair share)");
    bucket_combo_ = new QComboBox;
    bucket_combo_->addItems({"mean", "max", "min"});
    bucket_combo_->setToolTip(
        "When there are more logged steps than screen columns, each heatmap column folds several"
        " steps into one value: their mean (default), max (spikes) or min (brief collapses)");
    dead_combo_ = new QComboBox;
    dead_combo_->addItems({"all layers", "chosen layer"});
    dead_combo_->setToolTip(dead_tip());
    slider_ = new QSlider(Qt::Horizontal);
    slider_->setToolTip("Logged step shown in the bar chart and the layers x experts heatmaps");
    spin_ = new QSpinBox;
    spin_->setToolTip("Training step (snaps to the nearest logged step)");
    spin_->setMinimumWidth(90);
    auto label = [](const QString &text) { return new QLabel(text); };
    controls->addWidget(label("Layer"));
    controls->addWidget(layer_combo_);
    controls->addSpacing(10);
    controls->addWidget(label("Load as"));
    controls->addWidget(unit_combo_);
    controls->addSpacing(10);
    controls->addWidget(label("Columns show"));
    controls->addWidget(bucket_combo_);
    controls->addSpacing(10);
    controls->addWidget(label("Dead experts in"));
    controls->addWidget(dead_combo_);
    controls->addSpacing(10);
    controls->addWidget(label("Step"));
    controls->addWidget(slider_, 1);
    controls->addWidget(spin_);
    root->addLayout(controls);
    ranks_label_ = new QLabel;
    ranks_label_->setObjectName("expertRanks");
    ranks_label_->setWordWrap(true);
    ranks_label_->setVisible(false);
    root->addWidget(ranks_label_);

    // Heatmaps: load and bias, each over training (chosen layer) and at the step (all layers).
    load_training_ = new HeatmapPlot;
    load_step_ = new HeatmapPlot;
    load_training_->setObjectName("experts-load-over-training");
    load_step_->setObjectName("experts-load-at-step");
    bias_training_ = new HeatmapPlot;
    bias_step_ = new HeatmapPlot;
    for (HeatmapPlot *p : {load_training_, load_step_})
        p->setGradient(viridis_gradient());
    for (HeatmapPlot *p : {bias_training_, bias_step_}) {
        p->setGradient(diverging_gradient());
        p->setToolTip(bias_tip());
    }
    load_training_->setToolTip(load_tip());
    load_step_->setToolTip(load_tip());
    for (HeatmapPlot *p : {load_training_, bias_training_}) {
        p->xAxis->setLabel("training step");
        p->yAxis->setLabel("expert");
        p->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
        p->axisRect()->setRangeDrag(Qt::Horizontal);
        p->axisRect()->setRangeZoom(Qt::Horizontal);
    }
    for (HeatmapPlot *p : {load_step_, bias_step_}) {
        p->xAxis->setLabel("expert");
        p->setRowsTopDown(true);
        // Outline of the chosen layer's row.
        auto *outline = new QCPItemRect(p);
        outline->setPen(QPen(QColor(230, 30, 30), 2));
        outline->setBrush(Qt::NoBrush);
        outline->setClipToAxisRect(true);
        outline->setSelectable(false);
        row_outlines_.push_back(outline);
    }
    bias_training_->setColorLabel("bias");
    bias_step_->setColorLabel("bias");

    auto pair = [](QWidget *a, QWidget *b) {
        auto *split = new QSplitter(Qt::Horizontal);
        split->addWidget(a);
        split->addWidget(b);
        split->setStretchFactor(0, 3);
        split->setStretchFactor(1, 2);
        return split;
    };
    tabs_ = new QTabWidget;
    tabs_->addTab(pair(load_training_, load_step_), "Load");
    tabs_->addTab(pair(bias_training_, bias_step_), "Balancing bias");
    tabs_->setTabToolTip(1, bias_tip());

    // Bottom row: bars at the step, MaxVio per layer, dead experts.
    bar_plot_ = new QCustomPlot;
    bar_plot_->setObjectName("experts-load-bars");
    style_line_plot(bar_plot_);
    add_plot_title(bar_plot_, "Load at step");
    bars_ = new QCPBars(bar_plot_->xAxis, bar_plot_->yAxis);
    bars_->setWidth(0.8);
    bars_->setPen(Qt::NoPen);
    bars_->setBrush(category_color(0));
    bars_->setName("load");
    mean_line_ = new QCPItemStraightLine(bar_plot_);
    mean_line_->setPen(QPen(QColor(60, 60, 60), 1.2, Qt::DashLine));
    bar_plot_->xAxis->setLabel("expert");
    bar_plot_->setToolTip(load_tip());

    maxvio_plot_ = new QCustomPlot;
    maxvio_plot_->setObjectName("experts-maxvio");
    style_line_plot(maxvio_plot_);
    add_plot_title(maxvio_plot_, "MaxVio per layer");
    maxvio_plot_->xAxis->setLabel("training step");
    maxvio_plot_->yAxis->setLabel("MaxVio");
    maxvio_plot_->setToolTip(maxvio_tip());

    dead_plot_ = new QCustomPlot;
    dead_plot_->setObjectName("experts-dead");
    style_line_plot(dead_plot_);
    add_plot_title(dead_plot_, "Dead experts");
    dead_plot_->xAxis->setLabel("training step");
    dead_plot_->yAxis->setLabel("experts with no token");
    dead_plot_->setToolTip(dead_tip());
    dead_graph_ = dead_plot_->addGraph();
    dead_graph_->setLineStyle(QCPGraph::lsStepCenter);
    dead_graph_->setPen(QPen(category_color(1), 1.5));
    QColor fill = category_color(1);
    fill.setAlpha(50);
    dead_graph_->setBrush(fill);

    for (QCustomPlot *p : {static_cast<QCustomPlot *>(maxvio_plot_), dead_plot_}) {
        p->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
        p->axisRect()->setRangeDrag(Qt::Horizontal);
        p->axisRect()->setRangeZoom(Qt::Horizontal);
    }

    auto *bottom = new QSplitter(Qt::Horizontal);
    bottom->addWidget(bar_plot_);
    bottom->addWidget(maxvio_plot_);
    bottom->addWidget(dead_plot_);
    bottom->setStretchFactor(0, 4);
    bottom->setStretchFactor(1, 4);
    bottom->setStretchFactor(2, 3);

    auto *vsplit = new QSplitter(Qt::Vertical);
    vsplit->addWidget(tabs_);
    vsplit->addWidget(bottom);
    vsplit->setStretchFactor(0, 3);
    vsplit->setStretchFactor(1, 2);
    root->addWidget(vsplit, 1);

    // Every plot exports its figure and the numbers behind it.
    for (HeatmapPlot *p : {load_training_, load_step_, bias_training_, bias_step_})
        add_export_actions(this, p, [p] {
            CsvContent content;
            content.matrix = p->toMatrix();
            return content;
        });
    add_export_actions(this, bar_plot_, [this] {
        CsvContent content;
        content.x_name = "expert";
        Series series{QStringLiteral("%1 step %2 (%3)").arg(data_.layer_names.value(layer_)).arg(
                          data_.steps.empty() ? 0.0 : data_.steps[shownStepIndex()]).arg(unitLabel()), {}, {}};
        for (auto it = bars_->data()->constBegin(); it != bars_->data()->constEnd(); ++it) {
            series.x.push_back(it->key);
            series.y.push_back(it->value);
        }
        content.series.push_back(std::move(series));
        return content;
    });
    add_export_actions(this, maxvio_plot_, [this] {
        CsvContent content;
        content.x_name = "step";
        const int L = data_.layers();
        for (int l = 0; l < L; ++l) {
            Series series{data_.layer_names[l], data_.steps, std::vector<double>(data_.steps.size())};
            for (size_t s = 0; s < data_.steps.size(); ++s)
                series.y[s] = data_.maxvio[s * L + l];
            content.series.push_back(std::move(series));
        }
        return content;
    });
    add_export_actions(this, dead_plot_, [this] {
        CsvContent content;
        content.x_name = "step";
        Series series{QStringLiteral("dead experts (%1)").arg(dead_graph_->name()), data_.steps,
                      std::vector<double>(data_.steps.size())};
        for (size_t s = 0; s < data_.steps.size(); ++s)
            series.y[s] = deadExperts(static_cast<int>(s));
        content.series.push_back(std::move(series));
        return content;
    });

    // The over-training plots share their step axis and their cursor line.
    const std::vector<QCustomPlot *> training = {load_training_, bias_training_, maxvio_plot_, dead_plot_};
    for (QCustomPlot *p : training) {
        use_step_ticker(p->xAxis);
        auto *cursor = new QCPItemStraightLine(p);
        // The buffered overlay layer repaints alone, so hovering does not redraw the data.
        cursor->setLayer(QStringLiteral("overlay"));
        cursor->setPen(QPen(QColor(230, 30, 30, 200), 1.0));
        cursor->setClipToAxisRect(true);
        cursors_.push_back(cursor);
        connect(p->xAxis, qOverload<const QCPRange &>(&QCPAxis::rangeChanged), this,
                &ExpertLoadView::onTrainingRangeChanged);
        connect(p, &QCustomPlot::mouseMove, this, &ExpertLoadView::onTrainingMouseMove);
        connect(p, &QCustomPlot::mousePress, this, [this, p](QMouseEvent *event) {
            if (event->button() == Qt::LeftButton && p->axisRect()->rect().contains(event->pos()))
                setStepIndex(nearestStepIndex(p->xAxis->pixelToCoord(event->pos().x())));
        });
        connect(p, &QCustomPlot::mouseDoubleClick, this, [this, p](QMouseEvent *) {
            p->xAxis->setRange(dataLower(), dataUpper());
            p->replot(QCustomPlot::rpQueuedReplot);
        });
        p->installEventFilter(this);
        connect(p, &QCustomPlot::afterReplot, p, [p] { p->setProperty("moe_painted", true); });
    }

    connect(tabs_, &QTabWidget::currentChanged, this, [this](int index) {
        if (index == 1 && bias_dirty_) {
            if (ensureBias()) updateStepViews();
            if (data_.bias.empty()) return;  // the loader failed: the tab is disabled
            fillTrainingMap(bias_training_, true);
            bias_dirty_ = false;
            bias_training_->replot(QCustomPlot::rpQueuedReplot);
        }
    });
    connect(layer_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this, &ExpertLoadView::setLayer);
    connect(unit_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this,
            [this](int i) { setLoadUnit(static_cast<LoadUnit>(i)); });
    connect(bucket_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this,
            [this](int i) { setBucket(static_cast<Bucket>(i)); });
    connect(dead_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this,
            [this](int i) { setDeadScope(static_cast<DeadScope>(i)); });
    connect(slider_, &QSlider::valueChanged, this, &ExpertLoadView::setStepIndex);
    connect(spin_, qOverload<int>(&QSpinBox::valueChanged), this, [this](int value) {
        if (!data_.steps.empty())
            setStepIndex(nearestStepIndex(value));
    });
}

void ExpertLoadView::setData(ExpertLoadData data)
{
    data_ = std::move(data);
    if (!data_.valid() && !(data_.step_count() == 0 && data_.load.empty())) {
        qWarning("ExpertLoadView: load/bias/maxvio sizes do not match %d steps x %d layers x %d experts; "
                 "showing nothing",
                 data_.step_count(), data_.layers(), data_.experts);
        data_ = ExpertLoadData{};
    } else if (!data_.valid()) {
        data_ = ExpertLoadData{};
    }
    computeDerived();
    showMarkers();

    const QSignalBlocker b1(layer_combo_), b2(slider_), b3(spin_);
    layer_combo_->clear();
    layer_combo_->addItems(data_.layer_names);
    layer_ = std::clamp(layer_, 0, std::max(0, data_.layers() - 1));
    layer_combo_->setCurrentIndex(layer_);
    const int S = data_.step_count();
    slider_->setRange(0, std::max(0, S - 1));
    spin_->setRange(S ? static_cast<int>(data_.steps.front()) : 0, S ? static_cast<int>(data_.steps.back()) : 0);
    step_ = S ? S - 1 : 0;  // the latest step is the interesting one
    preview_ = -1;
    slider_->setValue(step_);
    spin_->setValue(S ? static_cast<int>(data_.steps[step_]) : 0);
    tabs_->setTabEnabled(1, data_.has_bias());

    // Expert parallelism: the ranks' shares of the experts, named and marked in the bars.
    for (QCPItemStraightLine *line : rank_lines_)
        bar_plot_->removeItem(line);
    rank_lines_.clear();
    const int ranks = data_.expert_ranks;
    if (ranks > 1 && data_.experts % ranks == 0) {
        const int per = data_.experts / ranks;
        QStringList parts;
        for (int r = 0; r < ranks; ++r)
            parts << QString("rank %1: experts %2-%3").arg(r).arg(r * per).arg((r + 1) * per - 1);
        ranks_label_->setText(tr("Experts split over %1 ranks (expert parallelism): %2").arg(ranks).arg(parts.join(", ")));
        ranks_label_->setVisible(true);
        for (int r = 1; r < ranks; ++r) {
            auto *line = new QCPItemStraightLine(bar_plot_);
            line->point1->setCoords(r * per - 0.5, 0);
            line->point2->setCoords(r * per - 0.5, 1);
            line->setPen(QPen(QColor(200, 60, 60), 1.2, Qt::DashDotLine));
            rank_lines_.push_back(line);
        }
    } else {
        ranks_label_->setVisible(false);
    }

    // Layers x experts at a step: fixed grid, labelled rows.
    const int L = data_.layers(), E = data_.experts;
    for (HeatmapPlot *p : {load_step_, bias_step_}) {
        p->setGrid(std::max(E, 1), std::max(L, 1), -0.5, E - 0.5, -0.5, L - 0.5);
        p->setRowLabels(data_.layer_names, 40);
        p->setColumnLabels({}, 0);
    }
    for (HeatmapPlot *p : {load_training_, bias_training_})
        p->setRowLabels({}, 0);

    {
        syncing_ = true;
        for (QCustomPlot *p : {static_cast<QCustomPlot *>(load_training_), static_cast<QCustomPlot *>(bias_training_),
                               maxvio_plot_, dead_plot_})
            p->xAxis->setRange(dataLower(), dataUpper());
        syncing_ = false;
    }
    updateLineGraphs();
    rebuildTrainingMaps();
    updateStepViews();
}

void ExpertLoadView::computeDerived()
{
    const int S = data_.step_count(), L = data_.layers(), E = data_.experts;
    dead_all_.assign(S, 0);
    dead_layer_.assign(static_cast<size_t>(S) * L, 0);
    const bool need_maxvio = data_.maxvio.empty();
    if (need_maxvio)
        data_.maxvio.assign(static_cast<size_t>(S) * L, 0.f);
    // One pass over [S, L, E]: the only full scan, so loading stays well under a second.
    for (int s = 0; s < S; ++s) {
        int dead_sum = 0;
        for (int l = 0; l < L; ++l) {
            const float *row = data_.load.data() + data_.index(s, l, 0);
            int dead = 0;
            double sum = 0, mx = 0;
            for (int e = 0; e < E; ++e) {
                const float v = row[e];
                dead += (v == 0.f);
                sum += v;
                mx = std::max(mx, static_cast<double>(v));
            }
            dead_layer_[static_cast<size_t>(s) * L + l] = dead;
            dead_sum += dead;
            if (need_maxvio) {
                const double mean = sum / E;
                data_.maxvio[static_cast<size_t>(s) * L + l] =
                    mean > 0 ? static_cast<float>((mx - mean) / mean) : std::numeric_limits<float>::quiet_NaN();
            }
        }
        dead_all_[s] = dead_sum;
    }
}

double ExpertLoadView::dataLower() const
{
    const auto &st = data_.steps;
    if (st.empty())
        return 0;
    const double d = st.size() > 1 ? (st.back() - st.front()) / (st.size() - 1) : 1.0;
    return st.front() - d / 2;
}

double ExpertLoadView::dataUpper() const
{
    const auto &st = data_.steps;
    if (st.empty())
        return 1;
    const double d = st.size() > 1 ? (st.back() - st.front()) / (st.size() - 1) : 1.0;
    return st.back() + d / 2;
}

int ExpertLoadView::nearestStepIndex(double step) const
{
    const auto &st = data_.steps;
    if (st.empty())
        return 0;
    auto it = std::lower_bound(st.begin(), st.end(), step);
    if (it == st.end())
        return static_cast<int>(st.size()) - 1;
    if (it != st.begin() && step - *(it - 1) < *it - step)
        --it;
    return static_cast<int>(it - st.begin());
}

double ExpertLoadView::loadValue(int s, int l, int e) const
{
    const float *row = data_.load.data() + data_.index(s, l, 0);
    if (unit_ == LoadUnit::Tokens)
        return row[e];
    double sum = 0;
    for (int i = 0; i < data_.experts; ++i)
        sum += row[i];
    return sum > 0 ? row[e] / (sum / data_.experts) : std::nan("");
}

int ExpertLoadView::deadExperts(int s) const
{
    if (s < 0 || s >= data_.step_count())
        return 0;
    return dead_scope_ == DeadScope::AllLayers ? dead_all_[s]
                                               : dead_layer_[static_cast<size_t>(s) * data_.layers() + layer_];
}

double ExpertLoadView::maxVio(int s, int l) const
{
    return data_.maxvio[static_cast<size_t>(s) * data_.layers() + l];
}

QString ExpertLoadView::unitLabel() const
{
    return unit_ == LoadUnit::Tokens ? QStringLiteral("tokens") : QStringLiteral("load / mean load");
}

void ExpertLoadView::scheduleTrainingRebuild()
{
    rebuild_timer_->start();
}

void ExpertLoadView::onTrainingRangeChanged(const QCPRange &range)
{
    if (syncing_)
        return;
    // Keep the step axis inside the data and the same on every over-training plot.
    QCPRange r = range;
    const double lo = dataLower(), hi = dataUpper();
    if (r.size() > hi - lo)
        r = QCPRange(lo, hi);
    if (r.lower < lo)
        r = QCPRange(lo, lo + r.size());
    if (r.upper > hi)
        r = QCPRange(hi - r.size(), hi);
    syncing_ = true;
    for (QCustomPlot *p : {static_cast<QCustomPlot *>(load_training_), static_cast<QCustomPlot *>(bias_training_),
                           maxvio_plot_, dead_plot_}) {
        p->xAxis->setRange(r);
        p->replot(QCustomPlot::rpQueuedReplot);
    }
    syncing_ = false;
    scheduleTrainingRebuild();
}

void ExpertLoadView::rebuildTrainingMaps()
{
    fillTrainingMap(load_training_, false);
    bias_dirty_ = true;
    if (data_.has_bias() && tabs_->currentIndex() == 1) {
        ensureBias();
        if (!data_.bias.empty()) fillTrainingMap(bias_training_, true);
        bias_dirty_ = false;
    }
    rebuildLines();
}

void ExpertLoadView::rebuildLines()
{
    const int S = data_.step_count(), L = data_.layers();
    if (S == 0 || static_cast<int>(maxvio_graphs_.size()) != L)
        return;
    const QCPRange shown = maxvio_plot_->xAxis->range();
    const auto &st = data_.steps;
    // One logged step beyond each edge, so the lines reach the plot's borders.
    const int i0 = std::max(0, static_cast<int>(std::lower_bound(st.begin(), st.end(), shown.lower) - st.begin()) - 1);
    const int i1 = std::min(S, static_cast<int>(std::upper_bound(st.begin(), st.end(), shown.upper) - st.begin()) + 1);
    const int n = std::max(0, i1 - i0);
    const int pixels = std::max(maxvio_plot_->width(), 300);
    const int buckets = n > 2 * pixels ? pixels : n;
    lines_folded_ = buckets < n;
    for (int l = 0; l < L; ++l) {
        const float *mv = data_.maxvio.data();
        maxvio_graphs_[l]->data()->set(
            envelope(st, i0, n, buckets, [mv, L, l](int s) { return static_cast<double>(mv[static_cast<size_t>(s) * L + l]); }),
            true);
    }
    dead_graph_->data()->set(envelope(st, i0, n, buckets, [this](int s) { return static_cast<double>(deadExperts(s)); }),
                             true);
    dead_graph_->setLineStyle(lines_folded_ ? QCPGraph::lsLine : QCPGraph::lsStepCenter);
}

void ExpertLoadView::fillTrainingMap(HeatmapPlot *plot, bool bias)
{
    const int S = data_.step_count(), E = data_.experts;
    const QString layer_name = layer_ < data_.layer_names.size() ? data_.layer_names[layer_] : QString();
    plot->setTitle((bias ? QStringLiteral("Balancing bias over training, %1") : QStringLiteral("Expert load over training, %1"))
                       .arg(layer_name));
    if (S == 0 || E == 0) {
        plot->colorMap()->data()->clear();
        return;
    }
    const QCPRange shown = plot->xAxis->range();
    const double d = S > 1 ? (data_.steps.back() - data_.steps.front()) / (S - 1) : 1.0;
    // Visible logged steps [i0, i1).
    const int i0 = static_cast<int>(std::lower_bound(data_.steps.begin(), data_.steps.end(), shown.lower - d / 2) -
                                    data_.steps.begin());
    int i1 = static_cast<int>(std::upper_bound(data_.steps.begin(), data_.steps.end(), shown.upper + d / 2) -
                              data_.steps.begin());
    i1 = std::max(i1, std::min(i0 + 1, S));
    const int n = i1 - i0;
    if (n <= 0)
        return;
    // At most two columns per pixel: more would be invisible and cost time.
    // The widget width, not the axis rect's: that one is only updated by the next replot.
    const int pixels = std::max(plot->width(), 400);
    const int columns = std::min(n, 2 * pixels);
    columns_ = columns;
    steps_per_column_ = static_cast<double>(n) / columns;

    // Columns group whole logged steps (index buckets), so no column is empty; this assumes a
    // roughly constant logging interval, which the trainer's log_every gives.
    plot->colorMap()->data()->setSize(columns, E);
    const double x0 = data_.steps[i0] - d / 2, x1 = data_.steps[i1 - 1] + d / 2;
    const double w = (x1 - x0) / columns;
    plot->colorMap()->data()->setRange(QCPRange(x0 + w / 2, x1 - w / 2), QCPRange(0, E - 1));
    plot->yAxis->setRange(-0.5, E - 0.5);

    const int L = data_.layers();
    const float *base = bias ? data_.bias.data() : data_.load.data();
    const bool share = !bias && unit_ == LoadUnit::ShareOfMean;
    std::vector<double> acc(E);
    std::vector<int> count(E);
    double lo = std::numeric_limits<double>::infinity(), hi = -lo, max_abs = 0;
    QCPColorMapData *cells = plot->colorMap()->data();
    for (int c = 0; c < columns; ++c) {
        const int a = i0 + static_cast<int>(static_cast<long long>(c) * n / columns);
        const int b = i0 + static_cast<int>(static_cast<long long>(c + 1) * n / columns);
        std::fill(acc.begin(), acc.end(), bucket_ == Bucket::Mean ? 0.0 : std::nan(""));
        std::fill(count.begin(), count.end(), 0);
        for (int s = a; s < b; ++s) {
            const float *row = base + (static_cast<size_t>(s) * L + layer_) * E;
            double scale = 1.0;
            if (share) {
                double sum = 0;
                for (int e = 0; e < E; ++e)
                    sum += row[e];
                if (!(sum > 0))
                    continue;
                scale = E / sum;
            }
            for (int e = 0; e < E; ++e) {
                const double v = row[e] * scale;
                if (std::isnan(v))
                    continue;
                double &x = acc[e];
                switch (bucket_) {
                case Bucket::Mean: x += v; break;
                case Bucket::Max: x = count[e] ? std::max(x, v) : v; break;
                case Bucket::Min: x = count[e] ? std::min(x, v) : v; break;
                }
                ++count[e];
            }
        }
        for (int e = 0; e < E; ++e) {
            double v = count[e] ? acc[e] : std::nan("");
            if (bucket_ == Bucket::Mean && count[e])
                v /= count[e];
            cells->setCell(c, e, v);
            if (!std::isnan(v)) {
                lo = std::min(lo, v);
                hi = std::max(hi, v);
                max_abs = std::max(max_abs, std::abs(v));
            }
        }
    }
    if (bias) {
        plot->setSymmetricColorRange(max_abs);
    } else {
        plot->setColorRange(0, std::isfinite(hi) ? std::max(hi, share ? 2.0 : 1.0) : 1.0);
        plot->setColorLabel(unitLabel());
    }
    const char *fold[] = {"mean", "max", "min"};
    plot->xAxis->setLabel(steps_per_column_ > 1.0001
                              ? QStringLiteral("training step (each column: %1 of %2 logged steps)")
                                    .arg(fold[static_cast<int>(bucket_)])
                                    .arg(steps_per_column_, 0, 'f', 1)
                              : QStringLiteral("training step"));
}

void ExpertLoadView::updateLineGraphs()
{
    const int S = data_.step_count(), L = data_.layers();
    // MaxVio: one line per layer; the chosen layer drawn bold on top.
    if (static_cast<int>(maxvio_graphs_.size()) != L) {
        for (QCPGraph *g : maxvio_graphs_)
            maxvio_plot_->removeGraph(g);
        maxvio_graphs_.clear();
        for (int l = 0; l < L; ++l) {
            QCPGraph *g = maxvio_plot_->addGraph();
            g->setName(data_.layer_names[l]);
            maxvio_graphs_.push_back(g);
        }
        place_legend_beside(maxvio_plot_, L);
    }
    // The y range follows the data: a live run's MaxVio grows after its first rows.
    double top = 0;
    for (float v : data_.maxvio)
        if (std::isfinite(v))
            top = std::max(top, static_cast<double>(v));
    maxvio_plot_->yAxis->setRange(0, std::max(top * 1.05, 0.1));
    for (int l = 0; l < L; ++l) {
        QColor c = L > 1 ? map_color(0.9 * l / (L - 1)) : category_color(0);
        const bool chosen = (l == layer_);
        if (!chosen)
            c.setAlpha(150);
        maxvio_graphs_[l]->setPen(QPen(c, chosen ? 2.5 : 1.0));
    }
    // Draw the chosen layer last so it sits on top of the others.
    if (layer_ < L) {
        if (!maxvio_plot_->layer("chosen"))
            maxvio_plot_->addLayer("chosen", maxvio_plot_->layer("main"), QCustomPlot::limAbove);
        for (int l = 0; l < L; ++l)
            maxvio_graphs_[l]->setLayer(l == layer_ ? "chosen" : "main");
    }

    // Dead experts in the chosen scope.
    {
        double top = 0;
        for (int s = 0; s < S; ++s)
            top = std::max(top, static_cast<double>(deadExperts(s)));
        dead_plot_->yAxis->setRange(0, std::max(1.0, top * 1.15));
        dead_graph_->setName(dead_scope_ == DeadScope::AllLayers ? "all layers" : data_.layer_names.value(layer_));
        QSharedPointer<QCPAxisTickerFixed> ticker(new QCPAxisTickerFixed);
        ticker->setTickStep(1.0);
        ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
        dead_plot_->yAxis->setTicker(ticker);
        qobject_cast<QCPTextElement *>(dead_plot_->plotLayout()->element(0, 0))
            ->setText(dead_scope_ == DeadScope::AllLayers ? "Dead experts, all layers"
                                                          : QStringLiteral("Dead experts, %1").arg(data_.layer_names.value(layer_)));
    }
}

void ExpertLoadView::updateStepViews()
{
    const int S = data_.step_count(), L = data_.layers(), E = data_.experts;
    if (S == 0)
        return;
    const int s = std::clamp(shownStepIndex(), 0, S - 1);
    const QString step_name = step_text(data_.steps[s]);

    // Layers x experts at the step.
    double hi = 0, max_abs = 0;
    for (int l = 0; l < L; ++l) {
        for (int e = 0; e < E; ++e) {
            const double v = loadValue(s, l, e);
            load_step_->setCell(e, l, v);
            if (std::isfinite(v))
                hi = std::max(hi, v);
            if (!data_.bias.empty()) {
                const double b = data_.bias[data_.index(s, l, e)];
                bias_step_->setCell(e, l, b);
                max_abs = std::max(max_abs, std::abs(b));
            }
        }
    }
    for (QCPItemRect *outline : row_outlines_) {
        outline->topLeft->setCoords(-0.5, layer_ - 0.5);
        outline->bottomRight->setCoords(E - 0.5, layer_ + 0.5);
    }
    load_step_->setColorRange(0, std::max(hi, unit_ == LoadUnit::ShareOfMean ? 2.0 : 1.0));
    load_step_->setColorLabel(unitLabel());
    load_step_->setTitle(QStringLiteral("All layers at step %1").arg(step_name));
    bias_step_->setSymmetricColorRange(max_abs);
    bias_step_->setTitle(QStringLiteral("Bias of all layers at step %1").arg(step_name));

    // Bars of the chosen layer.
    QVector<double> keys(E), values(E);
    double top = 0, sum = 0;
    for (int e = 0; e < E; ++e) {
        keys[e] = e;
        values[e] = loadValue(s, layer_, e);
        if (std::isfinite(values[e])) {
            top = std::max(top, values[e]);
            sum += values[e];
        }
    }
    bars_->setData(keys, values, true);
    const double mean = unit_ == LoadUnit::ShareOfMean ? 1.0 : sum / std::max(E, 1);
    mean_line_->point1->setCoords(0, mean);
    mean_line_->point2->setCoords(1, mean);
    bar_plot_->xAxis->setRange(-0.8, E - 0.2);
    bar_plot_->yAxis->setRange(0, std::max({top, mean * 1.5, 1e-9}) * 1.12);
    bar_plot_->yAxis->setLabel(unitLabel());
    QSharedPointer<QCPAxisTickerFixed> ticker(new QCPAxisTickerFixed);
    ticker->setTickStep(1.0);
    ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    bar_plot_->xAxis->setTicker(ticker);
    const int dead = dead_layer_[static_cast<size_t>(s) * L + layer_];
    qobject_cast<QCPTextElement *>(bar_plot_->plotLayout()->element(0, 0))
        ->setText(QStringLiteral("%1 at step %2%3: MaxVio %4, %5 dead")
                      .arg(data_.layer_names.value(layer_), step_name, preview_ >= 0 ? " (hover)" : "")
                      .arg(maxVio(s, layer_), 0, 'f', 2)
                      .arg(dead));
    updateCursors();
    for (QCustomPlot *p : {static_cast<QCustomPlot *>(load_step_), static_cast<QCustomPlot *>(bias_step_), bar_plot_})
        p->replot(QCustomPlot::rpQueuedReplot);
}

void ExpertLoadView::updateCursors()
{
    if (data_.steps.empty())
        return;
    const double x = data_.steps[std::clamp(shownStepIndex(), 0, data_.step_count() - 1)];
    for (QCPItemStraightLine *c : cursors_) {
        c->point1->setCoords(x, 0);
        c->point2->setCoords(x, 1);
        // A buffered layer can repaint alone only once the plot has painted itself.
        if (c->parentPlot()->property("moe_painted").toBool())
            c->layer()->replot();
        else
            c->parentPlot()->replot(QCustomPlot::rpQueuedReplot);
    }
}

void ExpertLoadView::setLayer(int layer)
{
    if (layer < 0 || layer >= data_.layers())
        return;
    layer_ = layer;
    {
        const QSignalBlocker block(layer_combo_);
        layer_combo_->setCurrentIndex(layer);
    }
    updateLineGraphs();
    rebuildTrainingMaps();
    updateStepViews();
    for (QCustomPlot *p : {static_cast<QCustomPlot *>(load_training_), static_cast<QCustomPlot *>(bias_training_),
                           maxvio_plot_, dead_plot_})
        p->replot(QCustomPlot::rpQueuedReplot);
}

void ExpertLoadView::setLoadUnit(LoadUnit unit)
{
    unit_ = unit;
    {
        const QSignalBlocker block(unit_combo_);
        unit_combo_->setCurrentIndex(static_cast<int>(unit));
    }
    fillTrainingMap(load_training_, false);
    load_training_->replot(QCustomPlot::rpQueuedReplot);
    updateStepViews();
}

void ExpertLoadView::setBucket(Bucket bucket)
{
    bucket_ = bucket;
    {
        const QSignalBlocker block(bucket_combo_);
        bucket_combo_->setCurrentIndex(static_cast<int>(bucket));
    }
    scheduleTrainingRebuild();
}

void ExpertLoadView::setDeadScope(DeadScope scope)
{
    dead_scope_ = scope;
    {
        const QSignalBlocker block(dead_combo_);
        dead_combo_->setCurrentIndex(static_cast<int>(scope));
    }
    updateLineGraphs();
    rebuildLines();
    dead_plot_->replot(QCustomPlot::rpQueuedReplot);
}

void ExpertLoadView::setStepIndex(int index)
{
    if (data_.steps.empty())
        return;
    index = std::clamp(index, 0, data_.step_count() - 1);
    const bool changed = index != step_;
    step_ = index;
    {
        const QSignalBlocker b1(slider_), b2(spin_);
        slider_->setValue(index);
        spin_->setValue(static_cast<int>(data_.steps[index]));
    }
    updateStepViews();
    if (changed)
        emit stepIndexChanged(index);
}

void ExpertLoadView::previewStep(double step)
{
    if (data_.steps.empty())
        return;
    if (step < 0) {
        endPreview();
        return;
    }
    const int index = nearestStepIndex(step);
    if (index == preview_)
        return;
    preview_ = index;
    updateStepViews();
}

void ExpertLoadView::endPreview()
{
    if (preview_ < 0)
        return;
    preview_ = -1;
    updateStepViews();
}

void ExpertLoadView::onTrainingMouseMove(QMouseEvent *event)
{
    auto *plot = qobject_cast<QCustomPlot *>(sender());
    if (!plot || event->buttons() != Qt::NoButton)
        return;
    if (plot->axisRect()->rect().contains(event->pos()))
        previewStep(plot->xAxis->pixelToCoord(event->pos().x()));
    else
        endPreview();
}

bool ExpertLoadView::eventFilter(QObject *watched, QEvent *event)
{
    if (event->type() == QEvent::Leave)
        endPreview();
    else if (event->type() == QEvent::Resize && (watched == load_training_ || watched == bias_training_))
        scheduleTrainingRebuild();  // columns follow the pixel width
    return QWidget::eventFilter(watched, event);
}

double ExpertLoadView::replotAll()
{
    QElapsedTimer timer;
    timer.start();
    for (QCustomPlot *p : {static_cast<QCustomPlot *>(load_training_), static_cast<QCustomPlot *>(load_step_),
                           static_cast<QCustomPlot *>(bias_training_), static_cast<QCustomPlot *>(bias_step_),
                           bar_plot_, maxvio_plot_, dead_plot_})
        p->replot(QCustomPlot::rpImmediateRefresh);
    return timer.nsecsElapsed() / 1e6;
}

}  // namespace moe::views
