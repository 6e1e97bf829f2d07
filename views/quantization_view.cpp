#include "quantization_view.h"

#include "colormap.h"
#include "explained.h"
#include "heatmap_plot.h"
#include "plot_export.h"

#include <QCheckBox>
#include <QComboBox>
#include <QHBoxLayout>
#include <QHelpEvent>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QMouseEvent>
#include <QScrollBar>
#include <QSlider>
#include <QSplitter>
#include <QStackedWidget>
#include <QToolTip>
#include <QVBoxLayout>
#include <QWheelEvent>
#include <qcustomplot.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace moe::views {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int kRowPixels = 17;      // height of one bar row in the error list
constexpr int kMaxOverlaid = 6;     // tensors drawn at once in "error over training"

const Concept kRelError{
    "Relative quantization error",
    "||Q(x) &minus; x|| / ||x||, Q(x) being x rounded to the format: the size of the rounding error compared with the tensor itself. "
    "BF16 keeps it near 0.3%, FP8 E4M3 near 3%; a tensor far above its neighbours has an outlier "
    "or a badly chosen scale."};
const Concept kSnr{
    "Signal-to-noise ratio",
    "10 log<sub>10</sub>(||x||&sup2; / ||Q(x) &minus; x||&sup2;) in decibels: higher is better. Every "
    "extra mantissa bit adds about 6 dB; FP8 E4M3 gives about 30 dB, BF16 about 50 dB."};
const Concept kHistogram{
    "Values against the number grid",
    "How many elements have each magnitude, as log<sub>2</sub>|x / scale|: the values the format "
    "actually sees after dividing by their tile's scale. The ticks are every magnitude the format "
    "can store (finer ticks = more precision). Values in the left shaded band round to zero; "
    "values in the right band are clipped to the largest number."};
const Concept kErrorHistogram{
    "Rounding errors",
    "How large each element's rounding error is, relative to the tensor's largest magnitude: "
    "log<sub>2</sub>(|Q(x) &minus; x| / amax). With M mantissa bits most errors lie below "
    "2<sup>&minus;M&minus;1</sup>; a long tail to the right means saturation."};
const Concept kScales{
    "Block scales",
    "Each tile of the tensor is divided by its own scale so its largest value lands near the "
    "format's maximum. The map shows log<sub>2</sub> of every tile's scale: a tile much brighter "
    "than its neighbours holds an outlier that coarsens the whole tile."};
const Concept kOverTraining{
    "Error over training",
    "The selected tensors' error at every logged step. Open several runs (e.g. a BF16 and an FP8 "
    "run) to compare them; Ctrl-click bars to add tensors."};
const Concept kRoles{
    "Weights, activations, gradients",
    "A linear layer quantizes its weight, its input activation (@in) and, in the backward pass, "
    "the gradient of its output (@grad). Gradients have the widest range and usually need E5M2."};

QString locale_step(double step) { return QLocale().toString(qlonglong(std::llround(step))); }

QString percent(double v) {
    if (!std::isfinite(v)) return QStringLiteral("–");
    const double p = 100.0 * v;
    return QString::number(p, 'f', p != 0 && std::abs(p) < 0.1 ? 3 : 2) + QLatin1Char('%');
}

QColor role_color(QuantRole role) {
    switch (role) {
    case QuantRole::Weight: return category_color(0);
    case QuantRole::Activation: return category_color(1);
    case QuantRole::Gradient: return category_color(2);
    }
    return category_color(0);
}

void style_plot(QCustomPlot* plot) {
    plot->setNoAntialiasingOnDrag(true);
    QFont small = plot->font();
    small.setPointSizeF(8);
    QFont label = plot->font();
    label.setPointSizeF(9);
    for (QCPAxis* axis : {plot->xAxis, plot->yAxis}) {
        axis->setTickLabelFont(small);
        axis->setLabelFont(label);
        axis->setLabelPadding(3);
        axis->grid()->setPen(QPen(QColor(0xe3, 0xe3, 0xe3), 0, Qt::SolidLine));
        axis->grid()->setSubGridPen(QPen(QColor(0xf2, 0xf2, 0xf2), 0, Qt::SolidLine));
    }
    plot->legend->setFont(small);
    plot->legend->setBrush(QColor(255, 255, 255, 220));
    plot->legend->setBorderPen(QPen(QColor(0xc8, 0xc8, 0xc8)));
    plot->legend->setRowSpacing(0);  // negative spacing clips underscores
    plot->legend->setIconSize(18, 13);  // taller rows: the underscores of names stay visible
}

QCPItemText* add_note(QCustomPlot* plot) {
    auto* note = new QCPItemText(plot);
    note->position->setType(QCPItemPosition::ptAxisRectRatio);
    note->position->setCoords(0.5, 0.5);
    note->setPositionAlignment(Qt::AlignCenter);
    note->setColor(QColor(0x80, 0x80, 0x80));
    note->setClipToAxisRect(false);
    note->setVisible(false);
    return note;
}

QLabel* caption(const QString& text) {
    auto* l = new QLabel(text);
    l->setContentsMargins(0, 0, 2, 0);
    return l;
}

}  // namespace

QuantizationView::QuantizationView(QWidget* parent) : QWidget(parent) {
    grid_ = number_grid(grid_format_);
    buildUi();
    updateAll();
}

QuantizationView::~QuantizationView() = default;

// ---- building ----

void QuantizationView::buildUi() {
    auto* root = new QVBoxLayout(this);
    root->setContentsMargins(0, 0, 0, 0);
    stack_ = new QStackedWidget;
    root->addWidget(stack_);

    empty_label_ = new QLabel;
    empty_label_->setObjectName(QStringLiteral("quantEmptyState"));
    empty_label_->setAlignment(Qt::AlignCenter);
    empty_label_->setWordWrap(true);
    empty_label_->setMargin(40);
    QFont f = empty_label_->font();
    f.setPointSizeF(f.pointSizeF() * 1.15);
    empty_label_->setFont(f);
    empty_label_->setStyleSheet(QStringLiteral("color: #555;"));
    stack_->addWidget(empty_label_);

    auto* content = new QWidget;
    auto* layout = new QVBoxLayout(content);
    layout->setContentsMargins(6, 6, 6, 6);
    layout->setSpacing(4);

    auto* controls = new QHBoxLayout;
    run_combo_ = new QComboBox;
    run_combo_->setToolTip(QStringLiteral("Run shown in the error list, the histogram and the scales; "
                                          "every open run is overlaid in \"error over training\""));
    run_combo_->setSizeAdjustPolicy(QComboBox::AdjustToContents);
    step_slider_ = new QSlider(Qt::Horizontal);
    step_slider_->setToolTip(QStringLiteral("Logged step shown in the error list, histogram and scales. At the "
                                            "right end the view follows a live run's newest step."));
    step_slider_->setMinimumWidth(120);
    step_label_ = new QLabel;
    step_label_->setMinimumWidth(QFontMetrics(step_label_->font()).horizontalAdvance(QStringLiteral("step 1,000,000 (newest)")));
    metric_combo_ = new QComboBox;
    metric_combo_->addItems({QStringLiteral("relative error"), QStringLiteral("SNR (dB)")});
    metric_combo_->setItemData(0, explained_html(kRelError), Qt::ToolTipRole);
    metric_combo_->setItemData(1, explained_html(kSnr), Qt::ToolTipRole);
    set_explained(metric_combo_, kRelError);
    controls->addWidget(caption(QStringLiteral("Run")));
    controls->addWidget(run_combo_);
    controls->addSpacing(8);
    controls->addWidget(caption(QStringLiteral("Step")));
    controls->addWidget(step_slider_, 1);
    controls->addWidget(step_label_);
    controls->addSpacing(8);
    controls->addWidget(caption(QStringLiteral("Show")));
    controls->addWidget(metric_combo_);
    layout->addLayout(controls);

    auto* right = new QSplitter(Qt::Vertical);
    right->addWidget(buildHistogramPanel());
    auto* bottom = new QSplitter(Qt::Horizontal);
    bottom->addWidget(buildTrainingPanel());
    bottom->addWidget(buildScalePanel());
    bottom->setStretchFactor(0, 3);
    bottom->setStretchFactor(1, 2);
    right->addWidget(bottom);
    right->setStretchFactor(0, 1);
    right->setStretchFactor(1, 1);
    right->setChildrenCollapsible(false);

    auto* split = new QSplitter(Qt::Horizontal);
    split->addWidget(buildBarPanel());
    split->addWidget(right);
    split->setStretchFactor(0, 2);
    split->setStretchFactor(1, 3);
    split->setChildrenCollapsible(false);
    layout->addWidget(split, 1);
    stack_->addWidget(content);

    connect(run_combo_, qOverload<int>(&QComboBox::activated), this,
            [this](int i) { setRun(run_combo_->itemData(i).toInt()); });
    connect(step_slider_, &QSlider::valueChanged, this, &QuantizationView::setStepIndex);
    connect(metric_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this,
            [this](int i) { setMetric(static_cast<QuantMetric>(i)); });
}

