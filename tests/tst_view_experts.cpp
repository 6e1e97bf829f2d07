// GUI tests of the expert-balance, sparsity and model views with synthetic data: colour maps,
// axis ranges, hover and step selection, the symmetric bias scale, the causal mask, model
// totals, exports, the 64 x 26 x 100,000 timing, and screenshots for a person to judge.
#include "colormap.h"
#include "communication_view.h"
#include "efficiency_calculator.h"
#include "model/summary.h"
#include "store/project.h"
#include "expert_load_view.h"
#include "heatmap_plot.h"
#include "model_view.h"
#include "plot_export.h"
#include "sparsity_view.h"

#include <QApplication>
#include <QLabel>
#include <QDir>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QMouseEvent>
#include <QPlainTextEdit>
#include <QSlider>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTreeWidget>
#include <QtTest>

#include <cmath>
#include <cstdint>

using namespace moe::views;

namespace {

// Cheap deterministic noise in [0, 1): the large data set has 166 M entries.
inline float noise(uint64_t i)
{
    i ^= i >> 33;
    i *= 0xff51afd7ed558ccdULL;
    i ^= i >> 33;
    i *= 0xc4ceb9fe1a85ec53ULL;
    i ^= i >> 33;
    return static_cast<float>((i >> 40) * (1.0 / (1ULL << 24)));
}

// Routing that starts collapsed (a few experts take most tokens, some none) and evens out as
// the bias grows, as aux-loss-free balancing does.
ExpertLoadData make_load(int S, int L, int E, double step_every = 10, bool integer_tokens = true)
{
    ExpertLoadData d;
    for (int l = 0; l < L; ++l)
        d.layer_names << (l == L - 1 && L > 2 ? QStringLiteral("MTP 1") : QStringLiteral("layer %1").arg(l + 4));
    d.experts = E;
    d.steps.resize(S);
    for (int s = 0; s < S; ++s)
        d.steps[s] = (s + 1) * step_every;
    const size_t n = static_cast<size_t>(S) * L * E;
    d.load.resize(n);
    d.bias.resize(n);
    const double mean = 512;  // tokens per expert at balance
    std::vector<float> pref(static_cast<size_t>(L) * E);
    for (int l = 0; l < L; ++l)
        for (int e = 0; e < E; ++e)
            pref[static_cast<size_t>(l) * E + e] = ((e * 37 + l * 11) % E) / static_cast<float>(E) - 0.5f;
    for (int s = 0; s < S; ++s) {
        for (int l = 0; l < L; ++l) {
            // Imbalance fades over training, faster in the lower layers.
            const double a = std::exp(-3.0 * s / S * (2.0 - 1.5 * l / std::max(L - 1, 1)));
            const size_t base = (static_cast<size_t>(s) * L + l) * E;
            for (int e = 0; e < E; ++e) {
                const float p = pref[static_cast<size_t>(l) * E + e];
                double v = mean * (1.0 + 4.0 * a * p + 0.25 * (noise(base + e) - 0.5));
                v = std::max(0.0, v);
                d.load[base + e] = integer_tokens ? std::floor(static_cast<float>(v)) : static_cast<float>(v);
                d.bias[base + e] = static_cast<float>(-0.06 * p * (1.0 - a) + 0.004 * (noise(n + base + e) - 0.5));
            }
        }
    }
    return d;
}

QString screenshot_dir()
{
    const QString dir = qEnvironmentVariable("MOE_SCREENSHOT_DIR");
    if (!dir.isEmpty())
        QDir().mkpath(dir);
    return dir;
}

void save_screenshot(QWidget *w, const QString &name)
{
    const QString dir = screenshot_dir();
    if (dir.isEmpty()) {
        qInfo("MOE_SCREENSHOT_DIR not set; no screenshot %s", qPrintable(name));
        return;
    }
    const QString path = QDir(dir).filePath(name);
    QVERIFY(w->grab().save(path));
    qInfo("screenshot: %s", qPrintable(path));
}

void check_nonempty(const QString &path)
{
    QFileInfo info(path);
    QVERIFY2(info.exists() && info.size() > 0, qPrintable(path));
}

void export_all(QCustomPlot *plot, const QString &dir, const QString &stem)
{
    for (const char *ext : {"png", "pdf", "svg"}) {
        const QString path = QDir(dir).filePath(stem + "." + ext);
        QString error;
        QVERIFY2(export_plot(plot, path, &error), qPrintable(error));
        check_nonempty(path);
    }
}

void show_and_settle(QWidget *w, QSize size)
{
    w->resize(size);
    w->show();
    QVERIFY(QTest::qWaitForWindowExposed(w));
    QApplication::processEvents();
    QTest::qWait(50);
}

// ModelSummaryData of DeepSeek-V3 (671 B + MTP), counted from the config of spec section 1.
ModelSummaryData deepseek_v3_summary()
{
    const double V = 129280, D = 7168, F = 18432, Fe = 2048, H = 128, qlora = 1536, kvlora = 512;
    const double nope = 128, rope = 64, vdim = 128, Nr = 256, k = 8, ctx = 4096;
    const int layers = 61, dense = 3;
    const double attn = qlora * D + qlora + H * (nope + rope) * qlora + (kvlora + rope) * D + kvlora +
                        H * (nope + vdim) * kvlora + D * H * vdim;
    // Scores and weighted values over an average context of ctx/2 keys.
    const double attn_core_flops = 2.0 * (ctx / 2) * H * ((nope + rope) + vdim);
    const double norms = 2 * D;
    const double ffn = 3 * D * F, expert = 3 * D * Fe, gate = Nr * D + Nr;
    using P = ModelSummaryData::Part;
    ModelSummaryData m;
    m.name = "DeepSeek-V3";
    auto add = [&m](QString group, QString name, double params, double active, double flops, QString note) {
        m.parts.push_back(P{name, params, active, flops, note, group});
    };
    add({}, "embedding", V * D, V * D, 0, "129,280 x 7,168; a lookup, no FLOPs");
    const QString g_dense = QStringLiteral("dense layers 1-%1 (x%1)").arg(dense);
    add(g_dense, "attention (MLA)", dense * attn, dense * attn, dense * (2 * attn + attn_core_flops),
        "q_lora 1536, kv_lora 512, 128 heads");
    add(g_dense, "dense FFN (SwiGLU)", dense * ffn, dense * ffn, dense * 2 * ffn, "7,168 -> 18,432 -> 7,168");
    add(g_dense, "norms", dense * norms, dense * norms, 0, "2 RMSNorm per layer");
    const int moe = layers - dense;
    const QString g_moe = QStringLiteral("MoE layers %1-%2 (x%3)").arg(dense + 1).arg(layers).arg(moe);
    add(g_moe, "attention (MLA)", moe * attn, moe * attn, moe * (2 * attn + attn_core_flops), "as above");
    add(g_moe, "routed experts", moe * Nr * expert, moe * k * expert, moe * 2 * k * expert, "256 experts, 8 active, width 2,048");
    add(g_moe, "shared experts", moe * expert, moe * expert, moe * 2 * expert, "1 shared expert, width 2,048");
    add(g_moe, "gate", moe * gate, moe * gate, moe * 2 * Nr * D, "sigmoid scores + bias, 8 groups / top-4");
    add(g_moe, "norms", moe * norms, moe * norms, 0, "2 RMSNorm per layer");
    add({}, "final norm", D, D, 0, "RMSNorm");
    add({}, "output head", V * D, V * D, 2 * V * D, "untied from the embedding");
    const double mtp_block = attn + Nr * expert + expert + gate + norms;
    const double mtp_active = attn + k * expert + expert + gate + norms;
    add("MTP module 1", "MTP block (MLA + MoE)", mtp_block, mtp_active, 2 * mtp_active + attn_core_flops,
        "one full transformer block");
    add("MTP module 1", "eh_proj + norms", 2 * D * D + 3 * D, 2 * D * D + 3 * D, 2 * 2 * D * D,
        "shares embedding and head with the main model");
    for (int l = 0; l < layers; ++l) {
        ModelSummaryData::Layer layer;
        layer.name = QStringLiteral("layer %1").arg(l + 1);
        layer.kind = l < dense ? ModelSummaryData::LayerKind::Dense : ModelSummaryData::LayerKind::Moe;
        layer.params = attn + norms + (l < dense ? ffn : Nr * expert + expert + gate);
        layer.active_params = attn + norms + (l < dense ? ffn : k * expert + expert + gate);
        m.layers.push_back(layer);
    }
    m.layers.push_back({"MTP 1", ModelSummaryData::LayerKind::Mtp, mtp_block + 2 * D * D + 3 * D,
                        mtp_active + 2 * D * D + 3 * D});
    m.config_text = R"({
  "model_type": "deepseek_v3",
  "vocab_size": 129280,
  "hidden_size": 7168,
  "intermediate_size": 18432,
  "moe_intermediate_size": 2048,
  "num_hidden_layers": 61,
  "first_k_dense_replace": 3,
  "num_attention_heads": 128,
  "n_routed_experts": 256,
  "n_shared_experts": 1,
  "num_experts_per_tok": 8,
  "n_group": 8,
  "topk_group": 4,
  "q_lora_rank": 1536,
  "kv_lora_rank": 512,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "v_head_dim": 128,
  "num_nextn_predict_layers": 1
})";
    return m;
}

}  // namespace

