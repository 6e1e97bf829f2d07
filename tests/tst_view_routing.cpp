// RoutingInspectorView: synthetic routing data (heatmap shape, top-k marks, top-1 colouring,
// hover, the expert's token list, specialization, the comparison's agreement), the Inspect
// request, exports, and an end-to-end run from real tiny checkpoints through
// CheckpointInspector and the workbench adapter. Screenshots go to $MOE_SCREENSHOT_DIR.
#include <QDir>
#include <QFileInfo>
#include <QLabel>
#include <QPushButton>
#include <QComboBox>
#include <QSignalSpy>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>

#include "backend/cpu/cpu_backend.h"
#include "inspect/checkpoint_inspector.h"
#include "model/model.h"
#include "model_fixtures.h"
#include "plot_export.h"
#include "routing_heatmap.h"
#include "routing_inspector_view.h"
#include "routing_strips.h"
#include "store/model_checkpoint.h"
#include "token_flow_widget.h"
#include "workbench/routing_inspection_adapter.h"

using namespace moe;
using namespace moe::views;

namespace {

constexpr int kE = 8, kK = 2;
const QString kText = QStringLiteral("Experts route 12+30=42 here.");

// Deterministic pseudo-random scores; top-k = the K best scores plus a bias.
RoutingLayer synthetic_layer(int T, int seed, bool with_bias) {
    RoutingLayer l;
    l.scores.resize(static_cast<size_t>(T) * kE);
    for (int t = 0; t < T; ++t)
        for (int e = 0; e < kE; ++e)
            l.scores[static_cast<size_t>(t) * kE + e] =
                0.5f + 0.45f * std::sin(0.7f * t * (seed + 1) + 1.9f * e + seed);
    if (with_bias)
        for (int e = 0; e < kE; ++e) l.bias.push_back(0.04f * std::cos(1.3f * e + seed));
    for (int t = 0; t < T; ++t) {
        std::vector<int> order(kE);
        for (int e = 0; e < kE; ++e) order[e] = e;
        auto sel = [&](int e) {
            return l.scores[static_cast<size_t>(t) * kE + e] + (with_bias ? l.bias[e] : 0.0f);
        };
        std::sort(order.begin(), order.end(), [&](int a, int b) { return sel(a) > sel(b); });
        float sum = 0;
        for (int k = 0; k < kK; ++k) sum += l.scores[static_cast<size_t>(t) * kE + order[k]];
        for (int k = 0; k < kK; ++k) {
            l.topk.push_back(order[k]);
            l.weights.push_back(l.scores[static_cast<size_t>(t) * kE + order[k]] / sum);
        }
    }
    return l;
}

RoutingInspectionData synthetic(bool comparison) {
    RoutingInspectionData d;
    for (QChar c : kText) d.tokens << (c == ' ' ? QStringLiteral("\u2420") : QString(c));
    const int T = d.n_tokens();
    d.layer_names = {QStringLiteral("layer 1"), QStringLiteral("layer 2")};
    d.experts = kE;
    d.top_k = kK;
    d.n_group = 2;
    d.topk_group = 1;
    d.primary.checkpoint = QStringLiteral("step-00000200");
    d.primary.layers = {synthetic_layer(T, 1, true), synthetic_layer(T, 2, true)};
    if (comparison) {
        d.has_comparison = true;
        d.comparison.checkpoint = QStringLiteral("step-00000400");
        d.comparison.layers = {synthetic_layer(T, 3, true), synthetic_layer(T, 2, false)};
        d.agreement.overlap = 0.734;
        d.agreement.exact = 0.521;
        d.agreement.layer_overlap = {0.61, 0.858};
        d.agreement.layer_exact = {0.4, 0.642};
    }
    d.label_names = {QStringLiteral("add"), QStringLiteral("copy"), QStringLiteral("reverse")};
    for (int l = 0; l < 2; ++l) {
        Matrix m;
        m.rows = 3;
        m.cols = kE;
        for (int r = 0; r < 3; ++r) {
            double sum = 0;
            std::vector<double> row;
            for (int e = 0; e < kE; ++e) {
                const double v = 0.05 + (e % 3 == r ? 0.6 + 0.1 * l : 0.05 * e);
                row.push_back(v);
                sum += v;
            }
            for (double v : row) m.values.push_back(v / sum);
        }
        m.row_labels = d.label_names;
        d.specialization.push_back(m);
    }
    d.specialization_source = QStringLiteral("probe text at step 400");
    return d;
}

QString shot_dir() {
    QString dir = qEnvironmentVariable("MOE_SCREENSHOT_DIR");
    if (dir.isEmpty()) return {};
    QDir().mkpath(dir);
    return dir;
}

void screenshot(QWidget* w, const QString& name) {
    const QString dir = shot_dir();
    if (dir.isEmpty()) return;
    QApplication::processEvents();  // queued replots (hover highlight) land first
    QVERIFY(w->grab().save(dir + QLatin1Char('/') + name + QStringLiteral(".png")));
}

void show_view(RoutingInspectorView& v) {
    v.resize(1500, 940);
    v.show();
    QVERIFY(QTest::qWaitForWindowExposed(&v));
    QApplication::processEvents();
}

// Two tiny byte-level models (different seeds), saved as checkpoints.
ModelConfig e2e_config() {
    ModelConfig c = test::tiny_full_config();
    c.vocab_size = 256;
    c.hidden_size = 32;
    c.num_hidden_layers = 3;  // layers 1 and 2 are MoE
    c.n_routed_experts = 16;
    c.num_experts_per_tok = 4;
    c.n_group = 4;
    c.topk_group = 2;
    c.max_position_embeddings = 96;
    return c;
}

std::string save_model(const QTemporaryDir& tmp, const QString& name, uint64_t seed) {
    CpuBackend be(1);
    Model model(e2e_config(), be);
    model.init_weights(seed);
    test::spread_router(model, seed);
    const std::string dir = tmp.filePath(name).toStdString();
    save_model_checkpoint(dir, model);
    return dir;
}

}  // namespace

