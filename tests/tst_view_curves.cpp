// Training-curves view: smoothing and downsampling known answers, the view with synthetic runs
// (ranges, legend, x axis kinds, log axis, smoothing), figure and CSV export, a 1e6-step run's
// load and redraw times, and a screenshot for a person to look at.
#include "colormap.h"
#include "plot_export.h"
#include "series_processing.h"
#include "training_curves_view.h"

#include <QDir>
#include <QElapsedTimer>
#include <QFile>
#include <QImage>
#include <QMouseEvent>
#include <QTemporaryDir>
#include <QtTest>
#include <qcustomplot.h>

#include <cmath>
#include <random>

using namespace moe::views;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A plausible small MoE run: loss falling towards a floor, MTP a bit above, a shrinking aux
// loss, warm-up + cosine LR, a spiky gradient norm, steady throughput, evals every n/20 steps.
RunCurves synthetic_run(const QString& name, int n, double tokens_per_step, double floor, unsigned seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> noise(0.0, 1.0);
    RunCurves r;
    r.run_name = name;
    const double sec_per_step = tokens_per_step / 60000.0;
    double wall = 0.0;
    for (int s = 1; s <= n; ++s) {
        const double t = double(s) / n;
        wall += sec_per_step * (1.0 + 0.05 * noise(rng));
        r.step.push_back(s);
        r.tokens.push_back(s * tokens_per_step);
        r.wall_s.push_back(wall);
        const double clean = floor + 3.4 * std::exp(-t * 9.0) + 0.25 * (1.0 - t);
        r.loss.push_back(clean + 0.07 * noise(rng));
        r.mtp_loss.push_back(clean + 0.35 + 0.09 * noise(rng));
        r.aux_loss.push_back(0.0025 + 0.012 * std::exp(-t * 6.0) + 0.0006 * noise(rng));
        const double warm = 0.05;
        r.lr.push_back(t < warm ? 3e-4 * t / warm
                                : 3e-5 + 0.5 * (3e-4 - 3e-5) * (1 + std::cos(M_PI * (t - warm) / (1 - warm))));
        double g = 0.45 + 1.8 * std::exp(-t * 12.0) + 0.06 * std::abs(noise(rng));
        if (s % 997 == 0) g *= 3.0;  // occasional spikes
        r.grad_norm.push_back(g);
        r.tokens_per_s.push_back(tokens_per_step / sec_per_step * (1.0 + 0.03 * noise(rng)));
    }
    r.eval.labels = {QStringLiteral("arithmetic"), QStringLiteral("copy"), QStringLiteral("sort")};
    r.eval.label_loss.resize(3);
    for (int s = n / 20; s <= n; s += n / 20) {
        const double t = double(s) / n;
        const double base = floor + 3.4 * std::exp(-t * 9.0) + 0.3 * (1.0 - t) + 0.05;
        r.eval.step.push_back(s);
        r.eval.loss.push_back(base);
        r.eval.label_loss[0].push_back(base + 0.35);
        r.eval.label_loss[1].push_back(base - 0.4 * t);
        r.eval.label_loss[2].push_back(base + 0.1 * (1 - t));
    }
    return r;
}

// The y values a graph holds, in key order.
std::vector<double> graph_values(QCPGraph* g) {
    std::vector<double> v;
    for (auto it = g->data()->constBegin(); it != g->data()->constEnd(); ++it) v.push_back(it->value);
    return v;
}

QStringList legend_names(QCustomPlot* plot) {
    QStringList names;
    for (int i = 0; i < plot->legend->itemCount(); ++i)
        if (auto* item = qobject_cast<QCPPlottableLegendItem*>(plot->legend->item(i)))
            names << item->plottable()->name();
    return names;
}

QString screenshot_dir() {
    QString dir = qEnvironmentVariable("MOE_SCREENSHOT_DIR");
    if (dir.isEmpty()) dir = QDir::temp().filePath(QStringLiteral("moe-screenshots"));
    QDir().mkpath(dir);
    return dir;
}

}  // namespace

class TestViewCurves : public QObject {
    Q_OBJECT
private slots:
    void emaKnownAnswers();
    void emaIncrementalMatchesWhole();
    void downsampleKeepsExtremes();
    void downsampleRangeAndGaps();
    void helpers();
    void colormaps();
    void viewTwoRuns();
    void viewAppendAndFollow();
    void exportFiles();
    void csvText();
    void millionSteps();
    void screenshot();
};