class TestViewExperts : public QObject {
    Q_OBJECT
private slots:
    void initTestCase();
    void expertLoadMapsAndAxes();
    void expertLoadStepFollowing();
    void expertLoadExports();
    void expertLoadLargeTiming();
    void edgeCases();
    void biasReadOnDemand();
    void sparsityMaskAndAttention();
    void sparsitySlidingWindow();
    void sparsityTopkAttention();
    void modelTable();
    void expertRanksMarked();
    void efficiencyCalculatorDeepSeekV3();
    void communicationPerRank();

private:
    QTemporaryDir tmp_;
};

void TestViewExperts::initTestCase()
{
    QVERIFY(tmp_.isValid());
}

void TestViewExperts::expertLoadMapsAndAxes()
{
    const int S = 400, L = 6, E = 16;
    ExpertLoadView view;
    view.setData(make_load(S, L, E));
    show_and_settle(&view, {1500, 950});
    view.setLayer(2);

    for (HeatmapPlot *p : {view.loadTrainingPlot(), view.loadStepPlot(), view.biasTrainingPlot(), view.biasStepPlot()})
        QVERIFY2(!p->colorMap()->interpolate(), "colour maps must draw crisp cells");
    QVERIFY(view.loadTrainingPlot()->colorScale() != nullptr);

    // Over training: x spans the logged steps plus half a step each side; y the experts.
    const auto &d = view.data();
    const double step = d.steps[1] - d.steps[0];
    QCOMPARE(view.loadTrainingPlot()->xAxis->range().lower, d.steps.front() - step / 2);
    QCOMPARE(view.loadTrainingPlot()->xAxis->range().upper, d.steps.back() + step / 2);
    QCOMPARE(view.loadTrainingPlot()->yAxis->range().lower, -0.5);
    QCOMPARE(view.loadTrainingPlot()->yAxis->range().upper, E - 0.5);
    QCOMPARE(view.heatmapColumns(), S);  // 400 steps fit in the pixels: no folding
    QCOMPARE(view.stepsPerColumn(), 1.0);
    auto *cells = view.loadTrainingPlot()->colorMap()->data();
    QCOMPARE(cells->keySize(), S);
    QCOMPARE(cells->valueSize(), E);
    for (int s : {0, 17, S - 1})
        for (int e : {0, 5, E - 1})
            QCOMPARE(cells->cell(s, e), static_cast<double>(d.load[d.index(s, 2, e)]));
    // Layers x experts.
    QCOMPARE(view.loadStepPlot()->xAxis->range(), QCPRange(-0.5, E - 0.5));
    QCOMPARE(view.loadStepPlot()->yAxis->range(), QCPRange(-0.5, L - 0.5));
    QVERIFY(view.loadStepPlot()->yAxis->rangeReversed());

    // The bias: diverging map, range symmetric around 0 (the bias tab fills when shown).
    view.heatmapTabs()->setCurrentIndex(1);
    for (HeatmapPlot *p : {view.biasTrainingPlot(), view.biasStepPlot()}) {
        const QCPRange r = p->colorMap()->dataRange();
        QVERIFY(r.upper > 0);
        QCOMPARE(r.lower, -r.upper);
        QVERIFY(p->colorMap()->gradient() == diverging_gradient());
    }
    QVERIFY(view.loadTrainingPlot()->colorMap()->gradient() == viridis_gradient());

    view.heatmapTabs()->setCurrentIndex(0);
    // Share of the mean: the bars average to 1.
    view.setLoadUnit(ExpertLoadView::LoadUnit::ShareOfMean);
    double sum = 0;
    for (auto it = view.loadBars()->data()->constBegin(); it != view.loadBars()->data()->constEnd(); ++it)
        sum += it->value;
    QVERIFY(std::abs(sum / E - 1.0) < 1e-6);
    view.setLoadUnit(ExpertLoadView::LoadUnit::Tokens);

    // Dead experts: zero-load experts, over all layers and for the chosen one.
    int dead_all = 0, dead_layer = 0;
    for (int l = 0; l < L; ++l)
        for (int e = 0; e < E; ++e)
            if (d.load[d.index(3, l, e)] == 0.f) {
                ++dead_all;
                dead_layer += (l == 2);
            }
    QVERIFY(dead_all > 0);  // early routing is collapsed in the synthetic data
    QCOMPARE(view.deadExperts(3), dead_all);
    view.setDeadScope(ExpertLoadView::DeadScope::ChosenLayer);
    QCOMPARE(view.deadExperts(3), dead_layer);
    view.setDeadScope(ExpertLoadView::DeadScope::AllLayers);

    // MaxVio is computed from the load when the data does not carry it.
    double mx = 0, mean = 0;
    for (int e = 0; e < E; ++e) {
        mx = std::max(mx, static_cast<double>(d.load[d.index(7, 1, e)]));
        mean += d.load[d.index(7, 1, e)] / E;
    }
    QVERIFY(std::abs(view.maxVio(7, 1) - (mx - mean) / mean) < 1e-5);

    view.setStepIndex(60);
    QApplication::processEvents();
    view.replotAll();
    save_screenshot(&view, "expert_load.png");
    view.heatmapTabs()->setCurrentIndex(1);
    QApplication::processEvents();
    view.replotAll();
    save_screenshot(&view, "expert_load_bias.png");
}

