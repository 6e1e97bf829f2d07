#include "plot_export.h"

#include "plot_style.h"

#include <QBuffer>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QImage>
#include <QImageWriter>
#include <QMenu>
#include <QMessageBox>
#include <QSaveFile>
#include <QSettings>
#include <QSvgGenerator>
#include <QTextStream>
#include <qcustomplot.h>

#include <cmath>

namespace moe::views {
namespace {

void set_error(QString* error, const QString& text) {
    if (error) *error = text;
}

// All writes go through QSaveFile: a failed export never leaves half a file behind.
bool write_bytes(const QString& path, const QByteArray& bytes, QString* error) {
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly)) {
        set_error(error, QStringLiteral("Cannot write %1: %2").arg(path, file.errorString()));
        return false;
    }
    if (file.write(bytes) != bytes.size() || !file.commit()) {
        set_error(error, QStringLiteral("Cannot write %1: %2").arg(path, file.errorString()));
        return false;
    }
    return true;
}

bool plot_ok(QCustomPlot* plot, QString* error) {
    if (!plot) {
        set_error(error, QStringLiteral("No plot to export"));
        return false;
    }
    return true;
}

// The size the figure is exported at: what the user sees, or a sane default for hidden widgets.
QSize export_size(QCustomPlot* plot) {
    QSize s = plot->size();
    if (s.width() < 50 || s.height() < 50) s = QSize(800, 500);
    return s;
}

QString number(double v) {
    if (std::isnan(v)) return {};
    return QString::number(v, 'g', 10);
}

QString quote(const QString& field) {
    if (!field.contains(QLatin1Char(',')) && !field.contains(QLatin1Char('"')) &&
        !field.contains(QLatin1Char('\n')))
        return field;
    QString q = field;
    q.replace(QLatin1String("\""), QLatin1String("\"\""));
    return QLatin1Char('"') + q + QLatin1Char('"');
}

}  // namespace

bool export_png(QCustomPlot* plot, const QString& path, double scale, QString* error) {
    if (!plot_ok(plot, error)) return false;
    const QSize s = export_size(plot);
    const QPixmap pixmap = plot->toPixmap(s.width(), s.height(), scale);
    QByteArray bytes;
    QBuffer buffer(&bytes);
    buffer.open(QIODevice::WriteOnly);
    QImageWriter writer(&buffer, "png");
    if (!writer.write(pixmap.toImage())) {
        set_error(error, QStringLiteral("PNG encoding failed: %1").arg(writer.errorString()));
        return false;
    }
    return write_bytes(path, bytes, error);
}

bool export_pdf(QCustomPlot* plot, const QString& path, QString* error) {
    if (!plot_ok(plot, error)) return false;
    // savePdf goes through QPrinter, which only warns on a bad path; check the folder first
    // and the result after, so the caller gets a real answer.
    const QFileInfo info(path);
    const QFileInfo dir(info.absolutePath());
    if (!dir.isDir() || !dir.isWritable() || (info.exists() && !info.isWritable())) {
        set_error(error, QStringLiteral("Cannot write %1: folder missing or not writable").arg(path));
        return false;
    }
    const QSize s = export_size(plot);
    if (!plot->savePdf(path, s.width(), s.height(), QCP::epNoCosmetic, QStringLiteral("MoE Workbench"),
                       plot->windowTitle())) {
        set_error(error, QStringLiteral("PDF export to %1 failed").arg(path));
        return false;
    }
    if (QFileInfo(path).size() <= 0) {
        set_error(error, QStringLiteral("PDF export to %1 wrote nothing").arg(path));
        return false;
    }
    return true;
}

