// GUI tests of the Quantization view with synthetic data: the number grids drawn over the
// histograms (E4M3, E5M2, FP16, BF16 from their bit layouts), the tensor list's filtering and
// sorting, the empty states, several runs overlaid, exports, and screenshots for a person to judge.
#include "heatmap_plot.h"
#include "number_grid.h"
#include "plot_export.h"
#include "quant_tensor_list.h"
#include "quantization_view.h"
#include "training_curves_view.h"

#include "store/run_writer.h"
#include "workbench/main_window.h"
#include "workbench/run_controller.h"

#include <QApplication>
#include <QDir>
#include <QDockWidget>
#include <QStandardPaths>
#include <QFileInfo>
#include <QMouseEvent>
#include <QScrollBar>
#include <QTemporaryDir>
#include <QtTest>
#include <qcustomplot.h>

#include <cmath>
#include <cstdint>

using namespace moe::views;

namespace {

double noise(uint64_t i) {
    i ^= i >> 33;
    i *= 0xff51afd7ed558ccdULL;
    i ^= i >> 33;
    i *= 0xc4ceb9fe1a85ec53ULL;
    i ^= i >> 33;
    return double(i >> 40) / double(1ULL << 24);
}

// The linear layers of a tiny DeepSeek-V3-like model: 4 layers (layer 0 dense), 8 experts each
// in the MoE layers, plus the head: about 200 weights.
QStringList tiny_weights() {
    QStringList w;
    for (int l = 0; l < 4; ++l) {
        const QString p = QStringLiteral("model.layers.%1.").arg(l);
        for (const char* a : {"q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"})
            w << p + "self_attn." + a + ".weight";
        if (l == 0) {
            for (const char* m : {"gate_proj", "up_proj", "down_proj"}) w << p + "mlp." + m + ".weight";
            continue;
        }
        for (int e = 0; e < 16; ++e)
            for (const char* m : {"gate_proj", "up_proj", "down_proj"})
                w << p + QStringLiteral("mlp.experts.%1.").arg(e) + m + ".weight";
        for (const char* m : {"gate_proj", "up_proj", "down_proj"}) w << p + "mlp.shared_experts." + m + ".weight";
    }
    w << QStringLiteral("lm_head.weight");
    return w;
}

// A run whose error falls slightly over training; fp8 errors ~3-7%, bf16 ~0.3%.
QuantRunData make_run(const QString& name, const QString& precision, int rows, int every = 50) {
    QuantRunData run;
    run.run_name = name;
    run.precision = precision;
    const QStringList weights = tiny_weights();
    for (const QString& w : weights) {
        run.tensors.push_back({w, QuantRole::Weight});
        run.tensors.push_back({w + "@input", QuantRole::Activation});
        run.tensors.push_back({w + "@grad", QuantRole::Gradient});
    }
    const bool fp8 = precision == "fp8";
    if (fp8) {
        run.scale_grids.push_back({"model.layers.1.self_attn.q_b_proj.weight", 6, 12});
        run.scale_grids.push_back({"model.layers.2.mlp.experts.3.down_proj.weight", 4, 8});
    }
    const int Q = run.tensorCount(), bins = run.bins.count;
    for (int r = 0; r < rows; ++r) {
        QuantRowData d;
        d.step = double((r + 1) * every);
        run.steps.push_back(d.step);
        const double progress = double(r) / std::max(rows - 1, 1);
        for (int q = 0; q < Q; ++q) {
            const QuantRole role = run.tensors[size_t(q)].role;
            const double base = fp8 ? (role == QuantRole::Gradient ? 0.065 : role == QuantRole::Activation ? 0.036 : 0.031)
                                    : (role == QuantRole::Gradient ? 0.0041 : 0.0031);
            // A few outlier tensors with a worse error, and a gentle drift over training.
            const double outlier = (q % 97 == 5) ? 2.2 : 1.0;
            const double rel = base * outlier * (1.0 + 0.25 * (noise(uint64_t(q) * 7 + 1) - 0.5)) * (1.0 + 0.15 * progress);
            d.rel_error.push_back(float(rel));
            d.snr_db.push_back(float(-20.0 * std::log10(rel)));
            d.amax.push_back(float(role == QuantRole::Gradient ? 1e-3 * (1 + noise(uint64_t(q))) : 0.5 + 2 * noise(uint64_t(q) + 3)));
            d.frac_saturated.push_back(float(fp8 && role == QuantRole::Gradient && q % 13 == 0 ? 2e-4 : 0.0));
            d.frac_flushed.push_back(float(fp8 ? 0.002 * noise(uint64_t(q) + 11) : 0.0));
            d.value_zeros.push_back(role == QuantRole::Activation ? 120 : 0);
            // |x / scale|: a log-normal-ish bump whose top lands near the format's max.
            const double top = fp8 ? std::log2(448.0) : std::log2(0.5 + 2 * noise(uint64_t(q) + 3));
            const double mid = top - 3.2 - (role == QuantRole::Gradient ? 2.0 : 0.0), sd = role == QuantRole::Gradient ? 2.2 : 1.4;
            for (int b = 0; b < bins; ++b) {
                const double x = run.bins.binLo(b) + 0.125;
                double c = x > top + 0.25 ? 0.0 : 40000.0 * std::exp(-0.5 * std::pow((x - mid) / sd, 2));
                d.value_hist.push_back(uint32_t(std::floor(c)));
            }
            // Errors relative to amax: around 2^-(M+1) below the largest values.
            const double emid = fp8 ? -9.0 : -13.0;
            for (int b = 0; b < bins; ++b) {
                const double x = run.bins.binLo(b) + 0.125;
                d.error_hist.push_back(uint32_t(std::floor(30000.0 * std::exp(-0.5 * std::pow((x - emid) / 1.8, 2)))));
            }
        }
        for (const ScaleGrid& g : run.scale_grids)
            for (int i = 0; i < g.size(); ++i) {
                const bool hot = i == g.size() / 3;  // an outlier tile
                d.scales.push_back(float(std::ldexp(1.0 + noise(uint64_t(i) * 3 + r), -12 + (hot ? 4 : 0) + (i % g.cols) / 4)));
            }
        run.rows.push_back(std::move(d));
    }
    return run;
}

QString screenshot_dir() {
    const QString dir = qEnvironmentVariable("MOE_SCREENSHOT_DIR");
    if (!dir.isEmpty()) QDir().mkpath(dir);
    return dir;
}

void save_screenshot(QWidget* w, const QString& name) {
    const QString dir = screenshot_dir();
    if (dir.isEmpty()) {
        qInfo("MOE_SCREENSHOT_DIR not set; no screenshot %s", qPrintable(name));
        return;
    }
    const QString path = QDir(dir).filePath(name);
    // Plots replot on the next event-loop turn: let them before grabbing.
    QApplication::processEvents();
    QTest::qWait(30);
    QApplication::processEvents();
    QVERIFY(w->grab().save(path));
    qInfo("screenshot: %s", qPrintable(path));
}

void show_and_settle(QWidget* w, QSize size) {
    w->resize(size);
    w->show();
    QVERIFY(QTest::qWaitForWindowExposed(w));
    QApplication::processEvents();
    QTest::qWait(60);
    QApplication::processEvents();
}

}  // namespace

