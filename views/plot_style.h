#pragma once
// The look every plot of the workbench shares, applied on top of what each view draws: a
// minimum font size (legible at 1280x720 and on a projector) and, for presentation mode,
// larger fonts and thicker lines. A styled plot re-applies the style before each replot, so
// graphs and labels a view creates later follow it; each element's own values are remembered
// and come back when the style does.
#include <QtGlobal>

class QCustomPlot;
class QWidget;

namespace moe::views {

struct PlotStyle {
    double font_scale = 1.0;      // every text of the plot
    double line_scale = 1.0;      // curves and lines
    double min_point_size = 9.0;  // no text smaller than this after scaling
    bool operator==(const PlotStyle&) const = default;

    static PlotStyle normal() { return {}; }
    static PlotStyle presentation() { return {1.5, 2.0, 14.0}; }
};

// Styles one plot (and keeps it styled).
void apply_plot_style(QCustomPlot* plot, const PlotStyle& style);
// Every QCustomPlot below root, and the style new plots there get on their first replot is not
// automatic: call again after adding views.
void apply_plot_style_all(QWidget* root, const PlotStyle& style);
PlotStyle plot_style(const QCustomPlot* plot);  // normal() when never styled

}  // namespace moe::views
