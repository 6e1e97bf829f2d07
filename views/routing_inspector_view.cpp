#include "routing_inspector_view.h"

#include <QComboBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHeaderView>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QSpinBox>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "colormap.h"
#include "explained.h"
#include "generation_controls.h"
#include "plot_export.h"
#include "routing_heatmap.h"
#include "routing_strips.h"
#include "token_flow_widget.h"

namespace moe::views {

namespace {

// The routing concepts this view teaches (the shared ones come from explained.h).
constexpr Concept kScores{
    "Gate scores",
    "Each cell is the affinity of a token (row) for a routed expert (column): sigmoid of the "
    "token's hidden state times the expert's gate vector, before any bias. Dots mark the experts "
    "the token was actually sent to: filled = first choice, ring = the other top-k picks. Hover "
    "a cell for its numbers; click it to list the tokens that expert takes."};
constexpr Concept kGroupLimit{
    "Group-limited routing",
    "The experts are split into groups (think: devices). A token first keeps only its best few "
    "groups, ranked by the sum of their two highest biased scores, and picks its top-k inside "
    "them. So a high-scoring expert can be skipped because its group lost."};
constexpr Concept kTop1Colour{
    "First expert per token",
    "Each token is filled with the colour of the expert it gives the highest selection score "
    "in the chosen layer; the number under it is that expert. Runs of one colour show experts "
    "that took over a word, a task or a language."};
constexpr Concept kSpecialization{
    "Expert specialization",
    "For every label of the probe text (a task or a language), the share of its routing slots "
    "(tokens x k) that went to each expert. Each row sums to 1; a uniform row sits at 1/E. Bright "
    "cells far above 1/E mean the expert specialized in that label."};
constexpr Concept kAgreement{
    "Routing that stayed the same",
    "Per token and layer, the fraction of its top-k experts that both checkpoints chose, averaged "
    "over all tokens and layers. 100% means identical routing; two unrelated models share about "
    "k/E by chance. 'Exact' counts tokens whose whole expert set is unchanged."};
constexpr Concept kTopTokens{
    "Tokens an expert takes",
    "The tokens of this text routed to the chosen expert in this layer, by the gate weight they "
    "give it (weights are the normalized, unbiased scores of the chosen experts, times the "
    "routed scaling factor)."};

QString percent(double v) {
    return std::isfinite(v) ? QStringLiteral("%1%").arg(v * 100.0, 0, 'f', 1) : QStringLiteral("–");
}

QString hex(const QColor& c) { return c.name(QColor::HexRgb); }

QColor ink_on(const QColor& c) {
    const double y = 0.2126 * c.redF() + 0.7152 * c.greenF() + 0.0722 * c.blueF();
    return y > 0.55 ? QColor(20, 20, 20) : QColor(255, 255, 255);
}

QTableWidget* make_table(const QStringList& headers) {
    auto* t = new QTableWidget(0, static_cast<int>(headers.size()));
    t->setHorizontalHeaderLabels(headers);
    t->verticalHeader()->setVisible(false);
    t->setEditTriggers(QAbstractItemView::NoEditTriggers);
    t->setSelectionMode(QAbstractItemView::NoSelection);
    t->setFocusPolicy(Qt::NoFocus);
    t->verticalHeader()->setDefaultSectionSize(t->fontMetrics().height() + 6);
    t->setAlternatingRowColors(true);
    t->setWordWrap(true);
    t->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
    t->horizontalHeader()->setSectionResizeMode(0, QHeaderView::ResizeToContents);
    t->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    return t;
}

}  // namespace

QColor RoutingInspectorView::expertColor(int expert) {
    // The palette cycles after category_count() colours; the caption under each token keeps
    // experts with a repeated colour apart.
    return category_color(expert);
}

RoutingInspectorView::RoutingInspectorView(QWidget* parent) : QWidget(parent) {
    buildUi();
    clearInspection();
}

void RoutingInspectorView::buildUi() {
    auto* root = new QVBoxLayout(this);
    root->setContentsMargins(8, 8, 8, 8);
    root->setSpacing(6);

    // --- Input: text, sample, checkpoints, Inspect.
    auto* input = new QHBoxLayout;
    text_edit_ = new QPlainTextEdit;
    text_edit_->setPlaceholderText(tr("Type a text to route through the model, or pick a sample"));
    text_edit_->setFixedHeight(text_edit_->fontMetrics().height() * 4 + 12);
    text_edit_->setTabChangesFocus(true);
    input->addWidget(text_edit_, 1);

    auto* form = new QFormLayout;
    form->setLabelAlignment(Qt::AlignRight);
    form->setVerticalSpacing(3);
    sample_box_ = new QComboBox;
    sample_box_->setMinimumContentsLength(18);
    sample_box_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    sample_box_->setToolTip(tr("Texts from the run: the probe text that is logged during "
                               "training, and one sample per task or language"));
    checkpoint_box_ = new QComboBox;
    checkpoint_box_->setMinimumContentsLength(18);
    checkpoint_box_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    checkpoint_box_->setToolTip(tr("The checkpoint whose gates route the text"));
    compare_box_ = new QComboBox;
    compare_box_->setMinimumContentsLength(18);
    compare_box_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    set_explained(compare_box_, tr("Compare with"),
                  tr("A second checkpoint routes the same text; both are shown side by side "
                     "with the share of routing decisions that stayed the same."));
    form->addRow(tr("Sample:"), sample_box_);
    form->addRow(tr("Checkpoint:"), checkpoint_box_);
    form->addRow(tr("Compare with:"), compare_box_);
    input->addLayout(form);

    inspect_button_ = new QPushButton(tr("Inspect"));
    inspect_button_->setDefault(true);
    inspect_button_->setMinimumWidth(96);
    inspect_button_->setToolTip(tr("Run the text through the chosen checkpoint(s) and record "
                                   "every MoE layer's routing (Ctrl+Return)"));
    inspect_button_->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Return));
    // Inspect above, the generation row under it: both act on the text and the checkpoint.
    auto* actions = new QVBoxLayout;
    actions->setSpacing(3);
    actions->addWidget(inspect_button_, 1);
    generation_ = new GenerationControls;
    actions->addWidget(generation_);
    input->addLayout(actions);
    root->addLayout(input);
    connect(generation_, &GenerationControls::generateRequested, this, [this](int n, double temp) {
        if (text().isEmpty()) {
            setError(tr("Type or pick a text to continue first."));
            return;
        }
        if (checkpoint_box_->currentText().isEmpty()) {
            setError(tr("No checkpoint to generate with: train a run until it saves one."));
            return;
        }
        emit generateRequested(text(), checkpoint_box_->currentText(), n, temp);
    });
    connect(generation_, &GenerationControls::stopRequested, this,
            &RoutingInspectorView::stopGenerationRequested);

    setSamples({});
    connect(sample_box_, &QComboBox::activated, this, [this](int i) {
        const QString t = sample_box_->itemData(i).toString();
        if (!t.isEmpty()) setText(t);
    });
    connect(inspect_button_, &QPushButton::clicked, this, &RoutingInspectorView::requestInspection);

    // --- Status and the comparison's headline number.
    status_ = new QLabel;
    status_->setObjectName("routing-status");
    status_->setWordWrap(true);
    status_->setTextFormat(Qt::RichText);
    status_->setVisible(false);
    root->addWidget(status_);
    agreement_ = new QLabel;
    agreement_->setObjectName("routing-agreement");
    agreement_->setTextFormat(Qt::RichText);
    agreement_->setWordWrap(true);
    agreement_->setFrameShape(QFrame::StyledPanel);
    agreement_->setContentsMargins(8, 4, 8, 4);
    set_explained(agreement_, kAgreement);
    root->addWidget(agreement_);

    // --- Layer choice and the expert colour legend.
    auto* layer_row = new QHBoxLayout;
    layer_row->addWidget(new QLabel(tr("Layer:")));
    layer_box_ = new QComboBox;
    layer_box_->setToolTip(tr("MoE layer whose routing the heatmaps, colours, expert list and "
                              "specialization show"));
    layer_row->addWidget(layer_box_);
    layer_row->addSpacing(12);
    legend_ = new QLabel;
    legend_->setTextFormat(Qt::RichText);
    legend_->setWordWrap(true);
    set_explained(legend_, kTop1Colour);
    layer_row->addWidget(legend_, 1);
    root->addLayout(layer_row);
    connect(layer_box_, &QComboBox::currentIndexChanged, this, &RoutingInspectorView::setLayer);

    // --- Centre: one column per checkpoint (heatmap over coloured text); side panel right.
    auto* split = new QSplitter(Qt::Horizontal);
    auto* centre = new QWidget;
    auto* columns = new QHBoxLayout(centre);
    columns->setContentsMargins(0, 0, 0, 0);
    for (int i = 0; i < 2; ++i) {
        auto* col = new QWidget;
        auto* v = new QVBoxLayout(col);
        v->setContentsMargins(0, 0, 0, 0);
        v->setSpacing(3);
        heat_[i] = new RoutingHeatmap;
        heat_[i]->setObjectName(i == 0 ? "routing-heatmap" : "routing-heatmap-compare");
        set_explained(heat_[i], kScores);
        v->addWidget(heat_[i], 1);
        flow_title_[i] = new QLabel;
        flow_title_[i]->setTextFormat(Qt::RichText);
        v->addWidget(flow_title_[i]);
        flow_[i] = new TokenFlowWidget;
        flow_[i]->setObjectName(i == 0 ? "routing-tokens" : "routing-tokens-compare");
        set_explained(flow_[i], kTop1Colour);
        auto* scroll = new QScrollArea;
        scroll->setWidget(flow_[i]);
        scroll->setWidgetResizable(true);
        scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
        flow_scroll_[i] = scroll;
        scroll->setFrameShape(QFrame::NoFrame);
        v->addWidget(scroll, 0);
        columns->addWidget(col, 1);
        if (i == 1) compare_column_ = col;

        connect(heat_[i], &RoutingHeatmap::cellHovered, this,
                [this](int token, int) { if (token >= 0) showTokenRouting(token); });
        connect(heat_[i], &RoutingHeatmap::expertClicked, this, &RoutingInspectorView::setExpert);
        connect(flow_[i], &TokenFlowWidget::tokenHovered, this, [this](int token) {
            if (token >= 0) showTokenRouting(token);
        });
        RoutingHeatmap* h = heat_[i];
        add_export_actions(this, h, [h] {
            CsvContent c;
            c.matrix = h->scoreMatrix();
            return c;
        });
    }
    // Under the columns: every layer at once, one strip per layer (grows live while generating).
    auto* centre_box = new QWidget;
    auto* cv = new QVBoxLayout(centre_box);
    cv->setContentsMargins(0, 0, 0, 0);
    cv->setSpacing(3);
    cv->addWidget(centre, 1);
    auto* strips_title = new QLabel(tr("<b>Every layer</b> · first expert of each token (hover a "
                                       "cell for its experts, weights and scores)"));
    strips_title->setTextFormat(Qt::RichText);
    cv->addWidget(strips_title);
    strips_ = new RoutingStrips;
    strips_->setObjectName("routing-strips");
    strips_scroll_ = new QScrollArea;
    strips_scroll_->setWidget(strips_);
    strips_scroll_->setWidgetResizable(false);
    strips_scroll_->setFrameShape(QFrame::NoFrame);
    strips_scroll_->setVerticalScrollBarPolicy(Qt::ScrollBarAsNeeded);
    cv->addWidget(strips_scroll_, 0);
    split->addWidget(centre_box);

    auto* side = new QWidget;
    auto* sv = new QVBoxLayout(side);
    sv->setContentsMargins(0, 0, 0, 0);

    auto* hover_box = new QGroupBox(tr("Token under the mouse: experts in every layer"));
    auto* hv = new QVBoxLayout(hover_box);
    hover_title_ = new QLabel;
    hover_title_->setTextFormat(Qt::RichText);
    hv->addWidget(hover_title_);
    hover_table_ = make_table({tr("Layer"), tr("Experts: weight")});
    set_explained(hover_table_, explain::kTopK);
    hv->addWidget(hover_table_);
    sv->addWidget(hover_box, 2);

    auto* top_box = new QGroupBox(tr("Tokens an expert takes"));
    auto* tv = new QVBoxLayout(top_box);
    auto* er = new QHBoxLayout;
    er->addWidget(new QLabel(tr("Expert:")));
    expert_spin_ = new QSpinBox;
    expert_spin_->setToolTip(tr("Pick an expert, or click its column in the heatmap"));
    er->addWidget(expert_spin_);
    er->addStretch(1);
    tv->addLayout(er);
    top_table_ = make_table({tr("Token"), tr("Position"), tr("Weight"), tr("Score")});
    set_explained(top_table_, kTopTokens);
    tv->addWidget(top_table_);
    sv->addWidget(top_box, 2);
    connect(expert_spin_, &QSpinBox::valueChanged, this, &RoutingInspectorView::setExpert);

    auto* spec_box = new QGroupBox(tr("Specialization: label x expert"));
    auto* pv = new QVBoxLayout(spec_box);
    spec_plot_ = new QCustomPlot;
    spec_plot_->setObjectName("routing-specialization");
    spec_plot_->setMinimumHeight(180);
    set_explained(spec_plot_, kSpecialization);
    spec_map_ = new QCPColorMap(spec_plot_->xAxis, spec_plot_->yAxis);
    spec_map_->setInterpolate(false);
    spec_map_->setGradient(viridis_gradient());
    spec_scale_ = new QCPColorScale(spec_plot_);
    spec_plot_->plotLayout()->addElement(0, 1, spec_scale_);
    spec_scale_->setGradient(viridis_gradient());  // the scale's gradient wins over the map's
    spec_scale_->setLabel(tr("share"));
    spec_scale_->setBarWidth(10);
    spec_map_->setColorScale(spec_scale_);
    spec_plot_->yAxis->setRangeReversed(true);
    spec_plot_->xAxis->setLabel(tr("expert"));
    spec_plot_->xAxis->grid()->setVisible(false);
    spec_plot_->yAxis->grid()->setVisible(false);
    spec_plot_->xAxis->setSubTicks(false);
    spec_plot_->yAxis->setSubTicks(false);
    auto* spec_group = new QCPMarginGroup(spec_plot_);
    spec_plot_->axisRect()->setMarginGroup(QCP::msTop | QCP::msBottom, spec_group);
    spec_scale_->setMarginGroup(QCP::msTop | QCP::msBottom, spec_group);
    pv->addWidget(spec_plot_);
    sv->addWidget(spec_box, 3);
    add_export_actions(this, spec_plot_, [this]() {
        CsvContent c;
        if (layer_ >= 0 && layer_ < static_cast<int>(data_.specialization.size()))
            c.matrix = data_.specialization[static_cast<size_t>(layer_)];
        return c;
    });

    side->setMinimumWidth(400);
    split->addWidget(side);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 1);
    root->addWidget(split, 1);
}