class TestViewQuant : public QObject {
    Q_OBJECT
private slots:
    void numberGridE4M3();
    void numberGridOtherFormats();
    void tensorNames();
    void sortingAndFiltering();
    void viewListFollowsControls();
    void histogramAndGrid();
    void emptyStates();
    void liveRunKeepsNewestStep();
    void severalRunsOverlaid();
    void exports();
    void screenshots();
    void curvesShowPrecisionAndLossScale();
    void workbenchFeedsViewFromRunFile();
};

void TestViewQuant::numberGridE4M3() {
    const NumberGrid g = number_grid(GridFormat::E4M3);
    QCOMPARE(g.name, QStringLiteral("E4M3"));
    QCOMPARE(g.max_finite, 448.0);
    QCOMPARE(g.min_subnormal, std::ldexp(1.0, -9));
    QCOMPARE(g.min_normal, std::ldexp(1.0, -6));
    // 448 = 2^8.807: the last grid position; 2^-9 the first.
    QVERIFY(std::abs(g.log2_values.back() - 8.807354922057604) < 1e-12);
    QCOMPARE(g.log2_values.front(), -9.0);
    // 7 subnormals, 15 binades of 8 normals, less the NaN code S.1111.111: 126 positive values.
    QCOMPARE(int(g.log2_values.size()), 7 + 15 * 8 - 1);
    QVERIFY(std::is_sorted(g.log2_values.begin(), g.log2_values.end()));
    // 8 values per binade among the normals: [1, 2) holds 1, 1.125, ..., 1.875.
    int in_binade = 0;
    for (double x : g.log2_values) in_binade += x >= 0.0 && x < 1.0;
    QCOMPARE(in_binade, 8);
    QCOMPARE(g.valuesPerBinade(), 8);
    for (int m = 0; m < 8; ++m) {
        const double want = std::log2(1.0 + m / 8.0);
        QVERIFY(std::any_of(g.log2_values.begin(), g.log2_values.end(), [&](double x) { return std::abs(x - want) < 1e-12; }));
    }
    // Subnormals are evenly spaced in value: 1..7 x 2^-9.
    for (int m = 1; m < 8; ++m) QVERIFY(std::abs(g.log2_values[size_t(m - 1)] - std::log2(m * std::ldexp(1.0, -9))) < 1e-12);
    QCOMPARE(g.flushBelow(), std::ldexp(1.0, -10));
    QCOMPARE(grid_format_for_precision("fp8"), GridFormat::E4M3);
    QCOMPARE(grid_format_for_precision("bf16"), GridFormat::BF16);
    QCOMPARE(grid_format_for_precision("fp16"), GridFormat::FP16);
}