void TestViewExperts::expertLoadStepFollowing()
{
    const int S = 300, L = 4, E = 12;
    ExpertLoadView view;
    view.setData(make_load(S, L, E));
    show_and_settle(&view, {1400, 900});
    view.setLayer(1);
    const auto &d = view.data();
    auto bars_match = [&](int s) {
        const auto *bars = view.loadBars()->data().data();
        if (bars->size() != E)
            return false;
        for (int e = 0; e < E; ++e)
            if (bars->at(e)->value != d.load[d.index(s, 1, e)])
                return false;
        return true;
    };

    QCOMPARE(view.stepIndex(), S - 1);  // the latest step first
    QVERIFY(bars_match(S - 1));
    view.setStepIndex(123);
    QVERIFY(bars_match(123));
    view.stepSlider()->setValue(42);
    QCOMPARE(view.stepIndex(), 42);
    QVERIFY(bars_match(42));

    // Hovering the training heatmap previews the step under the cursor; leaving restores it.
    HeatmapPlot *plot = view.loadTrainingPlot();
    plot->replot();
    const int target = 200;
    const QPointF pos(plot->xAxis->coordToPixel(d.steps[target]), plot->yAxis->coordToPixel(E / 2.0));
    QMouseEvent move(QEvent::MouseMove, pos, plot->mapToGlobal(pos), Qt::NoButton, Qt::NoButton, Qt::NoModifier);
    QApplication::sendEvent(plot, &move);
    QCOMPARE(view.shownStepIndex(), target);
    QVERIFY(bars_match(target));
    QCOMPARE(view.stepIndex(), 42);
    QEvent leave(QEvent::Leave);
    QApplication::sendEvent(plot, &leave);
    QCOMPARE(view.shownStepIndex(), 42);
    QVERIFY(bars_match(42));

    // A click keeps the hovered step.
    QTest::mouseClick(plot, Qt::LeftButton, Qt::NoModifier, pos.toPoint());
    QCOMPARE(view.stepIndex(), target);
    QCOMPARE(view.stepSlider()->value(), target);

    // The layers x experts map shows the same step.
    QCOMPARE(view.loadStepPlot()->colorMap()->data()->cell(3, 2), static_cast<double>(d.load[d.index(target, 2, 3)]));
}

void TestViewExperts::expertLoadExports()
{
    ExpertLoadView view;
    view.setData(make_load(200, 5, 8));
    show_and_settle(&view, {1400, 900});
    const QString dir = tmp_.path();
    const std::pair<QCustomPlot *, const char *> plots[] = {
        {view.loadTrainingPlot(), "load_training"}, {view.loadStepPlot(), "load_step"},
        {view.biasTrainingPlot(), "bias_training"}, {view.biasStepPlot(), "bias_step"},
        {view.barPlot(), "bars"}, {view.maxVioPlot(), "maxvio"}, {view.deadPlot(), "dead"}};
    for (const auto &[plot, stem] : plots)
        export_all(plot, dir, stem);
    const QString csv = QDir(dir).filePath("load_training.csv");
    QString error;
    QVERIFY2(write_csv(csv, view.loadTrainingPlot()->toMatrix(), &error), qPrintable(error));
    check_nonempty(csv);
    QVERIFY(view.loadTrainingPlot()->toMatrix().rows == 8);
}