void RoutingInspectorView::setSamples(const QList<QPair<QString, QString>>& samples) {
    sample_box_->clear();
    sample_box_->addItem(tr("Pick a sample…"));
    for (const auto& [name, text] : samples) {
        sample_box_->addItem(name, text);
        sample_box_->setItemData(sample_box_->count() - 1, text.left(400), Qt::ToolTipRole);
    }
}

void RoutingInspectorView::setCheckpoints(const QStringList& checkpoints) {
    const QString keep = checkpoint_box_->currentText();
    checkpoint_box_->clear();
    checkpoint_box_->addItems(checkpoints);
    const int at = checkpoints.indexOf(keep);
    checkpoint_box_->setCurrentIndex(at >= 0 ? at : static_cast<int>(checkpoints.size()) - 1);
    const QString keep2 = compare_box_->currentText();
    compare_box_->clear();
    compare_box_->addItem(tr("(none)"), QString());
    for (const QString& c : checkpoints) compare_box_->addItem(c, c);
    const int at2 = compare_box_->findText(keep2);
    compare_box_->setCurrentIndex(at2 > 0 ? at2 : 0);
    inspect_button_->setEnabled(!checkpoints.isEmpty());
    generation_->setAvailable(!checkpoints.isEmpty());
}

void RoutingInspectorView::setText(const QString& text) { text_edit_->setPlainText(text); }