void TestViewCurves::emaKnownAnswers() {
    // The first smoothed value equals the first point (de-biasing removes the pull to 0).
    const std::vector<double> y{5.0, 1.0, 3.0};
    QCOMPARE(ema_smooth(y, 0.9)[0], 5.0);
    // Hand-computed: w = 0.5, y = {1, 2}: acc = 0.5, 1.25; de-bias 0.5, 0.75.
    const auto two = ema_smooth(std::vector<double>{1.0, 2.0}, 0.5);
    QCOMPARE(two[0], 1.0);
    QVERIFY(std::abs(two[1] - 1.25 / 0.75) < 1e-12);
    // A constant stays constant for every weight.
    for (double w : {0.0, 0.3, 0.9, 0.99}) {
        const auto c = ema_smooth(std::vector<double>(500, 2.75), w);
        for (double v : c) QVERIFY2(std::abs(v - 2.75) < 1e-9, qPrintable(QString::number(w)));
    }
    // Weight 0 is the identity.
    QCOMPARE(ema_smooth(y, 0.0), y);
    // NaN passes through and does not count: {1, NaN, 3} at w = 0.5 -> 1, NaN, 1.75 / 0.75.
    const auto gap = ema_smooth(std::vector<double>{1.0, kNaN, 3.0}, 0.5);
    QCOMPARE(gap[0], 1.0);
    QVERIFY(std::isnan(gap[1]));
    QVERIFY(std::abs(gap[2] - 1.75 / 0.75) < 1e-12);
    // Leading NaN: the first finite point is still returned as is.
    const auto lead = ema_smooth(std::vector<double>{kNaN, kNaN, 4.0, 4.0}, 0.8);
    QVERIFY(std::isnan(lead[0]) && std::isnan(lead[1]));
    QCOMPARE(lead[2], 4.0);
}

void TestViewCurves::emaIncrementalMatchesWhole() {
    std::vector<double> y(10000);
    std::mt19937 rng(3);
    std::normal_distribution<double> nd;
    for (double& v : y) v = nd(rng);
    const auto whole = ema_smooth(y, 0.95);
    EmaState s;
    s.weight = 0.95;
    std::vector<double> parts;
    ema_smooth_append(std::span<const double>(y).subspan(0, 3333), s, parts);
    ema_smooth_append(std::span<const double>(y).subspan(3333), s, parts);
    QCOMPARE(parts.size(), whole.size());
    for (std::size_t i = 0; i < y.size(); ++i) QCOMPARE(parts[i], whole[i]);
}

void TestViewCurves::downsampleKeepsExtremes() {
    const std::size_t n = 200000, buckets = 500;
    std::vector<double> x(n), y(n);
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> u(-1.0, 1.0);
    for (std::size_t i = 0; i < n; ++i) x[i] = double(i), y[i] = u(rng);
    y[123457] = 9.5;   // global max
    y[77] = -7.25;     // global min
    const XY d = downsample_minmax(x, y, buckets);
    QVERIFY(d.x.size() <= 2 * buckets + 2);
    QVERIFY(d.x.size() > buckets);
    QCOMPARE(d.x.front(), 0.0);
    QCOMPARE(d.x.back(), double(n - 1));
    QVERIFY(std::is_sorted(d.x.begin(), d.x.end()));
    QCOMPARE(*std::max_element(d.y.begin(), d.y.end()), 9.5);
    QCOMPARE(*std::min_element(d.y.begin(), d.y.end()), -7.25);

    // A single spike on a flat line survives, at its own x.
    std::vector<double> flat(n, 1.0);
    flat[98765] = 50.0;
    const XY s = downsample_minmax(x, flat, buckets);
    const auto it = std::find(s.y.begin(), s.y.end(), 50.0);
    QVERIFY(it != s.y.end());
    QCOMPARE(s.x[std::size_t(it - s.y.begin())], 98765.0);

    // Small inputs come back unchanged.
    const std::vector<double> sx{0, 1, 2}, sy{3, 4, 5};
    const XY small = downsample_minmax(sx, sy, 100);
    QCOMPARE(small.x, sx);
    QCOMPARE(small.y, sy);
    QVERIFY(downsample_minmax(std::vector<double>{}, std::vector<double>{}, 10).x.empty());
}