void TestViewExperts::expertLoadLargeTiming()
{
    const int S = 100000, L = 26, E = 64;
    QElapsedTimer timer;
    timer.start();
    ExpertLoadData data = make_load(S, L, E, 1);
    qInfo("synthetic data %d steps x %d layers x %d experts: %.0f ms to generate (not part of the view)", S, L,
          E, timer.nsecsElapsed() / 1e6);

    ExpertLoadView view;
    view.resize(1600, 1000);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    timer.restart();
    view.setData(std::move(data));
    const double load_ms = timer.nsecsElapsed() / 1e6;
    QApplication::processEvents();  // layout, then the columns follow the pixel width
    timer.restart();
    QApplication::processEvents();
    const double first = view.replotAll();
    const int width = view.loadTrainingPlot()->width();
    QVERIFY(view.heatmapColumns() <= 2 * std::max(width, 400));
    QVERIFY(view.stepsPerColumn() > 1);

    // Steady-state replot of all seven plots, and a hover (bars + layers x experts + cursors).
    double replot = 1e9, hover = 1e9, layer_switch = 1e9;
    for (int i = 0; i < 5; ++i) {
        replot = std::min(replot, view.replotAll());
        timer.restart();
        view.previewStep(view.data().steps[1000 + 7919 * i]);
        view.replotAll();
        hover = std::min(hover, timer.nsecsElapsed() / 1e6);
    }
    timer.restart();
    view.setLayer(7);
    view.replotAll();
    layer_switch = timer.nsecsElapsed() / 1e6;
    qInfo("ExpertLoadView %d x %d x %d: load %.0f ms (target < 2000), first replot %.1f ms, replot %.1f ms "
          "(target < 50), hover %.1f ms, layer switch %.1f ms; %d columns of %.1f steps over %d px",
          S, L, E, load_ms, first, replot, hover, layer_switch, view.heatmapColumns(), view.stepsPerColumn(), width);
    // Only bounds that catch a hang: speed is measured by moe-bench-gui, not asserted on a
    // machine of unknown speed and load.
    QVERIFY2(load_ms < 60000, "loading 100,000 logged steps hung");
    QVERIFY2(replot < 10000, "replot hung");
    for (QCustomPlot *p : {static_cast<QCustomPlot *>(view.loadTrainingPlot()), view.maxVioPlot(), view.deadPlot()})
        QCOMPARE(p->xAxis->range(), view.loadTrainingPlot()->xAxis->range());
    save_screenshot(&view, "expert_load_large.png");
}

// A large run's bias is read only when its tab is shown (ExpertLoadData::load_bias), once, and
// shows the same cells as bias handed over directly.
void TestViewExperts::biasReadOnDemand()
{
    const int S = 12, L = 3, E = 8;
    ExpertLoadData eager = make_load(S, L, E);
    ExpertLoadData lazy = eager;
    int reads = 0;
    lazy.load_bias = [bias = lazy.bias, &reads] {
        ++reads;
        return bias;
    };
    lazy.bias.clear();
    QVERIFY(lazy.valid() && lazy.has_bias());
    ExpertLoadView a, b;
    a.setData(eager);
    b.setData(lazy);
    QVERIFY(b.heatmapTabs()->isTabEnabled(1));
    a.setStepIndex(7);
    b.setStepIndex(7);
    QCOMPARE(reads, 0);  // opening, moving the step: the load only
    a.heatmapTabs()->setCurrentIndex(1);
    b.heatmapTabs()->setCurrentIndex(1);
    QCOMPARE(reads, 1);
    for (int l = 0; l < L; ++l)
        for (int e = 0; e < E; ++e)
            QCOMPARE(b.biasStepPlot()->colorMap()->data()->cell(e, l), a.biasStepPlot()->colorMap()->data()->cell(e, l));
    QCOMPARE(b.biasTrainingPlot()->colorMap()->dataRange(), a.biasTrainingPlot()->colorMap()->dataRange());
    b.heatmapTabs()->setCurrentIndex(0);
    b.heatmapTabs()->setCurrentIndex(1);
    QCOMPARE(reads, 1);
    // A loader that comes back with the wrong size: the bias tab is disabled, nothing crashes.
    ExpertLoadData broken = eager;
    broken.bias.clear();
    broken.load_bias = [] { return std::vector<float>(3, 0.f); };
    ExpertLoadView c;
    c.setData(broken);
    QTest::ignoreMessage(QtWarningMsg, QRegularExpression("bias read on demand has 3 values"));
    c.heatmapTabs()->setCurrentIndex(1);
    QVERIFY(!c.heatmapTabs()->isTabEnabled(1));
}

void TestViewExperts::edgeCases()
{
    // Empty, invalid, a single step, no bias, MaxVio given: nothing crashes, sensible state.
    ExpertLoadView view;
    view.setData({});
    show_and_settle(&view, {900, 600});
    view.replotAll();
    ExpertLoadData bad = make_load(10, 2, 4);
    bad.load.pop_back();
    QTest::ignoreMessage(QtWarningMsg, QRegularExpression("ExpertLoadView: .*"));
    view.setData(bad);
    QCOMPARE(view.data().step_count(), 0);

    ExpertLoadData one = make_load(1, 2, 4);
    one.bias.clear();
    one.maxvio = {0.25f, 0.5f};
    view.setData(one);
    view.replotAll();
    QCOMPARE(view.stepIndex(), 0);
    QCOMPARE(view.maxVio(0, 1), 0.5);
    QVERIFY(!view.heatmapTabs()->isTabEnabled(1));
    QCOMPARE(view.loadTrainingPlot()->colorMap()->data()->keySize(), 1);
    view.previewStep(1e9);
    QCOMPARE(view.shownStepIndex(), 0);

    // Many tokens: indices instead of labels.
    SparsityView sparsity;
    RoutingMaskData mask{{}, 8, std::vector<uint8_t>(200 * 8, 0), {}};
    for (int t = 0; t < 200; ++t) {
        mask.tokens << QStringLiteral("t%1").arg(t);
        mask.mask[t * 8 + t % 8] = 1;
    }
    sparsity.setRoutingMask(mask);
    sparsity.setAttention({});
    sparsity.setSparsityOverTraining({});
    QVERIFY(!sparsity.maskPlot()->yAxis->ticker().dynamicCast<QCPAxisTickerText>());
    show_and_settle(&sparsity, {900, 600});

    ModelView model;
    model.setSummary({});
    QVERIFY(model.totalsItem());
    QCOMPARE(model.totalsItem()->data(ModelView::ParamsColumn, ModelView::kValueRole).toDouble(), 0.0);
}

