// PruningView: the expert heatmap and ranking with the removed experts marked, the channel
// saliency heatmap with a cut before the removed channels, the criterion and layer switches, and
// pruning.json files written by the engine read back by the workbench's loader.
// Screenshots: MOE_SCREENSHOT_DIR; MOE_PRUNING_REPORTS (folders separated by ':') adds one per
// real report (the docs' images come from scripts/pruning-study.sh's output).
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QLabel>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <fstream>

#include "backend/cpu/cpu_backend.h"
#include "heatmap_plot.h"
#include "model_fixtures.h"
#include "prune/pruning_report.h"
#include "pruning_view.h"
#include "store/model_checkpoint.h"
#include "workbench/pruning_report.h"

using namespace moe;
using namespace moe::views;

namespace {

void save_screenshot(QWidget* w, const QString& name) {
    const QString dir = qEnvironmentVariable("MOE_SCREENSHOT_DIR");
    if (dir.isEmpty()) {
        qInfo("MOE_SCREENSHOT_DIR not set; no screenshot %s", qPrintable(name));
        return;
    }
    QDir().mkpath(dir);
    const QString path = QDir(dir).filePath(name);
    QVERIFY(w->grab().save(path));
    qInfo("screenshot: %s", qPrintable(path));
}

PruningData expert_data() {
    PruningData d;
    d.kind = PruningData::Kind::Experts;
    d.criterion = "masked_loss";
    d.summary = "synthetic";
    for (int l = 0; l < 3; ++l) {
        PruningExpertLayer layer;
        layer.name = QString("layer %1").arg(l + 1);
        std::vector<double> load, loss;
        for (int e = 0; e < 8; ++e) {
            load.push_back(0.05 + 0.01 * ((e * 5 + l) % 8));
            loss.push_back(e == 1 || e == 5 ? 0.001 * (l + 1) : 0.01 + 0.002 * e);
        }
        layer.scores["load"] = load;
        layer.scores["masked_loss"] = loss;
        layer.removed.assign(8, false);
        layer.removed[1] = layer.removed[5] = true;
        d.expert_layers.push_back(layer);
    }
    return d;
}

double cell(HeatmapPlot* p, int x, int y) {
    return p->colorMap()->data()->cell(x, y);
}

}  // namespace

class TestViewPruning : public QObject {
    Q_OBJECT
private slots:
    void expertsMarkTheRemoved() {
        PruningView view;
        view.resize(900, 700);
        view.setData(expert_data());
        HeatmapPlot* h = view.heatmap();
        QCOMPARE(h->colorMap()->data()->keySize(), 8);
        QCOMPARE(h->colorMap()->data()->valueSize(), 3);
        QCOMPARE(cell(h, 7, 2), 0.01 + 0.002 * 7);
        // One cross per removed expert, on its cell.
        QCOMPARE(h->itemCount(), 6);
        for (int i = 0; i < h->itemCount(); ++i) {
            auto* t = qobject_cast<QCPItemText*>(h->item(i));
            QVERIFY(t);
            const int e = int(std::lround(t->position->key()));
            QVERIFY(e == 1 || e == 5);
        }
        // Ranked bars: the removed experts are the two lowest, drawn in the removed colour.
        QCOMPARE(view.removedBars()->data()->size(), 2);
        QCOMPARE(view.keptBars()->data()->size(), 6);
        QCOMPARE(view.removedBars()->data()->at(0)->key, 0.0);
        QCOMPARE(view.removedBars()->data()->at(1)->key, 1.0);
        QVERIFY(view.removedBars()->brush().color() != view.keptBars()->brush().color());
        save_screenshot(&view, "pruning-experts-synthetic.png");

        // Another score: the cells and the bars follow, the marks stay.
        view.setCriterion("load");
        QCOMPARE(cell(h, 3, 0), 0.05 + 0.01 * ((3 * 5 + 0) % 8));
        QCOMPARE(h->itemCount(), 6);
        QCOMPARE(view.removedBars()->data()->size() + view.keptBars()->data()->size(), 8);
        view.setLayer(2);
        QCOMPARE(view.layer(), 2);
        QCOMPARE(view.summaryLabel()->text(), QString("synthetic"));
    }

    void channelsGreyTheRemoved() {
        PruningData d;
        d.kind = PruningData::Kind::Channels;
        PruningChannelLayer layer;
        layer.name = "layer 1";
        layer.rows = {"expert 0", "expert 1", "shared"};
        for (int r = 0; r < 3; ++r) {
            std::vector<double> s;
            for (int c = 0; c < 8; ++c) s.push_back(std::pow(10.0, -(c * 3 + r) % 7));
            layer.saliency.push_back(s);
            layer.removed.push_back({});
        }
        layer.removed = {{4, 6}, {3, 5}, {2, 6}};
        d.channel_layers.push_back(layer);
        PruningView view;
        view.resize(900, 700);
        view.setData(d);
        HeatmapPlot* h = view.heatmap();
        for (int r = 0; r < 3; ++r) {
            std::vector<double> s = layer.saliency[r];
            std::sort(s.begin(), s.end(), std::greater<>());
            for (int c = 0; c < 8; ++c) QVERIFY(std::abs(cell(h, c, r) - std::log10(s[c])) < 1e-9);
            // The cut before the two least salient channels.
            auto* cut = qobject_cast<QCPItemLine*>(h->item(r));
            QVERIFY(cut);
            QCOMPARE(cut->start->key(), 5.5);
            QCOMPARE(cut->start->value(), r - 0.5);
            // Stacked bars: kept + removed = the FFN's total; removed = its two least salient.
            const double removed = view.removedBars()->data()->at(r)->value;
            QVERIFY(std::abs(removed - (s[6] + s[7])) < 1e-12);
        }
        QVERIFY(!view.findChild<QWidget*>("pruningCriterion")->isEnabled());
        save_screenshot(&view, "pruning-channels-synthetic.png");
    }