void TestViewQuant::numberGridOtherFormats() {
    const NumberGrid e5 = number_grid(GridFormat::E5M2);
    QCOMPARE(e5.max_finite, 57344.0);
    QCOMPARE(e5.min_subnormal, std::ldexp(1.0, -16));
    QCOMPARE(std::exp2(e5.log2_values.back()), 57344.0);
    QCOMPARE(int(e5.log2_values.size()), 3 + 30 * 4);
    const NumberGrid h = number_grid(GridFormat::FP16);
    QCOMPARE(h.max_finite, 65504.0);
    QCOMPARE(h.min_subnormal, std::ldexp(1.0, -24));
    QCOMPARE(std::exp2(h.log2_values.back()), 65504.0);
    QCOMPARE(int(h.log2_values.size()), 1023 + 30 * 1024);
    const NumberGrid b = number_grid(GridFormat::BF16);
    QCOMPARE(b.valuesPerBinade(), 128);
    QCOMPARE(b.min_subnormal, std::ldexp(1.0, -133));
    QCOMPARE(b.min_normal, std::ldexp(1.0, -126));
    QCOMPARE(std::exp2(b.log2_values.back()), double(3.3895313892515355e38));
}

void TestViewQuant::tensorNames() {
    QCOMPARE(tensor_layer("model.layers.12.mlp.experts.3.down_proj.weight@input"), 12);
    QCOMPARE(tensor_layer("lm_head.weight"), -1);
    QCOMPARE(short_tensor_name("model.layers.12.mlp.down_proj.weight@input"), QStringLiteral("layers.12.mlp.down_proj @in"));
    QCOMPARE(short_tensor_name("model.layers.1.self_attn.o_proj.weight@grad"), QStringLiteral("layers.1.self_attn.o_proj @grad"));
    QCOMPARE(short_tensor_name("lm_head.weight"), QStringLiteral("lm_head"));
    QCOMPARE(compact_tensor_name("model.layers.12.mlp.experts.3.down_proj.weight@input"), QStringLiteral("L12 e3.down @in"));
    QCOMPARE(compact_tensor_name("model.layers.1.self_attn.q_b_proj.weight@grad"), QStringLiteral("L1 attn.q_b @grad"));
    QCOMPARE(compact_tensor_name("model.layers.2.mlp.shared_experts.up_proj.weight"), QStringLiteral("L2 shared.up"));
    QCOMPARE(compact_tensor_name("lm_head.weight"), QStringLiteral("head"));
    QVERIFY(natural_less("model.layers.2.x", "model.layers.10.x"));
    QVERIFY(!natural_less("model.layers.10.x", "model.layers.2.x"));
    QVERIFY(natural_less("a.experts.3.up", "a.experts.12.up"));
    QCOMPARE(quant_role_from("", "x@grad"), QuantRole::Gradient);
    QCOMPARE(quant_role_from("activation", "x"), QuantRole::Activation);
}

void TestViewQuant::sortingAndFiltering() {
    QuantRunData run;
    run.precision = "fp8";
    run.steps = {10};
    for (const char* k : {"model.layers.10.mlp.down_proj.weight", "model.layers.2.mlp.down_proj.weight",
                          "model.layers.2.mlp.down_proj.weight@input", "lm_head.weight", "model.layers.2.mlp.up_proj.weight@grad"})
        run.tensors.push_back({k, quant_role_from({}, k)});
    QuantRowData row;
    row.rel_error = {0.03f, 0.05f, 0.01f, 0.04f, NAN};
    row.snr_db = {30.f, 26.f, 40.f, 28.f, NAN};
    run.rows = {row};

    // Worst first; the tensor without a value last.
    QCOMPARE(order_tensors(run, row, QuantSort::ByError, QuantMetric::RelError, RoleFilter::All, {}),
             (std::vector<int>{1, 3, 0, 2, 4}));
    // SNR: the lowest first.
    QCOMPARE(order_tensors(run, row, QuantSort::ByError, QuantMetric::SnrDb, RoleFilter::All, {}),
             (std::vector<int>{1, 3, 0, 2, 4}));
    // Names in reading order: layers.2 before layers.10.
    QCOMPARE(order_tensors(run, row, QuantSort::ByName, QuantMetric::RelError, RoleFilter::All, {}),
             (std::vector<int>{3, 1, 2, 4, 0}));
    // Layer order, tensors outside the layers last.
    QCOMPARE(order_tensors(run, row, QuantSort::ByLayer, QuantMetric::RelError, RoleFilter::All, {}),
             (std::vector<int>{1, 2, 4, 0, 3}));
    QCOMPARE(order_tensors(run, row, QuantSort::ByError, QuantMetric::RelError, RoleFilter::Weights, {}),
             (std::vector<int>{1, 3, 0}));
    QCOMPARE(order_tensors(run, row, QuantSort::ByError, QuantMetric::RelError, RoleFilter::Activations, {}),
             (std::vector<int>{2}));
    QCOMPARE(order_tensors(run, row, QuantSort::ByError, QuantMetric::RelError, RoleFilter::Gradients, {}),
             (std::vector<int>{4}));
    // Text: every word, case-insensitive.
    QCOMPARE(order_tensors(run, row, QuantSort::ByName, QuantMetric::RelError, RoleFilter::All, "LAYERS.2 down"),
             (std::vector<int>{1, 2}));
    QVERIFY(order_tensors(run, row, QuantSort::ByName, QuantMetric::RelError, RoleFilter::All, "nothing").empty());
}