QString RoutingInspectorView::text() const { return text_edit_->toPlainText(); }

void RoutingInspectorView::requestInspection() {
    const QString t = text();
    if (t.isEmpty()) {
        setError(tr("Type or pick a text first."));
        return;
    }
    if (checkpoint_box_->currentText().isEmpty()) {
        setError(tr("No checkpoint to inspect: train a run until it saves one."));
        return;
    }
    emit inspectRequested(t, checkpoint_box_->currentText(), compare_box_->currentData().toString());
}

void RoutingInspectorView::setBusy(bool busy, const QString& message) {
    inspect_button_->setEnabled(!busy && checkpoint_box_->count() > 0);
    setStatus(busy ? (message.isEmpty() ? tr("Inspecting…") : message.toHtmlEscaped())
                   : message.toHtmlEscaped());
}

void RoutingInspectorView::setStatus(const QString& html) {
    status_->setText(html);
    status_->setVisible(!html.isEmpty());
}

void RoutingInspectorView::setError(const QString& message) {
    setStatus(QStringLiteral("<span style='color:#b00020'>%1</span>").arg(message.toHtmlEscaped()));
}

void RoutingInspectorView::clearInspection() {
    data_ = {};
    if (strips_) strips_->setData({});
    layer_ = 0;
    expert_ = 0;
    hovered_ = -1;
    {
        const QSignalBlocker b(layer_box_);
        layer_box_->clear();
    }
    for (int i = 0; i < 2; ++i) {
        heat_[i]->clearRouting();
        flow_[i]->setTokens({});
        flow_title_[i]->clear();
    }
    compare_column_->setVisible(false);
    agreement_->setVisible(false);
    hover_table_->setRowCount(0);
    hover_title_->setText(tr("<i>Hover a token in the text or the heatmap</i>"));
    top_table_->setRowCount(0);
    expert_spin_->setRange(0, 0);
    legend_->clear();
    refreshSpecialization();
}