QWidget* QuantizationView::buildBarPanel() {
    auto* panel = new QWidget;
    auto* v = new QVBoxLayout(panel);
    v->setContentsMargins(0, 0, 0, 0);
    v->setSpacing(3);
    auto* row1 = new QHBoxLayout;
    sort_combo_ = new QComboBox;
    sort_combo_->addItems({QStringLiteral("worst first"), QStringLiteral("name"), QStringLiteral("layer")});
    sort_combo_->setToolTip(QStringLiteral("Order of the bars: the worst error first, by name, or by layer"));
    role_combo_ = new QComboBox;
    role_combo_->addItems({QStringLiteral("all roles"), QStringLiteral("weights"), QStringLiteral("activations"),
                           QStringLiteral("gradients")});
    set_explained(role_combo_, kRoles);
    filter_edit_ = new QLineEdit;
    filter_edit_->setPlaceholderText(QStringLiteral("filter, e.g. experts down_proj"));
    filter_edit_->setClearButtonEnabled(true);
    filter_edit_->setToolTip(QStringLiteral("Show tensors whose name contains every word typed here"));
    row1->addWidget(caption(QStringLiteral("Sort")));
    row1->addWidget(sort_combo_);
    row1->addWidget(role_combo_);
    row1->addWidget(filter_edit_, 1);
    v->addLayout(row1);
    auto* row2 = new QHBoxLayout;
    show_all_check_ = new QCheckBox;
    show_all_check_->setToolTip(QStringLiteral("List every matching tensor (scroll or wheel through them) instead "
                                               "of the first %1").arg(kTopN));
    count_label_ = new QLabel;
    count_label_->setStyleSheet(QStringLiteral("color: #666;"));
    row2->addWidget(show_all_check_);
    row2->addStretch(1);
    row2->addWidget(count_label_);
    v->addLayout(row2);

    auto* list = new QHBoxLayout;
    list->setSpacing(0);
    bar_plot_ = new QCustomPlot;
    bar_plot_->setObjectName(QStringLiteral("quant-error-per-tensor"));
    bar_plot_->setWindowTitle(QStringLiteral("Quantization error per tensor"));
    bar_plot_->setMinimumSize(260, 200);
    style_plot(bar_plot_);
    add_plot_title(bar_plot_, QStringLiteral("Error per tensor"));
    bar_plot_->yAxis->setRangeReversed(true);
    bar_plot_->yAxis->grid()->setVisible(false);
    bar_plot_->yAxis->setTickLength(0, 0);
    bar_plot_->yAxis->setSubTicks(false);
    bar_plot_->xAxis2->setVisible(false);
    for (QuantRole role : {QuantRole::Weight, QuantRole::Activation, QuantRole::Gradient}) {
        auto* bars = new QCPBars(bar_plot_->yAxis, bar_plot_->xAxis);
        bars->setWidth(0.72);
        bars->setPen(Qt::NoPen);
        bars->setBrush(role_color(role));
        bars->setName(role_name(role));
        role_bars_.push_back(bars);
    }
    // The role legend sits in a row under the title, where it never covers a bar.
    bar_plot_->legend->setVisible(true);
    bar_plot_->axisRect()->insetLayout()->take(bar_plot_->legend);
    bar_plot_->plotLayout()->insertRow(1);
    bar_plot_->plotLayout()->addElement(1, 0, bar_plot_->legend);
    bar_plot_->plotLayout()->setRowStretchFactor(1, 0.001);
    bar_plot_->legend->setFillOrder(QCPLegend::foColumnsFirst);
    bar_plot_->legend->setWrap(3);
    bar_plot_->legend->setBorderPen(Qt::NoPen);
    bar_plot_->legend->setMargins(QMargins(4, 0, 4, 0));
    bar_plot_->xAxis->ticker()->setTickCount(4);
    bar_plot_->addLayer(QStringLiteral("highlight"), bar_plot_->layer(QStringLiteral("grid")), QCustomPlot::limAbove);
    bar_note_ = add_note(bar_plot_);
    bar_plot_->installEventFilter(this);
    bar_plot_->setMouseTracking(true);
    bar_scroll_ = new QScrollBar(Qt::Vertical);
    bar_scroll_->setObjectName(QStringLiteral("quantBarScroll"));
    bar_scroll_->setToolTip(QStringLiteral("Scroll through the tensors (the mouse wheel over the bars does too)"));
    list->addWidget(bar_plot_, 1);
    list->addWidget(bar_scroll_);
    v->addLayout(list, 1);

    connect(sort_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this,
            [this](int i) { setSort(static_cast<QuantSort>(i)); });
    connect(role_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this,
            [this](int i) { setRoleFilter(static_cast<RoleFilter>(i)); });
    connect(filter_edit_, &QLineEdit::textChanged, this, &QuantizationView::setTextFilter);
    connect(show_all_check_, &QCheckBox::toggled, this, &QuantizationView::setShowAll);
    connect(bar_scroll_, &QScrollBar::valueChanged, this, [this](int v) {
        first_row_ = v;
        updateBarRange();
        bar_plot_->replot(QCustomPlot::rpQueuedReplot);
    });
    connect(bar_plot_, &QCustomPlot::mousePress, this, [this](QMouseEvent* e) {
        if (e->button() != Qt::LeftButton || !bar_plot_->axisRect()->rect().contains(e->pos())) return;
        const int r = rowAt(e->pos().y());
        if (r >= 0 && r < int(shown_.size()) && current())
            selectTensor(current()->tensors[size_t(shown_[size_t(r)])].key, e->modifiers() & Qt::ControlModifier);
    });
    add_export_actions(this, bar_plot_, [this] {
        CsvContent content;
        content.x_name = QStringLiteral("tensor index");
        const QuantRunData* run = current();
        if (!run) return content;
        Matrix m;
        m.cols = 5;
        m.col_labels = {QStringLiteral("rel_error"), QStringLiteral("snr_db"), QStringLiteral("amax"),
                        QStringLiteral("frac_saturated"), QStringLiteral("frac_flushed")};
        for (int t : shown_) {
            auto at = [&](const std::vector<float>& v) { return size_t(t) < v.size() ? double(v[size_t(t)]) : kNaN; };
            m.row_labels << run->tensors[size_t(t)].key;
            for (const auto* col : {&row_data_.rel_error, &row_data_.snr_db, &row_data_.amax, &row_data_.frac_saturated,
                                    &row_data_.frac_flushed})
                m.values.push_back(at(*col));
            ++m.rows;
        }
        content.matrix = m;
        return content;
    });
    return panel;
}

