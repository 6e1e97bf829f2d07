#include "routing_strips.h"

#include <QHelpEvent>
#include <QPainter>
#include <QToolTip>

#include <algorithm>

#include "colormap.h"
#include "token_flow_widget.h"

namespace moe::views {

RoutingStrips::RoutingStrips(QWidget* parent) : QWidget(parent) {
    setMouseTracking(true);
    setSizePolicy(QSizePolicy::Fixed, QSizePolicy::Fixed);
    const QFontMetrics fm(font());
    cell_w_ = std::max(26, fm.horizontalAdvance(QStringLiteral("000")) + 6);
    cell_h_ = fm.height() + 4;
    header_h_ = fm.height() + 6;
}

void RoutingStrips::setData(const RoutingInspectionData& data) {
    data_ = data;
    updateGeometry();
    resize(sizeHint());
    update();
}

int RoutingStrips::labelWidth() const {
    const QFontMetrics fm(font());
    int w = fm.horizontalAdvance(QStringLiteral("layer 00"));
    for (const QString& n : data_.layer_names) w = std::max(w, fm.horizontalAdvance(n));
    return w + 10;
}

QSize RoutingStrips::sizeHint() const {
    return {labelWidth() + std::max(1, tokens()) * cell_w_ + 2,
            header_h_ + std::max(1, layers()) * cell_h_ + 2};
}

QSize RoutingStrips::minimumSizeHint() const {
    return sizeHint();
}

QRect RoutingStrips::cellRect(int layer, int token) const {
    return {labelWidth() + token * cell_w_, header_h_ + layer * cell_h_, cell_w_, cell_h_};
}

QPair<int, int> RoutingStrips::cellAt(const QPoint& pos) const {
    const int t = (pos.x() - labelWidth()) / cell_w_, l = (pos.y() - header_h_) / cell_h_;
    if (pos.x() < labelWidth() || pos.y() < header_h_ || t >= tokens() || l >= layers())
        return {-1, -1};
    return {l, t};
}

int RoutingStrips::firstExpert(int layer, int token) const {
    if (layer < 0 || layer >= layers() || token < 0 || token >= tokens() || data_.top_k < 1)
        return -1;
    const auto& topk = data_.primary.layers[size_t(layer)].topk;
    const size_t i = size_t(token) * size_t(data_.top_k);
    return i < topk.size() ? topk[i] : -1;
}

QString RoutingStrips::cellText(int layer, int token) const {
    if (firstExpert(layer, token) < 0) return {};
    const RoutingLayer& l = data_.primary.layers[size_t(layer)];
    QString s = tr("token %1 at position %2, %3")
                    .arg(TokenFlowWidget::readable(data_.tokens[token]))
                    .arg(token)
                    .arg(data_.layer_names[layer]);
    for (int k = 0; k < data_.top_k; ++k) {
        const int e = l.topk[size_t(token) * data_.top_k + k];
        const size_t si = size_t(token) * size_t(data_.experts) + size_t(e);
        s += tr("\nexpert %1: weight %2, score %3")
                 .arg(e)
                 .arg(double(l.weights[size_t(token) * data_.top_k + k]), 0, 'f', 3)
                 .arg(si < l.scores.size() ? double(l.scores[si]) : 0.0, 0, 'f', 3);
    }
    return s;
}

bool RoutingStrips::event(QEvent* e) {
    if (e->type() == QEvent::ToolTip) {
        auto* he = static_cast<QHelpEvent*>(e);
        const auto [l, t] = cellAt(he->pos());
        const QString text = cellText(l, t);
        if (text.isEmpty())
            QToolTip::hideText();
        else
            QToolTip::showText(he->globalPos(), text, this, cellRect(l, t));
        return true;
    }
    return QWidget::event(e);
}

void RoutingStrips::paintEvent(QPaintEvent*) {
    QPainter p(this);
    p.fillRect(rect(), palette().base());
    const QFontMetrics fm(font());
    const int lw = labelWidth();
    // Tokens along the top, elided to their cell.
    p.setPen(palette().text().color());
    for (int t = 0; t < tokens(); ++t) {
        const QRect r(lw + t * cell_w_, 0, cell_w_, header_h_);
        p.drawText(
            r.adjusted(1, 0, -1, 0), Qt::AlignCenter,
            fm.elidedText(TokenFlowWidget::readable(data_.tokens[t]), Qt::ElideRight, cell_w_ - 2));
    }
    for (int l = 0; l < layers(); ++l) {
        p.setPen(palette().text().color());
        p.drawText(QRect(0, header_h_ + l * cell_h_, lw - 6, cell_h_),
                   Qt::AlignRight | Qt::AlignVCenter, data_.layer_names[l]);
        for (int t = 0; t < tokens(); ++t) {
            const int e = firstExpert(l, t);
            if (e < 0) continue;
            const QRect r = cellRect(l, t);
            const QColor c = category_color(e);
            p.fillRect(r, c);
            p.setPen(c.lightnessF() < 0.55 ? Qt::white : Qt::black);
            p.drawText(r, Qt::AlignCenter, QString::number(e));
        }
    }
    // Token boundaries through every strip.
    p.setPen(QPen(palette().base().color(), 1));
    for (int t = 0; t <= tokens(); ++t)
        p.drawLine(lw + t * cell_w_, header_h_, lw + t * cell_w_, header_h_ + layers() * cell_h_);
}

}  // namespace moe::views
