// moe-bar-figure: grouped bar charts from a CSV, rendered offscreen to PNG (the figures of the
// studies in docs/, e.g. scripts/qat-study.sh). Not a benchmark; it lives here with the other
// programs that make the documentation's figures and figures.
//   moe-bar-figure --csv IN.csv --out OUT.png [--title T] [--width 1100 --height 420]
//                  [--log PANEL]...   (that panel on a log axis; every value > 0)
// The CSV's first column names the groups (x axis); every other column header is
// "PANEL|SERIES": one panel (plot) per distinct PANEL, side by side in column order, one bar per
// SERIES in each group, its value written above it. Empty cells draw no bar.
#include <QApplication>
#include <QFile>
#include <QTextStream>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <vector>

#include <qcustomplot.h>
#include <CLI/CLI.hpp>

#include "plot_style.h"

namespace {

struct Column {
    QString panel, series;
    std::vector<double> values;  // NaN: no bar
};

const QColor kColors[] = {QColor(31, 119, 180), QColor(255, 127, 14), QColor(44, 160, 44),
                          QColor(214, 39, 40), QColor(148, 103, 189)};

}  // namespace

int main(int argc, char** argv) {
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM")) qputenv("QT_QPA_PLATFORM", "offscreen");
    CLI::App cli{"moe-bar-figure: grouped bar charts from a CSV, as PNG"};
    std::string csv, out, title;
    int width = 1100, height = 420;
    std::vector<std::string> log_panels;
    cli.add_option("--csv", csv, "Input: group,PANEL|SERIES,...")->required();
    cli.add_option("--out", out, "PNG to write")->required();
    cli.add_option("--title", title, "Title over the panels");
    cli.add_option("--width", width, "Pixels (the PNG is rendered at twice this)");
    cli.add_option("--height", height, "Pixels");
    cli.add_option("--log", log_panels, "A panel (its PANEL name) on a logarithmic axis");
    CLI11_PARSE(cli, argc, argv);
    QApplication app(argc, argv);

    QFile file(QString::fromStdString(csv));
    if (!file.open(QIODevice::ReadOnly | QIODevice::Text)) {
        std::fprintf(stderr, "%s: cannot open\n", csv.c_str());
        return 1;
    }
    QTextStream in(&file);
    const QStringList header = in.readLine().split(',');
    std::vector<Column> cols;
    for (qsizetype i = 1; i < header.size(); ++i) {
        const QStringList parts = header[i].split('|');
        if (parts.size() != 2) {
            std::fprintf(stderr, "%s: column \"%s\" is not PANEL|SERIES\n", csv.c_str(),
                         qPrintable(header[i]));
            return 1;
        }
        cols.push_back({parts[0].trimmed(), parts[1].trimmed(), {}});
    }
    QVector<QString> groups;
    for (int line = 2; !in.atEnd(); ++line) {
        const QString text = in.readLine();
        if (text.trimmed().isEmpty()) continue;
        const QStringList cells = text.split(',');
        if (cells.size() != header.size()) {
            std::fprintf(stderr, "%s:%d: %lld cells, the header has %lld\n", csv.c_str(), line,
                         static_cast<long long>(cells.size()),
                         static_cast<long long>(header.size()));
            return 1;
        }
        groups.push_back(cells[0].trimmed());
        for (size_t c = 0; c < cols.size(); ++c) {
            bool ok = false;
            const double v = cells[qsizetype(c) + 1].trimmed().toDouble(&ok);
            cols[c].values.push_back(ok ? v : std::numeric_limits<double>::quiet_NaN());
        }
    }

    QCustomPlot plot;
    plot.resize(width, height);
    plot.setAutoAddPlottableToLegend(false);  // each panel has its own legend
    plot.plotLayout()->clear();
    int row = 0;
    if (!title.empty()) {
        plot.plotLayout()->addElement(0, 0,
                                      new QCPTextElement(&plot, QString::fromStdString(title),
                                                         QFont("sans", 11, QFont::Bold)));
        row = 1;
    }
    auto* panels = new QCPLayoutGrid;
    plot.plotLayout()->addElement(row, 0, panels);
    std::vector<QString> panel_names;
    for (const Column& c : cols)
        if (std::find(panel_names.begin(), panel_names.end(), c.panel) == panel_names.end())
            panel_names.push_back(c.panel);
    QVector<double> ticks;
    for (int g = 0; g < groups.size(); ++g) ticks.push_back(g);
    std::vector<QCPBars*> all_bars;
    for (size_t p = 0; p < panel_names.size(); ++p) {
        const bool log = std::find(log_panels.begin(), log_panels.end(),
                                   panel_names[p].toStdString()) != log_panels.end();
        auto* rect = new QCPAxisRect(&plot);
        panels->addElement(0, int(p), rect);
        auto ticker = QSharedPointer<QCPAxisTickerText>::create();
        ticker->setTicks(ticks, groups);
        rect->axis(QCPAxis::atBottom)->setTicker(ticker);
        rect->axis(QCPAxis::atBottom)->setTickLabelRotation(groups.size() > 4 ? 25 : 0);
        rect->axis(QCPAxis::atBottom)->setRange(-0.6, groups.size() - 0.4);
        rect->axis(QCPAxis::atLeft)->setLabel(panel_names[p]);
        rect->axis(QCPAxis::atLeft)->grid()->setSubGridVisible(false);
        rect->axis(QCPAxis::atBottom)->grid()->setVisible(false);
        int in_panel = 0;
        for (const Column& c : cols) in_panel += c.panel == panel_names[p];
        const double bar_width = 0.8 / std::max(in_panel, 1);
        auto* legend = new QCPLegend;
        rect->insetLayout()->addElement(legend, Qt::AlignTop | Qt::AlignRight);
        legend->setLayer("legend");
        legend->setBrush(QColor(255, 255, 255, 220));
        double lo = log ? std::numeric_limits<double>::infinity() : 0, hi = 0;
        int n = 0;
        for (const Column& c : cols) {
            if (c.panel != panel_names[p]) continue;
            auto* bars = new QCPBars(rect->axis(QCPAxis::atBottom), rect->axis(QCPAxis::atLeft));
            bars->setName(c.series);
            const QColor color = kColors[n++ % 5];
            bars->setBrush(color);
            bars->setPen(color.darker(130));
            bars->setWidth(bar_width * 0.92);
            const double offset = (n - 1 - (in_panel - 1) / 2.0) * bar_width;  // n counted above
            all_bars.push_back(bars);
            QVector<double> x, y;
            for (size_t g = 0; g < c.values.size(); ++g)
                if (!std::isnan(c.values[g])) {
                    x.push_back(double(g) + offset);
                    y.push_back(c.values[g]);
                    lo = std::min(lo, c.values[g]);
                    hi = std::max(hi, c.values[g]);
                }
            bars->setData(x, y);
            legend->addItem(new QCPPlottableLegendItem(legend, bars));
        }
        QCPAxis* y = rect->axis(QCPAxis::atLeft);
        if (log) {
            if (!(lo > 0)) {
                std::fprintf(stderr, "%s: panel \"%s\" on a log axis needs values > 0\n",
                             csv.c_str(), qPrintable(panel_names[p]));
                return 1;
            }
            y->setScaleType(QCPAxis::stLogarithmic);
            y->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
            y->setNumberFormat("gb");
            y->setRange(lo / 3, hi * 4);
            for (QCPBars* b : all_bars)  // bars rise from the bottom edge: base + value = v
                if (b->valueAxis() == y) {
                    b->setBaseValue(lo / 3);
                    for (auto it = b->data()->begin(); it != b->data()->end(); ++it)
                        it->value -= lo / 3;
                }
        } else {
            const double pad = 0.25 * (hi - lo > 0 ? hi - lo : 1.0);
            y->setRange(lo < 0 ? lo - 0.05 * pad : 0, hi + pad);
        }
    }
    moe::views::apply_plot_style(&plot, moe::views::PlotStyle::normal());
    for (QCPBars* b : all_bars)
        for (int i = 0; i < b->dataCount(); ++i) {
            const double v = b->data()->at(i)->value + b->baseValue();
            auto* label = new QCPItemText(&plot);
            label->setClipAxisRect(b->keyAxis()->axisRect());
            label->position->setAxes(b->keyAxis(), b->valueAxis());
            label->position->setCoords(b->data()->at(i)->key, v);
            label->setPositionAlignment(Qt::AlignHCenter | Qt::AlignBottom);
            label->setText(QString::number(v, 'g', 3));
            label->setFont(QFont("sans", 8));
        }
    plot.replot();
    if (!plot.savePng(QString::fromStdString(out), width, height, 2.0)) {
        std::fprintf(stderr, "%s: cannot write the PNG\n", out.c_str());
        return 1;
    }
    std::printf("wrote %s\n", out.c_str());
    return 0;
}