void RoutingInspectorView::setInspection(const RoutingInspectionData& data) {
    clearInspection();
    data_ = data;
    strips_->setData(data_);
    // As tall as the strips (up to 8 layers, then it scrolls), and the newest token in view.
    strips_scroll_->setFixedHeight(strips_->heightFor(std::clamp(data_.n_layers(), 1, 8)) +
                                   strips_scroll_->horizontalScrollBar()->sizeHint().height() + 4);
    strips_scroll_->horizontalScrollBar()->setValue(strips_scroll_->horizontalScrollBar()->maximum());
    inspect_button_->setEnabled(checkpoint_box_->count() > 0);
    setStatus(data_.note.toHtmlEscaped());
    {
        const QSignalBlocker b(layer_box_);
        layer_box_->addItems(data_.layer_names);
        layer_box_->setCurrentIndex(0);
    }
    {
        const QSignalBlocker b(expert_spin_);
        expert_spin_->setRange(0, std::max(0, data_.experts - 1));
        expert_spin_->setValue(0);
    }
    QString group_text;
    if (data_.n_group > 1)
        group_text = tr("<br>This model limits each token to %1 of %2 expert groups.")
                         .arg(data_.topk_group)
                         .arg(data_.n_group);
    for (int i = 0; i < 2; ++i) {
        heat_[i]->setToolTip(explained_html(QString::fromUtf8(kScores.title),
                                            QString::fromUtf8(kScores.text) + group_text));
    }
    if (data_.n_group > 1) layer_box_->setToolTip(explained_html(kGroupLimit));
    compare_column_->setVisible(data_.has_comparison);
    QStringList headers = {tr("Layer"), data_.has_comparison ? data_.primary.checkpoint : tr("Experts: weight")};
    if (data_.has_comparison) headers << data_.comparison.checkpoint;
    hover_table_->setColumnCount(static_cast<int>(headers.size()));
    hover_table_->setHorizontalHeaderLabels(headers);
    for (int c = 1; c < hover_table_->columnCount(); ++c)
        hover_table_->horizontalHeader()->setSectionResizeMode(c, QHeaderView::Stretch);
    layer_ = 0;
    refreshLayer();
    refreshAgreement();
    // Start with the busiest expert of the first layer so the list is not empty.
    if (!data_.primary.layers.empty() && data_.experts > 0) {
        std::vector<int> counts(static_cast<size_t>(data_.experts), 0);
        for (int32_t e : data_.primary.layers[0].topk)
            if (e >= 0 && e < data_.experts) ++counts[static_cast<size_t>(e)];
        setExpert(static_cast<int>(std::max_element(counts.begin(), counts.end()) - counts.begin()));
    }
    if (data_.n_tokens() > 0) showTokenRouting(0);
}

