#pragma once
// A one-line label that elides its text in the middle to fit its width (a long path keeps its
// start and its file name) instead of forcing its dock wider; the whole text is the tooltip.
#include <QFrame>
#include <QString>

namespace moe::views {

class ElidedLabel : public QFrame {
    Q_OBJECT
public:
    explicit ElidedLabel(QWidget* parent = nullptr);

    void setText(const QString& text);
    QString text() const { return text_; }

    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;

protected:
    void paintEvent(QPaintEvent* event) override;

private:
    QString text_;
};

}  // namespace moe::views