QWidget* QuantizationView::buildHistogramPanel() {
    auto* panel = new QWidget;
    auto* v = new QVBoxLayout(panel);
    v->setContentsMargins(0, 0, 0, 0);
    v->setSpacing(3);
    auto* row = new QHBoxLayout;
    hist_combo_ = new QComboBox;
    hist_combo_->addItems({QStringLiteral("values"), QStringLiteral("rounding errors")});
    hist_combo_->setItemData(0, explained_html(kHistogram), Qt::ToolTipRole);
    hist_combo_->setItemData(1, explained_html(kErrorHistogram), Qt::ToolTipRole);
    hist_combo_->setToolTip(QStringLiteral("Histogram of the selected tensor's values or of its rounding errors"));
    format_combo_ = new QComboBox;
    format_combo_->addItems(grid_format_names());
    format_combo_->setToolTip(explained_html(
        QStringLiteral("Number format"),
        QStringLiteral("Whose grid of representable numbers is drawn over the values. Defaults to the run's "
                       "precision (FP8 runs: E4M3, as their weights and activations use; gradients use E5M2).")));
    tensor_label_ = new QLabel;
    tensor_label_->setTextFormat(Qt::RichText);
    tensor_label_->setMinimumWidth(10);
    tensor_label_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Minimum);
    row->addWidget(caption(QStringLiteral("Histogram of")));
    row->addWidget(hist_combo_);
    row->addSpacing(6);
    row->addWidget(caption(QStringLiteral("Grid")));
    row->addWidget(format_combo_);
    row->addStretch(1);
    v->addLayout(row);
    tensor_label_->setWordWrap(true);
    v->addWidget(tensor_label_);

    hist_plot_ = new QCustomPlot;
    hist_plot_->setObjectName(QStringLiteral("quant-histogram"));
    hist_plot_->setWindowTitle(QStringLiteral("Value histogram"));
    hist_plot_->setMinimumSize(300, 170);
    style_plot(hist_plot_);
    add_plot_title(hist_plot_, QString());
    hist_plot_->yAxis->setScaleType(QCPAxis::stLogarithmic);
    auto log_ticker = QSharedPointer<QCPAxisTickerLog>::create();
    log_ticker->setLogBase(10);
    log_ticker->setSubTickCount(0);
    hist_plot_->yAxis->setTicker(log_ticker);
    hist_plot_->yAxis->setNumberFormat(QStringLiteral("eb"));
    hist_plot_->yAxis->setNumberPrecision(0);
    hist_plot_->yAxis->setLabel(QStringLiteral("elements"));
    hist_plot_->yAxis2->setRange(0, 1);  // the grid overlay is drawn on this hidden 0..1 axis
    hist_plot_->xAxis->setTicker(QSharedPointer<QCPAxisTickerFixed>::create());
    hist_plot_->xAxis->ticker().dynamicCast<QCPAxisTickerFixed>()->setTickStep(2);
    hist_plot_->xAxis->ticker().dynamicCast<QCPAxisTickerFixed>()->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);

    // Shaded bands first, so bars and ticks are drawn over them.
    auto band = [this](QColor fill) {
        auto* r = new QCPItemRect(hist_plot_);
        r->setLayer(QStringLiteral("grid"));
        r->setPen(Qt::NoPen);
        r->setBrush(fill);
        r->topLeft->setTypeY(QCPItemPosition::ptAxisRectRatio);
        r->bottomRight->setTypeY(QCPItemPosition::ptAxisRectRatio);
        r->topLeft->setCoords(0, 0);
        r->bottomRight->setCoords(0, 1);
        return r;
    };
    flush_shade_ = band(QColor(120, 120, 120, 45));
    saturate_shade_ = band(QColor(213, 94, 0, 45));
    auto band_text = [this](QColor color) {
        auto* t = new QCPItemText(hist_plot_);
        t->position->setTypeY(QCPItemPosition::ptAxisRectRatio);
        t->setColor(color);
        QFont f = hist_plot_->font();
        f.setPointSizeF(8);
        t->setFont(f);
        t->setClipToAxisRect(true);
        return t;
    };
    flush_text_ = band_text(QColor(80, 80, 80));
    flush_text_->setText(QStringLiteral("rounds\nto 0"));
    saturate_text_ = band_text(QColor(170, 70, 0));
    saturate_text_->setText(QStringLiteral("clipped\nto max"));

    grid_lines_ = hist_plot_->addGraph(hist_plot_->xAxis, hist_plot_->yAxis2);
    grid_lines_->setLineStyle(QCPGraph::lsImpulse);
    grid_lines_->setPen(QPen(QColor(0, 0, 0, 28), 0));
    grid_lines_->removeFromLegend();
    hist_graph_ = hist_plot_->addGraph();
    hist_graph_->setLineStyle(QCPGraph::lsStepLeft);
    hist_graph_->setPen(QPen(category_color(0), 1.2));
    QColor fill = category_color(0);
    fill.setAlpha(110);
    hist_graph_->setBrush(fill);
    hist_graph_->setName(QStringLiteral("elements"));
    grid_ticks_ = hist_plot_->addGraph(hist_plot_->xAxis, hist_plot_->yAxis2);
    grid_ticks_->setLineStyle(QCPGraph::lsImpulse);
    grid_ticks_->setPen(QPen(QColor(30, 30, 30), 0));
    hist_note_ = add_note(hist_plot_);
    hist_plot_->legend->setVisible(true);
    hist_plot_->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignHCenter);
    hist_plot_->setToolTip(explained_html(kHistogram));
    v->addWidget(hist_plot_, 1);

    connect(hist_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this,
            [this](int i) { setHistogramKind(static_cast<HistogramKind>(i)); });
    connect(format_combo_, qOverload<int>(&QComboBox::activated), this, [this](int i) {
        grid_format_chosen_ = true;
        setGridFormat(static_cast<GridFormat>(i));
    });
    add_export_actions(this, hist_plot_, [this] {
        CsvContent content;
        content.x_name = hist_kind_ == HistogramKind::Values ? QStringLiteral("log2_abs_x_over_scale_bin_lo")
                                                             : QStringLiteral("log2_error_over_amax_bin_lo");
        Series s{selected_.value(0), {}, {}};
        if (const QuantRunData* run = current()) {
            const int t = run->tensorIndex(selected_.value(0));
            const auto& h = hist_kind_ == HistogramKind::Values ? row_data_.value_hist : row_data_.error_hist;
            const int bins = run->bins.count;
            if (t >= 0 && h.size() >= size_t(t + 1) * size_t(bins))
                for (int b = 0; b < bins; ++b) {
                    s.x.push_back(run->bins.binLo(b));
                    s.y.push_back(h[size_t(t) * size_t(bins) + size_t(b)]);
                }
        }
        content.series.push_back(std::move(s));
        return content;
    });
    return panel;
}

