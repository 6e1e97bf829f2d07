#include "routing_heatmap.h"

#include <QToolTip>

#include <algorithm>
#include <cmath>

#include "colormap.h"
#include "token_flow_widget.h"

namespace moe::views {

namespace {

constexpr double kHalf = 0.5;

// Tick step so labels of `count` items each `label_px` tall/wide fit into `space_px`.
int tick_step(int count, double space_px, double label_px) {
    if (count <= 0 || space_px <= 0) return 1;
    const int fit = std::max(1, static_cast<int>(space_px / label_px));
    int step = 1;
    while ((count + step - 1) / step > fit) step = step < 5 ? step + 1 : step * 2;
    return step;
}

}  // namespace

RoutingHeatmap::RoutingHeatmap(QWidget* parent) : QCustomPlot(parent) {
    setMouseTracking(true);
    setMinimumSize(280, 240);
    main_rect_ = axisRect();

    // Rows: title, bias strip, heatmap. Columns: plots, colour legends.
    plotLayout()->insertRow(0);
    title_ = new QCPTextElement(this, QString(), QFont(font().family(), font().pointSize() + 1, QFont::Bold));
    plotLayout()->addElement(0, 0, title_);
    plotLayout()->insertRow(1);
    bias_rect_ = new QCPAxisRect(this, true);
    plotLayout()->addElement(1, 0, bias_rect_);
    scale_ = new QCPColorScale(this);
    plotLayout()->addElement(2, 1, scale_);
    bias_label_ = new QCPTextElement(this, QString(), QFont(font().family(), font().pointSize() - 1));
    bias_label_->setTextFlags(Qt::AlignLeft | Qt::AlignVCenter);
    plotLayout()->addElement(1, 1, bias_label_);
    plotLayout()->setRowSpacing(2);

    // The strip is a fixed few pixels tall and shares the heatmap's left/right margins so its
    // cells sit exactly above the expert columns.
    auto* group = new QCPMarginGroup(this);
    bias_rect_->setMarginGroup(QCP::msLeft | QCP::msRight, group);
    main_rect_->setMarginGroup(QCP::msLeft | QCP::msRight, group);
    scale_->setMarginGroup(QCP::msTop | QCP::msBottom, new QCPMarginGroup(this));
    bias_rect_->setMinimumSize(0, 16);
    bias_rect_->setMaximumSize(QWIDGETSIZE_MAX, 16);
    bias_rect_->setAutoMargins(QCP::msLeft | QCP::msRight);
    bias_rect_->setMargins(QMargins(0, 2, 0, 2));
    for (QCPAxis* a : bias_rect_->axes()) {
        a->setTicks(false);
        a->setTickLabels(false);
        a->grid()->setVisible(false);
        a->setBasePen(QPen(QColor(120, 120, 120)));
    }
    QCPAxis* bias_left = bias_rect_->axis(QCPAxis::atLeft);
    auto bias_ticker = QSharedPointer<QCPAxisTickerText>::create();
    bias_ticker->addTick(0.5, tr("bias"));
    bias_left->setTicker(bias_ticker);
    bias_left->setTickLabels(true);
    bias_left->setRange(-kHalf, 1.5);

    xAxis->setLabel(tr("expert"));
    yAxis->setLabel(tr("token"));
    yAxis->setRangeReversed(true);  // first token on top, like the text
    xAxis->grid()->setVisible(false);
    yAxis->grid()->setVisible(false);
    xAxis->setSubTicks(false);
    yAxis->setSubTicks(false);
    xAxis->setTickLength(0, 3);
    yAxis->setTickLength(0, 3);

    scores_ = new QCPColorMap(xAxis, yAxis);
    scores_->setInterpolate(false);
    scores_->setTightBoundary(false);
    scores_->setGradient(viridis_gradient());
    scores_->setColorScale(scale_);
    scale_->setLabel(tr("score"));
    scale_->setBarWidth(10);
    scale_->setGradient(viridis_gradient());

    bias_ = new QCPColorMap(bias_rect_->axis(QCPAxis::atBottom), bias_left);
    bias_->setInterpolate(false);
    bias_->setGradient(diverging_gradient());

    // A dark halo under every chosen cell keeps the white marks visible on bright cells.
    auto make_graph = [&](const QCPScatterStyle& style) {
        QCPGraph* g = addGraph(xAxis, yAxis);
        g->setLineStyle(QCPGraph::lsNone);
        g->setScatterStyle(style);
        g->setAdaptiveSampling(false);
        return g;
    };
    make_graph(QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(QColor(0, 0, 0, 150), 3.0), Qt::NoBrush, 8));
    first_ = make_graph(QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(Qt::white, 1.5), QBrush(Qt::white), 8));
    others_ = make_graph(QCPScatterStyle(QCPScatterStyle::ssCircle, QPen(Qt::white, 1.6), Qt::NoBrush, 8));

    row_ = new QCPItemRect(this);
    row_->setClipAxisRect(main_rect_);
    row_->setPen(QPen(QColor(255, 80, 80), 2.0));
    row_->setBrush(Qt::NoBrush);
    row_->setVisible(false);

    clearRouting();
}

