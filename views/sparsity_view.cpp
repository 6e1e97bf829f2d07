#include "sparsity_view.h"

#include "colormap.h"
#include "explained.h"
#include "heatmap_plot.h"
#include "plot_export.h"

#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QSpinBox>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>

namespace moe::views {

namespace {

// Neutral grey for cells the causal mask removes: no colour of viridis is near it.
const QColor kMaskedGrey(190, 190, 190);
// The window mask: keys a query sees, keys the window drops (warm, so they stand out from both
// the grey future and the cool visible band), and the causal future in the same grey as above.
const QColor kVisibleBlue(49, 104, 142);
const QColor kOutsideOrange(240, 150, 70);

QString mask_tip()
{
    return explained_html(QString::fromUtf8(explain::kTopK.title),
                          QString::fromUtf8(explain::kTopK.text) +
                              "<br>Each row is a token of the batch, each column a routed expert; a filled cell means "
                              "the gate chose that expert. Every row has exactly k filled cells; an empty column is "
                              "an expert no token chose.");
}

QString attention_tip()
{
    return explained_html(
        "Causal attention",
        "Row q shows how much query token q attends to each earlier key token k (the softmax weights "
        "sum to 1 along a row). Grey cells are masked: above the diagonal the causal mask forbids "
        "looking at later tokens; with a sliding window, keys older than the window are masked too "
        "(see the mask beside). In MLA (multi-head latent attention) all heads share one compressed "
        "key/value latent per token, yet each head still has its own pattern.");
}

QString window_tip()
{
    return explained_html(
        "Sliding-window attention",
        "With a sliding window W, query q attends only to the W most recent keys, itself included "
        "(keys q-W+1 ... q). Blue: keys the query sees; orange: earlier keys the window drops; grey: "
        "later keys, removed by the causal mask. The engine skips the orange part entirely, so "
        "attention costs O(T W) instead of O(T^2); a token still reaches further back through the "
        "layers, W-1 positions per layer.");
}

QString sparse_tip()
{
    return explained_html(
        "Dynamic top-k sparse attention",
        "A small learned indexer scores every earlier token for each query, and the query attends "
        "only to its K best keys (DeepSeek-V3.2's sparse attention); all heads share the choice. "
        "Blue: keys chosen; orange: earlier keys left out; grey: later keys, removed by the causal "
        "mask. The engine never touches the orange keys, so attention costs O(T K); the indexer is "
        "trained toward the dense attention on the left, and the caption says how much of that "
        "attention the chosen keys hold.");
}

// The mask panel's legend: one label in the middle of each level's band.
QSharedPointer<QCPAxisTickerText> mask_ticker(bool sparse)
{
    QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
    ticker->addTick(0.25, sparse ? "chosen" : "sees");
    ticker->addTick(1.0, sparse ? "not\nchosen" : "outside\nwindow");
    ticker->addTick(1.75, "future\n(causal)");
    return ticker;
}

QCPColorGradient window_gradient()
{
    // Three flat levels for the three states; cells hold exactly 0, 1 or 2.
    QCPColorGradient g;
    g.setColorStopAt(0.0, kVisibleBlue);
    g.setColorStopAt(0.5, kOutsideOrange);
    g.setColorStopAt(1.0, kMaskedGrey);
    g.setLevelCount(3);
    return g;
}

QString never_tip()
{
    return explained_html("Experts never chosen",
                          "Fraction of the routed experts of a layer that received no token in the logged "
                          "batch. High values early in training are normal; values that stay high mean "
                          "collapsed routing, which the balancing bias should undo.");
}

QString near_zero_tip(double threshold)
{
    return explained_html("Near-zero FFN activations",
                          QStringLiteral("Fraction of the FFN's hidden activations (after SwiGLU) whose magnitude is "
                                         "below %1. Sparse activations are what makes pruning and "
                                         "activation-sparse kernels pay off.")
                              .arg(threshold, 0, 'g', 3));
}

QCPColorGradient mask_gradient()
{
    // Two flat levels: a mask is 0/1, nothing in between.
    QCPColorGradient g;
    g.setColorStopAt(0.0, QColor(245, 245, 245));
    g.setColorStopAt(1.0, map_color(0.25));
    g.setLevelCount(2);
    return g;
}

CsvContent series_content(const std::vector<Series> &series)
{
    CsvContent content;
    content.x_name = "step";
    content.series = series;
    return content;
}

}  // namespace

QString SparsityView::displayToken(const QString &token)
{
    QString t = token;
    t.replace(' ', QChar(0x2423));   // open box: a visible space
    t.replace('\n', QChar(0x21B5));  // return arrow
    t.replace('\t', QChar(0x21E5));
    if (t.size() > 12)
        t = t.left(11) + QChar(0x2026);
    return t;
}

SparsityView::SparsityView(QWidget *parent) : QWidget(parent)
{
    auto *root = new QVBoxLayout(this);
    root->setContentsMargins(6, 6, 6, 6);

    auto *controls = new QHBoxLayout;
    layer_spin_ = new QSpinBox;
    head_spin_ = new QSpinBox;
    layer_spin_->setToolTip("Layer of the attention pattern (1-based)");
    head_spin_->setToolTip("Attention head (1-based)");
    controls->addWidget(new QLabel("Attention layer"));
    controls->addWidget(layer_spin_);
    controls->addSpacing(10);
    controls->addWidget(new QLabel("head"));
    controls->addWidget(head_spin_);
    controls->addStretch(1);
    root->addLayout(controls);

    mask_plot_ = new HeatmapPlot;
    mask_plot_->setObjectName("sparsity-routing-mask");
    mask_plot_->setGradient(mask_gradient());
    mask_plot_->setColorRange(0, 1);
    mask_plot_->setRowsTopDown(true);
    mask_plot_->xAxis->setLabel("routed expert");
    mask_plot_->yAxis->setLabel("token");
    mask_plot_->setToolTip(mask_tip());
    {
        QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
        ticker->addTick(0.25, "not\nchosen");
        ticker->addTick(0.75, "chosen");
        mask_plot_->colorScale()->axis()->setTicker(ticker);
    }

    attention_plot_ = new HeatmapPlot;
    attention_plot_->setObjectName("sparsity-attention");
    QCPColorGradient attention_gradient = viridis_gradient();
    attention_gradient.setNanHandling(QCPColorGradient::nhNanColor);
    attention_gradient.setNanColor(kMaskedGrey);
    attention_plot_->setGradient(attention_gradient);
    attention_plot_->setRowsTopDown(true);
    attention_plot_->xAxis->setLabel("key token");
    attention_plot_->yAxis->setLabel("query token");
    attention_plot_->setColorLabel("attention weight");
    attention_plot_->setToolTip(attention_tip());

    window_plot_ = new HeatmapPlot;
    window_plot_->setGradient(window_gradient());
    window_plot_->setColorRange(SparsityView::kVisible, SparsityView::kFuture);
    window_plot_->setRowsTopDown(true);
    window_plot_->xAxis->setLabel("key");
    window_plot_->yAxis->setLabel("query");
    window_plot_->setToolTip(window_tip());
    // The colour scale is the legend.
    window_plot_->colorScale()->axis()->setTicker(mask_ticker(false));
    window_caption_ = new QLabel;
    window_caption_->setWordWrap(true);
    window_caption_->setObjectName("windowCaption");
    window_caption_->setToolTip(window_tip());
    window_panel_ = new QWidget;
    window_panel_->setObjectName("sparsity-window");
    auto *window_column = new QVBoxLayout(window_panel_);
    window_column->setContentsMargins(0, 0, 0, 0);
    window_column->addWidget(window_plot_, 1);
    window_column->addWidget(window_caption_);
    auto *attention_row = new QHBoxLayout;
    attention_row->setContentsMargins(0, 0, 0, 0);
    attention_row->addWidget(attention_plot_, 3);
    attention_row->addWidget(window_panel_, 2);

    never_plot_ = new QCustomPlot;
    never_plot_->setObjectName("sparsity-never-chosen");
    style_training_plot(never_plot_, "Experts never chosen", "% of routed experts");
    never_plot_->setToolTip(never_tip());
    near_zero_plot_ = new QCustomPlot;
    near_zero_plot_->setObjectName("sparsity-near-zero");
    style_training_plot(near_zero_plot_, "Near-zero FFN activations", "% of activations");
    near_zero_plot_->setToolTip(near_zero_tip(over_training_.near_zero_threshold));

    auto *grid = grid_ = new QGridLayout;
    grid->addWidget(mask_plot_, 0, 0);
    grid->addLayout(attention_row, 0, 1);
    grid->addWidget(never_plot_, 1, 0);
    grid->addWidget(near_zero_plot_, 1, 1);
    grid->setRowStretch(0, 3);
    grid->setRowStretch(1, 2);
    root->addLayout(grid, 1);

    for (HeatmapPlot *p : {mask_plot_, attention_plot_, window_plot_})
        add_export_actions(this, p, [p] {
            CsvContent content;
            content.matrix = p->toMatrix();
            return content;
        });
    add_export_actions(this, never_plot_, [this] { return series_content(over_training_.never_chosen); });
    add_export_actions(this, near_zero_plot_, [this] { return series_content(over_training_.near_zero); });

    connect(layer_spin_, qOverload<int>(&QSpinBox::valueChanged), this,
            [this](int v) { setAttentionHead(v - 1, head_); });
    connect(head_spin_, qOverload<int>(&QSpinBox::valueChanged), this,
            [this](int v) { setAttentionHead(layer_, v - 1); });
    setRoutingMask({});
    setAttention({});
}

void SparsityView::setRoutingMask(RoutingMaskData data)
{
    mask_ = std::move(data);
    const int T = mask_.token_count(), E = mask_.experts;
    const bool ok = T > 0 && E > 0 && mask_.mask.size() == static_cast<size_t>(T) * E;
    mask_plot_->setGrid(ok ? E : 1, ok ? T : 1, -0.5, (ok ? E : 1) - 0.5, -0.5, (ok ? T : 1) - 0.5);
    QStringList labels;
    int k = 0;
    if (ok) {
        for (const QString &t : mask_.tokens)
            labels << displayToken(t);
        for (int t = 0; t < T; ++t)
            for (int e = 0; e < E; ++e)
                mask_plot_->setCell(e, t, mask_.chosen(t, e) ? 1.0 : 0.0);
        for (int e = 0; e < E; ++e)
            k += mask_.chosen(0, e);
    }
    mask_plot_->setRowLabels(labels, kMaxTokenLabels);
    mask_plot_->setColumnLabels({}, 0);
    mask_plot_->setColorRange(0, 1);
    // Short enough for the narrow column beside the attention plots (the token axis says T).
    QString title = QStringLiteral("Routing");
    if (!mask_.layer_name.isEmpty())
        title += QStringLiteral(", %1").arg(mask_.layer_name);
    if (ok)
        title += QStringLiteral(": top-%1 of %2").arg(k).arg(E);
    mask_plot_->setTitle(title);
    mask_plot_->replot(QCustomPlot::rpQueuedReplot);
}

void SparsityView::setAttention(AttentionData data)
{
    attention_ = std::move(data);
    const QSignalBlocker b1(layer_spin_), b2(head_spin_);
    layer_spin_->setRange(1, std::max(1, attention_.layers));
    head_spin_->setRange(1, std::max(1, attention_.heads));
    layer_ = std::clamp(layer_, 0, std::max(0, attention_.layers - 1));
    head_ = std::clamp(head_, 0, std::max(0, attention_.heads - 1));
    layer_spin_->setValue(layer_ + 1);
    head_spin_->setValue(head_ + 1);
    updateAttention();
    updateWindowMask();
}

void SparsityView::setAttentionHead(int layer, int head)
{
    if (layer < 0 || layer >= attention_.layers || head < 0 || head >= attention_.heads)
        return;
    layer_ = layer;
    head_ = head;
    const QSignalBlocker b1(layer_spin_), b2(head_spin_);
    layer_spin_->setValue(layer + 1);
    head_spin_->setValue(head + 1);
    updateAttention();
    if (attention_.hasChosen())
        updateWindowMask();  // the chosen keys are per layer, their share of attention per head
}

void SparsityView::updateAttention()
{
    const int T = attention_.T;
    const bool ok = T > 0 && attention_.layers > 0 && attention_.heads > 0 &&
                    attention_.weights.size() == static_cast<size_t>(attention_.layers) * attention_.heads * T * T;
    const int n = ok ? T : 1;
    attention_plot_->setGrid(n, n, -0.5, n - 0.5, -0.5, n - 0.5);
    double hi = 0;
    if (ok) {
        for (int q = 0; q < T; ++q) {
            for (int k = 0; k < T; ++k) {
                // Masked (above the diagonal or outside the window): NaN, drawn in the
                // gradient's neutral grey NaN colour.
                const bool seen = attention_.visible(q, k);
                const double w = seen ? attention_.at(layer_, head_, q, k) : std::nan("");
                attention_plot_->setCell(k, q, w);
                if (seen)
                    hi = std::max(hi, w);
            }
        }
    }
    QStringList labels;
    if (ok && attention_.tokens.size() == T)
        for (const QString &t : attention_.tokens)
            labels << displayToken(t);
    attention_plot_->setRowLabels(labels, kMaxTokenLabels);
    attention_plot_->setColumnLabels(labels, kMaxTokenLabels);
    attention_plot_->xAxis->setTickLabelRotation(labels.size() == T && T <= kMaxTokenLabels && ok ? 90 : 0);
    attention_plot_->setColorRange(0, hi > 0 ? hi : 1.0);
    const QString masked = attention_.window > 0 ? QStringLiteral("grey: masked") : QStringLiteral("grey: causal mask");
    // With sparse attention the weights are the dense attention the chosen keys replace.
    // (Short: the chosen-key mask beside it leaves this plot less room.)
    const bool sparse = attention_.hasChosen();
    const QString what = sparse ? QStringLiteral("Dense attention") : QStringLiteral("Attention");
    attention_plot_->setTitle(!ok      ? what
                              : sparse ? QStringLiteral("Dense attention, layer %1, head %2").arg(layer_ + 1).arg(head_ + 1)
                                       : QStringLiteral("Attention, layer %1, head %2 (%3)").arg(layer_ + 1).arg(head_ + 1).arg(masked));
    attention_plot_->replot(QCustomPlot::rpQueuedReplot);
}

void SparsityView::updateWindowMask()
{
    // The panel shows the sliding window's band, or the keys the sparse attention's indexer chose.
    const int T = attention_.T, W = attention_.window;
    const bool sparse = attention_.hasChosen() && layer_ < attention_.layers;
    const bool shown = W > 0 || sparse;
    window_panel_->setVisible(shown);
    // The attention column holds two plots with a mask: give it the larger share.
    grid_->setColumnStretch(0, 1);
    grid_->setColumnStretch(1, shown ? 2 : 1);
    const int n = T > 0 && shown ? T : 1;
    window_plot_->setGrid(n, n, -0.5, n - 0.5, -0.5, n - 0.5);
    if (T > 0 && shown)
        for (int q = 0; q < T; ++q)
            for (int k = 0; k < T; ++k) {
                const bool sees = sparse ? k <= q && attention_.isChosen(layer_, q, k) : attention_.visible(q, k);
                window_plot_->setCell(k, q, sees ? kVisible : attention_.causal(q, k) ? kOutsideWindow : kFuture);
            }
    window_plot_->setRowLabels({}, 0);
    window_plot_->setColumnLabels({}, 0);
    window_plot_->setColorRange(kVisible, kFuture);
    window_plot_->colorScale()->axis()->setTicker(mask_ticker(sparse));
    window_plot_->setToolTip(sparse ? sparse_tip() : window_tip());
    window_caption_->setToolTip(sparse ? sparse_tip() : window_tip());
    window_plot_->setTitle(sparse  ? QStringLiteral("Top-%1 keys, all heads").arg(attention_.topk)
                           : W > 0 ? QStringLiteral("Sliding window W = %1").arg(W)
                                   : QStringLiteral("Sliding window"));
    window_caption_->setText(windowCaption());
    window_plot_->replot(QCustomPlot::rpQueuedReplot);
}

QString SparsityView::windowCaption() const
{
    const int T = attention_.T, W = attention_.window;
    if (attention_.hasChosen() && layer_ < attention_.layers) {
        const double kept = attention_.keptShare(layer_);
        return QStringLiteral("The indexer chose up to %1 keys per query: <b>%2%</b> of the causal keys kept, "
                              "holding <b>%3%</b> of head %4's dense attention (left). Attention FLOPs at "
                              "T\u00a0=\u00a0%5: <b>\u2212%6%</b> against dense (the indexer's scoring not counted).")
            .arg(attention_.topk)
            .arg(100.0 * kept, 0, 'f', 1)
            .arg(100.0 * attention_.chosenMass(layer_, head_), 0, 'f', 1)
            .arg(head_ + 1)
            .arg(T)
            .arg(100.0 * (1.0 - kept), 0, 'f', 1);
    }
    if (W <= 0)
        return {};
    if (W >= T)
        return QStringLiteral("Each query sees up to %1 keys, itself included. The window covers all %2 tokens "
                              "here: no attention FLOPs saved at this length.")
            .arg(W)
            .arg(T);
    return QStringLiteral("Each query sees its %1 most recent keys, itself included. Attention FLOPs at "
                          "T\u00a0=\u00a0%2: <b>\u2212%3%</b> against full causal attention.")
        .arg(W)
        .arg(T)
        .arg(100.0 * attention_.windowSaving(), 0, 'f', 1);
}

void SparsityView::setSparsityOverTraining(SparsityOverTraining data)
{
    over_training_ = std::move(data);
    fillLines(never_plot_, over_training_.never_chosen);
    fillLines(near_zero_plot_, over_training_.near_zero);
    // An empty panel shares the steps of the other one rather than a meaningless 0..5.
    if (over_training_.near_zero.empty() && !over_training_.never_chosen.empty())
        near_zero_plot_->xAxis->setRange(never_plot_->xAxis->range());
    near_zero_plot_->yAxis->setLabel(
        QStringLiteral("% with |a| < %1").arg(over_training_.near_zero_threshold, 0, 'g', 3));
    near_zero_plot_->setToolTip(near_zero_tip(over_training_.near_zero_threshold));
}

void SparsityView::setNearZeroNote(const QString &note)
{
    if (!near_zero_note_) {
        near_zero_note_ = new QCPItemText(near_zero_plot_);
        near_zero_note_->position->setType(QCPItemPosition::ptAxisRectRatio);
        near_zero_note_->position->setCoords(0.5, 0.5);
        near_zero_note_->setPositionAlignment(Qt::AlignCenter);
        near_zero_note_->setClipToAxisRect(false);
        near_zero_note_->setColor(QColor(90, 90, 90));
        near_zero_note_->setPadding(QMargins(8, 4, 8, 4));
    }
    // Wrapped by hand: QCPItemText has no word wrap.
    QString wrapped;
    int line = 0;
    for (const QString &word : note.split(' ', Qt::SkipEmptyParts)) {
        if (line > 0 && line + word.size() > 34) {
            wrapped += '\n';
            line = 0;
        } else if (line > 0) {
            wrapped += ' ';
            ++line;
        }
        wrapped += word;
        line += static_cast<int>(word.size());
    }
    near_zero_note_->setText(wrapped);
    near_zero_note_->setVisible(!note.isEmpty());
    near_zero_plot_->replot(QCustomPlot::rpQueuedReplot);
}

QString SparsityView::nearZeroNote() const
{
    return near_zero_note_ && near_zero_note_->visible() ? near_zero_note_->text() : QString();
}

void SparsityView::fillLines(QCustomPlot *plot, const std::vector<Series> &series)
{
    plot->clearGraphs();
    const int n = static_cast<int>(series.size());
    double top = 0;
    for (int i = 0; i < n; ++i) {
        const Series &s = series[i];
        QCPGraph *g = plot->addGraph();
        const size_t m = std::min(s.x.size(), s.y.size());
        QVector<double> keys(static_cast<qsizetype>(m)), values(static_cast<qsizetype>(m));
        for (size_t j = 0; j < m; ++j) {
            keys[j] = s.x[j];
            values[j] = 100.0 * s.y[j];  // fractions shown as percent
            if (std::isfinite(values[j]))
                top = std::max(top, values[j]);
        }
        g->setData(keys, values, true);
        g->setName(s.name);
        g->setPen(QPen(n > 1 ? map_color(0.9 * i / (n - 1)) : category_color(0), 1.5));
    }
    place_legend_beside(plot, n);
    plot->rescaleAxes();
    plot->yAxis->setRange(0, std::max(1.0, std::min(100.0, top * 1.1)));
    plot->replot(QCustomPlot::rpQueuedReplot);
}

}  // namespace moe::views