QWidget* QuantizationView::buildTrainingPanel() {
    training_plot_ = new QCustomPlot;
    training_plot_->setObjectName(QStringLiteral("quant-error-over-training"));
    training_plot_->setWindowTitle(QStringLiteral("Quantization error over training"));
    training_plot_->setMinimumSize(260, 170);
    style_plot(training_plot_);
    add_plot_title(training_plot_, QStringLiteral("Error over training"));
    training_plot_->xAxis->setLabel(QStringLiteral("training step"));
    use_step_ticker(training_plot_->xAxis);
    training_plot_->legend->setVisible(true);
    training_plot_->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    training_plot_->axisRect()->setRangeDrag(Qt::Horizontal);
    training_plot_->axisRect()->setRangeZoom(Qt::Horizontal);
    training_plot_->setToolTip(explained_html(kOverTraining));
    training_note_ = add_note(training_plot_);
    connect(training_plot_, &QCustomPlot::mouseDoubleClick, this, [this](QMouseEvent*) {
        training_plot_->rescaleAxes(true);
        updateTraining();
    });
    add_export_actions(this, training_plot_, [this] {
        CsvContent content;
        content.x_name = QStringLiteral("step");
        for (int i = 0; i < training_plot_->graphCount(); ++i) {
            QCPGraph* g = training_plot_->graph(i);
            Series s{g->name(), {}, {}};
            for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it) {
                s.x.push_back(it->key);
                s.y.push_back(it->value);
            }
            content.series.push_back(std::move(s));
        }
        return content;
    });
    return training_plot_;
}

QWidget* QuantizationView::buildScalePanel() {
    auto* panel = new QWidget;
    auto* v = new QVBoxLayout(panel);
    v->setContentsMargins(0, 0, 0, 0);
    v->setSpacing(3);
    auto* row = new QHBoxLayout;
    scale_combo_ = new QComboBox;
    scale_combo_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    scale_combo_->setMinimumContentsLength(14);
    set_explained(scale_combo_, kScales);
    row->addWidget(caption(QStringLiteral("Scales of")));
    row->addWidget(scale_combo_, 1);
    v->addLayout(row);
    scale_plot_ = new HeatmapPlot;
    scale_plot_->setObjectName(QStringLiteral("quant-block-scales"));
    scale_plot_->setWindowTitle(QStringLiteral("Block scales"));
    scale_plot_->setMinimumSize(220, 170);
    scale_plot_->setGradient(viridis_gradient());
    scale_plot_->setColorLabel(QStringLiteral("log2 scale"));
    scale_plot_->setRowsTopDown(true);
    scale_plot_->xAxis->setLabel(QStringLiteral("block column"));
    scale_plot_->yAxis->setLabel(QStringLiteral("block row"));
    scale_plot_->setToolTip(explained_html(kScales));
    scale_note_ = add_note(scale_plot_);
    v->addWidget(scale_plot_, 1);
    connect(scale_combo_, qOverload<int>(&QComboBox::currentIndexChanged), this, &QuantizationView::setScaleGrid);
    add_export_actions(this, scale_plot_, [this] {
        CsvContent content;
        content.matrix = scale_plot_->toMatrix();
        return content;
    });
    return panel;
}

// ---- data in ----

const QuantRunData* QuantizationView::current() const {
    return run_ >= 0 && run_ < int(data_.runs.size()) ? &data_.runs[size_t(run_)] : nullptr;
}

void QuantizationView::chooseDefaultRun() {
    // The first run with rows, else the first that quantizes at all.
    run_ = -1;
    for (int i = 0; i < int(data_.runs.size()) && run_ < 0; ++i)
        if (data_.runs[size_t(i)].quantizes() && data_.runs[size_t(i)].rowCount() > 0) run_ = i;
    for (int i = 0; i < int(data_.runs.size()) && run_ < 0; ++i)
        if (data_.runs[size_t(i)].quantizes()) run_ = i;
}

void QuantizationView::setData(QuantizationData data) {
    const QuantRunData* old = current();
    const QString old_name = old ? old->run_name : QString();
    const bool was_newest = !old || row_ < 0 || row_ >= old->rowCount() - 1;
    const double old_step = old && row_ >= 0 && row_ < old->rowCount() ? old->steps[size_t(row_)] : kNaN;
    const QString old_precision = old ? old->precision : QString();

    data_ = std::move(data);
    series_cache_.clear();
    loaded_run_ = loaded_row_ = -1;
    run_ = -1;
    for (int i = 0; i < int(data_.runs.size()); ++i)
        if (data_.runs[size_t(i)].run_name == old_name && data_.runs[size_t(i)].quantizes()) run_ = i;
    if (run_ < 0) chooseDefaultRun();

    const QuantRunData* run = current();
    row_ = -1;
    if (run && run->rowCount() > 0) {
        row_ = run->rowCount() - 1;
        if (!was_newest && std::isfinite(old_step) && run->run_name == old_name) {
            const auto it = std::lower_bound(run->steps.begin(), run->steps.end(), old_step);
            row_ = std::min(int(it - run->steps.begin()), run->rowCount() - 1);
        }
    }
    if (run && !grid_format_chosen_ && run->precision != old_precision)
        setGridFormat(grid_format_for_precision(run->precision));

    {
        const QSignalBlocker block(run_combo_);
        run_combo_->clear();
        for (int i = 0; i < int(data_.runs.size()); ++i)
            if (data_.runs[size_t(i)].quantizes()) run_combo_->addItem(data_.runs[size_t(i)].label(), i);
        run_combo_->setCurrentIndex(run_combo_->findData(run_));
        run_combo_->setEnabled(run_combo_->count() > 1);
    }
    fillScaleCombo();
    updateAll();
}

void QuantizationView::loadRow() {
    const QuantRunData* run = current();
    if (!run || row_ < 0) {
        row_data_ = {};
        loaded_run_ = loaded_row_ = -1;
        return;
    }
    if (loaded_run_ == run_ && loaded_row_ == row_) return;
    row_data_ = run->row(row_);
    loaded_run_ = run_;
    loaded_row_ = row_;
}

const QuantSeries& QuantizationView::seriesFor(int run, int tensor) {
    const auto key = std::make_pair(run, tensor);
    auto it = series_cache_.find(key);
    if (it == series_cache_.end()) it = series_cache_.emplace(key, data_.runs[size_t(run)].series(tensor)).first;
    return it->second;
}

QString QuantizationView::stepText(int row) const {
    const QuantRunData* run = current();
    if (!run || row < 0 || row >= run->rowCount()) return QStringLiteral("no step");
    return QStringLiteral("step %1").arg(locale_step(run->steps[size_t(row)]));
}

// ---- controls ----

void QuantizationView::setRun(int run) {
    if (run < 0 || run >= int(data_.runs.size()) || !data_.runs[size_t(run)].quantizes() || run == run_) return;
    run_ = run;
    row_ = current()->rowCount() - 1;
    if (!grid_format_chosen_) setGridFormat(grid_format_for_precision(current()->precision));
    {
        const QSignalBlocker block(run_combo_);
        run_combo_->setCurrentIndex(run_combo_->findData(run_));
    }
    fillScaleCombo();
    updateAll();
}