void TestViewQuant::viewListFollowsControls() {
    QuantizationView view;
    QuantizationData data;
    data.runs.push_back(make_run("run-fp8", "fp8", 12));
    const QuantRunData& run = data.runs.front();
    QVERIFY(run.tensorCount() > 500);
    view.setData(data);
    show_and_settle(&view, {1400, 900});
    QVERIFY(!view.emptyStateShown());
    QCOMPARE(view.stepIndex(), 11);
    QCOMPARE(view.gridFormat(), GridFormat::E4M3);

    // Top N by default, worst first.
    QCOMPARE(int(view.shownTensors().size()), QuantizationView::kTopN);
    QCOMPARE(view.matchingTensorCount(), run.tensorCount());
    const QuantRowData last = run.rows.back();
    for (size_t i = 1; i < view.shownTensors().size(); ++i)
        QVERIFY(last.rel_error[size_t(view.shownTensors()[i - 1])] >= last.rel_error[size_t(view.shownTensors()[i])]);
    // The worst tensor is selected by default.
    QCOMPARE(view.selectedTensors(), QStringList{run.tensors[size_t(view.shownTensors().front())].key});

    view.setShowAll(true);
    QCOMPARE(int(view.shownTensors().size()), run.tensorCount());
    QVERIFY(view.visibleRows() >= 20);
    QVERIFY(view.visibleRows() < run.tensorCount());
    // Scrolling moves the visible window of bars.
    auto* scroll = view.findChild<QScrollBar*>("quantBarScroll");
    QVERIFY(scroll && scroll->isVisible());
    scroll->setValue(100);
    QCOMPARE(view.firstVisibleRow(), 100);
    QCOMPARE(view.barPlot()->yAxis->range().lower, 99.5);

    view.setRoleFilter(RoleFilter::Gradients);
    QCOMPARE(view.matchingTensorCount(), run.tensorCount() / 3);
    for (int t : view.shownTensors()) QCOMPARE(run.tensors[size_t(t)].role, QuantRole::Gradient);
    view.setRoleFilter(RoleFilter::All);
    view.setTextFilter("layers.2 experts.3 down");
    QCOMPARE(view.matchingTensorCount(), 3);  // weight, @input, @grad
    view.setSort(QuantSort::ByName);
    QCOMPARE(run.tensors[size_t(view.shownTensors()[0])].key, QStringLiteral("model.layers.2.mlp.experts.3.down_proj.weight"));
    QCOMPARE(run.tensors[size_t(view.shownTensors()[1])].key, QStringLiteral("model.layers.2.mlp.experts.3.down_proj.weight@grad"));
    view.setTextFilter(QString());
    view.setSort(QuantSort::ByLayer);
    QCOMPARE(tensor_layer(run.tensors[size_t(view.shownTensors().front())].key), 0);
    QCOMPARE(run.tensors[size_t(view.shownTensors().back())].key.left(7), QStringLiteral("lm_head"));

    // SNR: the lowest first.
    view.setSort(QuantSort::ByError);
    view.setMetric(QuantMetric::SnrDb);
    for (size_t i = 1; i < view.shownTensors().size(); ++i)
        QVERIFY(last.snr_db[size_t(view.shownTensors()[i - 1])] <= last.snr_db[size_t(view.shownTensors()[i])]);

    // The tooltip names everything a user asks about a bar.
    const int t = view.shownTensors().front();
    const QString tip = view.tensorTooltip(t);
    for (const char* word : {"relative error", "SNR", "amax", "saturated", "flushed", "gradient"})
        QVERIFY2(tip.contains(word), qPrintable(tip));
    QVERIFY(tip.contains(run.tensors[size_t(t)].key));

    // Clicking a bar selects it; Ctrl-click adds it.
    view.setMetric(QuantMetric::RelError);
    view.barPlot()->replot();
    scroll->setValue(0);
    const int y = int(view.barPlot()->yAxis->coordToPixel(2));
    const int x = view.barPlot()->axisRect()->center().x();
    QTest::mouseClick(view.barPlot(), Qt::LeftButton, Qt::NoModifier, QPoint(x, y));
    QCOMPARE(view.selectedTensors(), QStringList{run.tensors[size_t(view.shownTensors()[2])].key});
    const int y3 = int(view.barPlot()->yAxis->coordToPixel(3));
    QTest::mouseClick(view.barPlot(), Qt::LeftButton, Qt::ControlModifier, QPoint(x, y3));
    QCOMPARE(view.selectedTensors().size(), 2);
    QCOMPARE(view.trainingPlot()->graphCount(), 2);
}