void TestViewCurves::downsampleRangeAndGaps() {
    const std::size_t n = 100000;
    std::vector<double> x(n), y(n);
    for (std::size_t i = 0; i < n; ++i) x[i] = double(i), y[i] = std::sin(i * 0.001);
    // A zoomed range keeps only that range plus one neighbour each side.
    const XY d = downsample_minmax(x, y, 40000.0, 60000.0, 100);
    QCOMPARE(d.x.front(), 39999.0);
    QCOMPARE(d.x.back(), 60001.0);
    QVERIFY(d.x.size() <= 2 * 100 + 2);
    // Zoomed in far enough, every point is kept.
    const XY close = downsample_minmax(x, y, 500.0, 550.0, 100);
    QCOMPARE(close.x.size(), std::size_t(53));
    // A NaN run stays a gap after downsampling.
    for (std::size_t i = 50000; i < 50100; ++i) y[i] = kNaN;
    const XY g = downsample_minmax(x, y, 300);
    QVERIFY(std::any_of(g.y.begin(), g.y.end(), [](double v) { return std::isnan(v); }));
}

void TestViewCurves::helpers() {
    const std::vector<double> x{0, 10, 20, 30};
    QCOMPARE(nearest_index(x, -5), 0L);
    QCOMPARE(nearest_index(x, 14), 1L);
    QCOMPARE(nearest_index(x, 16), 2L);
    QCOMPARE(nearest_index(x, 99), 3L);
    QCOMPARE(nearest_index(std::vector<double>{}, 1), -1L);
    const std::vector<double> step{1, 2, 3}, tokens{100, 200, 300};
    const auto at = interpolate_at(step, tokens, std::vector<double>{1.5, 3, 4});
    QCOMPARE(at[0], 150.0);
    QCOMPARE(at[1], 300.0);
    QCOMPARE(at[2], 400.0);  // linear beyond the end
    QCOMPARE(si_format(1500000), QStringLiteral("1.5M"));
    QCOMPARE(si_format(250000), QStringLiteral("250k"));
    QCOMPARE(si_format(12), QStringLiteral("12"));
    QCOMPARE(duration_format(42), QStringLiteral("0:42"));
    QCOMPARE(duration_format(3 * 3600 + 4 * 60 + 10), QStringLiteral("3:04:10"));
    double lo = 0, hi = 0;
    QVERIFY(y_range_in(x, std::vector<double>{-1, 2, kNaN, 5}, 5, 30, true, lo, hi));
    QCOMPARE(lo, 2.0);
    QCOMPARE(hi, 5.0);
}

void TestViewCurves::colormaps() {
    QVERIFY(category_count() >= 12);
    QSet<QRgb> distinct;
    for (int i = 0; i < category_count(); ++i) distinct.insert(category_color(i).rgb());
    QCOMPARE(int(distinct.size()), category_count());
    QCOMPARE(category_color(category_count()), category_color(0));  // cycles
    // Viridis runs dark to light; the diverging map is light in the middle, dark at the ends.
    QVERIFY(map_color(0).lightness() < map_color(0.5).lightness());
    QVERIFY(map_color(0.5).lightness() < map_color(1).lightness());
    QVERIFY(diverging_color(0).lightness() > 230);
    QVERIFY(diverging_color(-1).lightness() < 120 && diverging_color(1).lightness() < 120);
    QVERIFY(diverging_color(-1).blue() > diverging_color(-1).red());
    QVERIFY(diverging_color(1).red() > diverging_color(1).blue());
    QCOMPARE(viridis_gradient().color(0.0, QCPRange(0, 1)), map_color(0.0).rgb());
}