void RoutingHeatmap::clearRouting() {
    tokens_.clear();
    E_ = K_ = 0;
    layer_ = {};
    scores_->data()->clear();
    bias_->data()->clear();
    for (int i = 0; i < graphCount(); ++i) graph(i)->data()->clear();
    row_->setVisible(false);
    title_->setText(tr("No inspection yet"));
    bias_label_->setText(QString());
    xAxis->setRange(-kHalf, kHalf);
    yAxis->setRange(-kHalf, kHalf);
    replot();
}

void RoutingHeatmap::setRouting(const QStringList& tokens, int experts, int top_k,
                                const RoutingLayer& layer, const QString& title) {
    tokens_ = tokens;
    E_ = experts;
    K_ = top_k;
    layer_ = layer;
    const int T = static_cast<int>(tokens.size());
    title_->setText(title);
    if (T == 0 || E_ == 0) {
        clearRouting();
        return;
    }

    // Cell (expert e, token t) is centred on integer coordinates; one flat colour per value.
    scores_->data()->setSize(E_, T);
    scores_->data()->setRange(QCPRange(0, E_ - 1), QCPRange(0, T - 1));
    float hi = 0.0f;
    for (int t = 0; t < T; ++t)
        for (int e = 0; e < E_; ++e) {
            const size_t i = static_cast<size_t>(t) * E_ + e;
            const float v = i < layer.scores.size() ? layer.scores[i] : std::nanf("");
            scores_->data()->setCell(e, t, v);
            if (std::isfinite(v)) hi = std::max(hi, v);
        }
    scale_->setDataRange(QCPRange(0, hi > 0 ? hi : 1.0));
    xAxis->setRange(-kHalf, E_ - kHalf);
    yAxis->setRange(-kHalf, T - kHalf);

    // Bias strip: two identical rows (a one-row colour map would have no height).
    bias_->data()->setSize(E_, 2);
    bias_->data()->setRange(QCPRange(0, E_ - 1), QCPRange(0, 1));
    double bmax = 0;
    for (int e = 0; e < E_; ++e) {
        const double b = e < static_cast<int>(layer.bias.size()) ? layer.bias[e] : 0.0;
        bias_->data()->setCell(e, 0, b);
        bias_->data()->setCell(e, 1, b);
        bmax = std::max(bmax, std::fabs(b));
    }
    bias_->setDataRange(QCPRange(-std::max(bmax, 1e-6), std::max(bmax, 1e-6)));
    bias_rect_->axis(QCPAxis::atBottom)->setRange(-kHalf, E_ - kHalf);
    bias_label_->setText(layer.bias.empty() ? tr("no bias")
                                            : tr("bias ±%1").arg(bmax, 0, 'g', 2));

    QVector<double> hx, hy, fx, fy, ox, oy;
    for (int t = 0; t < T; ++t)
        for (int k = 0; k < K_; ++k) {
            const size_t i = static_cast<size_t>(t) * K_ + k;
            if (i >= layer.topk.size()) continue;
            const double e = layer.topk[i];
            hx << e;
            hy << t;
            (k == 0 ? fx : ox) << e;
            (k == 0 ? fy : oy) << t;
        }
    graph(0)->setData(hx, hy, true);
    first_->setData(fx, fy, true);
    others_->setData(ox, oy, true);
    row_->setVisible(false);
    updateTicks();
    updateMarkerSize();
    replot();
}

void RoutingHeatmap::setHighlightedToken(int token) {
    if (token < 0 || token >= tokens_.size()) {
        if (row_->visible()) {
            row_->setVisible(false);
            replot(QCustomPlot::rpQueuedReplot);
        }
        return;
    }
    row_->topLeft->setCoords(-kHalf, token - kHalf);
    row_->bottomRight->setCoords(E_ - kHalf, token + kHalf);
    row_->setVisible(true);
    replot(QCustomPlot::rpQueuedReplot);
}

int RoutingHeatmap::markerCount() const {
    return first_->data()->size() + others_->data()->size();
}

Matrix RoutingHeatmap::scoreMatrix() const {
    Matrix m;
    m.rows = static_cast<int>(tokens_.size());
    m.cols = E_;
    m.values.assign(static_cast<size_t>(m.rows) * m.cols, 0.0);
    for (int t = 0; t < m.rows; ++t) {
        m.row_labels << QStringLiteral("%1 %2").arg(t).arg(tokens_[t]);
        for (int e = 0; e < m.cols; ++e) m.values[static_cast<size_t>(t) * m.cols + e] = scores_->data()->cell(e, t);
    }
    for (int e = 0; e < m.cols; ++e) m.col_labels << QStringLiteral("expert %1").arg(e);
    return m;
}