void TestViewQuant::histogramAndGrid() {
    QuantizationView view;
    QuantizationData data;
    data.runs.push_back(make_run("run-fp8", "fp8", 3));
    view.setData(data);
    show_and_settle(&view, {1400, 900});
    const QuantRunData& run = view.data().runs.front();
    const QString key = "model.layers.1.self_attn.q_b_proj.weight";
    view.selectTensor(key);
    QCOMPARE(view.histogramGraph()->dataCount(), run.bins.count + 1);
    // Bin positions follow the run's bins: bin 0 at -24, width 0.25.
    QCOMPARE(view.histogramGraph()->data()->at(0)->key, -24.0);
    QCOMPARE(view.histogramGraph()->data()->at(1)->key, -23.75);
    // The E4M3 grid in view: every tick is a representable magnitude, 448 and 2^-9 among them.
    const NumberGrid& g = view.numberGrid();
    QCOMPARE(g.format, GridFormat::E4M3);
    const auto* ticks = view.gridTicks()->data().data();
    QCOMPARE(ticks->size(), int(g.log2_values.size()));
    QVERIFY(std::abs(ticks->at(ticks->size() - 1)->key - std::log2(448.0)) < 1e-12);
    QCOMPARE(ticks->at(0)->key, -9.0);
    // The x range covers the format: from below the flush threshold to above the max.
    QVERIFY(view.histogramPlot()->xAxis->range().lower < -10);
    QVERIFY(view.histogramPlot()->xAxis->range().upper > std::log2(448.0));
    // Another format: E5M2 reaches 2^-16 .. 57344.
    view.setGridFormat(GridFormat::E5M2);
    QCOMPARE(view.gridTicks()->data()->at(0)->key, -16.0);
    view.setGridFormat(GridFormat::BF16);
    QVERIFY(view.gridTicks()->dataCount() > 1000);  // the band of a dense format, within the bins
    // The error histogram has no format grid.
    view.setHistogramKind(QuantizationView::HistogramKind::Errors);
    QVERIFY(!view.gridTicks()->visible());
    QCOMPARE(view.histogramPlot()->xAxis->label(), QStringLiteral("log2 (|Q(x) − x| / amax)"));
    view.setHistogramKind(QuantizationView::HistogramKind::Values);
    QCOMPARE(view.histogramPlot()->xAxis->label(), QStringLiteral("log2 |x / scale|"));
    QCOMPARE(view.histogramPlot()->yAxis->scaleType(), QCPAxis::stLogarithmic);

    // Block scales: log2 of each scale, rows x cols with the axes named.
    view.setScaleGrid(0);
    const Matrix m = view.scalePlot()->toMatrix();
    QCOMPARE(m.rows, 6);
    QCOMPARE(m.cols, 12);
    const float s00 = run.rows.back().scales[0];
    QVERIFY(std::abs(m.at(0, 0) - std::log2(double(s00))) < 1e-9);
    QCOMPARE(view.scalePlot()->xAxis->label(), QStringLiteral("block column"));
    QCOMPARE(view.scalePlot()->yAxis->label(), QStringLiteral("block row"));
    QCOMPARE(view.scalePlot()->colorScale()->axis()->label(), QStringLiteral("log2 scale"));
}

void TestViewQuant::emptyStates() {
    QuantizationView view;
    view.setData({});
    QVERIFY(view.emptyStateShown());
    QVERIFY(view.emptyStateText().contains("No run open"));

    QuantizationData fp32;
    QuantRunData r;
    r.run_name = "baseline";
    r.precision = "fp32";
    fp32.runs.push_back(r);
    view.setData(fp32);
    QVERIFY(view.emptyStateShown());
    QCOMPARE(view.emptyStateText(),
             QStringLiteral("This run trains in fp32: nothing is quantized. Start a run with precision fp8, bf16 or "
                            "fp16 to see quantization error."));
    show_and_settle(&view, {900, 600});
    save_screenshot(&view, "quant_empty_fp32.png");

    QuantizationData live;
    QuantRunData l = make_run("live-fp8", "fp8", 0);
    l.live = true;
    live.runs.push_back(l);
    view.setData(live);
    QVERIFY(view.emptyStateShown());
    QVERIFY(view.emptyStateText().startsWith("No quantization data yet"));
    QVERIFY(view.emptyStateText().contains("live-fp8 (fp8)"));

    // Once a row arrives the view fills in.
    live.runs.front() = make_run("live-fp8", "fp8", 1);
    live.runs.front().live = true;
    view.setData(live);
    QVERIFY(!view.emptyStateShown());
    QCOMPARE(view.stepIndex(), 0);
}