void RoutingInspectorView::setLayer(int layer) {
    if (layer < 0 || layer >= data_.n_layers()) return;
    layer_ = layer;
    if (layer_box_->currentIndex() != layer) {
        const QSignalBlocker b(layer_box_);
        layer_box_->setCurrentIndex(layer);
    }
    refreshLayer();
}

void RoutingInspectorView::setExpert(int expert) {
    if (expert < 0 || expert >= std::max(1, data_.experts)) return;
    expert_ = expert;
    if (expert_spin_->value() != expert) {
        const QSignalBlocker b(expert_spin_);
        expert_spin_->setValue(expert);
    }
    refreshTopTokens();
}

void RoutingInspectorView::refreshLayer() {
    const RoutingSnapshot* snaps[2] = {&data_.primary, data_.has_comparison ? &data_.comparison : nullptr};
    for (int i = 0; i < 2; ++i) {
        const RoutingSnapshot* s = snaps[i];
        if (!s || layer_ >= static_cast<int>(s->layers.size())) {
            heat_[i]->clearRouting();
            flow_[i]->setTokens({});
            continue;
        }
        const QString name = layer_ < data_.n_layers() ? data_.layer_names[layer_] : QString();
        heat_[i]->setRouting(data_.tokens, data_.experts, data_.top_k, s->layers[static_cast<size_t>(layer_)],
                             QStringLiteral("%1 · %2").arg(s->checkpoint, name));
        flow_[i]->setTokens(data_.tokens);
        colourFlow(flow_[i], *s);
        flow_title_[i]->setText(tr("<b>Text by first expert</b> · %1 · %2")
                                    .arg(s->checkpoint.toHtmlEscaped(), name.toHtmlEscaped()));
    }
    refreshLegend();
    fitFlows();
    refreshTopTokens();
    refreshSpecialization();
    if (hovered_ >= 0) showTokenRouting(hovered_);
}