void QuantizationView::fillScaleCombo() {
    const QuantRunData* run = current();
    const QSignalBlocker block(scale_combo_);
    const QString old_grid = scale_combo_->currentText();
    scale_combo_->clear();
    if (run)
        for (const ScaleGrid& g : run->scale_grids)
            scale_combo_->addItem(short_tensor_name(g.tensor) + QStringLiteral(" (%1 x %2)").arg(g.rows).arg(g.cols));
    const int again = scale_combo_->findText(old_grid);
    // First look: the largest grid (a small weight has a single 128x128 block, a plain square).
    int largest = 0;
    if (run)
        for (int i = 0; i < static_cast<int>(run->scale_grids.size()); ++i)
            if (run->scale_grids[i].rows * run->scale_grids[i].cols >
                run->scale_grids[largest].rows * run->scale_grids[largest].cols)
                largest = i;
    scale_grid_ = again >= 0 ? again : largest;
    scale_combo_->setCurrentIndex(scale_grid_);
    scale_combo_->setEnabled(scale_combo_->count() > 1);
}

void QuantizationView::setStepIndex(int row) {
    const QuantRunData* run = current();
    if (!run || run->rowCount() == 0) return;
    row = std::clamp(row, 0, run->rowCount() - 1);
    if (row == row_) return;
    row_ = row;
    updateStepControls();
    loadRow();
    updateBars();
    updateHistogram();
    updateScales();
    updateTraining();  // moves the step marker
}

void QuantizationView::setMetric(QuantMetric metric) {
    metric_ = metric;
    {
        const QSignalBlocker block(metric_combo_);
        metric_combo_->setCurrentIndex(int(metric));
    }
    set_explained(metric_combo_, metric == QuantMetric::RelError ? kRelError : kSnr);
    updateBars();
    updateTraining();
}

void QuantizationView::setSort(QuantSort sort) {
    sort_ = sort;
    const QSignalBlocker block(sort_combo_);
    sort_combo_->setCurrentIndex(int(sort));
    first_row_ = 0;
    updateBars();
}

void QuantizationView::setRoleFilter(RoleFilter filter) {
    role_filter_ = filter;
    const QSignalBlocker block(role_combo_);
    role_combo_->setCurrentIndex(int(filter));
    first_row_ = 0;
    updateBars();
}

void QuantizationView::setTextFilter(const QString& text) {
    text_filter_ = text;
    if (filter_edit_->text() != text) {
        const QSignalBlocker block(filter_edit_);
        filter_edit_->setText(text);
    }
    first_row_ = 0;
    updateBars();
}

void QuantizationView::setShowAll(bool all) {
    show_all_ = all;
    const QSignalBlocker block(show_all_check_);
    show_all_check_->setChecked(all);
    updateBars();
}

void QuantizationView::setGridFormat(GridFormat format) {
    grid_format_ = format;
    grid_ = number_grid(format);
    const QSignalBlocker block(format_combo_);
    format_combo_->setCurrentIndex(int(format));
    updateHistogram();
}

void QuantizationView::setHistogramKind(HistogramKind kind) {
    hist_kind_ = kind;
    const QSignalBlocker block(hist_combo_);
    hist_combo_->setCurrentIndex(int(kind));
    format_combo_->setEnabled(kind == HistogramKind::Values);
    hist_plot_->setToolTip(explained_html(kind == HistogramKind::Values ? kHistogram : kErrorHistogram));
    updateHistogram();
}

void QuantizationView::setScaleGrid(int grid) {
    scale_grid_ = std::max(grid, 0);
    const QSignalBlocker block(scale_combo_);
    scale_combo_->setCurrentIndex(scale_grid_);
    updateScales();
}

void QuantizationView::selectTensor(const QString& key, bool additive) {
    if (additive) {
        if (selected_.contains(key)) {
            if (selected_.size() > 1) selected_.removeAll(key);
        } else {
            selected_.prepend(key);
            while (selected_.size() > kMaxOverlaid) selected_.removeLast();
        }
    } else {
        selected_ = {key};
    }
    updateBars();
    updateHistogram();
    updateTraining();
    emit selectionChanged(selected_);
}

// ---- drawing ----

void QuantizationView::updateAll() {
    updateEmptyState();
    loadRow();
    updateStepControls();
    updateBars();
    updateHistogram();
    updateTraining();
    updateScales();
}

bool QuantizationView::emptyStateShown() const { return stack_->currentIndex() == 0; }

QString QuantizationView::emptyStateText() const { return emptyStateShown() ? empty_label_->text() : QString(); }

void QuantizationView::updateEmptyState() {
    QString text;
    const QuantRunData* run = current();
    if (data_.runs.empty()) {
        text = QStringLiteral("No run open. Start training or open a run to see its quantization error.");
    } else if (!run) {
        const bool one = data_.runs.size() == 1;
        text = one ? QStringLiteral("This run trains in %1: nothing is quantized. Start a run with precision fp8, bf16 "
                                    "or fp16 to see quantization error.")
                         .arg(data_.runs.front().precision.isEmpty() ? QStringLiteral("fp32") : data_.runs.front().precision)
                   : QStringLiteral("The shown runs train in fp32: nothing is quantized. Start a run with precision "
                                    "fp8, bf16 or fp16 to see quantization error.");
    } else if (run->rowCount() == 0) {
        text = run->live ? QStringLiteral("No quantization data yet. %1 records the error of its %2 tensors at every "
                                          "logged step; the first row appears after the first log interval.")
                               .arg(run->label())
                               .arg(run->tensorCount())
                         : QStringLiteral("%1 recorded no quantization rows (it stopped before its first logged step).")
                               .arg(run->label());
    }
    empty_label_->setText(text);
    stack_->setCurrentIndex(text.isEmpty() ? 1 : 0);
}

void QuantizationView::updateStepControls() {
    const QuantRunData* run = current();
    const QSignalBlocker block(step_slider_);
    const int n = run ? run->rowCount() : 0;
    step_slider_->setRange(0, std::max(0, n - 1));
    step_slider_->setValue(std::max(row_, 0));
    step_slider_->setEnabled(n > 1);
    step_label_->setText(stepText(row_) + (run && run->live && row_ == n - 1 ? QStringLiteral(" (newest)") : QString()));
}

int QuantizationView::visibleRows() const {
    const int h = bar_plot_->axisRect()->height() > 20 ? bar_plot_->axisRect()->height()
                                                        : std::max(bar_plot_->height() - 70, 40);
    return std::max(1, h / kRowPixels);
}

int QuantizationView::rowAt(double pixel_y) const {
    return int(std::floor(bar_plot_->yAxis->pixelToCoord(pixel_y) + 0.5));
}