void TestViewQuant::liveRunKeepsNewestStep() {
    QuantizationView view;
    QuantizationData d;
    d.runs.push_back(make_run("live", "fp8", 4));
    d.runs.front().live = true;
    view.setData(d);
    view.selectTensor("lm_head.weight@grad");
    view.setRoleFilter(RoleFilter::Gradients);
    QCOMPARE(view.stepIndex(), 3);
    d.runs.front() = make_run("live", "fp8", 6);
    d.runs.front().live = true;
    view.setData(d);
    // Newest step followed; selection and filters kept.
    QCOMPARE(view.stepIndex(), 5);
    QCOMPARE(view.selectedTensors().front(), QStringLiteral("lm_head.weight@grad"));
    QCOMPARE(view.roleFilter(), RoleFilter::Gradients);
    // Looking at an older step: it stays there when rows arrive.
    view.setStepIndex(1);
    d.runs.front() = make_run("live", "fp8", 8);
    d.runs.front().live = true;
    view.setData(d);
    QCOMPARE(view.stepIndex(), 1);

    // Rows read on demand through the loader, as the workbench does.
    QuantRunData lazy = make_run("lazy", "bf16", 5);
    std::vector<QuantRowData> store = std::move(lazy.rows);
    lazy.rows.clear();
    int loads = 0;
    lazy.load_row = [store, &loads](int r) {
        ++loads;
        return store[size_t(r)];
    };
    QuantizationData ld;
    ld.runs.push_back(lazy);
    view.setData(ld);
    QCOMPARE(view.gridFormat(), GridFormat::BF16);
    QVERIFY(loads >= 1);
    const int before = loads;
    view.setTextFilter("q_a_proj");  // no new row read for a control change
    QCOMPARE(loads, before);
    QVERIFY(view.histogramGraph()->dataCount() > 0);
}

void TestViewQuant::severalRunsOverlaid() {
    QuantizationView view;
    QuantizationData d;
    d.runs.push_back(make_run("run-a", "bf16", 20));
    d.runs.push_back(make_run("run-b", "fp8", 20));
    QuantRunData base;
    base.run_name = "run-c";
    base.precision = "fp32";
    d.runs.push_back(base);
    view.setData(d);
    show_and_settle(&view, {1400, 900});
    view.selectTensor("model.layers.2.mlp.experts.3.down_proj.weight@input");
    QCOMPARE(view.trainingPlot()->graphCount(), 2);  // fp32 has nothing to draw
    QStringList names;
    for (int i = 0; i < view.trainingPlot()->graphCount(); ++i) names << view.trainingPlot()->graph(i)->name();
    QVERIFY2(names[0].startsWith("run-a (bf16)"), qPrintable(names.join("; ")));
    QVERIFY2(names[1].startsWith("run-b (fp8)"), qPrintable(names.join("; ")));
    QCOMPARE(view.trainingPlot()->yAxis->scaleType(), QCPAxis::stLogarithmic);
    QCOMPARE(view.trainingPlot()->graph(0)->dataCount(), 20);
    // The fp8 run in detail: the E4M3 grid.
    view.setRun(1);
    QCOMPARE(view.gridFormat(), GridFormat::E4M3);
    view.selectTensor("model.layers.2.mlp.experts.3.down_proj.weight@input", true);
    view.selectTensor("model.layers.1.self_attn.q_b_proj.weight", true);
    QCOMPARE(view.trainingPlot()->graphCount(), 4);
    save_screenshot(&view, "quant_two_runs_1400x900.png");
}

void TestViewQuant::exports() {
    QuantizationView view;
    QuantizationData d;
    d.runs.push_back(make_run("run-fp8", "fp8", 5));
    view.setData(d);
    show_and_settle(&view, {1200, 800});
    QTemporaryDir dir;
    for (QCustomPlot* p : {view.barPlot(), view.histogramPlot(), view.trainingPlot(),
                           static_cast<QCustomPlot*>(view.scalePlot())})
        for (const char* ext : {"png", "pdf", "svg"}) {
            const QString path = dir.filePath(p->objectName() + "." + ext);
            QString error;
            QVERIFY2(export_plot(p, path, &error), qPrintable(error));
            QVERIFY(QFileInfo(path).size() > 0);
        }
}