void RoutingInspectorView::fitFlows() {
    for (int i = 0; i < 2; ++i) {
        const int w = std::max(200, flow_scroll_[i]->viewport()->width());
        const int h = std::clamp(flow_[i]->heightForWidth(w) + 2, 48, 170);
        flow_scroll_[i]->setFixedHeight(h);
    }
}

void RoutingInspectorView::resizeEvent(QResizeEvent* event) {
    QWidget::resizeEvent(event);
    fitFlows();
}

void RoutingInspectorView::colourFlow(TokenFlowWidget* flow, const RoutingSnapshot& snap) {
    const RoutingLayer& l = snap.layers[static_cast<size_t>(layer_)];
    std::vector<QColor> colors;
    QStringList captions;
    for (int t = 0; t < data_.n_tokens(); ++t) {
        const size_t i = static_cast<size_t>(t) * data_.top_k;
        const int e = i < l.topk.size() ? l.topk[i] : -1;
        colors.push_back(e >= 0 ? expertColor(e) : QColor());
        captions << (e >= 0 ? QString::number(e) : QString());
    }
    flow->setColors(colors);
    flow->setCaptions(captions);
}

void RoutingInspectorView::refreshLegend() {
    if (data_.experts <= 0 || data_.primary.layers.empty()) {
        legend_->clear();
        return;
    }
    // Only experts that are somebody's first choice in this layer; the rest would be noise.
    std::vector<int> firsts(static_cast<size_t>(data_.experts), 0);
    const RoutingSnapshot* snaps[2] = {&data_.primary, data_.has_comparison ? &data_.comparison : nullptr};
    for (const RoutingSnapshot* s : snaps) {
        if (!s || layer_ >= static_cast<int>(s->layers.size())) continue;
        const auto& topk = s->layers[static_cast<size_t>(layer_)].topk;
        for (size_t i = 0; i < topk.size(); i += static_cast<size_t>(std::max(1, data_.top_k)))
            if (topk[i] >= 0 && topk[i] < data_.experts) ++firsts[static_cast<size_t>(topk[i])];
    }
    QString html = tr("<b>First expert:</b> ");
    for (int e = 0; e < data_.experts; ++e) {
        if (firsts[static_cast<size_t>(e)] == 0) continue;
        const QColor c = expertColor(e);
        html += QStringLiteral("<span style='background:%1; color:%2'>&nbsp;%3&nbsp;</span>&nbsp; ")
                    .arg(hex(c), hex(ink_on(c)))
                    .arg(e);
    }
    legend_->setText(html);
}

