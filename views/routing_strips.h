#pragma once
// RoutingStrips: every MoE layer's routing of a text at once - one strip per layer, one cell per
// token in reading order, filled with the colour of the token's first expert (the inspector's
// palette) and captioned with its id; the tokens along the top, their boundaries drawn through
// every strip. Hovering a cell shows that token's experts, weights and scores in that layer.
// While the workbench generates, it grows token by token. Plain data in, nothing computed.
#include <QString>
#include <QWidget>

#include "routing_inspection_data.h"

namespace moe::views {

class RoutingStrips : public QWidget {
    Q_OBJECT
public:
    explicit RoutingStrips(QWidget* parent = nullptr);

    void setData(const RoutingInspectionData& data);
    int layers() const { return data_.n_layers(); }
    int tokens() const { return data_.n_tokens(); }
    // The cell under a point (layer, token), or (-1, -1).
    QPair<int, int> cellAt(const QPoint& pos) const;
    QRect cellRect(int layer, int token) const;
    // What hovering the cell shows ("" outside the data).
    QString cellText(int layer, int token) const;
    int firstExpert(int layer, int token) const;  // -1 outside the data

    int heightFor(int layers) const { return header_h_ + layers * cell_h_ + 2; }
    QSize sizeHint() const override;
    QSize minimumSizeHint() const override;

protected:
    void paintEvent(QPaintEvent* event) override;
    bool event(QEvent* event) override;  // tooltips

private:
    int labelWidth() const;
    RoutingInspectionData data_;
    int cell_w_ = 26, cell_h_ = 18, header_h_ = 20;
};

}  // namespace moe::views