void QuantizationView::updateBars() {
    const QuantRunData* run = current();
    for (QCPBars* b : role_bars_) b->data()->clear();
    for (QCPItemRect* r : highlights_) bar_plot_->removeItem(r);
    highlights_.clear();
    shown_.clear();
    matching_ = 0;
    if (!run || row_ < 0) {
        bar_plot_->replot(QCustomPlot::rpQueuedReplot);
        return;
    }
    std::vector<int> order = order_tensors(*run, row_data_, sort_, metric_, role_filter_, text_filter_);
    matching_ = int(order.size());
    if (!show_all_ && int(order.size()) > kTopN) order.resize(kTopN);
    shown_ = std::move(order);
    // Nothing selected (or the selection is gone): take the worst tensor, so the histogram and
    // the training plot show something useful at once.
    QStringList kept;
    for (const QString& k : selected_)
        if (run->tensorIndex(k) >= 0) kept << k;
    if (kept.isEmpty() && run->tensorCount() > 0) {
        const std::vector<int> worst = order_tensors(*run, row_data_, QuantSort::ByError, QuantMetric::RelError,
                                                     RoleFilter::All, QString());
        kept << run->tensors[size_t(worst.front())].key;
    }
    selected_ = kept;

    const std::vector<float>& values = metric_ == QuantMetric::RelError ? row_data_.rel_error : row_data_.snr_db;
    const double unit = metric_ == QuantMetric::RelError ? 100.0 : 1.0;  // relative error in percent
    auto ticker = QSharedPointer<QCPAxisTickerText>::create();
    // Long names lose their middle (the layer and the projection and role stay) to leave the bars
    // at least half of the plot's width.
    const QFontMetrics metrics(bar_plot_->yAxis->tickLabelFont());
    const int label_width = std::max(90, int(bar_plot_->width() * 0.5));
    double top = 0;
    for (int r = 0; r < int(shown_.size()); ++r) {
        const int t = shown_[size_t(r)];
        const QuantTensor& tensor = run->tensors[size_t(t)];
        const double v = size_t(t) < values.size() ? unit * double(values[size_t(t)]) : kNaN;
        if (std::isfinite(v)) {
            role_bars_[size_t(tensor.role)]->addData(r, v);
            top = std::max(top, v);
        }
        // The full name when it fits, else the compact one (the tooltip always has the key).
        QString label = short_tensor_name(tensor.key);
        if (metrics.horizontalAdvance(label) > label_width) label = compact_tensor_name(tensor.key);
        ticker->addTick(r, metrics.elidedText(label, Qt::ElideMiddle, label_width));
        if (selected_.contains(tensor.key)) {
            auto* mark = new QCPItemRect(bar_plot_);
            mark->setLayer(QStringLiteral("highlight"));
            mark->setPen(Qt::NoPen);
            mark->setBrush(QColor(255, 200, 0, tensor.key == selected_.front() ? 110 : 60));
            mark->topLeft->setTypeX(QCPItemPosition::ptAxisRectRatio);
            mark->bottomRight->setTypeX(QCPItemPosition::ptAxisRectRatio);
            mark->topLeft->setCoords(0, r - 0.5);
            mark->bottomRight->setCoords(1, r + 0.5);
            highlights_.push_back(mark);
        }
    }
    bar_plot_->yAxis->setTicker(ticker);
    bar_plot_->xAxis->setRange(0, top > 0 ? top * 1.06 : 1.0);
    bar_plot_->xAxis->setLabel(metric_ == QuantMetric::RelError ? QStringLiteral("relative error (%)")
                                                                : QStringLiteral("SNR (dB), higher is better"));
    qobject_cast<QCPTextElement*>(bar_plot_->plotLayout()->element(0, 0))
        ->setText(QStringLiteral("%1 per tensor at %2")
                      .arg(metric_ == QuantMetric::RelError ? QStringLiteral("Relative error") : QStringLiteral("SNR"),
                           stepText(row_)));
    // Only roles that appear get a legend entry.
    for (QCPBars* b : role_bars_) {
        if (b->data()->isEmpty()) b->removeFromLegend();
        else if (!bar_plot_->legend->hasItemWithPlottable(b)) b->addToLegend();
    }
    bar_plot_->legend->setVisible(bar_plot_->legend->itemCount() > 1);
    bar_note_->setText(matching_ == 0 ? QStringLiteral("no tensor matches the filter") : QString());
    bar_note_->setVisible(matching_ == 0);

    show_all_check_->setText(QStringLiteral("Show all %1").arg(matching_));
    show_all_check_->setEnabled(matching_ > kTopN || show_all_);
    count_label_->setText(int(shown_.size()) < matching_
                              ? QStringLiteral("worst %1 of %2 shown").arg(shown_.size()).arg(matching_)
                              : QStringLiteral("%1 of %2 tensors").arg(matching_).arg(run->tensorCount()));
    if (sort_ != QuantSort::ByError && int(shown_.size()) < matching_)
        count_label_->setText(QStringLiteral("first %1 of %2 shown").arg(shown_.size()).arg(matching_));
    updateBarRange();
    bar_plot_->replot(QCustomPlot::rpQueuedReplot);
}

void QuantizationView::updateBarRange() {
    const int rows = visibleRows();
    const int n = int(shown_.size());
    const int max_first = std::max(0, n - rows);
    first_row_ = std::clamp(first_row_, 0, max_first);
    {
        const QSignalBlocker block(bar_scroll_);
        bar_scroll_->setRange(0, max_first);
        bar_scroll_->setPageStep(rows);
        bar_scroll_->setValue(first_row_);
        bar_scroll_->setVisible(max_first > 0);
    }
    // Bars keep their height when there are few: the list starts at the top.
    bar_plot_->yAxis->setRange(first_row_ - 0.5, first_row_ + rows - 0.5);
}

QString QuantizationView::tensorTooltip(int t) const {
    const QuantRunData* run = current();
    if (!run || t < 0 || t >= run->tensorCount()) return {};
    auto at = [&](const std::vector<float>& v) { return size_t(t) < v.size() ? double(v[size_t(t)]) : kNaN; };
    const QuantTensor& tensor = run->tensors[size_t(t)];
    const int layer = tensor_layer(tensor.key);
    return QStringLiteral("<qt><b>%1</b><br>%2%3 at %4<table cellspacing=0 cellpadding=1>"
                          "<tr><td>relative error&nbsp;</td><td>%5</td></tr>"
                          "<tr><td>SNR</td><td>%6 dB</td></tr>"
                          "<tr><td>amax</td><td>%7</td></tr>"
                          "<tr><td>saturated</td><td>%8</td></tr>"
                          "<tr><td>flushed to zero</td><td>%9</td></tr></table>"
                          "<span style='color:#666'>Click to show its histogram; Ctrl-click to compare "
                          "several over training.</span></qt>")
        .arg(tensor.key.toHtmlEscaped(), role_name(tensor.role),
             layer >= 0 ? QStringLiteral(", layer %1").arg(layer) : QString(), stepText(row_))
        .arg(percent(at(row_data_.rel_error)))
        .arg(at(row_data_.snr_db), 0, 'f', 1)
        .arg(at(row_data_.amax), 0, 'g', 4)
        .arg(percent(at(row_data_.frac_saturated)), percent(at(row_data_.frac_flushed)));
}