QString RoutingInspectorView::routingCell(const RoutingSnapshot& snap, int layer, int token) const {
    if (layer >= static_cast<int>(snap.layers.size())) return {};
    const RoutingLayer& l = snap.layers[static_cast<size_t>(layer)];
    QStringList parts;
    for (int k = 0; k < data_.top_k; ++k) {
        const size_t i = static_cast<size_t>(token) * data_.top_k + k;
        if (i >= l.topk.size()) break;
        parts << QStringLiteral("%1: %2").arg(l.topk[i]).arg(i < l.weights.size() ? l.weights[i] : 0.0f, 0, 'f', 2);
    }
    return parts.join(QStringLiteral("   "));
}

void RoutingInspectorView::showTokenRouting(int token) {
    if (token < 0 || token >= data_.n_tokens()) {
        hovered_ = -1;
        hover_table_->setRowCount(0);
        for (int i = 0; i < 2; ++i) {
            heat_[i]->setHighlightedToken(-1);
            flow_[i]->setHighlighted(-1);
        }
        return;
    }
    hovered_ = token;
    hover_title_->setText(tr("Token <b>%1</b> at position %2")
                              .arg(TokenFlowWidget::readable(data_.tokens[token]).toHtmlEscaped())
                              .arg(token));
    const int L = data_.n_layers();
    hover_table_->setRowCount(L);
    for (int l = 0; l < L; ++l) {
        auto* name = new QTableWidgetItem(data_.layer_names[l]);
        if (l == layer_) {
            QFont f = name->font();
            f.setBold(true);
            name->setFont(f);
        }
        hover_table_->setItem(l, 0, name);
        const RoutingSnapshot* snaps[2] = {&data_.primary, data_.has_comparison ? &data_.comparison : nullptr};
        for (int s = 0; s < 2; ++s) {
            if (!snaps[s]) continue;
            auto* item = new QTableWidgetItem(routingCell(*snaps[s], l, token));
            const auto& layers = snaps[s]->layers;
            if (l < static_cast<int>(layers.size())) {
                const size_t i = static_cast<size_t>(token) * data_.top_k;
                if (i < layers[static_cast<size_t>(l)].topk.size())
                    item->setData(Qt::DecorationRole, expertColor(layers[static_cast<size_t>(l)].topk[i]));
            }
            hover_table_->setItem(l, 1 + s, item);
        }
    }
    hover_table_->resizeRowsToContents();
    for (int i = 0; i < 2; ++i) {
        heat_[i]->setHighlightedToken(token);
        flow_[i]->setHighlighted(token);
    }
}

void RoutingInspectorView::refreshTopTokens() {
    top_table_->setRowCount(0);
    if (layer_ >= static_cast<int>(data_.primary.layers.size())) return;
    const RoutingLayer& l = data_.primary.layers[static_cast<size_t>(layer_)];
    const int K = data_.top_k, E = data_.experts;
    struct Row {
        int token;
        float weight, score;
    };
    std::vector<Row> rows;
    for (int t = 0; t < data_.n_tokens(); ++t)
        for (int k = 0; k < K; ++k) {
            const size_t i = static_cast<size_t>(t) * K + k;
            if (i < l.topk.size() && l.topk[i] == expert_) {
                const size_t si = static_cast<size_t>(t) * E + expert_;
                rows.push_back({t, i < l.weights.size() ? l.weights[i] : 0.0f,
                                si < l.scores.size() ? l.scores[si] : 0.0f});
            }
        }
    std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.weight > b.weight; });
    constexpr int kShown = 50;
    top_table_->setRowCount(static_cast<int>(std::min<size_t>(rows.size(), kShown)));
    for (int r = 0; r < top_table_->rowCount(); ++r) {
        const Row& x = rows[static_cast<size_t>(r)];
        top_table_->setItem(r, 0, new QTableWidgetItem(TokenFlowWidget::readable(data_.tokens[x.token])));
        auto num = [](double v, int prec) {
            auto* it = new QTableWidgetItem(QString::number(v, 'f', prec));
            it->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
            return it;
        };
        top_table_->setItem(r, 1, num(x.token, 0));
        top_table_->setItem(r, 2, num(x.weight, 3));
        top_table_->setItem(r, 3, num(x.score, 3));
    }
    auto* box = qobject_cast<QGroupBox*>(top_table_->parentWidget());
    if (box)
        box->setTitle(tr("Tokens expert %1 takes · %2 (%3 of %4 tokens)")
                          .arg(expert_)
                          .arg(layer_ < data_.n_layers() ? data_.layer_names[layer_] : QString())
                          .arg(rows.size())
                          .arg(data_.n_tokens()));
}

