#include "highlight_frame.h"

#include <QEvent>
#include <QPainter>

namespace moe::views {

HighlightFrame::HighlightFrame(QWidget* target) : QWidget(target) {
    setObjectName("highlightFrame");
    setAttribute(Qt::WA_TransparentForMouseEvents);
    setAttribute(Qt::WA_NoSystemBackground);
    target->installEventFilter(this);
    setGeometry(target->rect());
}

HighlightFrame* HighlightFrame::show(QWidget* target, const QString& caption) {
    if (!target) return nullptr;
    HighlightFrame* f = nullptr;
    for (QObject* c : target->children())
        if (auto* h = qobject_cast<HighlightFrame*>(c)) f = h;
    if (!f) f = new HighlightFrame(target);
    f->caption_ = caption;
    f->setGeometry(target->rect());
    f->QWidget::show();
    f->raise();
    f->update();
    return f;
}

void HighlightFrame::clearAll(QWidget* root) {
    if (!root) return;
    for (HighlightFrame* f : root->findChildren<HighlightFrame*>()) delete f;
}

QList<HighlightFrame*> HighlightFrame::shown(QWidget* root) {
    QList<HighlightFrame*> out;
    if (!root) return out;
    for (HighlightFrame* f : root->findChildren<HighlightFrame*>())
        if (!f->isHidden()) out << f;
    return out;
}

bool HighlightFrame::eventFilter(QObject* watched, QEvent* event) {
    if (watched == parentWidget() && event->type() == QEvent::Resize) {
        setGeometry(parentWidget()->rect());
        raise();  // above children the target created since
    }
    return false;
}

void HighlightFrame::paintEvent(QPaintEvent*) {
    QPainter p(this);
    p.setRenderHint(QPainter::Antialiasing);
    const qreal pw = 3.0 * std::max<qreal>(1.0, font().pointSizeF() / 10.0);
    p.setPen(QPen(color(), pw));
    p.setBrush(Qt::NoBrush);
    p.drawRoundedRect(QRectF(rect()).adjusted(pw / 2, pw / 2, -pw / 2, -pw / 2), 6, 6);
    const int w = int(pw);
    if (caption_.isEmpty()) return;
    QFont f = font();
    f.setBold(true);
    p.setFont(f);
    const QFontMetrics fm(f);
    const QRect box{w, w, fm.horizontalAdvance(caption_) + 12, fm.height() + 6};
    p.fillRect(box, color());
    p.setPen(Qt::white);
    p.drawText(box, Qt::AlignCenter, caption_);
}

}  // namespace moe::views
