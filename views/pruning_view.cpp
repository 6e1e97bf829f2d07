#include "pruning_view.h"

#include "colormap.h"
#include "explained.h"
#include "heatmap_plot.h"
#include "plot_export.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moe::views {

namespace {

// Okabe-Ito blue and orange: kept and removed stay apart under every colour-vision deficiency.
const QColor kKept(0, 114, 178);
const QColor kRemoved(230, 159, 0);

QString criterion_label(const QString& c) {
    if (c == "load") return "share of routed tokens";
    if (c == "gate_mass") return "share of gate weight";
    if (c == "masked_loss") return "loss increase when masked";
    return c;
}

QString experts_tip() {
    return explained_html("Expert pruning",
                          "Each routed expert is scored on held-out batches: its load (share of "
                          "the top-k selections), its "
                          "gate mass (share of the gate weights it received) or the loss increase "
                          "when it is masked (tokens "
                          "re-route to their next best expert). The lowest-scoring experts of "
                          "every group are removed "
                          "(crossed out, orange), the router's rows with them, so the model keeps "
                          "its groups and loads as "
                          "an ordinary smaller checkpoint.");
}

QString channels_tip() {
    return explained_html("Channel pruning",
                          "Saliency of a hidden channel of an FFN: the sum over its weights of |w "
                          "dL/dw|, accumulated over "
                          "batches - the first-order estimate of the loss change if the channel "
                          "were zeroed. Each row is "
                          "an FFN (a routed expert, the shared experts or a dense FFN), its "
                          "channels sorted from the most "
                          "to the least salient; the channels right of the white line are "
                          "removed. Every expert loses "
                          "the same number, so moe_intermediate_size shrinks uniformly.");
}

}  // namespace

PruningView::PruningView(QWidget* parent) : QWidget(parent) {
    auto* root = new QVBoxLayout(this);
    root->setContentsMargins(6, 6, 6, 6);
    auto* controls = new QHBoxLayout;
    controls->addWidget(new QLabel("Layer"));
    layer_box_ = new QComboBox;
    layer_box_->setObjectName("pruningLayer");
    controls->addWidget(layer_box_);
    controls->addSpacing(10);
    criterion_text_ = new QLabel("Score");
    controls->addWidget(criterion_text_);
    criterion_box_ = new QComboBox;
    criterion_box_->setObjectName("pruningCriterion");
    controls->addWidget(criterion_box_);
    controls->addStretch(1);
    root->addLayout(controls);
    summary_ = new QLabel;
    summary_->setObjectName("pruningSummary");
    summary_->setWordWrap(true);
    summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    root->addWidget(summary_);

    heatmap_ = new HeatmapPlot;
    heatmap_->setObjectName("pruning-heatmap");
    heatmap_->setRowsTopDown(true);
    bar_plot_ = new QCustomPlot;
    bar_plot_->setObjectName("pruning-bars");
    bar_plot_->yAxis->grid()->setPen(QPen(QColor(220, 220, 220), 0, Qt::DotLine));
    bar_plot_->xAxis->grid()->setVisible(false);
    kept_bars_ = new QCPBars(bar_plot_->xAxis, bar_plot_->yAxis);
    kept_bars_->setName("kept");
    kept_bars_->setPen(Qt::NoPen);
    kept_bars_->setBrush(kKept);
    kept_bars_->setWidth(0.8);
    removed_bars_ = new QCPBars(bar_plot_->xAxis, bar_plot_->yAxis);
    removed_bars_->setName("removed");
    removed_bars_->setPen(Qt::NoPen);
    removed_bars_->setBrush(kRemoved);
    removed_bars_->setWidth(0.8);
    bar_plot_->legend->setVisible(true);
    bar_plot_->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignLeft);
    add_plot_title(bar_plot_, "");
    root->addWidget(heatmap_, 3);
    root->addWidget(bar_plot_, 2);

    add_export_actions(this, heatmap_, [this] {
        CsvContent content;
        content.matrix = heatmap_->toMatrix();
        return content;
    });
    add_export_actions(this, bar_plot_, [this] {
        CsvContent content;
        Matrix m;
        m.cols = 2;
        m.col_labels = {"kept", "removed"};
        const auto kept = kept_bars_->data(), removed = removed_bars_->data();
        m.rows = kept->size();
        for (int i = 0; i < m.rows; ++i) {
            m.row_labels << bar_plot_->xAxis->tickVectorLabels().value(i, QString::number(i));
            m.values.push_back(kept->at(i)->value);
            m.values.push_back(i < removed->size() ? removed->at(i)->value : 0.0);
        }
        content.matrix = m;
        return content;
    });

    connect(layer_box_, qOverload<int>(&QComboBox::currentIndexChanged), this, [this](int i) {
        if (i >= 0) setLayer(i);
    });
    connect(criterion_box_, &QComboBox::currentTextChanged, this, [this](const QString& c) {
        if (!c.isEmpty()) setCriterion(c);
    });
    criterion_text_->setBuddy(criterion_box_);
    setData({});
}