class TestViewRouting : public QObject {
    Q_OBJECT

private slots:
    void heatmapDimensionsAndMarkers() {
        RoutingInspectorView v;
        const RoutingInspectionData d = synthetic(false);
        v.setInspection(d);
        show_view(v);
        const int T = d.n_tokens();
        QCPColorMapData* m = v.heatmap()->scoreMap()->data();
        QCOMPARE(m->keySize(), kE);
        QCOMPARE(m->valueSize(), T);
        QVERIFY(!v.heatmap()->scoreMap()->interpolate());
        QCOMPARE(v.heatmap()->markerCount(), T * kK);
        QCOMPARE(v.heatmap()->biasMap()->data()->keySize(), kE);
        // Cell values are the scores (cell e, t).
        QCOMPARE(m->cell(3, 5), static_cast<double>(d.primary.layers[0].scores[5 * kE + 3]));
        QCOMPARE(v.heatmap()->biasMap()->data()->cell(2, 0), static_cast<double>(d.primary.layers[0].bias[2]));
        QVERIFY(!v.comparisonHeatmap()->isVisible());
        QVERIFY(!v.agreementLabel()->isVisible());

        v.setLayer(1);
        QCOMPARE(v.currentLayer(), 1);
        QCOMPARE(v.heatmap()->markerCount(), T * kK);
        QCOMPARE(m->cell(4, 7), static_cast<double>(d.primary.layers[1].scores[7 * kE + 4]));
        screenshot(&v, QStringLiteral("routing_single"));
    }

    void tokenColouringUsesTopOne() {
        RoutingInspectorView v;
        const RoutingInspectionData d = synthetic(false);
        v.setInspection(d);
        TokenFlowWidget* f = v.tokenFlow();
        QCOMPARE(f->tokenCount(), d.n_tokens());
        for (int l = 0; l < 2; ++l) {
            v.setLayer(l);
            for (int t = 0; t < d.n_tokens(); ++t)
                QCOMPARE(f->colorAt(t), RoutingInspectorView::expertColor(d.primary.layers[l].topk[t * kK]));
        }
    }

