#pragma once
// TokenFlowWidget: a text drawn token by token, wrapped like prose, each token a small box
// filled with its own colour and an optional caption underneath (the routing inspector colours
// by the first expert and writes the expert id, so the colouring is readable without colour).
// Painted by hand rather than a QTextBrowser so hovering maps to a token exactly.
#include <QColor>
#include <QRect>
#include <QStringList>
#include <QWidget>

#include <vector>

namespace moe::views {

class TokenFlowWidget : public QWidget {
    Q_OBJECT
public:
    explicit TokenFlowWidget(QWidget* parent = nullptr);

    // A token's display string made printable in any font: the space symbol becomes an open
    // box (or a middle dot where the font lacks it), "\n" a return arrow.
    static QString readable(const QString& token);

    // Display strings ("␠" for a space, "\n" for a line break, as ByteTokenizer::token_display).
    void setTokens(const QStringList& tokens);
    // Per-token fill colours and captions; shorter lists leave the rest plain.
    void setColors(const std::vector<QColor>& colors);
    void setCaptions(const QStringList& captions);
    void setHighlighted(int token);  // outlined; -1 = none

    int tokenCount() const { return static_cast<int>(tokens_.size()); }
    QColor colorAt(int token) const;
    int highlighted() const { return highlighted_; }
    // Token under a point in widget coordinates, or -1.
    int tokenAt(const QPoint& pos) const;
    QRect tokenRect(int token) const;

    bool hasHeightForWidth() const override { return true; }
    int heightForWidth(int width) const override;
    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;

signals:
    void tokenHovered(int token);  // -1 when the mouse leaves the tokens
    void tokenClicked(int token);

protected:
    void paintEvent(QPaintEvent*) override;
    void mouseMoveEvent(QMouseEvent*) override;
    void mousePressEvent(QMouseEvent*) override;
    void leaveEvent(QEvent*) override;
    void resizeEvent(QResizeEvent*) override;

private:
    // Box of every token for a given width; the last entry of the result's height is the total.
    std::vector<QRect> layoutFor(int width, int* height) const;
    QString shown(int token) const;  // the glyphs drawn for a token
    void relayout();

    QStringList tokens_;
    std::vector<QColor> colors_;
    QStringList captions_;
    int highlighted_ = -1;
    int hovered_ = -1;
    std::vector<QRect> rects_;
};

}  // namespace moe::views