bool export_svg(QCustomPlot* plot, const QString& path, QString* error) {
    if (!plot_ok(plot, error)) return false;
    // QCustomPlot has no SVG export: paint the plot through a QCPPainter onto an SVG generator.
    const QSize s = export_size(plot);
    QByteArray bytes;
    QBuffer buffer(&bytes);
    buffer.open(QIODevice::WriteOnly);
    QSvgGenerator generator;
    generator.setOutputDevice(&buffer);
    generator.setSize(s);
    generator.setViewBox(QRect(QPoint(0, 0), s));
    generator.setTitle(plot->windowTitle().isEmpty() ? QStringLiteral("MoE Workbench plot")
                                                     : plot->windowTitle());
    generator.setDescription(QStringLiteral("Exported from MoE Workbench"));
    QCPPainter painter;
    if (!painter.begin(&generator)) {
        set_error(error, QStringLiteral("SVG painter could not start"));
        return false;
    }
    painter.setMode(QCPPainter::pmVectorized);
    painter.setMode(QCPPainter::pmNoCaching);
    plot->toPainter(&painter, s.width(), s.height());
    painter.end();
    return write_bytes(path, bytes, error);
}

bool export_plot(QCustomPlot* plot, const QString& path, QString* error) {
    const QString suffix = QFileInfo(path).suffix().toLower();
    if (suffix == QLatin1String("png")) return export_png(plot, path, 2.0, error);
    if (suffix == QLatin1String("pdf")) return export_pdf(plot, path, error);
    if (suffix == QLatin1String("svg")) return export_svg(plot, path, error);
    set_error(error, QStringLiteral("Unknown figure format \"%1\" (use .png, .pdf or .svg)").arg(suffix));
    return false;
}

bool export_plot_styled(QCustomPlot* plot, const QString& path, const PlotStyle& style, QString* error) {
    if (!plot) return set_error(error, QStringLiteral("No plot to export")), false;
    const PlotStyle before = plot_style(plot);
    apply_plot_style(plot, style);
    plot->replot(QCustomPlot::rpImmediateRefresh);
    const bool ok = export_plot(plot, path, error);
    apply_plot_style(plot, before);
    return ok;
}

QString csv_text(const std::vector<Series>& series, const QString& x_name) {
    QString out;
    QTextStream ts(&out);
    bool shared_x = !series.empty();
    for (const Series& s : series) shared_x = shared_x && s.x == series.front().x && s.y.size() == s.x.size();
    if (shared_x) {
        ts << quote(x_name);
        for (const Series& s : series) ts << ',' << quote(s.name);
        ts << '\n';
        const auto& x = series.front().x;
        for (size_t i = 0; i < x.size(); ++i) {
            ts << number(x[i]);
            for (const Series& s : series) ts << ',' << number(s.y[i]);
            ts << '\n';
        }
    } else {
        ts << "series," << quote(x_name) << ",y\n";
        for (const Series& s : series) {
            const size_t n = std::min(s.x.size(), s.y.size());
            const QString name = quote(s.name);
            for (size_t i = 0; i < n; ++i) ts << name << ',' << number(s.x[i]) << ',' << number(s.y[i]) << '\n';
        }
    }
    ts.flush();
    return out;
}

QString csv_text(const Matrix& m) {
    QString out;
    QTextStream ts(&out);
    ts << "row";
    for (int c = 0; c < m.cols; ++c)
        ts << ',' << quote(c < m.col_labels.size() ? m.col_labels[c] : QString::number(c));
    ts << '\n';
    for (int r = 0; r < m.rows; ++r) {
        ts << quote(r < m.row_labels.size() ? m.row_labels[r] : QString::number(r));
        for (int c = 0; c < m.cols; ++c) {
            const size_t idx = static_cast<size_t>(r) * m.cols + c;
            ts << ',' << (idx < m.values.size() ? number(m.values[idx]) : QString());
        }
        ts << '\n';
    }
    ts.flush();
    return out;
}

QString csv_text(const CsvContent& content) {
    QString out;
    if (!content.series.empty()) out += csv_text(content.series, content.x_name);
    if (content.matrix) {
        if (!out.isEmpty()) out += QLatin1Char('\n');  // blank line between the two tables
        out += csv_text(*content.matrix);
    }
    return out;
}

bool write_csv(const QString& path, const std::vector<Series>& series, QString* error, const QString& x_name) {
    return write_bytes(path, csv_text(series, x_name).toUtf8(), error);
}

bool write_csv(const QString& path, const Matrix& matrix, QString* error) {
    return write_bytes(path, csv_text(matrix).toUtf8(), error);
}

