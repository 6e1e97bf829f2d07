#include "heatmap_plot.h"

#include <algorithm>
#include <cmath>

namespace moe::views {

void style_training_plot(QCustomPlot *plot, const QString &title, const QString &y_label)
{
    plot->setNoAntialiasingOnDrag(true);
    add_plot_title(plot, title);
    plot->xAxis->setLabel("training step");
    plot->yAxis->setLabel(y_label);
    plot->yAxis->grid()->setPen(QPen(QColor(220, 220, 220), 0, Qt::DotLine));
    plot->xAxis->grid()->setPen(QPen(QColor(220, 220, 220), 0, Qt::DotLine));
    plot->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    plot->axisRect()->setRangeDrag(Qt::Horizontal);
    plot->axisRect()->setRangeZoom(Qt::Horizontal);
}

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
        // An empty cell below takes the spare height, so the entries stay packed at the top.
        side->addElement(1, 0, new QCPLayoutElement(plot));
        side->setRowStretchFactor(0, 0.001);
        side->setRowStretchFactor(1, 1);
        side->setMargins(QMargins(0, 8, 4, 0));
        plot->plotLayout()->setColumnStretchFactor(1, 0.001);
        QFont font = plot->font();
        font.setPointSizeF(font.pointSizeF() * 0.8);
        legend->setFont(font);
        legend->setRowSpacing(-2);
        legend->setColumnSpacing(4);
        legend->setIconSize(14, 8);
        legend->setBorderPen(Qt::NoPen);
    }
    const int columns = std::max(1, (entries + 11) / 12);
    legend->setWrap(std::max(1, (entries + columns - 1) / columns));
    legend->setFillOrder(QCPLayoutGrid::foRowsFirst, true);  // re-flow the existing entries
}

namespace {

// Training steps as 20k, 1.5M: shorter than 20000 and never clipped at the axis end.
class StepTicker : public QCPAxisTicker {
protected:
    QString getTickLabel(double tick, const QLocale &locale, QChar format, int precision) override
    {
        const double a = std::abs(tick);
        if (a >= 1e6)
            return QString::number(tick / 1e6, 'g', 4) + "M";
        if (a >= 1e4)
            return QString::number(tick / 1e3, 'g', 4) + "k";
        return QCPAxisTicker::getTickLabel(tick, locale, format, precision);
    }
};

}  // namespace

void use_step_ticker(QCPAxis *axis)
{
    axis->setTicker(QSharedPointer<QCPAxisTicker>(new StepTicker));
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
    split_x_ = nx == 1;
    split_y_ = ny == 1;
    if (split_x_) nx = 2;
    if (split_y_) ny = 2;
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

void HeatmapPlot::setCell(int ix, int iy, double value)
{
    for (int dx = 0; dx <= (split_x_ ? 1 : 0); ++dx)
        for (int dy = 0; dy <= (split_y_ ? 1 : 0); ++dy) map_->data()->setCell(ix + dx, iy + dy, value);
}

Matrix HeatmapPlot::toMatrix() const
{
    QCPColorMapData *cells = map_->data();
    Matrix m;
    m.rows = split_y_ ? 1 : cells->valueSize();
    m.cols = split_x_ ? 1 : cells->keySize();
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