void QuantizationView::updateGridOverlay() {
    const bool values = hist_kind_ == HistogramKind::Values;
    const NumberGrid& g = grid_;
    const double lo_edge = hist_plot_->xAxis->range().lower - 50, hi_edge = hist_plot_->xAxis->range().upper + 50;
    const double flush_at = std::log2(g.flushBelow()), max_at = std::log2(g.max_finite);
    flush_shade_->topLeft->setCoords(lo_edge, 0);
    flush_shade_->bottomRight->setCoords(flush_at, 1);
    saturate_shade_->topLeft->setCoords(max_at, 0);
    saturate_shade_->bottomRight->setCoords(hi_edge, 1);
    flush_text_->position->setCoords(flush_at - 0.15, 0.03);
    flush_text_->setPositionAlignment(Qt::AlignTop | Qt::AlignRight);
    flush_text_->setTextAlignment(Qt::AlignRight);
    saturate_text_->position->setCoords(max_at + 0.15, 0.03);
    saturate_text_->setPositionAlignment(Qt::AlignTop | Qt::AlignLeft);
    for (QCPAbstractItem* i : std::initializer_list<QCPAbstractItem*>{flush_shade_, saturate_shade_, flush_text_, saturate_text_})
        i->setVisible(values);

    QVector<QCPGraphData> ticks, lines;
    if (values) {
        // Short ticks for every representable magnitude in view (dense formats fuse into a band
        // whose darkness shows the density); full-height lines only where they stay apart.
        const QCPRange shown = hist_plot_->xAxis->range();
        const bool sparse = g.valuesPerBinade() <= 16;
        for (double x : g.log2_values) {
            if (x < shown.lower - 1 || x > shown.upper + 1) continue;
            ticks.append(QCPGraphData(x, 0.07));
            if (sparse) lines.append(QCPGraphData(x, 1.0));
        }
    }
    grid_ticks_->data()->set(ticks, true);
    grid_lines_->data()->set(lines, true);
    grid_ticks_->setVisible(values);
    // Dense formats fuse into a band: a light one, so it reads as "all representable here".
    grid_ticks_->setPen(QPen(g.valuesPerBinade() <= 16 ? QColor(30, 30, 30) : QColor(30, 30, 30, 70), 0));
    grid_lines_->setVisible(values);
    grid_ticks_->setName(QStringLiteral("%1 grid: %2 values per binade, max %3, min subnormal %4")
                             .arg(g.name)
                             .arg(g.valuesPerBinade())
                             .arg(g.max_finite, 0, 'g', 5)
                             .arg(QStringLiteral("2^%1").arg(std::log2(g.min_subnormal), 0, 'g', 4)));
    if (values) {
        if (!hist_plot_->legend->hasItemWithPlottable(grid_ticks_)) grid_ticks_->addToLegend();
    } else {
        grid_ticks_->removeFromLegend();
    }
}

void QuantizationView::updateHistogram() {
    const QuantRunData* run = current();
    const bool values = hist_kind_ == HistogramKind::Values;
    auto* title = qobject_cast<QCPTextElement*>(hist_plot_->plotLayout()->element(0, 0));
    hist_plot_->xAxis->setLabel(values ? QStringLiteral("log2 |x / scale|") : QStringLiteral("log2 (|Q(x) − x| / amax)"));
    const int t = run ? run->tensorIndex(selected_.value(0)) : -1;
    const int bins = run ? run->bins.count : 0;
    const auto& hist = values ? row_data_.value_hist : row_data_.error_hist;
    QVector<QCPGraphData> points;
    double first = kNaN, last = kNaN, peak = 0, total = 0;
    if (t >= 0 && bins > 0 && hist.size() >= size_t(t + 1) * size_t(bins)) {
        const uint32_t* h = hist.data() + size_t(t) * size_t(bins);
        for (int b = 0; b < bins; ++b) {
            const double c = h[b];
            total += c;
            // Empty bins sit on the axis floor (a log axis has no 0).
            points.append(QCPGraphData(run->bins.binLo(b), c > 0 ? c : 0.5));
            if (c > 0) {
                if (std::isnan(first)) first = run->bins.binLo(b);
                last = run->bins.binLo(b) + run->bins.width();
                peak = std::max(peak, c);
            }
        }
        points.append(QCPGraphData(run->bins.hi, points.back().value));  // closes the last step
    }
    hist_graph_->data()->set(points, true);
    hist_note_->setVisible(points.isEmpty() || total == 0);
    hist_note_->setText(!run ? QString()
                        : t < 0 ? QStringLiteral("select a tensor in the list")
                                : QStringLiteral("no histogram recorded for this tensor at this step"));

    // x: the data, and for values the format's whole range, within the recorded bins.
    double lo = std::isnan(first) ? -12 : first - 1, hi = std::isnan(last) ? 4 : last + 1;
    if (values) {
        lo = std::min(lo, std::log2(grid_.flushBelow()) - 1.5);
        hi = std::max(hi, std::log2(grid_.max_finite) + 2.5);  // room for the band's label
    }
    if (run) {
        lo = std::max(lo, run->bins.lo);
        hi = std::min(hi, run->bins.hi);
    }
    hist_plot_->xAxis->setRange(lo, hi);
    auto fixed = hist_plot_->xAxis->ticker().dynamicCast<QCPAxisTickerFixed>();
    if (fixed) {
        fixed->setTickStep(1);
        fixed->setTickCount(std::max(4, hist_plot_->axisRect()->width() / 70));
    }
    hist_plot_->yAxis->setRange(0.5, std::max(peak, 10.0) * 40);  // the legend sits above the peak
    updateGridOverlay();

    QString name, info;
    if (run && t >= 0) {
        const QuantTensor& tensor = run->tensors[size_t(t)];
        name = short_tensor_name(tensor.key);
        auto at = [&](const std::vector<float>& v) { return size_t(t) < v.size() ? double(v[size_t(t)]) : kNaN; };
        const double zeros = size_t(t) < row_data_.value_zeros.size() ? row_data_.value_zeros[size_t(t)] : 0;
        info = QStringLiteral("<b>%1</b> (%2): error %3, SNR %4 dB, amax %5, saturated %6, flushed %7, zeros %8")
                   .arg(name.toHtmlEscaped(), role_name(tensor.role), percent(at(row_data_.rel_error)))
                   .arg(at(row_data_.snr_db), 0, 'f', 1)
                   .arg(at(row_data_.amax), 0, 'g', 3)
                   .arg(percent(at(row_data_.frac_saturated)), percent(at(row_data_.frac_flushed)))
                   .arg(QLocale().toString(qlonglong(zeros)));
    }
    tensor_label_->setText(info);
    tensor_label_->setToolTip(info);
    title->setText(run && t >= 0 ? QStringLiteral("%1 of %2 at %3")
                                       .arg(values ? QStringLiteral("Values") : QStringLiteral("Rounding errors"), name,
                                            stepText(row_))
                                 : QStringLiteral("Histogram"));
    hist_graph_->setName(values ? QStringLiteral("elements (exact zeros not shown)") : QStringLiteral("elements"));
    hist_plot_->replot(QCustomPlot::rpQueuedReplot);
}

