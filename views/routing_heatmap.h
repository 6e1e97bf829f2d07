#pragma once
// RoutingHeatmap: one MoE layer's gate for one text, tokens (rows, top to bottom) x experts
// (columns). Cells are the unbiased affinity scores (viridis, one flat cell per value); the
// experts each token was sent to are marked (filled dot = first choice, ring = the others); a
// thin strip above the experts shows the selection bias (diverging colours around zero).
#include <QStringList>

#include <qcustomplot.h>

#include "plot_data.h"
#include "routing_inspection_data.h"

namespace moe::views {

class RoutingHeatmap : public QCustomPlot {
    Q_OBJECT
public:
    explicit RoutingHeatmap(QWidget* parent = nullptr);

    // tokens [T]; layer holds scores [T*E], topk/weights [T*K], bias [E] (may be empty).
    void setRouting(const QStringList& tokens, int experts, int top_k, const RoutingLayer& layer,
                    const QString& title);
    void clearRouting();
    void setHighlightedToken(int token);  // row outline; -1 = none

    QCPColorMap* scoreMap() const { return scores_; }
    QCPColorMap* biasMap() const { return bias_; }
    int markerCount() const;  // chosen (token, expert) cells marked: T*K
    int tokenCount() const { return static_cast<int>(tokens_.size()); }
    int expertCount() const { return E_; }
    // The scores as a [tokens x experts] table (CSV export).
    Matrix scoreMatrix() const;

signals:
    void cellHovered(int token, int expert);  // -1, -1 when the mouse leaves the cells
    void expertClicked(int expert);

protected:
    void mouseMoveEvent(QMouseEvent* event) override;
    void mousePressEvent(QMouseEvent* event) override;
    void leaveEvent(QEvent* event) override;
    void resizeEvent(QResizeEvent* event) override;

private:
    bool cellAt(const QPointF& pos, int* token, int* expert) const;
    QString cellTooltip(int token, int expert) const;
    void updateTicks();   // token labels thinned to what the height can show
    void updateMarkerSize();

    QCPAxisRect* bias_rect_ = nullptr;
    QCPAxisRect* main_rect_ = nullptr;
    QCPColorMap* scores_ = nullptr;
    QCPColorMap* bias_ = nullptr;
    QCPColorScale* scale_ = nullptr;
    QCPTextElement* title_ = nullptr;
    QCPTextElement* bias_label_ = nullptr;
    QCPGraph* first_ = nullptr;   // top-1 markers
    QCPGraph* others_ = nullptr;  // slots 2..K
    QCPItemRect* row_ = nullptr;  // highlighted token

    QStringList tokens_;
    int E_ = 0, K_ = 0;
    RoutingLayer layer_;
};

}  // namespace moe::views