void TestViewCurves::viewTwoRuns() {
    TrainingCurvesView view;
    view.resize(1500, 900);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.setRuns({synthetic_run("dense-bias", 5000, 4096, 1.9, 1), synthetic_run("aux-loss", 3000, 8192, 2.1, 2)});
    view.flush();
    QCOMPARE(view.runCount(), 2);

    QCustomPlot* loss = view.plot(TrainingCurvesView::PanelLoss);
    QCOMPARE(loss->xAxis->range().lower, 1.0);
    QCOMPARE(loss->xAxis->range().upper, 5000.0);
    const QCPRange y = loss->yAxis->range();
    QVERIFY2(y.lower > 1.0 && y.lower < 2.2 && y.upper > 4.5 && y.upper < 8.0,
             qPrintable(QStringLiteral("%1 .. %2").arg(y.lower).arg(y.upper)));
    const QStringList names = legend_names(loss);
    QVERIFY2(names.contains("dense-bias") && names.contains("aux-loss"), qPrintable(names.join(", ")));
    QVERIFY(names.contains("MTP (dashed)"));
    const QStringList eval_names = legend_names(view.plot(TrainingCurvesView::PanelEval));
    QVERIFY2(eval_names.contains("aux-loss") && eval_names.contains("sort"), qPrintable(eval_names.join(", ")));
    // All plots share the x range.
    QCOMPARE(view.plot(TrainingCurvesView::PanelLr)->xAxis->range().upper, 5000.0);
    // Downsampled to about two points per pixel, never the whole run.
    QVERIFY(view.graph(0, Metric::Loss, true)->dataCount() <= 2 * 2 * loss->axisRect()->width() + 2);

    // X by tokens: the longest run in tokens is aux-loss (3000 * 8192).
    view.setXAxis(XAxisKind::Tokens);
    view.flush();
    QCOMPARE(loss->xAxis->range().upper, 3000.0 * 8192);
    QCOMPARE(loss->xAxis->label(), x_axis_title(XAxisKind::Tokens));
    // Eval points move with the axis.
    QCOMPARE(view.graph(1, Metric::EvalLoss, true)->data()->at(view.graph(1, Metric::EvalLoss, true)->dataCount() - 1)->key, 3000.0 * 8192);
    view.setXAxis(XAxisKind::WallTime);
    view.flush();
    QVERIFY(loss->xAxis->range().upper > 100 && loss->xAxis->range().upper < 1000);
    view.setXAxis(XAxisKind::Step);
    view.flush();

    // Log axis.
    view.setLogY(true);
    view.flush();
    QCOMPARE(loss->yAxis->scaleType(), QCPAxis::stLogarithmic);
    QVERIFY(loss->yAxis->range().lower > 0);
    QVERIFY(view.plot(TrainingCurvesView::PanelLr)->yAxis->range().lower > 0);  // LR starts at ~0
    view.setLogY(false);

    // Smoothing: 0 draws raw data only; 0.9 changes the strong curve and keeps the faint raw one.
    view.setSmoothing(0.0);
    view.flush();
    QCPGraph* smooth = view.graph(0, Metric::Loss, true);
    QCPGraph* raw = view.graph(0, Metric::Loss, false);
    QVERIFY(!raw->visible());
    const auto unsmoothed = graph_values(smooth);
    view.setSmoothing(0.9);
    view.flush();
    QVERIFY(raw->visible());
    QCOMPARE(graph_values(raw), unsmoothed);
    const auto smoothed = graph_values(smooth);
    QVERIFY(smoothed != unsmoothed);
    QVERIFY(raw->pen().color().alphaF() < 0.3);
    QVERIFY(smooth->pen().color().alphaF() > 0.99);
    // Smoothing reduces the jitter: sum of squared differences between neighbours.
    auto roughness = [](const std::vector<double>& v) {
        double s = 0;
        for (std::size_t i = 1; i < v.size(); ++i) s += (v[i] - v[i - 1]) * (v[i] - v[i - 1]);
        return s / double(v.size());
    };
    QVERIFY(roughness(smoothed) < 0.2 * roughness(unsmoothed));
}

void TestViewCurves::viewAppendAndFollow() {
    TrainingCurvesView view;
    view.resize(1200, 700);
    const RunCurves full = synthetic_run("live", 2000, 4096, 2.0, 5);
    RunCurves first = full;
    for (auto* v : {&first.step, &first.tokens, &first.wall_s, &first.loss, &first.mtp_loss, &first.aux_loss,
                    &first.lr, &first.grad_norm, &first.tokens_per_s})
        v->resize(1000);
    first.eval = {};
    view.setRuns({first});
    view.flush();
    QCustomPlot* loss = view.plot(TrainingCurvesView::PanelLoss);
    QCOMPARE(loss->xAxis->range().upper, 1000.0);
    // setRuns with grown rows: follows the newest data, and the incremental smoothing equals a
    // full recomputation.
    view.setRuns({full});
    view.flush();
    QCOMPARE(loss->xAxis->range().upper, 2000.0);
    const auto incremental = graph_values(view.graph(0, Metric::Loss, true));
    TrainingCurvesView fresh;
    fresh.resize(1200, 700);
    fresh.setRuns({full});
    fresh.flush();
    QCOMPARE(incremental.size(), graph_values(fresh.graph(0, Metric::Loss, true)).size());
    // Eval appeared: graphs rebuilt, eval panel filled.
    QVERIFY(view.graph(0, Metric::EvalLoss, true) != nullptr);

    // appendRows extends the run.
    RunCurves more;
    more.run_name = "live";
    for (int s = 2001; s <= 2500; ++s) {
        more.step.push_back(s);
        more.tokens.push_back(s * 4096.0);
        more.wall_s.push_back(s * 0.07);
        more.loss.push_back(2.0);
        more.mtp_loss.push_back(2.3);
        more.aux_loss.push_back(0.003);
        more.lr.push_back(3e-5);
        more.grad_norm.push_back(0.5);
        more.tokens_per_s.push_back(60000);
    }
    view.appendRows(more);
    view.flush();
    QCOMPARE(loss->xAxis->range().upper, 2500.0);
    // Not following: the range stays where it was.
    view.setFollowLive(false);
    for (double& s : more.step) s += 500;
    view.appendRows(more);
    view.flush();
    QCOMPARE(loss->xAxis->range().upper, 2500.0);
    view.setFollowLive(true);
    view.flush();
    QCOMPARE(loss->xAxis->range().upper, 3000.0);
}