void RoutingHeatmap::updateTicks() {
    const int T = static_cast<int>(tokens_.size());
    const QFontMetrics fm(yAxis->tickLabelFont());
    const double height = std::max(50, main_rect_->height() > 0 ? main_rect_->height() : this->height() - 80);
    const int tstep = tick_step(T, height, fm.height() + 1);
    auto yt = QSharedPointer<QCPAxisTickerText>::create();
    for (int t = 0; t < T; t += tstep) yt->addTick(t, QStringLiteral("%1 %2").arg(TokenFlowWidget::readable(tokens_[t])).arg(t, 3));
    yAxis->setTicker(yt);

    const double width = std::max(50, main_rect_->width() > 0 ? main_rect_->width() : this->width() - 120);
    const int estep = tick_step(E_, width, fm.horizontalAdvance(QStringLiteral("000")));
    auto xt = QSharedPointer<QCPAxisTickerText>::create();
    for (int e = 0; e < E_; e += estep) xt->addTick(e, QString::number(e));
    xAxis->setTicker(xt);
}

void RoutingHeatmap::updateMarkerSize() {
    if (tokens_.isEmpty() || E_ == 0) return;
    const double cw = main_rect_->width() / static_cast<double>(E_);
    const double ch = main_rect_->height() / static_cast<double>(tokens_.size());
    const double cell = std::min(cw, ch);
    const double size = std::clamp(cell * 0.55, 3.0, 11.0);
    for (int i = 0; i < graphCount(); ++i) {
        QCPScatterStyle s = graph(i)->scatterStyle();
        s.setSize(i == 0 ? size + 1.5 : size);
        graph(i)->setScatterStyle(s);
    }
}

void RoutingHeatmap::resizeEvent(QResizeEvent* event) {
    QCustomPlot::resizeEvent(event);
    // Axis rect sizes are known only after a layout pass.
    plotLayout()->update(QCPLayoutElement::upLayout);
    updateTicks();
    updateMarkerSize();
    replot(QCustomPlot::rpQueuedReplot);
}

bool RoutingHeatmap::cellAt(const QPointF& pos, int* token, int* expert) const {
    if (tokens_.isEmpty() || !main_rect_->rect().contains(pos.toPoint())) return false;
    const int e = static_cast<int>(std::lround(xAxis->pixelToCoord(pos.x())));
    const int t = static_cast<int>(std::lround(yAxis->pixelToCoord(pos.y())));
    if (e < 0 || e >= E_ || t < 0 || t >= tokens_.size()) return false;
    *token = t;
    *expert = e;
    return true;
}

QString RoutingHeatmap::cellTooltip(int token, int expert) const {
    const size_t si = static_cast<size_t>(token) * E_ + expert;
    const double s = si < layer_.scores.size() ? layer_.scores[si] : std::nan("");
    const double b = expert < static_cast<int>(layer_.bias.size()) ? layer_.bias[expert] : 0.0;
    QString chosen = tr("not chosen");
    for (int k = 0; k < K_; ++k) {
        const size_t i = static_cast<size_t>(token) * K_ + k;
        if (i < layer_.topk.size() && layer_.topk[i] == expert)
            chosen = tr("chosen #%1, weight %2").arg(k + 1).arg(layer_.weights[i], 0, 'f', 3);
    }
    return tr("<b>%1</b> (position %2) &rarr; expert %3<br>score %4 &nbsp; bias %5<br>"
              "selection score %6<br>%7")
        .arg(TokenFlowWidget::readable(tokens_[token]).toHtmlEscaped())
        .arg(token)
        .arg(expert)
        .arg(s, 0, 'f', 3)
        .arg(b, 0, 'f', 3)
        .arg(s + b, 0, 'f', 3)
        .arg(chosen);
}

void RoutingHeatmap::mouseMoveEvent(QMouseEvent* event) {
    QCustomPlot::mouseMoveEvent(event);
    int t = -1, e = -1;
    if (cellAt(event->position(), &t, &e)) {
        QToolTip::showText(event->globalPosition().toPoint(), cellTooltip(t, e), this);
    } else if (!tokens_.isEmpty() && bias_rect_->rect().contains(event->position().toPoint())) {
        const int be = static_cast<int>(std::lround(bias_rect_->axis(QCPAxis::atBottom)->pixelToCoord(event->position().x())));
        if (be >= 0 && be < E_) {
            const double b = be < static_cast<int>(layer_.bias.size()) ? layer_.bias[be] : 0.0;
            QToolTip::showText(event->globalPosition().toPoint(),
                               tr("expert %1: bias %2<br><i>added to the scores only to choose "
                                  "the experts, never to weight them</i>").arg(be).arg(b, 0, 'f', 4),
                               this);
        }
    } else {
        QToolTip::hideText();
    }
    emit cellHovered(t, e);
}

void RoutingHeatmap::mousePressEvent(QMouseEvent* event) {
    QCustomPlot::mousePressEvent(event);
    int t = -1, e = -1;
    if (event->button() == Qt::LeftButton && cellAt(event->position(), &t, &e)) emit expertClicked(e);
}

void RoutingHeatmap::leaveEvent(QEvent* event) {
    QCustomPlot::leaveEvent(event);
    emit cellHovered(-1, -1);
}

}  // namespace moe::views