void RoutingInspectorView::refreshSpecialization() {
    spec_map_->data()->clear();
    const bool have = layer_ < static_cast<int>(data_.specialization.size()) &&
                      data_.specialization[static_cast<size_t>(layer_)].rows > 0;
    auto* box = qobject_cast<QGroupBox*>(spec_plot_->parentWidget());
    if (!have) {
        if (box) box->setTitle(tr("Specialization: no labelled probe data"));
        spec_plot_->xAxis->setRange(-0.5, 0.5);
        spec_plot_->yAxis->setRange(-0.5, 0.5);
        spec_plot_->replot();
        return;
    }
    const Matrix& m = data_.specialization[static_cast<size_t>(layer_)];
    spec_map_->data()->setSize(m.cols, m.rows);
    spec_map_->data()->setRange(QCPRange(0, std::max(1, m.cols - 1)), QCPRange(0, std::max(1, m.rows - 1)));
    double hi = 0;
    for (int r = 0; r < m.rows; ++r)
        for (int c = 0; c < m.cols; ++c) {
            spec_map_->data()->setCell(c, r, m.at(r, c));
            hi = std::max(hi, m.at(r, c));
        }
    spec_scale_->setDataRange(QCPRange(0, hi > 0 ? hi : 1));
    spec_plot_->xAxis->setRange(-0.5, m.cols - 0.5);
    spec_plot_->yAxis->setRange(-0.5, m.rows - 0.5);
    auto yt = QSharedPointer<QCPAxisTickerText>::create();
    const QStringList& names = !m.row_labels.isEmpty() ? m.row_labels : data_.label_names;
    for (int r = 0; r < m.rows; ++r) yt->addTick(r, r < names.size() ? names[r] : QString::number(r));
    spec_plot_->yAxis->setTicker(yt);
    auto xt = QSharedPointer<QCPAxisTickerText>::create();
    // Expert ticks thinned to the plot's width (two-digit labels need room).
    const QFontMetrics fm(spec_plot_->xAxis->tickLabelFont());
    const double width = std::max(80, spec_plot_->axisRect()->width() > 0 ? spec_plot_->axisRect()->width()
                                                                         : spec_plot_->width() - 120);
    const double fit = std::clamp(width / (fm.horizontalAdvance(QStringLiteral("00")) + 10), 1.0, 9.0);
    int step = 1;
    while (m.cols / step > fit) step *= 2;
    for (int c = 0; c < m.cols; c += step) xt->addTick(c, QString::number(c));
    spec_plot_->xAxis->setTicker(xt);
    if (box) {
        box->setTitle(tr("Specialization: label x expert · %1").arg(data_.layer_names.value(layer_)));
        box->setToolTip(explained_html(QString::fromUtf8(kSpecialization.title),
                                       QString::fromUtf8(kSpecialization.text) +
                                           (data_.specialization_source.isEmpty()
                                                ? QString()
                                                : QStringLiteral("<br>Source: ") +
                                                      data_.specialization_source.toHtmlEscaped())));
    }
    spec_plot_->replot();
}

void RoutingInspectorView::refreshAgreement() {
    if (!data_.has_comparison) {
        agreement_->setVisible(false);
        return;
    }
    const RoutingAgreementData& a = data_.agreement;
    QStringList layers;
    for (size_t l = 0; l < a.layer_overlap.size() && l < static_cast<size_t>(data_.n_layers()); ++l)
        layers << QStringLiteral("%1: %2").arg(data_.layer_names[static_cast<int>(l)], percent(a.layer_overlap[l]));
    agreement_->setText(
        tr("<span style='font-size:large'><b>%1</b> of routing decisions stayed the same</span> "
           "&nbsp;(%2 vs %3) &nbsp;·&nbsp; exact expert sets: <b>%4</b> of tokens"
           "<br>per layer: %5")
            .arg(percent(a.overlap), data_.primary.checkpoint.toHtmlEscaped(),
                 data_.comparison.checkpoint.toHtmlEscaped(), percent(a.exact),
                 layers.join(QStringLiteral(" &nbsp;·&nbsp; "))));
    agreement_->setVisible(true);
}

}  // namespace moe::views