void TestViewExperts::sparsityMaskAndAttention()
{
    const QStringList tokens = {"The", " cat", " sat", " on", " the", " mat", ".", "\n", "Le", " chat", " est",
                                " sur", " le", " tapis", ".", " 2", "+", "3", "=", "5", " def", " f", "(", "x"};
    const int T = tokens.size(), E = 16, k = 4;
    RoutingMaskData mask{tokens, E, std::vector<uint8_t>(static_cast<size_t>(T) * E, 0), "layer 4"};
    for (int t = 0; t < T; ++t) {
        const int group = t < 8 ? 0 : t < 15 ? 1 : t < 20 ? 2 : 3;  // experts specialize by task
        for (int j = 0; j < k; ++j)
            mask.mask[static_cast<size_t>(t) * E + (group * 4 + j + (j == 3 ? t % 3 : 0)) % E] = 1;
    }
    AttentionData att{2, 4, T, {}, tokens, 0, 0, {}};
    att.weights.resize(static_cast<size_t>(2) * 4 * T * T);
    for (int l = 0; l < 2; ++l)
        for (int h = 0; h < 4; ++h)
            for (int q = 0; q < T; ++q) {
                double z = 0;
                std::vector<double> w(q + 1);
                for (int kk = 0; kk <= q; ++kk) {
                    // Head 0 looks back one token, others at the start and recent tokens.
                    const double logit = h == 0 ? (kk == q - 1 ? 4.0 : 0.0) : -0.4 * (q - kk) + (kk == 0 ? 2.0 : 0.0);
                    w[kk] = std::exp(logit + 0.3 * noise(static_cast<uint64_t>(q * 31 + kk + h * 1000 + l * 7)));
                    z += w[kk];
                }
                for (int kk = 0; kk < T; ++kk)
                    att.weights[((static_cast<size_t>(l) * 4 + h) * T + q) * T + kk] =
                        kk <= q ? static_cast<float>(w[kk] / z) : 0.5f;  // garbage above the diagonal
            }
    SparsityOverTraining over;
    for (int l = 0; l < 6; ++l) {
        Series never{QStringLiteral("layer %1").arg(l + 4), {}, {}}, zero{QStringLiteral("layer %1").arg(l + 4), {}, {}};
        for (int s = 0; s <= 200; ++s) {
            const double step = s * 50.0;
            never.x.push_back(step);
            never.y.push_back(0.6 * std::exp(-s / (20.0 + 8 * l)) + 0.02 * noise(s + 100 * l));
            zero.x.push_back(step);
            zero.y.push_back(0.1 + 0.5 * (1 - std::exp(-s / 60.0)) * (0.6 + 0.08 * l));
        }
        over.never_chosen.push_back(never);
        over.near_zero.push_back(zero);
    }

    SparsityView view;
    view.setRoutingMask(mask);
    view.setAttention(att);
    view.setSparsityOverTraining(over);
    view.setAttentionHead(1, 2);
    show_and_settle(&view, {1400, 950});

    for (HeatmapPlot *p : {view.maskPlot(), view.attentionPlot()})
        QVERIFY(!p->colorMap()->interpolate());
    // Mask: cells = data, axes = tokens x experts, token labels on the axis.
    auto *mc = view.maskPlot()->colorMap()->data();
    QCOMPARE(mc->keySize(), E);
    QCOMPARE(mc->valueSize(), T);
    for (int t = 0; t < T; ++t)
        for (int e = 0; e < E; ++e)
            QCOMPARE(mc->cell(e, t), mask.chosen(t, e) ? 1.0 : 0.0);
    QCOMPARE(view.maskPlot()->xAxis->range(), QCPRange(-0.5, E - 0.5));
    QCOMPARE(view.maskPlot()->yAxis->range(), QCPRange(-0.5, T - 0.5));
    auto text_ticker = view.maskPlot()->yAxis->ticker().dynamicCast<QCPAxisTickerText>();
    QVERIFY(text_ticker);
    QCOMPARE(text_ticker->ticks().size(), T);
    QCOMPARE(text_ticker->ticks().value(1), SparsityView::displayToken(" cat"));

    // Attention: masked cells (key after query) are NaN and drawn in the neutral grey.
    auto *ac = view.attentionPlot()->colorMap()->data();
    QCOMPARE(ac->keySize(), T);
    for (int q = 0; q < T; ++q)
        for (int kk = 0; kk < T; ++kk) {
            if (kk > q)
                QVERIFY(std::isnan(ac->cell(kk, q)));
            else
                QCOMPARE(ac->cell(kk, q), static_cast<double>(att.at(1, 2, q, kk)));
        }
    const QCPColorGradient g = view.attentionPlot()->colorMap()->gradient();
    QCOMPARE(g.nanHandling(), QCPColorGradient::nhNanColor);
    view.attentionPlot()->replot();
    const QImage image = view.attentionPlot()->toPixmap().toImage();
    const QPoint masked(qRound(view.attentionPlot()->xAxis->coordToPixel(T - 2)),
                        qRound(view.attentionPlot()->yAxis->coordToPixel(1)));
    QCOMPARE(image.pixelColor(masked).rgb(), g.nanColor().rgb());
    const QPoint diagonal(qRound(view.attentionPlot()->xAxis->coordToPixel(5)),
                          qRound(view.attentionPlot()->yAxis->coordToPixel(5)));
    QVERIFY(image.pixelColor(diagonal).rgb() != g.nanColor().rgb());

    QCOMPARE(view.neverChosenPlot()->graphCount(), 6);
    QCOMPARE(view.nearZeroPlot()->graphCount(), 6);

    const QString dir = tmp_.path();
    export_all(view.maskPlot(), dir, "mask");
    export_all(view.attentionPlot(), dir, "attention");
    export_all(view.neverChosenPlot(), dir, "never");
    const QString csv = QDir(dir).filePath("never.csv");
    QVERIFY(write_csv(csv, over.never_chosen));
    check_nonempty(csv);
    save_screenshot(&view, "sparsity.png");
}

