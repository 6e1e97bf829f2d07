#include "heatmap_plot.h"

#include <algorithm>
#include <cmath>

namespace moe::views {

QCPTextElement *add_plot_title(QCustomPlot *plot, const QString &text)
{
    plot->plotLayout()->insertRow(0);
    QFont font = plot->font();
    font.setBold(true);
    font.setPointSizeF(font.pointSizeF() * 1.05);
    auto *title = new QCPTextElement(plot, text, font);
    plot->plotLayout()->addElement(0, 0, title);
    return title;
}

void place_legend_beside(QCustomPlot *plot, int entries)
{
    QCPLegend *legend = plot->legend;
    legend->setVisible(entries > 0);
    if (legend->layout() == plot->axisRect()->insetLayout()) {
        plot->axisRect()->insetLayout()->take(legend);
        auto *side = new QCPLayoutGrid;
        const int row = plot->plotLayout()->rowCount() - 1;
        plot->plotLayout()->addElement(row, 1, side);
        side->addElement(0, 0, legend);
        plot->plotLayout()->setColumnStretchFactor(1, 0.001);
        QFont font = plot->font();
        font.setPointSizeF(font.pointSizeF() * 0.8);
        legend->setFont(font);
        legend->setRowSpacing(-2);
        legend->setColumnSpacing(4);
        legend->setIconSize(14, 8);
        legend->setBorderPen(Qt::NoPen);
        legend->setFillOrder(QCPLayoutGrid::foRowsFirst);
    }
    const int columns = std::max(1, (entries + 11) / 12);
    legend->setWrap(std::max(1, (entries + columns - 1) / columns));
}

HeatmapPlot::HeatmapPlot(QWidget *parent) : QCustomPlot(parent)
{
    setNoAntialiasingOnDrag(true);
    title_ = add_plot_title(this, QString());

    map_ = new QCPColorMap(xAxis, yAxis);
    map_->setInterpolate(false);
    map_->setTightBoundary(false);

    scale_ = new QCPColorScale(this);
    scale_->setType(QCPAxis::atRight);
    scale_->setBarWidth(12);
    plotLayout()->addElement(1, 1, scale_);
    map_->setColorScale(scale_);

    // Keep the colour bar exactly as tall as the map.
    auto *group = new QCPMarginGroup(this);
    axisRect()->setMarginGroup(QCP::msBottom | QCP::msTop, group);
    scale_->setMarginGroup(QCP::msBottom | QCP::msTop, group);

    xAxis->grid()->setVisible(false);
    yAxis->grid()->setVisible(false);
    xAxis->setTicks(true);
}

void HeatmapPlot::setTitle(const QString &text) { title_->setText(text); }

void HeatmapPlot::setColorLabel(const QString &text) { scale_->axis()->setLabel(text); }

void HeatmapPlot::setGradient(const QCPColorGradient &gradient) { map_->setGradient(gradient); }

void HeatmapPlot::setGrid(int nx, int ny, double x0, double x1, double y0, double y1)
{
    nx = std::max(nx, 1);
    ny = std::max(ny, 1);
    const double wx = (x1 - x0) / nx;
    const double wy = (y1 - y0) / ny;
    // QCPColorMap ranges name the CENTRES of the first and last cells.
    map_->data()->setSize(nx, ny);
    map_->data()->setRange(QCPRange(x0 + wx / 2, x1 - wx / 2), QCPRange(y0 + wy / 2, y1 - wy / 2));
    map_->data()->fill(std::nan(""));
    xAxis->setRange(x0, x1);
    yAxis->setRange(y0, y1);
}

void HeatmapPlot::setLabels(QCPAxis *axis, const QStringList &labels, int max_labels)
{
    if (!labels.isEmpty() && labels.size() <= max_labels) {
        QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
        for (int i = 0; i < labels.size(); ++i)
            ticker->addTick(i, labels[i]);
        axis->setTicker(ticker);
    } else {
        QSharedPointer<QCPAxisTickerFixed> ticker(new QCPAxisTickerFixed);
        ticker->setTickStep(1.0);
        ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
        axis->setTicker(ticker);
    }
}

void HeatmapPlot::setRowLabels(const QStringList &labels, int max_labels)
{
    row_labels_ = labels;
    setLabels(yAxis, labels, max_labels);
}

void HeatmapPlot::setColumnLabels(const QStringList &labels, int max_labels)
{
    col_labels_ = labels;
    setLabels(xAxis, labels, max_labels);
}

void HeatmapPlot::setColorRange(double lower, double upper)
{
    if (!(upper > lower))
        upper = lower + 1.0;
    map_->setDataRange(QCPRange(lower, upper));
}

void HeatmapPlot::setSymmetricColorRange(double max_abs)
{
    if (!(max_abs > 0) || !std::isfinite(max_abs))
        max_abs = 1e-3;
    map_->setDataRange(QCPRange(-max_abs, max_abs));
}

Matrix HeatmapPlot::toMatrix() const
{
    QCPColorMapData *cells = map_->data();
    Matrix m;
    m.rows = cells->valueSize();
    m.cols = cells->keySize();
    m.values.resize(static_cast<size_t>(m.rows) * m.cols);
    for (int r = 0; r < m.rows; ++r)
        for (int c = 0; c < m.cols; ++c)
            m.values[static_cast<size_t>(r) * m.cols + c] = cells->cell(c, r);
    double key = 0, value = 0;
    for (int r = 0; r < m.rows; ++r) {
        cells->cellToCoord(0, r, &key, &value);
        m.row_labels << (row_labels_.size() == m.rows ? row_labels_[r] : QString::number(value, 'g', 10));
    }
    for (int c = 0; c < m.cols; ++c) {
        cells->cellToCoord(c, 0, &key, &value);
        m.col_labels << (col_labels_.size() == m.cols ? col_labels_[c] : QString::number(key, 'g', 10));
    }
    return m;
}

}  // namespace moe::views