    // Every layer at once: one strip per layer, a cell per token coloured by its first expert,
    // and the hover text lists that layer's experts with weights and scores.
    void stripsShowEveryLayer() {
        RoutingInspectorView v;
        const RoutingInspectionData d = synthetic(false);
        v.setInspection(d);
        show_view(v);
        RoutingStrips* s = v.strips();
        QCOMPARE(s->layers(), d.n_layers());
        QCOMPARE(s->tokens(), d.n_tokens());
        for (int l = 0; l < d.n_layers(); ++l)
            for (int t = 0; t < d.n_tokens(); ++t) {
                QCOMPARE(s->firstExpert(l, t), d.primary.layers[l].topk[t * kK]);
                QCOMPARE(s->cellAt(s->cellRect(l, t).center()), qMakePair(l, t));
            }
        const QString text = s->cellText(1, 9);
        for (int k = 0; k < kK; ++k)
            QVERIFY2(text.contains(QString("expert %1: weight").arg(d.primary.layers[1].topk[9 * kK + k])),
                     qPrintable(text));
        QVERIFY(text.contains(d.layer_names[1]));
        QCOMPARE(s->cellAt(QPoint(1, 1)), qMakePair(-1, -1));  // the layer names, not a cell
        QVERIFY(s->cellText(5, 0).isEmpty());
        // The strip colours agree with the coloured text of the selected layer.
        v.setLayer(1);
        for (int t = 0; t < d.n_tokens(); ++t)
            QCOMPARE(v.tokenFlow()->colorAt(t), RoutingInspectorView::expertColor(s->firstExpert(1, t)));
        screenshot(&v, QStringLiteral("routing_strips"));
    }

    void hoverListsExpertsOfEveryLayer() {
        RoutingInspectorView v;
        const RoutingInspectionData d = synthetic(false);
        v.setInspection(d);
        show_view(v);
        TokenFlowWidget* f = v.tokenFlow();
        const int token = 9;
        QTest::mouseMove(f, f->tokenRect(token).center());
        QApplication::processEvents();
        QCOMPARE(v.hoveredToken(), token);
        QTableWidget* t = v.hoverTable();
        QCOMPARE(t->rowCount(), 2);
        for (int l = 0; l < 2; ++l) {
            const QString cell = t->item(l, 1)->text();
            for (int k = 0; k < kK; ++k)
                QVERIFY2(cell.contains(QString::number(d.primary.layers[l].topk[token * kK + k])),
                         qPrintable(cell));
        }
        QCOMPARE(f->highlighted(), token);

        // Hover on the heatmap: the cell under (expert 3, token 14).
        RoutingHeatmap* h = v.heatmap();
        const QPoint p(qRound(h->xAxis->coordToPixel(3)), qRound(h->yAxis->coordToPixel(14)));
        QSignalSpy spy(h, &RoutingHeatmap::cellHovered);
        QTest::mouseMove(h, p);
        QApplication::processEvents();
        QVERIFY(!spy.isEmpty());
        QCOMPARE(spy.last().at(0).toInt(), 14);
        QCOMPARE(spy.last().at(1).toInt(), 3);
        QCOMPARE(v.hoveredToken(), 14);
        screenshot(&v, QStringLiteral("routing_hover"));
    }

    void expertTopTokens() {
        RoutingInspectorView v;
        const RoutingInspectionData d = synthetic(false);
        v.setInspection(d);
        const int expert = d.primary.layers[0].topk[0];
        v.setExpert(expert);
        int count = 0;
        for (int32_t e : d.primary.layers[0].topk) count += e == expert;
        QCOMPARE(v.topTokensTable()->rowCount(), count);
        double last = 2.0;
        for (int r = 0; r < count; ++r) {
            const double w = v.topTokensTable()->item(r, 2)->text().toDouble();
            QVERIFY(w <= last);
            last = w;
        }
        // Clicking a heatmap column picks that expert.
        emit v.heatmap()->expertClicked(5);
        QCOMPARE(v.currentExpert(), 5);
    }

