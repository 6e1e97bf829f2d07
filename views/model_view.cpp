#include "model_view.h"

#include "efficiency_calculator.h"

#include "colormap.h"
#include "explained.h"
#include "heatmap_plot.h"
#include "highlight_frame.h"
#include "plot_export.h"

#include <QFileDialog>
#include <QFontDatabase>
#include <QHeaderView>
#include <QLabel>
#include <QMap>
#include <QMenu>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QSplitter>
#include <QTreeWidget>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <array>
#include <cmath>
#include <limits>

namespace moe::views {

namespace {

QString active_tip()
{
    return explained_html("Active parameters",
                          "Parameters one token actually passes through. A MoE layer stores every routed "
                          "expert but runs only the k the gate picks (plus the shared experts), so a model "
                          "can hold many parameters and still cost little per token: DeepSeek-V3 stores "
                          "671 B and activates 37 B.");
}
QString flops_tip()
{
    return explained_html("FLOPs per token",
                          "Forward floating-point operations for one token, counting a multiply-add as 2. "
                          "Training costs about three times this (forward plus backward). Attention also "
                          "grows with context length; the figure assumes the configured sequence length.");
}
QString mla_tip()
{
    return explained_html("Multi-head Latent Attention (MLA)",
                          "Keys and values are compressed into one small latent vector per token "
                          "(kv_lora_rank) plus one shared RoPE key; the per-head keys and values are "
                          "expanded from it. The cache holds only the latent, a fraction of what standard "
                          "multi-head attention stores.");
}
QString mtp_tip()
{
    return explained_html("Multi-Token Prediction (MTP)",
                          "Extra modules, each one transformer block, predict the token after next from the "
                          "main model's hidden state. They share the embedding and output head with the main "
                          "model, densify the training signal, and can serve as a speculative draft at "
                          "inference; they are usually dropped for plain inference.");
}
QString routed_tip()
{
    return explained_html("Routed experts",
                          "Many small SwiGLU FFNs per MoE layer; the gate sends each token to k of them. All "
                          "are stored, only k are active per token.");
}
QString shared_tip()
{
    return explained_html("Shared experts",
                          "SwiGLU FFNs that every token passes through, next to the routed ones: they learn "
                          "common knowledge so the routed experts can specialize.");
}

// Tooltip for a row, by what its name talks about.
QString part_tip(const QString &name)
{
    const QString n = name.toLower();
    if (n.contains("mtp"))
        return mtp_tip();
    if (n.contains("attention") || n.contains("mla"))
        return mla_tip();
    if (n.contains("routed"))
        return routed_tip();
    if (n.contains("shared"))
        return shared_tip();
    if (n.contains("gate"))
        return explained_html(explain::kTopK);
    return {};
}

// Log-axis labels in K/M/B rather than 1e+09.
class HumanTicker : public QCPAxisTickerLog {
protected:
    QString getTickLabel(double tick, const QLocale &, QChar, int) override
    {
        // Powers of ten: "1 B", "100 M" read better than "1.00 B".
        const char *units[] = {"", " K", " M", " B", " T"};
        int u = 0;
        double v = tick;
        while (std::abs(v) >= 1000 && u < 4)
            v /= 1000, ++u;
        return QString::number(v, 'g', 3) + QLatin1String(units[u]);
    }
};

QString kind_name(ModelSummaryData::LayerKind kind)
{
    switch (kind) {
    case ModelSummaryData::LayerKind::Dense: return "dense FFN layer";
    case ModelSummaryData::LayerKind::Moe: return "MoE layer";
    case ModelSummaryData::LayerKind::Mtp: return "MTP module";
    }
    return {};
}

QColor kind_color(ModelSummaryData::LayerKind kind) { return category_color(static_cast<int>(kind)); }

}  // namespace

namespace {
// Three significant digits with an SI-style unit: 671 B, 37.0 B, 1.23 M; 2.10 GFLOP.
QString human_units(double v, const char* suffix, const char* bare) {
    if (!std::isfinite(v))
        return QStringLiteral("-");
    const double a = std::abs(v);
    static const std::pair<double, const char*> scales[] = {{1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "K"}};
    for (const auto& [scale, prefix] : scales) {
        if (a < scale)
            continue;
        const double x = v / scale;
        const int decimals = std::abs(x) >= 100 ? 0 : std::abs(x) >= 10 ? 1 : 2;
        // Counts say "B" for billions, FLOPs say "GFLOP".
        const QString unit = *suffix ? QString(prefix) + suffix
                                     : QString(scale == 1e9 ? "B" : prefix);
        return QStringLiteral("%1 %2").arg(x, 0, 'f', decimals).arg(unit);
    }
    return QString::number(v, 'f', 0) + QLatin1String(bare);
}
}  // namespace

QString ModelView::humanCount(double v) { return human_units(v, "", ""); }

QString ModelView::humanFlops(double v) { return human_units(v, "FLOP", " FLOP"); }

ModelView::ModelView(QWidget *parent) : QWidget(parent)
{
    auto *root = new QVBoxLayout(this);
    root->setContentsMargins(6, 6, 6, 6);

    tree_ = new QTreeWidget;
    tree_->setColumnCount(ColumnCount);
    tree_->setHeaderLabels({"Part", "Parameters", "Active / token", "FLOPs / token", "Note"});
    tree_->headerItem()->setToolTip(ActiveColumn, active_tip());
    tree_->headerItem()->setToolTip(FlopsColumn, flops_tip());
    tree_->headerItem()->setToolTip(ParamsColumn,
                                    explained_html("Parameters", "Numbers stored in the checkpoint for this part."));
    for (int c : {ParamsColumn, ActiveColumn, FlopsColumn})
        tree_->headerItem()->setTextAlignment(c, Qt::AlignRight | Qt::AlignVCenter);
    tree_->setAlternatingRowColors(true);
    tree_->setRootIsDecorated(true);
    tree_->setUniformRowHeights(true);
    tree_->header()->setStretchLastSection(true);
    tree_->setContextMenuPolicy(Qt::CustomContextMenu);
    connect(tree_, &QWidget::customContextMenuRequested, this, [this](const QPoint &pos) {
        QMenu menu(this);
        menu.addAction("Export table as CSV...", this, [this] {
            const QString path = QFileDialog::getSaveFileName(this, "Export table", "model.csv", "CSV (*.csv)");
            QString error;
            if (!path.isEmpty() && !exportTableCsv(path, &error))
                QMessageBox::warning(this, "Export failed", error);
        });
        menu.exec(tree_->viewport()->mapToGlobal(pos));
    });

    diagram_ = new QCustomPlot;
    add_plot_title(diagram_, "Layer stack: parameters per block");
    diagram_->xAxis->setLabel("block (bottom of the stack on the left)");
    diagram_->yAxis->setLabel("parameters (log scale)");
    // Log scale: a MoE layer stores ~30x what a token uses; both must stay readable.
    diagram_->yAxis->setScaleType(QCPAxis::stLogarithmic);
    diagram_->yAxis->setTicker(QSharedPointer<QCPAxisTicker>(new HumanTicker));
    diagram_->yAxis->grid()->setSubGridVisible(false);
    diagram_->xAxis->grid()->setVisible(false);
    diagram_->yAxis->grid()->setPen(QPen(QColor(220, 220, 220), 0, Qt::DotLine));
    diagram_->setToolTip(explained_html(
        "Layer stack",
        "Wide bars: parameters stored per block; narrow dark bars: parameters active for one token. "
        "The first layers are dense (a plain SwiGLU FFN), the rest are MoE; MTP modules sit on top."));
    add_export_actions(this, diagram_, [this] {
        CsvContent content;
        content.x_name = "block";
        Series total{"parameters", {}, {}}, active{"active parameters", {}, {}};
        for (size_t i = 0; i < data_.layers.size(); ++i) {
            total.x.push_back(i + 1);
            total.y.push_back(data_.layers[i].params);
            active.x.push_back(i + 1);
            active.y.push_back(data_.layers[i].active_params);
        }
        content.series = {total, active};
        return content;
    });

    config_ = new QPlainTextEdit;
    config_->setReadOnly(true);
    config_->setFont(QFontDatabase::systemFont(QFontDatabase::FixedFont));
    config_->setToolTip("config.json of the model (HF DeepseekV3Config field names)");

    auto *bottom = new QSplitter(Qt::Horizontal);
    bottom->addWidget(diagram_);
    bottom->addWidget(config_);
    bottom->setStretchFactor(0, 3);
    bottom->setStretchFactor(1, 2);
    auto *split = new QSplitter(Qt::Vertical);
    split->addWidget(tree_);
    split->addWidget(bottom);
    split->setStretchFactor(0, 2);
    split->setStretchFactor(1, 3);
    root->addWidget(split, 1);
    kv_label_ = new QLabel;
    kv_label_->setObjectName("kvCache");
    kv_label_->setWordWrap(true);
    kv_label_->setTextFormat(Qt::RichText);
    kv_label_->setToolTip(explained_html(
        "KV cache",
        "What generation keeps per token so later tokens need not recompute it. Multi-head "
        "attention keeps every head's key and value; MLA keeps one compressed latent "
        "(kv_lora_rank values) and one shared rotary key per layer, and rebuilds the heads from them."));
    root->addWidget(kv_label_);
    calculator_ = new EfficiencyCalculator;
    root->addWidget(calculator_);
}

void ModelView::setSummary(ModelSummaryData data)
{
    data_ = std::move(data);
    {
        double params = data_.total_params, active = data_.total_active_params, flops = data_.total_flops_per_token;
        if (!(params >= 0) || !(active >= 0) || !(flops >= 0)) {
            params = active = flops = 0;
            for (const auto &p : data_.parts) {
                params += p.params;
                active += p.active_params;
                flops += p.flops_per_token;
            }
        }
        calculator_->setModel(data_.name, data_.train_flops_per_token > 0 ? data_.train_flops_per_token : 3 * flops,
                              params, active);
    }
    tree_->clear();
    totals_ = nullptr;

    auto set_numbers = [](QTreeWidgetItem *item, double params, double active, double flops) {
        const double values[] = {params, active, flops};
        const int columns[] = {ParamsColumn, ActiveColumn, FlopsColumn};
        for (int i = 0; i < 3; ++i) {
            item->setText(columns[i], columns[i] == FlopsColumn ? humanFlops(values[i]) : humanCount(values[i]));
            item->setData(columns[i], kValueRole, values[i]);
            item->setTextAlignment(columns[i], Qt::AlignRight | Qt::AlignVCenter);
            item->setToolTip(columns[i], QLocale().toString(values[i], 'f', 0));
        }
    };

    QMap<QString, QTreeWidgetItem *> groups;
    QMap<QString, std::array<double, 3>> group_sums;
    double sum_params = 0, sum_active = 0, sum_flops = 0;
    for (const auto &part : data_.parts) {
        QTreeWidgetItem *parent = nullptr;
        if (!part.group.isEmpty()) {
            parent = groups.value(part.group);
            if (!parent) {
                parent = new QTreeWidgetItem(tree_, QStringList{part.group});
                parent->setToolTip(NameColumn, part_tip(part.group));
                groups.insert(part.group, parent);
                group_sums.insert(part.group, {0, 0, 0});
            }
            auto &s = group_sums[part.group];
            s[0] += part.params;
            s[1] += part.active_params;
            s[2] += part.flops_per_token;
        }
        auto *item = parent ? new QTreeWidgetItem(parent) : new QTreeWidgetItem(tree_);
        item->setText(NameColumn, part.name);
        item->setText(NoteColumn, part.note);
        item->setToolTip(NoteColumn, part.note);
        set_numbers(item, part.params, part.active_params, part.flops_per_token);
        const QString tip = part_tip(part.name);
        if (!tip.isEmpty())
            item->setToolTip(NameColumn, tip);
        sum_params += part.params;
        sum_active += part.active_params;
        sum_flops += part.flops_per_token;
    }
    for (auto it = groups.begin(); it != groups.end(); ++it) {
        const auto &s = group_sums[it.key()];
        set_numbers(it.value(), s[0], s[1], s[2]);
        it.value()->setExpanded(true);
        QFont f = it.value()->font(NameColumn);
        f.setItalic(true);
        it.value()->setFont(NameColumn, f);
    }

    // Totals as the model counts them; the sum of the rows when not given.
    auto pick = [](double given, double sum) { return std::isfinite(given) && given >= 0 ? given : sum; };
    totals_ = new QTreeWidgetItem(tree_);
    totals_->setText(NameColumn, data_.name.isEmpty() ? QStringLiteral("Total") : QStringLiteral("Total: %1").arg(data_.name));
    set_numbers(totals_, pick(data_.total_params, sum_params), pick(data_.total_active_params, sum_active),
                pick(data_.total_flops_per_token, sum_flops));
    const double total = pick(data_.total_params, sum_params);
    const double active = pick(data_.total_active_params, sum_active);
    QString note = total > 0 ? QStringLiteral("%1% of the parameters active per token").arg(100.0 * active / total, 0, 'f', 1)
                             : QString();
    if (std::abs(total - sum_params) > 0.5)
        note += QStringLiteral("; rows sum to %1 (shared tensors counted once in the total)").arg(humanCount(sum_params));
    totals_->setText(NoteColumn, note);
    totals_->setToolTip(ActiveColumn, active_tip());
    QFont bold = totals_->font(0);
    bold.setBold(true);
    for (int c = 0; c < ColumnCount; ++c) {
        totals_->setFont(c, bold);
        totals_->setBackground(c, QColor(235, 240, 248));
    }
    for (int c = 0; c < NoteColumn; ++c)
        tree_->resizeColumnToContents(c);
    tree_->setColumnWidth(NameColumn, std::max(tree_->columnWidth(NameColumn) + 20, 200));

    config_->setPlainText(data_.config_text);
    fillDiagram();

    const double mla = data_.kv_cache_values_per_token, mha = data_.mha_kv_values_per_token;
    kv_label_->setVisible(mla > 0 && mha > 0);
    if (mla > 0 && mha > 0) {
        // bf16 cache, as inference runs it; a 32K-token context for scale.
        auto bytes = [](double b) { return human_units(b, "B", " B"); };
        kv_label_->setText(
            QStringLiteral("<b>KV cache per token</b> (bf16, all layers): MLA %1 &nbsp;·&nbsp; multi-head "
                           "attention with the same heads %2 &nbsp;·&nbsp; <b>%3x smaller</b>; "
                           "a 32K-token context: %4 instead of %5")
                .arg(bytes(2 * mla), bytes(2 * mha))
                .arg(mha / mla, 0, 'f', 1)
                .arg(bytes(2 * mla * 32768), bytes(2 * mha * 32768)));
    }
}

bool ModelView::setHighlight(const Highlight &h, QString *missing)
{
    clearHighlight();
    QStringList lost;
    if (!h.row.isEmpty()) {
        const QString key = h.row.toLower();
        if (key == "kv cache") {
            if (!kv_label_->isHidden()) HighlightFrame::show(kv_label_);
            else lost << "row 'kv cache' (no KV cache figures for this model)";
        } else if (key == "calculator") {
            HighlightFrame::show(calculator_);
        } else {
            QTreeWidgetItem *found = key == "total" ? totals_ : nullptr;
            for (QTreeWidgetItemIterator it(tree_); *it && !found; ++it)
                if ((*it)->text(NameColumn).compare(h.row, Qt::CaseInsensitive) == 0) found = *it;
            if (found) {
                tree_->setCurrentItem(found);
                tree_->scrollToItem(found);
                HighlightFrame::show(tree_);
            } else {
                lost << QStringLiteral("row '%1'").arg(h.row);
            }
        }
    }
    if (!h.part.isEmpty()) {
        if (auto *w = findChild<QWidget *>(h.part)) HighlightFrame::show(w);
        else lost << QStringLiteral("part '%1'").arg(h.part);
    }
    if (missing) *missing = lost.join(", ");
    return lost.isEmpty();
}

void ModelView::clearHighlight()
{
    HighlightFrame::clearAll(this);
    tree_->clearSelection();
}

void ModelView::fillDiagram()
{
    diagram_->clearPlottables();
    diagram_->legend->clearItems();
    using Kind = ModelSummaryData::LayerKind;
    const int n = static_cast<int>(data_.layers.size());
    double top = 0, bottom = std::numeric_limits<double>::infinity();
    QCPBars *act_last = nullptr;
    for (Kind kind : {Kind::Dense, Kind::Moe, Kind::Mtp}) {
        QVector<double> keys, totals, actives;
        for (int i = 0; i < n; ++i) {
            if (data_.layers[i].kind != kind)
                continue;
            keys << i + 1;
            totals << data_.layers[i].params;
            actives << data_.layers[i].active_params;
            top = std::max(top, data_.layers[i].params);
            if (data_.layers[i].active_params > 0)
                bottom = std::min(bottom, data_.layers[i].active_params);
        }
        if (keys.isEmpty())
            continue;
        QColor c = kind_color(kind);
        auto *bars = new QCPBars(diagram_->xAxis, diagram_->yAxis);
        QColor light = c;
        light.setAlpha(90);
        bars->setBrush(light);
        bars->setPen(QPen(c, 1));
        bars->setWidth(0.8);
        bars->setData(keys, totals, true);
        bars->setName(kind_name(kind));
        bars->setBaseValue(1);  // log axis: bars grow from 1, far below the visible range
        auto *act = new QCPBars(diagram_->xAxis, diagram_->yAxis);
        act->setBrush(QColor(40, 40, 40, 200));  // one neutral colour: "active" means the same everywhere
        act->setPen(Qt::NoPen);
        act->setWidth(0.35);
        act->setData(keys, actives, true);
        act->setBaseValue(1);
        act->setName(QStringLiteral("active per token (narrow bars)"));
        act_last = act;
        // One legend entry per kind, plus one for all the narrow bars.
        diagram_->legend->removeItem(diagram_->legend->itemCount() - 1);
    }
    if (act_last)
        act_last->addToLegend();
    diagram_->legend->setVisible(n > 0);
    diagram_->axisRect()->insetLayout()->setInsetAlignment(0, Qt::AlignTop | Qt::AlignLeft);
    QFont f = diagram_->font();
    f.setPointSizeF(f.pointSizeF() * 0.85);
    diagram_->legend->setFont(f);
    diagram_->xAxis->setRange(0.3, n + 0.7);
    if (top > 0 && std::isfinite(bottom))
        diagram_->yAxis->setRange(bottom / 3, top * 12);  // room above for the legend
    else
        diagram_->yAxis->setRange(1, 10);
    QSharedPointer<QCPAxisTickerFixed> ticker(new QCPAxisTickerFixed);
    ticker->setTickStep(1.0);
    ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    diagram_->xAxis->setTicker(ticker);
    diagram_->replot(QCustomPlot::rpQueuedReplot);
}

Matrix ModelView::tableMatrix() const
{
    Matrix m;
    m.cols = 3;
    m.col_labels = {"params", "active_params", "flops_per_token"};
    for (const auto &part : data_.parts) {
        m.row_labels << (part.group.isEmpty() ? part.name : part.group + " / " + part.name);
        m.values.insert(m.values.end(), {part.params, part.active_params, part.flops_per_token});
        ++m.rows;
    }
    if (totals_) {
        m.row_labels << "total";
        for (int c : {ParamsColumn, ActiveColumn, FlopsColumn})
            m.values.push_back(totals_->data(c, kValueRole).toDouble());
        ++m.rows;
    }
    return m;
}

bool ModelView::exportTableCsv(const QString &path, QString *error) const
{
    return write_csv(path, tableMatrix(), error);
}

}  // namespace moe::views