void TestViewQuant::screenshots() {
    QuantizationView view;
    QuantizationData d;
    d.runs.push_back(make_run("tiny-fp8", "fp8", 30));
    view.setData(d);
    show_and_settle(&view, {1400, 900});
    view.selectTensor("model.layers.1.self_attn.q_b_proj.weight");
    QApplication::processEvents();
    save_screenshot(&view, "quant_fp8_1400x900.png");
    view.setShowAll(true);
    view.setMetric(QuantMetric::SnrDb);
    view.setHistogramKind(QuantizationView::HistogramKind::Errors);
    show_and_settle(&view, {900, 600});
    save_screenshot(&view, "quant_fp8_900x600.png");
    QuantizationData b;
    b.runs.push_back(make_run("tiny-bf16", "bf16", 30));
    view.setData(b);
    view.setMetric(QuantMetric::RelError);
    view.setHistogramKind(QuantizationView::HistogramKind::Values);
    view.setRoleFilter(RoleFilter::Activations);
    show_and_settle(&view, {1400, 900});
    save_screenshot(&view, "quant_bf16_activations_1400x900.png");
}

// Overlaid runs of different precision name it in the legend; an fp16 run gets the loss-scale
// panel (log2) with its skipped steps marked.
void TestViewQuant::curvesShowPrecisionAndLossScale() {
    auto make = [](const QString& name, const QString& precision, bool fp16) {
        RunCurves r;
        r.run_name = name;
        r.precision = precision;
        for (int s = 1; s <= 400; ++s) {
            r.step.push_back(s);
            r.tokens.push_back(4096.0 * s);
            r.wall_s.push_back(0.5 * s);
            const bool skip = fp16 && (s == 120 || s == 260);
            r.loss.push_back(skip ? NAN : 5.5 * std::exp(-s / 150.0) + 1.2 + 0.05 * noise(uint64_t(s)));
            r.lr.push_back(3e-4 * std::min(1.0, s / 50.0));
            r.grad_norm.push_back(1.0 + 0.3 * noise(uint64_t(s) + 9));
            r.tokens_per_s.push_back(8000 + 500 * noise(uint64_t(s) + 5));
            if (fp16) {
                // Doubles every 100 good steps, halves on an overflow.
                double scale = 65536;
                for (int k = 1; k <= s; ++k) scale = (k == 120 || k == 260) ? scale / 2 : (k % 100 == 0 ? scale * 2 : scale);
                r.loss_scale.push_back(scale);
                r.skipped.push_back(skip ? 1.0 : 0.0);
            }
        }
        return r;
    };
    TrainingCurvesView view;
    view.setRuns({make("run-a", "fp8", false), make("run-b", "fp16", true)});
    show_and_settle(&view, {1400, 900});
    view.flush();
    QCOMPARE(view.graph(0, Metric::Loss, true)->name(), QStringLiteral("run-a (fp8)"));
    QCOMPARE(view.graph(1, Metric::Loss, true)->name(), QStringLiteral("run-b (fp16)"));
    QCustomPlot* ls = view.plot(TrainingCurvesView::PanelLossScale);
    QVERIFY(ls->isVisible());
    QVERIFY(view.graph(0, Metric::LossScale, true) == nullptr);
    QCOMPARE(view.graph(1, Metric::LossScale, true)->dataCount(), 400);
    QCOMPARE(ls->yAxis->scaleType(), QCPAxis::stLogarithmic);
    QCPGraph* skipped = nullptr;
    for (int i = 0; i < ls->graphCount(); ++i)
        if (ls->graph(i)->name() == "skipped step") skipped = ls->graph(i);
    QVERIFY(skipped);
    QCOMPARE(skipped->dataCount(), 2);
    QCOMPARE(skipped->data()->at(0)->key, 120.0);
    save_screenshot(&view, "curves_fp8_fp16_loss_scale_1400x900.png");
    show_and_settle(&view, {900, 600});
    view.flush();
    save_screenshot(&view, "curves_fp8_fp16_loss_scale_900x600.png");
    // Same precision: names stay plain; no fp16 run: no loss-scale panel.
    view.setRuns({make("run-a", "fp8", false), make("run-c", "fp8", false)});
    view.flush();
    QCOMPARE(view.graph(0, Metric::Loss, true)->name(), QStringLiteral("run-a"));
    QVERIFY(!ls->isVisible());
}