// The training-cost calculator on DeepSeek-V3 (its preset's config, the engine's FLOP count):
// the published 180K H800 GPU-hours per trillion tokens imply an MFU of the H800's bf16 peak;
// at that MFU, 14.8T tokens cost the published 2.664M GPU-hours; a dense model of all 671B
// parameters would cost an order of magnitude more.
void TestViewExperts::efficiencyCalculatorDeepSeekV3()
{
    const moe::Project p = moe::Project::load(MOE_SOURCE_DIR "/projects/deepseek-v3-671b.json");
    const moe::ModelSummary s = moe::summarize(p.model, 4096);
    EfficiencyCalculator calc;
    calc.setModel("DeepSeek-V3", s.train_flops_per_token, double(s.total_params), double(s.active_params));
    calc.setInputs(1000, 989, 40, 2048);
    calc.setReportedGpuHours(180000);
    const double mfu = calc.impliedMfuPercent();
    qInfo("DeepSeek-V3: %.1f GFLOP per training token; 180K H800 GPU-hours per 1T tokens imply %.1f%% MFU of "
          "989 TFLOP/s (bf16)",
          s.train_flops_per_token / 1e9, mfu);
    QVERIFY2(mfu > 20 && mfu < 60, qPrintable(QString::number(mfu)));
    QVERIFY(calc.resultLabel()->text().contains("imply an MFU"));
    calc.setInputs(14800, 989, mfu, 2048);
    QVERIFY2(std::abs(calc.gpuHours() - 2.664e6) / 2.664e6 < 1e-3, qPrintable(QString::number(calc.gpuHours())));
    QVERIFY(calc.denseGpuHours() > 10 * calc.gpuHours());
    calc.setReportedGpuHours(0);
    QCOMPARE(calc.impliedMfuPercent(), 0.0);
    // The GPU presets set the peak.
    calc.gpuBox()->setCurrentIndex(1);
    calc.setReportedGpuHours(180000 * 14.8);
    QVERIFY(calc.impliedMfuPercent() < mfu / 1.9);  // fp8 peak: about half the MFU
    calc.show();
    QTest::qWait(50);
    save_screenshot(&calc, "view-efficiency-calculator.png");
}

// Expert parallelism: which rank holds which experts, named above the maps and marked by a
// line between ranks in the bar chart; nothing of it for a run without.
void TestViewExperts::expertRanksMarked()
{
    ExpertLoadView view;
    ExpertLoadData d = make_load(20, 3, 16);
    d.expert_ranks = 4;
    view.setData(d);
    show_and_settle(&view, {1400, 900});
    auto *label = view.findChild<QLabel *>("expertRanks");
    QVERIFY(label && label->isVisible());
    QVERIFY2(label->text().contains("rank 0: experts 0-3") && label->text().contains("rank 3: experts 12-15"),
             qPrintable(label->text()));
    int lines = 0;
    for (int i = 0; i < view.barPlot()->itemCount(); ++i)
        if (auto *l = qobject_cast<QCPItemStraightLine *>(view.barPlot()->item(i)))
            lines += l->point1->coords().x() == 3.5 || l->point1->coords().x() == 7.5 || l->point1->coords().x() == 11.5;
    QCOMPARE(lines, 3);
    save_screenshot(&view, "view-experts-ranks.png");
    view.setData(make_load(20, 3, 16));
    QVERIFY(!label->isVisible());
}

// The communication view: per rank, bytes (all-reduce solid, all-to-all dashed), time (step
// and in collectives) and token copies, one colour per rank; a note for a one-process run.
void TestViewExperts::communicationPerRank()
{
    CommunicationView view;
    QVERIFY(view.noteLabel()->text().contains("one process"));
    QCOMPARE(view.bytesPlot()->graphCount(), 0);
    CommunicationData d;
    d.layout = "ep=2,dp=2";
    d.ranks = 4;
    const int n = 12;
    for (int i = 0; i < n; ++i) {
        d.steps.push_back((i + 1) * 10);
        for (int r = 0; r < d.ranks; ++r) {
            d.step_s.push_back(0.5 + 0.01 * r);
            d.all_reduce_bytes.push_back(8.2e6);
            d.all_reduce_s.push_back(0.05 + 0.02 * r);
            d.all_to_all_bytes.push_back(1.6e7 + 1e6 * r);
            d.all_to_all_s.push_back(0.1);
            d.tokens_sent.push_back(5000 + 100 * r + i);
            d.tokens_received.push_back(5000);
        }
    }
    view.setData(d);
    show_and_settle(&view, {1100, 900});
    QVERIFY(view.noteLabel()->text().contains("4 ranks (ep=2,dp=2)"));
    QCOMPARE(view.bytesPlot()->graphCount(), 8);   // all-reduce and all-to-all per rank
    QCOMPARE(view.timePlot()->graphCount(), 8);    // step and communication per rank
    QCOMPARE(view.tokensPlot()->graphCount(), 4);
    QCOMPARE(view.bytesPlot()->graph(5)->data()->at(0)->value, 17.0);  // rank 1's all-to-all, MB
    QCOMPARE(view.timePlot()->graph(7)->data()->at(0)->value, 0.05 + 0.02 * 3 + 0.1);
    QCOMPARE(view.tokensPlot()->graph(2)->data()->at(n - 1)->value, 5000 + 200 + n - 1.0);
    QVERIFY(view.bytesPlot()->graph(0)->pen().color() != view.bytesPlot()->graph(1)->pen().color());
    QCOMPARE(view.bytesPlot()->graph(4)->pen().style(), Qt::DashLine);
    save_screenshot(&view, "view-communication.png");
    // Bad sizes: nothing drawn, no crash.
    d.tokens_sent.pop_back();
    view.setData(d);
    QCOMPARE(view.tokensPlot()->graphCount(), 0);
}