void PruningView::setData(PruningData data) {
    data_ = std::move(data);
    layer_ = 0;
    criterion_ = data_.criterion;
    const QSignalBlocker b1(layer_box_), b2(criterion_box_);
    layer_box_->clear();
    if (data_.kind == PruningData::Kind::Experts)
        for (const auto& l : data_.expert_layers) layer_box_->addItem(l.name);
    else
        for (const auto& l : data_.channel_layers) layer_box_->addItem(l.name);
    criterion_box_->clear();
    if (data_.kind == PruningData::Kind::Experts && !data_.expert_layers.empty())
        for (const auto& [name, _] : data_.expert_layers.front().scores)
            criterion_box_->addItem(name);
    criterion_box_->setCurrentText(criterion_);
    criterion_box_->setEnabled(data_.kind == PruningData::Kind::Experts);
    criterion_box_->setVisible(data_.kind == PruningData::Kind::Experts);
    criterion_text_->setVisible(data_.kind == PruningData::Kind::Experts);
    summary_->setText(data_.kind == PruningData::Kind::None
                          ? "No pruning report open (moe-prune writes "
                            "pruning.json next to the checkpoint it makes)."
                          : data_.summary);
    refresh();
}

void PruningView::setLayer(int index) {
    if (index < 0 || index >= data_.layers()) return;
    layer_ = index;
    if (layer_box_->currentIndex() != index) {
        const QSignalBlocker b(layer_box_);
        layer_box_->setCurrentIndex(index);
    }
    refresh();
}

void PruningView::setCriterion(const QString& criterion) {
    criterion_ = criterion;
    if (criterion_box_->currentText() != criterion) {
        const QSignalBlocker b(criterion_box_);
        criterion_box_->setCurrentText(criterion);
    }
    refresh();
}

void PruningView::refresh() {
    heatmap_->clearItems();
    kept_bars_->data()->clear();
    removed_bars_->data()->clear();
    if (data_.kind == PruningData::Kind::Experts && !data_.expert_layers.empty())
        showExperts();
    else if (data_.kind == PruningData::Kind::Channels && !data_.channel_layers.empty())
        showChannels();
    else {
        heatmap_->setTitle("Pruning");
        heatmap_->setGrid(1, 1, -0.5, 0.5, -0.5, 0.5);
        heatmap_->setToolTip({});
    }
    heatmap_->replot();
    bar_plot_->replot();
}

void PruningView::showExperts() {
    const auto& layers = data_.expert_layers;
    const int L = static_cast<int>(layers.size());
    const auto score_of = [&](const PruningExpertLayer& l) -> const std::vector<double>& {
        static const std::vector<double> none;
        const auto it = l.scores.find(criterion_);
        return it == l.scores.end() ? none : it->second;
    };
    const int E = static_cast<int>(score_of(layers.front()).size());
    heatmap_->setToolTip(experts_tip());
    bar_plot_->setToolTip(experts_tip());
    heatmap_->setTitle(
        QString("Expert %1, removed experts crossed out").arg(criterion_label(criterion_)));
    heatmap_->setGradient(viridis_gradient());
    heatmap_->setColorLabel(criterion_label(criterion_));
    heatmap_->setGrid(std::max(E, 1), L, -0.5, std::max(E, 1) - 0.5, -0.5, L - 0.5);
    double lo = INFINITY, hi = -INFINITY;
    QStringList row_labels, col_labels;
    for (int l = 0; l < L; ++l) {
        row_labels << layers[l].name;
        const std::vector<double>& s = score_of(layers[l]);
        for (int e = 0; e < E && e < static_cast<int>(s.size()); ++e) {
            heatmap_->setCell(e, l, s[e]);
            lo = std::min(lo, s[e]);
            hi = std::max(hi, s[e]);
            if (e < static_cast<int>(layers[l].removed.size()) && layers[l].removed[e]) {
                auto* x = new QCPItemText(heatmap_);
                x->position->setCoords(e, l);
                x->setText(QString::fromUtf8("\u2715"));
                QFont f = heatmap_->font();
                f.setBold(true);
                f.setPointSizeF(f.pointSizeF() * 1.6);
                x->setFont(f);
                x->setColor(Qt::white);
                x->setPositionAlignment(Qt::AlignCenter);
            }
        }
    }
    for (int e = 0; e < E; ++e) col_labels << QString::number(e);
    heatmap_->setRowLabels(row_labels);
    heatmap_->setColumnLabels(col_labels);
    heatmap_->xAxis->setLabel("routed expert");
    heatmap_->yAxis->setLabel("");
    if (std::isfinite(lo)) heatmap_->setColorRange(lo, hi > lo ? hi : lo + 1e-12);

    // The chosen layer's experts ranked, lowest first: the removed ones sit at the left.
    const PruningExpertLayer& layer = layers[static_cast<size_t>(layer_)];
    const std::vector<double>& s = score_of(layer);
    std::vector<int> order(s.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return s[a] < s[b]; });
    removed_bars_->moveAbove(nullptr);  // side by side here, stacked in the channel view
    QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
    for (int r = 0; r < static_cast<int>(order.size()); ++r) {
        const int e = order[r];
        const bool gone = e < static_cast<int>(layer.removed.size()) && layer.removed[e];
        (gone ? removed_bars_ : kept_bars_)->addData(r, s[e]);
        ticker->addTick(r, QString::number(e));
    }
    bar_plot_->xAxis->setTicker(ticker);
    bar_plot_->xAxis->setTickLabelRotation(order.size() > 32 ? 90 : 0);
    bar_plot_->xAxis->setLabel("expert, ranked from the least important");
    bar_plot_->yAxis->setLabel(criterion_label(criterion_));
    bar_plot_->xAxis->setRange(-0.7, static_cast<double>(order.size()) - 0.3);
    bool found = false;
    const QCPRange yr =
        removed_bars_->getValueRange(found).expanded(kept_bars_->getValueRange(found));
    bar_plot_->yAxis->setRange(std::min(0.0, yr.lower * 1.1), std::max(0.0, yr.upper * 1.1));
    if (auto* title = qobject_cast<QCPTextElement*>(bar_plot_->plotLayout()->element(0, 0)))
        title->setText(QString("%1: experts by %2").arg(layer.name, criterion_label(criterion_)));
}