void TestViewCurves::exportFiles() {
    TrainingCurvesView view;
    view.resize(1500, 900);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.setRuns({synthetic_run("a", 3000, 4096, 1.9, 1), synthetic_run("b", 3000, 4096, 2.1, 2)});
    view.flush();
    QCustomPlot* plot = view.plot(TrainingCurvesView::PanelLoss);
    QTemporaryDir dir;
    QVERIFY(dir.isValid());
    QString error;

    const QString png = dir.filePath("loss.png");
    QVERIFY2(export_plot(plot, png, &error), qPrintable(error));
    const QImage image(png);
    QVERIFY(!image.isNull());
    QCOMPARE(image.size(), plot->size() * 2);

    const QString pdf = dir.filePath("loss.pdf");
    QVERIFY2(export_plot(plot, pdf, &error), qPrintable(error));
    QFile pdf_file(pdf);
    QVERIFY(pdf_file.open(QIODevice::ReadOnly));
    QVERIFY(pdf_file.read(5) == "%PDF-");

    const QString svg = dir.filePath("loss.svg");
    QVERIFY2(export_plot(plot, svg, &error), qPrintable(error));
    QFile svg_file(svg);
    QVERIFY(svg_file.open(QIODevice::ReadOnly));
    const QByteArray svg_text = svg_file.readAll();
    QVERIFY(svg_text.contains("<svg"));
    QVERIFY(svg_text.size() > 2000);

    const QString csv = dir.filePath("loss.csv");
    QVERIFY2(write_csv(csv, view.csvFor(TrainingCurvesView::PanelLoss), &error), qPrintable(error));
    QFile csv_file(csv);
    QVERIFY(csv_file.open(QIODevice::ReadOnly));
    const QByteArray header = csv_file.readLine();
    QVERIFY2(header.startsWith("step,a,"), header.constData());
    QVERIFY(csv_file.size() > 3000 * 10);

    // Bad paths report an error and do not crash.
    for (const char* ext : {"png", "pdf", "svg"}) {
        error.clear();
        QVERIFY(!export_plot(plot, QStringLiteral("/nonexistent-dir/x.") + ext, &error));
        QVERIFY(!error.isEmpty());
    }
    error.clear();
    QVERIFY(!export_plot(plot, dir.filePath("x.bmpx"), &error));
    QVERIFY(error.contains("bmpx"));
    error.clear();
    QVERIFY(!write_csv("/nonexistent-dir/x.csv", std::vector<Series>{}, &error));
    QVERIFY(!error.isEmpty());
    QVERIFY(!export_plot(nullptr, png, &error));
}

void TestViewCurves::csvText() {
    // Shared x: wide table; NaN as an empty cell; names with commas quoted.
    const std::vector<Series> wide{{"a", {1, 2}, {0.5, kNaN}}, {"b,c", {1, 2}, {3, 4}}};
    QCOMPARE(csv_text(wide, "step"), QStringLiteral("step,a,\"b,c\"\n1,0.5,3\n2,,4\n"));
    // Different x: long table.
    const std::vector<Series> lng{{"a", {1}, {2}}, {"b", {5, 6}, {7, 8}}};
    QCOMPARE(csv_text(lng), QStringLiteral("series,x,y\na,1,2\nb,5,7\nb,6,8\n"));
    Matrix m;
    m.rows = 2;
    m.cols = 2;
    m.values = {1, 2, 3, 4};
    m.row_labels = {"L0", "L1"};
    m.col_labels = {"e0", "e1"};
    QCOMPARE(csv_text(m), QStringLiteral("row,e0,e1\nL0,1,2\nL1,3,4\n"));
}