void TestViewExperts::modelTable()
{
    QCOMPARE(ModelView::humanCount(1234), QStringLiteral("1.23 K"));
    QCOMPARE(ModelView::humanCount(6.71e11), QStringLiteral("671 B"));
    QCOMPARE(ModelView::humanCount(37e9), QStringLiteral("37.0 B"));
    QCOMPARE(ModelView::humanCount(512), QStringLiteral("512"));
    QCOMPARE(ModelView::humanFlops(2.1e9), QStringLiteral("2.10 GFLOP"));
    QCOMPARE(ModelView::humanFlops(3.5e8), QStringLiteral("350 MFLOP"));

    ModelView view;
    const ModelSummaryData m = deepseek_v3_summary();
    view.setSummary(m);
    show_and_settle(&view, {1400, 950});

    double params = 0, active = 0, flops = 0;
    for (const auto &p : m.parts) {
        params += p.params;
        active += p.active_params;
        flops += p.flops_per_token;
    }
    QTreeWidgetItem *totals = view.totalsItem();
    QVERIFY(totals);
    QCOMPARE(totals->data(ModelView::ParamsColumn, ModelView::kValueRole).toDouble(), params);
    QCOMPARE(totals->data(ModelView::ActiveColumn, ModelView::kValueRole).toDouble(), active);
    QCOMPARE(totals->data(ModelView::FlopsColumn, ModelView::kValueRole).toDouble(), flops);
    QCOMPARE(totals->text(ModelView::ParamsColumn), ModelView::humanCount(params));
    qInfo("DeepSeek-V3 from its config: %s parameters (671 B main + MTP), %s active, %s per token",
          qPrintable(ModelView::humanCount(params)), qPrintable(ModelView::humanCount(active)),
          qPrintable(ModelView::humanFlops(flops)));
    QVERIFY(params > 6.7e11 && params < 6.9e11);  // 671 B + the 14 B MTP module
    QVERIFY(active > 3.6e10 && active < 4.1e10);  // ~37 B (+ MTP)
    // Group rows sum their parts.
    QTreeWidgetItem *moe = nullptr;
    for (int i = 0; i < view.table()->topLevelItemCount(); ++i)
        if (view.table()->topLevelItem(i)->text(0).startsWith("MoE layers"))
            moe = view.table()->topLevelItem(i);
    QVERIFY(moe);
    QCOMPARE(moe->childCount(), 5);
    double moe_sum = 0;
    for (int i = 0; i < moe->childCount(); ++i)
        moe_sum += moe->child(i)->data(ModelView::ParamsColumn, ModelView::kValueRole).toDouble();
    QCOMPARE(moe->data(ModelView::ParamsColumn, ModelView::kValueRole).toDouble(), moe_sum);
    QVERIFY(!view.table()->headerItem()->toolTip(ModelView::ActiveColumn).isEmpty());
    QVERIFY(view.configText()->toPlainText().contains("deepseek_v3"));
    QVERIFY(view.diagram()->plottableCount() == 6);  // total + active bars for dense, MoE, MTP

    // Given totals win over the sum (shared tensors counted once).
    ModelSummaryData shared = m;
    shared.total_params = params - 1e9;
    view.setSummary(shared);
    QCOMPARE(view.totalsItem()->data(ModelView::ParamsColumn, ModelView::kValueRole).toDouble(), params - 1e9);
    view.setSummary(m);

    const QString dir = tmp_.path();
    export_all(view.diagram(), dir, "layer_stack");
    const QString csv = QDir(dir).filePath("model.csv");
    QString error;
    QVERIFY2(view.exportTableCsv(csv, &error), qPrintable(error));
    check_nonempty(csv);
    save_screenshot(&view, "model.png");
}


// A model with a sliding window: the weights outside the window are masked like the future,
// and the mask panel beside tells the three states apart, with the window and its FLOP saving.
void TestViewExperts::sparsitySlidingWindow()
{
    const QStringList tokens = {"def", " f", "(", "x", ")", ":", "\n", " ", " return", " x", " *", " 2",
                                "\n", "print", "(", "f", "(", "3", ")", ")", "\n", "#", " ok", "."};
    const int T = tokens.size(), W = 6, L = 2, H = 2;
    AttentionData att{L, H, T, {}, tokens, W, 0, {}};
    att.weights.assign(static_cast<size_t>(L) * H * T * T, 0.5f);  // garbage where masked
    for (int l = 0; l < L; ++l)
        for (int h = 0; h < H; ++h)
            for (int q = 0; q < T; ++q) {
                const int k0 = std::max(0, q - W + 1);
                double z = 0;
                std::vector<double> w(q + 1, 0.0);
                for (int kk = k0; kk <= q; ++kk)
                    z += (w[kk] = std::exp(-0.5 * (q - kk) * (h + 1) + 0.4 * noise(q * 97 + kk + 1000 * h + 10 * l)));
                for (int kk = k0; kk <= q; ++kk)
                    att.weights[((static_cast<size_t>(l) * H + h) * T + q) * T + kk] = static_cast<float>(w[kk] / z);
            }

    RoutingMaskData mask{tokens, 16, std::vector<uint8_t>(static_cast<size_t>(T) * 16, 0), "layer 2"};
    for (int t = 0; t < T; ++t)
        for (int j = 0; j < 4; ++j)
            mask.mask[static_cast<size_t>(t) * 16 + (t * 5 + j * 3) % 16] = 1;

    SparsityView view;
    view.setRoutingMask(mask);
    view.setAttention(att);
    view.setAttentionHead(0, 1);
    show_and_settle(&view, {1400, 950});
    QVERIFY(view.windowPanel()->isVisible());

    // Mask cells: the three states exactly where the band and the causal mask put them.
    auto *wc = view.windowPlot()->colorMap()->data();
    QCOMPARE(wc->keySize(), T);
    QCOMPARE(wc->valueSize(), T);
    int seen = 0, dropped = 0, future = 0;
    for (int q = 0; q < T; ++q)
        for (int kk = 0; kk < T; ++kk) {
            const double want = kk > q ? SparsityView::kFuture
                                : kk <= q - W ? SparsityView::kOutsideWindow
                                              : SparsityView::kVisible;
            QCOMPARE(wc->cell(kk, q), want);
            seen += want == SparsityView::kVisible;
            dropped += want == SparsityView::kOutsideWindow;
            future += want == SparsityView::kFuture;
        }
    QCOMPARE(seen, 21 + (T - W) * W);  // 1 + ... + 6, then 6 per query
    QCOMPARE(dropped, (T - W) * (T - W + 1) / 2);
    QCOMPARE(future, T * (T - 1) / 2);
    // Weights: only the band holds values, everything else is the masked grey (NaN).
    auto *ac = view.attentionPlot()->colorMap()->data();
    for (int q = 0; q < T; ++q)
        for (int kk = 0; kk < T; ++kk) {
            if (att.visible(q, kk))
                QCOMPARE(ac->cell(kk, q), static_cast<double>(att.at(0, 1, q, kk)));
            else
                QVERIFY(std::isnan(ac->cell(kk, q)));
        }
    // Three distinct colours as drawn: the band, the dropped keys and the future.
    view.windowPlot()->replot();
    const QImage image = view.windowPlot()->toPixmap().toImage();
    auto color_at = [&](int key, int query) {
        return image.pixelColor(qRound(view.windowPlot()->xAxis->coordToPixel(key)),
                                qRound(view.windowPlot()->yAxis->coordToPixel(query))).rgb();
    };
    // (Sample cells off the tick rows and columns, multiples of 5, where tick marks are drawn.)
    const QRgb c_seen = color_at(11, 13), c_dropped = color_at(2, 21), c_future = color_at(21, 2);
    QVERIFY(c_seen != c_dropped && c_dropped != c_future && c_seen != c_future);
    QCOMPARE(color_at(1, 1), c_seen);
    QCOMPARE(color_at(1, T - 2), c_dropped);
    QCOMPARE(c_future, view.attentionPlot()->colorMap()->gradient().nanColor().rgb());

    // Caption: the window and the saving at this T (1 - 129 / 300 = 57.0%).
    QCOMPARE(att.windowSaving(), 1.0 - 129.0 / 300.0);
    const QString caption = view.windowCaption();
    QVERIFY2(caption.contains("6 most recent keys") && caption.contains(QString::fromUtf8("T\u00a0=\u00a024")) && caption.contains("57.0%"),
             qPrintable(caption));
    QVERIFY(view.windowPlot()->titleElement()->text().contains("W = 6"));
    save_screenshot(&view, "sparsity-window.png");

    // A window wider than the sequence saves nothing and says so; no window hides the panel.
    att.window = 40;
    view.setAttention(att);
    QVERIFY(view.windowCaption().contains("no attention FLOPs saved"));
    att.window = 0;
    view.setAttention(att);
    QApplication::processEvents();
    QVERIFY(!view.windowPanel()->isVisible());
    QVERIFY(view.windowCaption().isEmpty());
    QVERIFY(!std::isnan(view.attentionPlot()->colorMap()->data()->cell(0, T - 1)));  // key 0 visible again
}

