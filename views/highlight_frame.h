#pragma once
// A coloured frame drawn over a widget to point at it (lesson steps). It is a transparent child
// of the target that follows its size and lets every mouse event through; deleting the target
// deletes it.
#include <QWidget>

namespace moe::views {

class HighlightFrame : public QWidget {
    Q_OBJECT
public:
    // The frame on `target` (one per target; an existing one is reused and shown).
    static HighlightFrame* show(QWidget* target, const QString& caption = {});
    // Removes every frame below `root` (root included).
    static void clearAll(QWidget* root);
    // Frames currently shown below root.
    static QList<HighlightFrame*> shown(QWidget* root);

    QWidget* target() const { return parentWidget(); }
    QString caption() const { return caption_; }

    static QColor color() { return QColor(0xff, 0x8c, 0x00); }

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;
    void paintEvent(QPaintEvent* event) override;

private:
    explicit HighlightFrame(QWidget* target);
    QString caption_;
};

}  // namespace moe::views
