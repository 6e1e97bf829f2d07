#pragma once
// A QCustomPlot holding one colour map with its colour scale and a title: the common frame of
// every heatmap in the expert and sparsity views. Cells are crisp (no interpolation) because
// each cell is one expert, token or step bucket, not a sample of a smooth field.
#include "plot_data.h"

#include <qcustomplot.h>

#include <QStringList>

namespace moe::views {

class HeatmapPlot : public QCustomPlot {
    Q_OBJECT
public:
    explicit HeatmapPlot(QWidget *parent = nullptr);

    QCPColorMap *colorMap() const { return map_; }
    QCPColorScale *colorScale() const { return scale_; }
    QCPTextElement *titleElement() const { return title_; }

    void setTitle(const QString &text);
    void setColorLabel(const QString &text);
    void setGradient(const QCPColorGradient &gradient);

    // nx x ny cells whose outer EDGES are [x0, x1] x [y0, y1]; the axes show exactly that area.
    // Cells start as NaN (drawn in the gradient's NaN colour or transparent).
    void setGrid(int nx, int ny, double x0, double x1, double y0, double y1);
    void setCell(int ix, int iy, double value);

    // Text labels for rows (y = 0, 1, ...) or columns (x = 0, 1, ...) when there are at most
    // max_labels of them; otherwise integer ticks so indices stay readable.
    void setRowLabels(const QStringList &labels, int max_labels = 40);
    void setColumnLabels(const QStringList &labels, int max_labels = 40);
    // Row 0 at the top, as in a table or a matrix.
    void setRowsTopDown(bool top_down) { yAxis->setRangeReversed(top_down); }

    void setColorRange(double lower, double upper);
    // [-max_abs, max_abs]: a diverging map's neutral middle stays at 0.
    void setSymmetricColorRange(double max_abs);

    // The cells as drawn, for CSV export: rows = y cells, columns = x cells, labelled with the
    // axis labels when set, else with the cell centres.
    Matrix toMatrix() const;

private:
    // QCPColorMap cannot draw a dimension of one cell (its range of cell centres is empty), so a
    // single row or column is stored as two identical half-cells.
    bool split_x_ = false, split_y_ = false;
    static void setLabels(QCPAxis *axis, const QStringList &labels, int max_labels);

    QCPColorMap *map_ = nullptr;
    QCPColorScale *scale_ = nullptr;
    QCPTextElement *title_ = nullptr;
    QStringList row_labels_;
    QStringList col_labels_;
};

// Shared look of the line and bar plots next to the heatmaps: a bold title row on top.
QCPTextElement *add_plot_title(QCustomPlot *plot, const QString &text);
// A plot over training steps: the title row, "training step" on x, dotted grids, horizontal
// drag and zoom.
void style_training_plot(QCustomPlot *plot, const QString &title, const QString &y_label);
// Moves the legend out of the axis rect to its right, in as many columns as `entries` needs
// (at most ~12 rows each), in a smaller font. Call after the title row exists.
void place_legend_beside(QCustomPlot *plot, int entries);
// Tick labels for training steps: 20k, 1.5M.
void use_step_ticker(QCPAxis *axis);

}  // namespace moe::views