void QuantizationView::updateTraining() {
    training_plot_->clearGraphs();
    for (int i = training_plot_->itemCount() - 1; i >= 0; --i)
        if (training_plot_->item(i) != training_note_) training_plot_->removeItem(i);
    const bool rel = metric_ == QuantMetric::RelError;
    training_plot_->yAxis->setLabel(rel ? QStringLiteral("relative error (%)") : QStringLiteral("SNR (dB)"));
    if (rel) {
        training_plot_->yAxis->setScaleType(QCPAxis::stLogarithmic);
        auto ticker = QSharedPointer<QCPAxisTickerLog>::create();
        ticker->setLogBase(10);
        ticker->setSubTickCount(8);
        training_plot_->yAxis->setTicker(ticker);
        training_plot_->yAxis->setNumberFormat(QStringLiteral("g"));
        training_plot_->yAxis->setNumberPrecision(3);
        training_plot_->yAxis->grid()->setSubGridVisible(true);
    } else {
        training_plot_->yAxis->setScaleType(QCPAxis::stLinear);
        training_plot_->yAxis->setTicker(QSharedPointer<QCPAxisTicker>::create());
        training_plot_->yAxis->grid()->setSubGridVisible(false);
    }
    static const Qt::PenStyle styles[] = {Qt::SolidLine, Qt::DashLine, Qt::DotLine, Qt::DashDotLine,
                                          Qt::DashDotDotLine, Qt::SolidLine};
    double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
    int drawn = 0;
    // Colour names the run, the dash pattern the tensor; one tensor: the colour alone.
    int quantized_runs = 0;
    for (const QuantRunData& r : data_.runs) quantized_runs += r.quantizes() && r.rowCount() > 0;
    for (int k = 0; k < selected_.size(); ++k) {
        for (int ri = 0; ri < int(data_.runs.size()); ++ri) {
            const QuantRunData& r = data_.runs[size_t(ri)];
            if (!r.quantizes() || r.rowCount() == 0) continue;
            const int t = r.tensorIndex(selected_[k]);
            if (t < 0) continue;
            const QuantSeries& s = seriesFor(ri, t);
            QCPGraph* g = training_plot_->addGraph();
            QString name = short_tensor_name(selected_[k]);
            if (quantized_runs > 1 || data_.runs.size() > 1) name = r.label() + QStringLiteral(" · ") + name;
            g->setName(name);
            const QColor color = quantized_runs > 1 ? category_color(ri) : category_color(k);
            g->setPen(QPen(color, k == 0 ? 1.8 : 1.3, quantized_runs > 1 ? styles[k % 6] : Qt::SolidLine));
            if (s.step.size() < 60) g->setScatterStyle(QCPScatterStyle(QCPScatterStyle::ssDisc, color, 4));
            const std::vector<double>& y = rel ? s.rel_error : s.snr_db;
            QVector<QCPGraphData> pts;
            for (size_t i = 0; i < s.step.size() && i < y.size(); ++i) {
                double v = rel ? 100.0 * y[i] : y[i];
                if (rel && !(v > 0)) v = kNaN;
                pts.append(QCPGraphData(s.step[i], v));
                x_lo = std::min(x_lo, s.step[i]);
                x_hi = std::max(x_hi, s.step[i]);
                if (std::isfinite(v)) y_lo = std::min(y_lo, v), y_hi = std::max(y_hi, v);
            }
            g->data()->set(pts, true);
            ++drawn;
        }
    }
    // The shown step of the detailed run.
    if (const QuantRunData* run = current(); run && row_ >= 0) {
        auto* marker = new QCPItemStraightLine(training_plot_);
        marker->setPen(QPen(QColor(230, 30, 30, 150), 1, Qt::DashLine));
        marker->point1->setCoords(run->steps[size_t(row_)], 0);
        marker->point2->setCoords(run->steps[size_t(row_)], 1);
    }
    training_note_->setText(QStringLiteral("select tensors in the list"));
    training_note_->setVisible(drawn == 0);
    if (drawn > 0) {
        if (x_hi <= x_lo) x_lo -= 1, x_hi += 1;
        training_plot_->xAxis->setRange(x_lo, x_hi + 0.02 * (x_hi - x_lo));
        if (y_hi >= y_lo) {
            // Headroom above for the legend.
            if (rel) training_plot_->yAxis->setRange(y_lo / 1.3, y_hi * std::max(1.8, std::pow(y_hi / y_lo, 0.5)));
            else training_plot_->yAxis->setRange(y_lo - 2, y_hi + std::max(4.0, 0.6 * (y_hi - y_lo)));
        }
    }
    training_plot_->legend->setVisible(drawn > 0);
    qobject_cast<QCPTextElement*>(training_plot_->plotLayout()->element(0, 0))
        ->setText(rel ? QStringLiteral("Relative error over training") : QStringLiteral("SNR over training"));
    training_plot_->replot(QCustomPlot::rpQueuedReplot);
}

void QuantizationView::updateScales() {
    const QuantRunData* run = current();
    const bool has = run && scale_grid_ < int(run->scale_grids.size());
    scale_note_->setVisible(!has);
    scale_note_->setText(run && run->scale_grids.empty()
                             ? QStringLiteral("no block scales recorded\n(%1 casts without per-tile scales)").arg(run->precision)
                             : QStringLiteral("no scales"));
    if (!has) {
        scale_plot_->colorMap()->data()->clear();
        scale_plot_->setTitle(QStringLiteral("Block scales"));
        scale_plot_->replot(QCustomPlot::rpQueuedReplot);
        return;
    }
    size_t offset = 0;
    for (int i = 0; i < scale_grid_; ++i) offset += size_t(run->scale_grids[size_t(i)].size());
    const ScaleGrid& g = run->scale_grids[size_t(scale_grid_)];
    scale_plot_->setGrid(g.cols, g.rows, -0.5, g.cols - 0.5, -0.5, g.rows - 0.5);
    double lo = INFINITY, hi = -INFINITY;
    if (row_data_.scales.size() >= offset + size_t(g.size())) {
        for (int r = 0; r < g.rows; ++r)
            for (int c = 0; c < g.cols; ++c) {
                const double s = row_data_.scales[offset + size_t(r) * size_t(g.cols) + size_t(c)];
                const double v = s > 0 ? std::log2(s) : kNaN;
                scale_plot_->setCell(c, r, v);
                if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
            }
    } else {
        scale_note_->setText(QStringLiteral("no scales at this step"));
        scale_note_->setVisible(true);
    }
    if (lo <= hi) scale_plot_->setColorRange(lo, hi > lo ? hi : lo + 1);
    auto integer_ticks = [](QCPAxis* axis) {
        auto t = QSharedPointer<QCPAxisTickerFixed>::create();
        t->setTickStep(1);
        t->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
        axis->setTicker(t);
    };
    integer_ticks(scale_plot_->xAxis);
    integer_ticks(scale_plot_->yAxis);
    scale_plot_->setTitle(QStringLiteral("Block scales"));
    scale_plot_->replot(QCustomPlot::rpQueuedReplot);
}

// ---- events ----

bool QuantizationView::eventFilter(QObject* watched, QEvent* event) {
    if (watched == bar_plot_) {
        if (event->type() == QEvent::ToolTip) {
            auto* help = static_cast<QHelpEvent*>(event);
            const int r = rowAt(help->pos().y());
            if (bar_plot_->axisRect()->rect().contains(help->pos()) || help->pos().x() < bar_plot_->axisRect()->left()) {
                if (r >= 0 && r < int(shown_.size())) {
                    QToolTip::showText(help->globalPos(), tensorTooltip(shown_[size_t(r)]), bar_plot_);
                    return true;
                }
            }
            QToolTip::showText(help->globalPos(), explained_html(metric_ == QuantMetric::RelError ? kRelError : kSnr),
                               bar_plot_);
            return true;
        }
        if (event->type() == QEvent::Wheel) {
            auto* wheel = static_cast<QWheelEvent*>(event);
            const int steps = wheel->angleDelta().y() / 40;
            if (bar_scroll_->isVisible() && steps != 0) bar_scroll_->setValue(bar_scroll_->value() - steps);
            return true;
        }
        if (event->type() == QEvent::Resize) {
            // The rows that fit follow the height; after the layout has settled.
            QMetaObject::invokeMethod(this, [this] { updateBars(); }, Qt::QueuedConnection);
        }
    }
    return QWidget::eventFilter(watched, event);
}

}  // namespace moe::views
