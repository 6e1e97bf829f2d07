#include "token_flow_widget.h"

#include <QMouseEvent>
#include <QPainter>
#include <QPainterPath>

#include <algorithm>

namespace moe::views {

namespace {

constexpr int kPadX = 3;       // inside a box, left and right of the glyphs
constexpr int kPadY = 1;
constexpr int kGapX = 2;       // between boxes
constexpr int kGapY = 5;       // between lines
constexpr int kMargin = 6;     // around the whole flow
constexpr int kMinBox = 11;    // a space still gets a visible box

QFont caption_font(const QFont& base) {
    QFont f = base;
    f.setPointSizeF(std::max(6.0, base.pointSizeF() * 0.72));
    return f;
}

// Dark text on light fills, white on dark ones (relative luminance, sRGB weights).
QColor text_on(const QColor& fill) {
    if (!fill.isValid()) return QColor(30, 30, 30);
    const double y = 0.2126 * fill.redF() + 0.7152 * fill.greenF() + 0.0722 * fill.blueF();
    return y > 0.55 ? QColor(20, 20, 20) : QColor(255, 255, 255);
}

}  // namespace

TokenFlowWidget::TokenFlowWidget(QWidget* parent) : QWidget(parent) {
    setMouseTracking(true);
    QFont f = font();
    f.setPointSizeF(f.pointSizeF() * 1.15);  // the text is the subject here, not a caption
    setFont(f);
    QSizePolicy sp(QSizePolicy::Preferred, QSizePolicy::Preferred);
    sp.setHeightForWidth(true);
    setSizePolicy(sp);
}

void TokenFlowWidget::setTokens(const QStringList& tokens) {
    tokens_ = tokens;
    highlighted_ = hovered_ = -1;
    relayout();
}

void TokenFlowWidget::setColors(const std::vector<QColor>& colors) {
    colors_ = colors;
    update();
}

void TokenFlowWidget::setCaptions(const QStringList& captions) {
    captions_ = captions;
    relayout();
}

void TokenFlowWidget::setHighlighted(int token) {
    if (token == highlighted_) return;
    highlighted_ = token;
    update();
}

QColor TokenFlowWidget::colorAt(int token) const {
    return token >= 0 && token < static_cast<int>(colors_.size()) ? colors_[token] : QColor();
}

QString TokenFlowWidget::readable(const QString& t) {
    if (t == QStringLiteral("\u2420") || t == QStringLiteral(" ")) {
        static const bool has_box = QFontMetrics(QFont()).inFont(QChar(0x2423));
        return has_box ? QStringLiteral("\u2423") : QStringLiteral("\u00B7");
    }
    if (t == QStringLiteral("\\n")) return QStringLiteral("\u21B5");
    if (t == QStringLiteral("\\t")) return QStringLiteral("\u2192");
    return t;
}

QString TokenFlowWidget::shown(int token) const { return readable(tokens_[token]); }

std::vector<QRect> TokenFlowWidget::layoutFor(int width, int* height) const {
    const QFontMetrics fm(font());
    const QFontMetrics cm(caption_font(font()));
    const bool captions = !captions_.isEmpty();
    const int box_h = fm.height() + 2 * kPadY + (captions ? cm.height() : 0);
    std::vector<QRect> rects;
    rects.reserve(static_cast<size_t>(tokens_.size()));
    int x = kMargin, y = kMargin;
    const int right = std::max(width - kMargin, kMargin + 40);
    for (int i = 0; i < tokens_.size(); ++i) {
        int w = std::max(kMinBox, fm.horizontalAdvance(shown(i)) + 2 * kPadX);
        if (captions && i < captions_.size())
            w = std::max(w, cm.horizontalAdvance(captions_[i]) + 2);
        if (x > kMargin && x + w > right) {
            x = kMargin;
            y += box_h + kGapY;
        }
        rects.emplace_back(x, y, w, box_h);
        x += w + kGapX;
        if (tokens_[i] == QStringLiteral("\\n")) {  // the text's own line breaks
            x = kMargin;
            y += box_h + kGapY;
        }
    }
    if (height) {
        const int bottom = rects.empty() ? y : rects.back().bottom() + 1;
        *height = bottom + kMargin;
    }
    return rects;
}

void TokenFlowWidget::relayout() {
    int h = 0;
    rects_ = layoutFor(width(), &h);
    if (minimumHeight() != h) setMinimumHeight(h);
    updateGeometry();
    update();
}

int TokenFlowWidget::heightForWidth(int width) const {
    int h = 0;
    layoutFor(width, &h);
    return h;
}

QSize TokenFlowWidget::sizeHint() const { return {420, heightForWidth(420)}; }

QSize TokenFlowWidget::minimumSizeHint() const {
    const QFontMetrics fm(font());
    return {120, fm.height() * 2 + 2 * kMargin};
}

QRect TokenFlowWidget::tokenRect(int token) const {
    return token >= 0 && token < static_cast<int>(rects_.size()) ? rects_[token] : QRect();
}

int TokenFlowWidget::tokenAt(const QPoint& pos) const {
    for (size_t i = 0; i < rects_.size(); ++i)
        if (rects_[i].adjusted(-kGapX / 2, -kGapY / 2, kGapX / 2, kGapY / 2).contains(pos))
            return static_cast<int>(i);
    return -1;
}

void TokenFlowWidget::paintEvent(QPaintEvent*) {
    QPainter p(this);
    p.setRenderHint(QPainter::Antialiasing);
    const QFont caption = caption_font(font());
    const QFontMetrics fm(font());
    for (size_t i = 0; i < rects_.size(); ++i) {
        const int ti = static_cast<int>(i);
        const QRectF r = QRectF(rects_[i]).adjusted(0.5, 0.5, -0.5, -0.5);
        const QColor fill = colorAt(ti);
        QPainterPath path;
        path.addRoundedRect(r, 3, 3);
        p.fillPath(path, fill.isValid() ? fill : palette().color(QPalette::AlternateBase));
        if (ti == highlighted_ || ti == hovered_) {
            p.setPen(QPen(palette().color(QPalette::WindowText), ti == highlighted_ ? 2.0 : 1.0));
            p.drawPath(path);
        }
        const QColor ink = text_on(fill);
        p.setPen(ink);
        p.setFont(font());
        const QRect text_rect(rects_[i].x(), rects_[i].y() + kPadY, rects_[i].width(), fm.height());
        p.drawText(text_rect, Qt::AlignCenter, shown(ti));
        if (ti < captions_.size()) {
            p.setFont(caption);
            QColor c = ink;
            c.setAlphaF(0.8);
            p.setPen(c);
            const QRect cap(rects_[i].x(), text_rect.bottom() + 1, rects_[i].width(),
                            rects_[i].bottom() - text_rect.bottom());
            p.drawText(cap, Qt::AlignHCenter | Qt::AlignTop, captions_[ti]);
        }
    }
}

void TokenFlowWidget::mouseMoveEvent(QMouseEvent* e) {
    const int t = tokenAt(e->position().toPoint());
    if (t != hovered_) {
        hovered_ = t;
        update();
        emit tokenHovered(t);
    }
}

void TokenFlowWidget::mousePressEvent(QMouseEvent* e) {
    const int t = tokenAt(e->position().toPoint());
    if (t >= 0) emit tokenClicked(t);
}

void TokenFlowWidget::leaveEvent(QEvent*) {
    if (hovered_ != -1) {
        hovered_ = -1;
        update();
        emit tokenHovered(-1);
    }
}

void TokenFlowWidget::resizeEvent(QResizeEvent*) {
    int h = 0;
    rects_ = layoutFor(width(), &h);
    // Inside a resizable scroll area the minimum height is what makes the area scroll.
    if (minimumHeight() != h) setMinimumHeight(h);
}

}  // namespace moe::views