bool write_csv(const QString& path, const CsvContent& content, QString* error) {
    return write_bytes(path, csv_text(content).toUtf8(), error);
}

namespace {

QString last_dir() {
    return QSettings().value(QStringLiteral("export/last_dir"), QDir::homePath()).toString();
}

void remember_dir(const QString& path) {
    QSettings().setValue(QStringLiteral("export/last_dir"), QFileInfo(path).absolutePath());
}

QString suggested_name(QCustomPlot* plot, const QString& ext) {
    QString base = plot->objectName().isEmpty() ? QStringLiteral("plot") : plot->objectName();
    return QDir(last_dir()).filePath(base + QLatin1Char('.') + ext);
}

void report(QWidget* owner, bool ok, const QString& error) {
    if (!ok) QMessageBox::warning(owner, QStringLiteral("Export failed"), error);
}

}  // namespace

void add_export_menu_entries(QMenu* menu, QWidget* owner, QCustomPlot* plot, std::function<CsvContent()> data) {
    struct Format {
        const char* label;
        const char* ext;
        const char* filter;
    };
    static const Format formats[] = {{"Export as PNG...", "png", "PNG image (*.png)"},
                                     {"Export as PDF...", "pdf", "PDF document (*.pdf)"},
                                     {"Export as SVG...", "svg", "SVG drawing (*.svg)"}};
    for (const Format& f : formats) {
        QObject::connect(menu->addAction(QString::fromLatin1(f.label)), &QAction::triggered, owner,
                         [owner, plot, f] {
                             const QString path = QFileDialog::getSaveFileName(
                                 owner, QString::fromLatin1(f.label).remove(QLatin1String("...")),
                                 suggested_name(plot, QString::fromLatin1(f.ext)), QString::fromLatin1(f.filter));
                             if (path.isEmpty()) return;
                             remember_dir(path);
                             QString error;
                             const bool ok = QFileInfo(path).suffix().isEmpty()
                                                 ? export_plot(plot, path + '.' + f.ext, &error)
                                                 : export_plot(plot, path, &error);
                             report(owner, ok, error);
                         });
    }
    // For slides: large text and thick lines whatever the window shows now.
    QObject::connect(menu->addAction(QStringLiteral("Export as PNG for slides (presentation style)...")),
                     &QAction::triggered, owner, [owner, plot] {
                         QString path = QFileDialog::getSaveFileName(owner, QStringLiteral("Export for slides"),
                                                                     suggested_name(plot, QStringLiteral("png")),
                                                                     QStringLiteral("PNG image (*.png);;PDF document (*.pdf);;SVG drawing (*.svg)"));
                         if (path.isEmpty()) return;
                         if (QFileInfo(path).suffix().isEmpty()) path += QStringLiteral(".png");
                         remember_dir(path);
                         QString error;
                         report(owner, export_plot_styled(plot, path, PlotStyle::presentation(), &error), error);
                     });
    if (data) {
        QObject::connect(menu->addAction(QStringLiteral("Export data as CSV...")), &QAction::triggered, owner,
                         [owner, plot, data] {
                             QString path = QFileDialog::getSaveFileName(owner, QStringLiteral("Export data as CSV"),
                                                                         suggested_name(plot, QStringLiteral("csv")),
                                                                         QStringLiteral("CSV table (*.csv)"));
                             if (path.isEmpty()) return;
                             if (QFileInfo(path).suffix().isEmpty()) path += QStringLiteral(".csv");
                             remember_dir(path);
                             QString error;
                             report(owner, write_csv(path, data(), &error), error);
                         });
    }
}

void add_export_actions(QWidget* owner, QCustomPlot* plot, std::function<CsvContent()> data) {
    plot->setContextMenuPolicy(Qt::CustomContextMenu);
    QObject::connect(plot, &QWidget::customContextMenuRequested, owner, [owner, plot, data](const QPoint& pos) {
        QMenu menu(owner);
        add_export_menu_entries(&menu, owner, plot, data);
        menu.exec(plot->mapToGlobal(pos));
    });
}

}  // namespace moe::views