void TestViewCurves::millionSteps() {
    const int n = 1000000;
    RunCurves big = synthetic_run("1M steps", n, 4096, 2.0, 11);
    TrainingCurvesView view;
    view.resize(1500, 900);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));

    QElapsedTimer t;
    t.start();
    view.setRuns({big});
    view.flush();
    const double load_ms = double(t.nsecsElapsed()) / 1e6;

    // A redraw after a zoom (re-downsample of every curve + replot of six plots).
    QCustomPlot* loss = view.plot(TrainingCurvesView::PanelLoss);
    double worst_ms = 0, sum_ms = 0;
    const int reps = 10;
    for (int i = 0; i < reps; ++i) {
        loss->xAxis->setRange(1, n - i * 1000);
        t.restart();
        view.flush();
        const double ms = double(t.nsecsElapsed()) / 1e6;
        worst_ms = std::max(worst_ms, ms);
        sum_ms += ms;
    }
    // Live append of 1000 rows to the 1e6-step run.
    RunCurves more;
    more.run_name = big.run_name;
    for (int s = n + 1; s <= n + 1000; ++s) {
        more.step.push_back(s);
        more.tokens.push_back(s * 4096.0);
        more.wall_s.push_back(big.wall_s.back() + (s - n) * 0.07);
        more.loss.push_back(2.0);
        more.mtp_loss.push_back(2.3);
        more.aux_loss.push_back(0.003);
        more.lr.push_back(3e-5);
        more.grad_norm.push_back(0.5);
        more.tokens_per_s.push_back(60000);
    }
    view.setFollowLive(true);
    t.restart();
    view.appendRows(more);
    view.flush();
    const double append_ms = double(t.nsecsElapsed()) / 1e6;
    // Changing the smoothing re-smooths six million-point curves.
    t.restart();
    view.setSmoothing(0.95);
    view.flush();
    const double resmooth_ms = double(t.nsecsElapsed()) / 1e6;

    qInfo("1e6 steps: setRuns + first draw %.1f ms; redraw after zoom mean %.1f ms, worst %.1f ms; "
          "append 1000 rows + draw %.1f ms; re-smooth + draw %.1f ms",
          load_ms, sum_ms / reps, worst_ms, append_ms, resmooth_ms);
    QCOMPARE(loss->xAxis->range().upper, double(n + 1000));
    // Only bounds that catch a hang: speed (targets 2 s and 50 ms) is measured by
    // moe-bench-gui, not asserted on a machine of unknown speed and load.
    QVERIFY2(load_ms < 60000, qPrintable(QString::number(load_ms)));
    QVERIFY2(worst_ms < 10000, qPrintable(QString::number(worst_ms)));
}

void TestViewCurves::screenshot() {
    TrainingCurvesView view;
    view.resize(1500, 900);
    view.setWindowTitle("Training curves");
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.setRuns({synthetic_run("bias balancing", 20000, 4096, 1.9, 1),
                  synthetic_run("aux loss only", 14000, 8192, 2.1, 2)});
    view.flush();
    // Hover the loss plot, so the screenshot shows the readout.
    QCustomPlot* loss = view.plot(TrainingCurvesView::PanelLoss);
    const QPointF pos(loss->xAxis->coordToPixel(6000), loss->axisRect()->center().y());
    QMouseEvent move(QEvent::MouseMove, pos, loss->mapToGlobal(pos), Qt::NoButton, Qt::NoButton, Qt::NoModifier);
    QApplication::sendEvent(loss, &move);
    QApplication::processEvents();
    const QString path = QDir(screenshot_dir()).filePath("view_curves.png");
    QVERIFY(view.grab().save(path));
    qInfo("screenshot: %s", qPrintable(path));

    view.setXAxis(XAxisKind::Tokens);
    view.setLogY(true);
    view.flush();
    const QString path2 = QDir(screenshot_dir()).filePath("view_curves_tokens_log.png");
    QVERIFY(view.grab().save(path2));
}

QTEST_MAIN(TestViewCurves)
#include "tst_view_curves.moc"