void PruningView::showChannels() {
    const PruningChannelLayer& layer = data_.channel_layers[static_cast<size_t>(layer_)];
    const int R = static_cast<int>(layer.rows.size());
    int C = 0;
    for (const auto& row : layer.saliency) C = std::max(C, static_cast<int>(row.size()));
    heatmap_->setToolTip(channels_tip());
    bar_plot_->setToolTip(channels_tip());
    heatmap_->setTitle(
        QString("%1: channel saliency, each FFN sorted; channels right of the white line removed")
            .arg(layer.name));
    heatmap_->setGradient(viridis_gradient());
    heatmap_->setColorLabel("log10 saliency");
    heatmap_->setGrid(std::max(C, 1), std::max(R, 1), -0.5, std::max(C, 1) - 0.5, -0.5,
                      std::max(R, 1) - 0.5);
    double lo = INFINITY, hi = -INFINITY;
    QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
    for (int r = 0; r < R; ++r) {
        std::vector<double> s = layer.saliency[static_cast<size_t>(r)];
        const int gone = static_cast<int>(layer.removed[static_cast<size_t>(r)].size());
        double total = 0.0, removed_sum = 0.0;
        std::sort(s.begin(), s.end(), std::greater<>());
        for (int c = 0; c < static_cast<int>(s.size()); ++c) {
            total += s[c];
            const bool removed = c >= static_cast<int>(s.size()) - gone;
            if (removed) removed_sum += s[c];
            // Zero saliency (an expert no token reached) sits at the bottom of the scale.
            const double v = std::log10(std::max(s[c], 1e-30));
            heatmap_->setCell(c, r, v);
            if (s[c] > 0) {
                lo = std::min(lo, v);
                hi = std::max(hi, v);
            }
        }
        if (gone > 0) {  // the cut between kept and removed channels of this FFN
            const double x = static_cast<double>(s.size()) - gone - 0.5;
            auto* cut = new QCPItemLine(heatmap_);
            cut->start->setCoords(x, r - 0.5);
            cut->end->setCoords(x, r + 0.5);
            cut->setPen(QPen(Qt::white, 3));
        }
        kept_bars_->addData(r, total - removed_sum);
        removed_bars_->addData(r, removed_sum);
        ticker->addTick(r, layer.rows[r]);
    }
    heatmap_->setRowLabels(layer.rows);
    heatmap_->setColumnLabels({});
    heatmap_->xAxis->setLabel("hidden channel, most salient first");
    heatmap_->yAxis->setLabel("");
    if (std::isfinite(lo)) heatmap_->setColorRange(lo, hi > lo ? hi : lo + 1);
    removed_bars_->moveAbove(kept_bars_);
    bar_plot_->xAxis->setTicker(ticker);
    bar_plot_->xAxis->setTickLabelRotation(R > 12 ? 60 : 0);
    bar_plot_->xAxis->setLabel("");
    bar_plot_->yAxis->setLabel("summed saliency");
    bar_plot_->xAxis->setRange(-0.7, R - 0.3);
    bar_plot_->rescaleAxes(true);
    bar_plot_->xAxis->setRange(-0.7, R - 0.3);
    bar_plot_->yAxis->setRangeLower(0);
    bar_plot_->yAxis->setRangeUpper(bar_plot_->yAxis->range().upper * 1.1);
    if (auto* title = qobject_cast<QCPTextElement*>(bar_plot_->plotLayout()->element(0, 0)))
        title->setText(QString("%1: saliency per FFN, kept and removed").arg(layer.name));
}

}  // namespace moe::views