// A real run file (RunWriter, HDF5) with /quant, /sparsity and fp16 loss scales, read by the
// workbench's RunController and shown by the main window's Quantization dock.
void TestViewQuant::workbenchFeedsViewFromRunFile() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName("moe-workbench-tests");
    QCoreApplication::setApplicationName("tst_view_quant");
    QTemporaryDir dir;
    const QString path = dir.filePath("fp16-run.h5");
    moe::RunHeader h;
    h.name = "fp16-run";
    h.precision = "fp16";
    h.config_json = R"({"num_hidden_layers": 2})";
    h.moe_layer_indices = {1};
    h.n_experts = 4;
    h.top_k = 2;
    h.quant_tensors = {"model.layers.0.mlp.down_proj.weight", "model.layers.0.mlp.down_proj.weight@input",
                       "model.layers.1.self_attn.o_proj.weight@grad"};
    h.quant_roles = {"weight", "activation", "gradient"};
    h.scale_tensors = {"model.layers.0.mlp.down_proj.weight"};
    h.scale_grid_rows = {2};
    h.scale_grid_cols = {3};
    h.ffn_layer_indices = {0, 1, 2};
    h.near_zero_threshold = 1e-3;
    const int Q = 3, bins = 160;
    {
        moe::RunWriter w(path.toStdString(), h);
        for (int s = 1; s <= 6; ++s) {
            moe::MetricsRow m;
            m.step = s;
            m.tokens = 1000 * s;
            m.loss = 5.0 - 0.1 * s;
            m.loss_scale = s == 4 ? 32768 : 65536;
            m.skipped = s == 4;
            w.append(m);
        }
        for (int r = 0; r < 3; ++r) {
            moe::QuantRow q;
            q.step = 2 * (r + 1);
            q.rel_error = {0.001f * (r + 1), 0.002f, 0.004f};
            q.snr_db = {50, 48, 44};
            q.amax = {1, 2, 3};
            q.frac_saturated = {0, 0, 0.001f};
            q.frac_flushed = {0, 0.01f, 0};
            q.value_hist.assign(size_t(Q * bins), 0);
            q.error_hist.assign(size_t(Q * bins), 0);
            q.value_hist[size_t(0 * bins + 100)] = 77;  // tensor 0: log2 in [1, 1.25)
            q.value_zeros = {0, 5, 0};
            q.scales = {1, 2, 4, 8, 16, 32 * float(r + 1)};
            w.append(q);
            moe::SparsityRow sp;
            sp.step = q.step;
            sp.near_zero = {0.1f, 0.2f, 0.3f + 0.1f * r};
            sp.unused_experts = {0.25f};
            w.append(sp);
        }
        w.flush();
    }

    moe::workbench::RunController c(path);
    QCOMPARE(c.precision(), QStringLiteral("fp16"));
    QCOMPARE(c.quant_rows(), 3);
    const QuantRunData d = c.quant_data();
    QCOMPARE(d.tensorCount(), 3);
    QCOMPARE(d.tensors[2].role, QuantRole::Gradient);
    QCOMPARE(d.steps, (std::vector<double>{2, 4, 6}));
    QCOMPARE(d.scale_grids.size(), size_t(1));
    QCOMPARE(d.bins.count, 160);
    QVERIFY(d.rows.empty());  // read on demand
    const QuantRowData row = d.row(2);
    QCOMPARE(row.step, 6.0);
    QCOMPARE(row.rel_error[0], 0.003f);
    QCOMPARE(row.value_hist[100], 77u);
    QCOMPARE(row.scales[5], 96.0f);
    const QuantSeries series = d.series(0);
    QCOMPARE(series.step, (std::vector<double>{2, 4, 6}));
    QCOMPARE(series.rel_error[1], double(0.002f));

    // Sparsity: near-zero per FFN layer (MTP past the main layers), unused experts per MoE layer.
    const SparsityOverTraining sp = c.sparsity_over_training();
    QCOMPARE(sp.near_zero.size(), size_t(3));
    QCOMPARE(sp.near_zero[2].name, QStringLiteral("MTP 1"));
    QCOMPARE(sp.near_zero[2].y.back(), double(0.5f));
    QCOMPARE(sp.never_chosen.size(), size_t(1));
    QCOMPARE(sp.never_chosen[0].y[0], 0.25);

    // Curves: precision and the fp16 loss scale with its skipped step.
    const RunCurves rc = c.curves();
    QCOMPARE(rc.precision, QStringLiteral("fp16"));
    QCOMPARE(rc.loss_scale.size(), size_t(6));
    QCOMPARE(rc.loss_scale[3], 32768.0);
    QCOMPARE(rc.skipped[3], 1.0);

    // The main window's Quantization dock shows the run.
    moe::workbench::MainWindow w;
    w.set_runs_dir(dir.filePath("runs"));
    w.resize(1400, 900);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(w.open_run(path));
    auto* view = qobject_cast<QuantizationView*>(w.view_widget("quantDock"));
    QVERIFY(view);
    QTRY_COMPARE(int(view->data().runs.size()), 1);
    QVERIFY(!view->emptyStateShown());
    QCOMPARE(view->stepIndex(), 2);
    QCOMPARE(view->gridFormat(), GridFormat::FP16);
    // Worst first: the gradient.
    QCOMPARE(view->shownTensors().front(), 2);
    view->selectTensor(h.quant_tensors[0].c_str());
    QCOMPARE(view->histogramGraph()->data()->at(100)->value, 77.0);
    QCOMPARE(view->trainingPlot()->graphCount(), 1);
    QCOMPARE(view->trainingPlot()->graph(0)->dataCount(), 3);
    QCOMPARE(view->scalePlot()->toMatrix().at(1, 2), std::log2(96.0));
    if (auto* dock = w.findChild<QDockWidget*>("quantDock")) {
        dock->raise();
        save_screenshot(&w, "workbench_quant_dock.png");
    }
}

QTEST_MAIN(TestViewQuant)
#include "tst_view_quant.moc"