// Dynamic top-k sparse attention: the chosen-key mask of the selected layer beside the dense
// attention it replaces, the share of keys kept and of attention they hold.
void TestViewExperts::sparsityTopkAttention()
{
    const int T = 24, K = 5, L = 2, H = 2;
    QStringList tokens;
    for (int t = 0; t < T; ++t)
        tokens << QString("t%1").arg(t);
    AttentionData att{L, H, T, {}, tokens, 0, 0, {}};
    att.topk = K;
    att.weights.assign(static_cast<size_t>(L) * H * T * T, 0.0f);
    att.chosen.assign(static_cast<size_t>(L) * T * T, 0);
    for (int l = 0; l < L; ++l) {
        for (int h = 0; h < H; ++h)
            for (int q = 0; q < T; ++q) {
                double z = 0;
                std::vector<double> w(q + 1);
                for (int kk = 0; kk <= q; ++kk)
                    z += (w[kk] = std::exp(-0.3 * (q - kk) + 0.5 * noise(q * 31 + kk + 100 * h + 7 * l)));
                for (int kk = 0; kk <= q; ++kk)
                    att.weights[((static_cast<size_t>(l) * H + h) * T + q) * T + kk] = static_cast<float>(w[kk] / z);
            }
        // Layer l keeps the first key (a sink) and the K - 1 most recent.
        for (int q = 0; q < T; ++q)
            for (int kk = 0; kk <= q; ++kk)
                if (q < K || kk == 0 || kk > q - K + 1 + l)
                    att.chosen[(static_cast<size_t>(l) * T + q) * T + kk] = 1;
    }
    SparsityView view;
    view.setAttention(att);
    view.setAttentionHead(1, 0);
    show_and_settle(&view, {1400, 950});
    QVERIFY(view.windowPanel()->isVisible());
    auto *wc = view.windowPlot()->colorMap()->data();
    int chosen = 0;
    for (int q = 0; q < T; ++q)
        for (int kk = 0; kk < T; ++kk) {
            const double want = kk > q ? SparsityView::kFuture
                                : att.isChosen(1, q, kk) ? SparsityView::kVisible
                                                         : SparsityView::kOutsideWindow;
            QCOMPARE(wc->cell(kk, q), want);
            chosen += want == SparsityView::kVisible;
        }
    // The dense attention is drawn over every causal key (it is what the chosen keys replace).
    QCOMPARE(view.attentionPlot()->colorMap()->data()->cell(2, T - 1), static_cast<double>(att.at(1, 0, T - 1, 2)));
    QVERIFY(view.attentionPlot()->titleElement()->text().startsWith("Dense attention"));
    QVERIFY(view.windowPlot()->titleElement()->text().contains("Top-5 keys"));
    QVERIFY(view.attentionPlot()->titleElement()->text().contains("layer 2, head 1"));
    const double kept = double(chosen) / (T * (T + 1) / 2.0);
    QCOMPARE(att.keptShare(1), kept);
    const QString caption = view.windowCaption();
    QVERIFY2(caption.contains(QString("%1%").arg(100.0 * kept, 0, 'f', 1)) &&
                 caption.contains(QString("%1%").arg(100.0 * att.chosenMass(1, 0), 0, 'f', 1)) &&
                 caption.contains(QString("%1%").arg(100.0 * (1 - kept), 0, 'f', 1)),
             qPrintable(caption));
    QVERIFY(att.chosenMass(1, 0) > 0.3 && att.chosenMass(1, 0) < 1.0);
    save_screenshot(&view, "sparsity-topk.png");
    // Another layer: another mask; head 2: another share of attention held.
    view.setAttentionHead(0, 1);
    QCOMPARE(view.windowPlot()->colorMap()->data()->cell(3, 8),
             att.isChosen(0, 8, 3) ? SparsityView::kVisible : SparsityView::kOutsideWindow);
    QVERIFY(view.windowCaption().contains(QString("%1%").arg(100.0 * att.chosenMass(0, 1), 0, 'f', 1)));
}

QTEST_MAIN(TestViewExperts)
#include "tst_view_experts.moc"
