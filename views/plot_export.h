#pragma once
// Export of any QCustomPlot as a figure (PNG, PDF, SVG) and of its data as CSV, with a context
// menu for people and plain functions for tests and scripts. Failures come back as false plus a
// message; nothing here throws or aborts on a bad path.
#include "plot_data.h"

#include <QString>

#include <functional>
#include <optional>
#include <vector>

class QCustomPlot;
class QMenu;
class QWidget;

namespace moe::views {

struct PlotStyle;

// What a view hands out for "Export as CSV": its curves and/or one grid.
struct CsvContent {
    QString x_name = QStringLiteral("x");  // header of the x column
    std::vector<Series> series;
    std::optional<Matrix> matrix;
};

// Figure export; the format follows the extension (.png, .pdf, .svg, case-insensitive).
// PNG is rendered at twice the widget's size so it stays crisp on slides and papers.
bool export_plot(QCustomPlot* plot, const QString& path, QString* error = nullptr);
bool export_png(QCustomPlot* plot, const QString& path, double scale = 2.0, QString* error = nullptr);
bool export_pdf(QCustomPlot* plot, const QString& path, QString* error = nullptr);
bool export_svg(QCustomPlot* plot, const QString& path, QString* error = nullptr);
// The figure in another style (presentation: large text, thick lines) whatever the plot shows
// now; the plot's own style is back afterwards.
bool export_plot_styled(QCustomPlot* plot, const QString& path, const PlotStyle& style,
                        QString* error = nullptr);

// CSV text. Series sharing one x vector are written wide (x, name1, name2, ...); otherwise long
// (series, x, y), which every spreadsheet and pandas reads. NaN is written as an empty cell.
QString csv_text(const std::vector<Series>& series, const QString& x_name = QStringLiteral("x"));
// Matrix: header row of column labels, then one row per matrix row led by its label.
QString csv_text(const Matrix& matrix);
QString csv_text(const CsvContent& content);

bool write_csv(const QString& path, const std::vector<Series>& series, QString* error = nullptr,
               const QString& x_name = QStringLiteral("x"));
bool write_csv(const QString& path, const Matrix& matrix, QString* error = nullptr);
bool write_csv(const QString& path, const CsvContent& content, QString* error = nullptr);

// Adds "Export as PNG / PDF / SVG / CSV..." entries to an existing menu (for views that build
// their own context menu).
void add_export_menu_entries(QMenu* menu, QWidget* owner, QCustomPlot* plot,
                             std::function<CsvContent()> data);

// Gives `plot` a right-click menu with the export entries; file dialogs are parented to owner.
// `data` may be empty, then the CSV entry is left out.
void add_export_actions(QWidget* owner, QCustomPlot* plot, std::function<CsvContent()> data);

}  // namespace moe::views