    void specializationMatrix() {
        RoutingInspectorView v;
        const RoutingInspectionData d = synthetic(false);
        v.setInspection(d);
        QCPColorMapData* m = v.specializationMap()->data();
        QCOMPARE(m->keySize(), kE);
        QCOMPARE(m->valueSize(), 3);
        QCOMPARE(m->cell(1, 1), d.specialization[0].at(1, 1));
        v.setLayer(1);
        QCOMPARE(m->cell(4, 1), d.specialization[1].at(1, 4));
    }

    void comparisonShowsAgreement() {
        RoutingInspectorView v;
        const RoutingInspectionData d = synthetic(true);
        v.setCheckpoints({QStringLiteral("step-00000200"), QStringLiteral("step-00000400")});
        v.setInspection(d);
        show_view(v);
        QVERIFY(v.comparisonHeatmap()->isVisible());
        QVERIFY(v.agreementLabel()->isVisible());
        const QString text = v.agreementLabel()->text();
        QVERIFY2(text.contains(QStringLiteral("73.4%")), qPrintable(text));
        QVERIFY(text.contains(QStringLiteral("52.1%")));
        QVERIFY(text.contains(QStringLiteral("layer 1: 61.0%")));
        QVERIFY(text.contains(QStringLiteral("layer 2: 85.8%")));
        QCOMPARE(v.comparisonHeatmap()->markerCount(), d.n_tokens() * kK);
        for (int t = 0; t < d.n_tokens(); ++t)
            QCOMPARE(v.comparisonTokenFlow()->colorAt(t),
                     RoutingInspectorView::expertColor(d.comparison.layers[0].topk[t * kK]));
        v.showTokenRouting(4);
        QCOMPARE(v.hoverTable()->columnCount(), 3);
        QVERIFY(v.hoverTable()->item(0, 2)->text().contains(QString::number(d.comparison.layers[0].topk[4 * kK])));
        screenshot(&v, QStringLiteral("routing_compare"));
    }

    void inspectRequest() {
        RoutingInspectorView v;
        v.setCheckpoints({QStringLiteral("step-00000100"), QStringLiteral("step-00000200")});
        v.setSamples({{QStringLiteral("probe text"), QStringLiteral("12+30=42;abc")},
                      {QStringLiteral("task: copy"), QStringLiteral("copy: xyz")}});
        QSignalSpy spy(&v, &RoutingInspectorView::inspectRequested);
        // An empty text asks for one instead of emitting.
        v.inspectButton()->click();
        QCOMPARE(spy.count(), 0);
        v.sampleBox()->setCurrentIndex(2);
        emit v.sampleBox()->activated(2);
        QCOMPARE(v.text(), QStringLiteral("copy: xyz"));
        v.comparisonBox()->setCurrentIndex(1);
        v.inspectButton()->click();
        QCOMPARE(spy.count(), 1);
        QCOMPARE(spy.at(0).at(0).toString(), QStringLiteral("copy: xyz"));
        QCOMPARE(spy.at(0).at(1).toString(), QStringLiteral("step-00000200"));  // newest first
        QCOMPARE(spy.at(0).at(2).toString(), QStringLiteral("step-00000100"));
        v.comparisonBox()->setCurrentIndex(0);
        v.inspectButton()->click();
        QCOMPARE(spy.at(1).at(2).toString(), QString());
        v.setBusy(true);
        QVERIFY(!v.inspectButton()->isEnabled());
        v.setBusy(false);
        QVERIFY(v.inspectButton()->isEnabled());
    }