    // Reports written by the engine for a real (tiny) model read back through the loader.
    void engineReportsLoad() {
        CpuBackend be(1);
        const ModelConfig cfg = test::tiny_full_config();
        Model m(cfg, be);
        m.init_weights(3);
        test::spread_router(m, 3);
        std::vector<Batch> batches = {test::random_batch(cfg.vocab_size, 2, 8, 1)};
        const ExpertImportance imp = measure_expert_importance(m, batches, 0.3, true);
        const ExpertPrunePlan plan =
            plan_expert_pruning(cfg, imp, ExpertCriterion::MaskedLoss, 0.25, false);
        QTemporaryDir tmp;
        const QString dir = tmp.filePath("experts");
        std::unique_ptr<Model> pruned = prune_experts(m, plan, be);
        save_model_checkpoint(dir.toStdString(), *pruned);
        nlohmann::json j = expert_pruning_json(imp, plan);
        j["summary"] = {{"val_loss_before", 3.1}, {"val_loss_pruned", 3.2}};
        std::ofstream(QDir(dir).filePath("pruning.json").toStdString()) << j.dump();
        QString error;
        const PruningData d = workbench::load_pruning_report(dir, &error);
        QVERIFY2(d.kind == PruningData::Kind::Experts, qPrintable(error));
        QCOMPARE(int(d.expert_layers.size()), 2);
        QCOMPARE(d.expert_layers[0].name, QString("layer 1"));
        QCOMPARE(d.expert_layers[1].name, QString("MTP 1"));  // HF index 2 of a 2-layer model
        QCOMPARE(d.expert_layers[1].scores.size(), size_t(3));
        for (size_t l = 0; l < 2; ++l)
            for (int64_t e : plan.removed[l]) QVERIFY(d.expert_layers[l].removed[size_t(e)]);
        QVERIFY(d.summary.contains("3.2000"));

        const ChannelSaliency s = measure_channel_saliency(m, batches, 0.3);
        const ChannelPrunePlan cp = plan_channel_pruning(cfg, s, 0.25);
        const QString cdir = tmp.filePath("channels");
        QDir().mkpath(cdir);
        std::ofstream(QDir(cdir).filePath("pruning.json").toStdString())
            << channel_pruning_json(cp).dump();
        const PruningData c = workbench::load_pruning_report(cdir, &error);
        QVERIFY2(c.kind == PruningData::Kind::Channels, qPrintable(error));
        // Layer 0 dense, layer 1 (8 experts + shared), layer 2 (MTP, 8 + shared).
        QCOMPARE(int(c.channel_layers.size()), 3);
        QCOMPARE(c.channel_layers[1].rows.size(), 9);
        QCOMPARE(int(c.channel_layers[1].removed[0].size()), 2);
        PruningView view;
        view.setData(c);
        view.setLayer(1);
        QCOMPARE(view.removedBars()->data()->size(), 9);

        // A file that is not a report: a message naming it, no data.
        QFile bad(tmp.filePath("bad.json"));
        QVERIFY(bad.open(QIODevice::WriteOnly));
        bad.write("{\"format\": \"other\"}");
        bad.close();
        const PruningData none = workbench::load_pruning_report(bad.fileName(), &error);
        QVERIFY(none.kind == PruningData::Kind::None);
        QVERIFY2(error.contains("bad.json") && error.contains("moe-pruning"), qPrintable(error));
    }

    // Screenshots of real reports, when given.
    void screenshotsOfReports() {
        const QStringList dirs =
            qEnvironmentVariable("MOE_PRUNING_REPORTS").split(':', Qt::SkipEmptyParts);
        if (dirs.isEmpty()) QSKIP("MOE_PRUNING_REPORTS not set");
        for (const QString& dir : dirs) {
            QString error;
            PruningData d = workbench::load_pruning_report(dir, &error);
            QVERIFY2(d.kind != PruningData::Kind::None, qPrintable(error));
            PruningView view;
            view.resize(1000, 760);
            view.setData(std::move(d));
            view.setLayer(1);
            save_screenshot(&view, QString("pruning-%1.png").arg(QFileInfo(dir).fileName()));
        }
    }
};

QTEST_MAIN(TestViewPruning)
#include "tst_view_pruning.moc"