    void exports() {
        RoutingInspectorView v;
        v.setInspection(synthetic(true));
        show_view(v);
        QTemporaryDir tmp;
        for (const QString& ext : {QStringLiteral("png"), QStringLiteral("svg"), QStringLiteral("pdf")}) {
            const QString a = tmp.filePath(QStringLiteral("heat.") + ext);
            const QString b = tmp.filePath(QStringLiteral("spec.") + ext);
            QString err;
            QVERIFY2(export_plot(v.heatmap(), a, &err), qPrintable(err));
            QVERIFY2(export_plot(v.specializationPlot(), b, &err), qPrintable(err));
            QVERIFY(QFileInfo(a).size() > 0);
            QVERIFY(QFileInfo(b).size() > 0);
        }
        const QString csv = tmp.filePath(QStringLiteral("heat.csv"));
        const Matrix m = v.heatmap()->scoreMatrix();
        QCOMPARE(m.rows, v.data().n_tokens());
        QCOMPARE(m.cols, kE);
        QVERIFY(write_csv(csv, m));
        QFile f(csv);
        QVERIFY(f.open(QIODevice::ReadOnly));
        QCOMPARE(f.readAll().count('\n'), v.data().n_tokens() + 1);
    }

    void endToEndWithCheckpoints() {
        QTemporaryDir tmp;
        const std::string a = save_model(tmp, QStringLiteral("step-00000100"), 21);
        const std::string b = save_model(tmp, QStringLiteral("step-00000200"), 22);
        CheckpointInspector ia(a), ib(b);
        const std::string text = "The cat sat on the mat. 12+30=42; 7*6=42. Le chat dort.";
        const Inspection ra = ia.inspect_text(text);
        const Inspection rb = ib.inspect_text(text);
        RoutingInspectionData d =
            workbench::routing_view_data(ra, "step-00000100", &rb, "step-00000200");
        QCOMPARE(d.n_tokens(), static_cast<int>(text.size()));
        QCOMPARE(d.n_layers(), 2);
        QCOMPARE(d.experts, 16);
        QCOMPARE(d.top_k, 4);

        // Specialization from a fake run header: the same text as probe, three labels.
        RunHeader h;
        h.moe_layer_indices = ra.layers;
        h.n_experts = ra.E;
        h.top_k = ra.K;
        h.label_names = {"english", "arithmetic", "french"};
        for (size_t i = 0; i < text.size(); ++i)
            h.probe_labels.push_back(i < 24 ? 0 : i < 42 ? 1 : 2);
        RoutingRow row;
        row.step = 200;
        for (const RoutingRecord& r : rb.routing) row.topk.insert(row.topk.end(), r.topk_idx.begin(), r.topk_idx.end());
        workbench::add_specialization(d, h, row, rb.layers);
        QCOMPARE(d.specialization.size(), size_t(2));
        for (int r = 0; r < 3; ++r) {
            double sum = 0;
            for (int e = 0; e < 16; ++e) sum += d.specialization[0].at(r, e);
            QVERIFY(std::fabs(sum - 1.0) < 1e-9);
        }

        RoutingInspectorView v;
        v.setCheckpoints({QStringLiteral("step-00000100"), QStringLiteral("step-00000200")});
        v.setText(QString::fromStdString(text));
        v.setInspection(d);
        show_view(v);
        QCOMPARE(v.heatmap()->markerCount(), d.n_tokens() * 4);
        QCOMPARE(v.heatmap()->scoreMap()->data()->keySize(), 16);
        const RoutingAgreement ag = routing_agreement(ra, rb);
        QVERIFY(ag.overlap < 1.0);
        const QString expected = QStringLiteral("%1%").arg(ag.overlap * 100.0, 0, 'f', 1);
        QVERIFY2(v.agreementLabel()->text().contains(expected), qPrintable(v.agreementLabel()->text()));
        for (int t = 0; t < d.n_tokens(); ++t)
            QCOMPARE(v.tokenFlow()->colorAt(t), RoutingInspectorView::expertColor(ra.routing[0].topk_idx[t * 4]));
        v.showTokenRouting(10);
        screenshot(&v, QStringLiteral("routing_checkpoints"));

        // Same checkpoint twice: everything agrees.
        const Inspection ra2 = ia.inspect_text(text);
        RoutingInspectionData same = workbench::routing_view_data(ra, "step-00000100", &ra2, "step-00000100");
        v.setInspection(same);
        QVERIFY(v.agreementLabel()->text().contains(QStringLiteral("100.0%")));
    }
};

QTEST_MAIN(TestViewRouting)
#include "tst_view_routing.moc"
