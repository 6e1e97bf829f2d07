// The workbench window end to end, offscreen: a run launched from the launcher form, driven
// with the run-control actions (pause, exactly one step, resume, stop); a finished run file
// opened; corrupt files reported without taking the window down; settings round trip; the
// longest event-loop block while training; screenshots for a person to look at.
#include <QtTest>
#include <QSignalSpy>

#include <QFile>
#include <QIcon>

#include <QAction>
#include <QDir>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTemporaryDir>

#include <QComboBox>
#include <QTreeWidget>

#include "expert_load_view.h"
#include "heatmap_plot.h"
#include "model_view.h"
#include "plot_export.h"
#include "routing_heatmap.h"
#include "routing_inspector_view.h"
#include "sparsity_view.h"
#include "store/run_reader.h"
#include "training_curves_view.h"
#include "model_fixtures.h"
#include "test_support.h"
#include "train/trainer.h"
#include "workbench/weight_formats_dialog.h"
#include "generation_controls.h"
#include "workbench/generation_controller.h"
#include "workbench/inspection_controller.h"
#include "workbench/main_window.h"
#include "workbench/project_form.h"
#include "workbench/run_browser.h"
#include "workbench/run_controller.h"
#include "workbench/run_launcher.h"
#include "workbench/session_controller.h"

using namespace moe;
using namespace moe::workbench;

namespace {

QString screenshot_dir() {
    QString d = qEnvironmentVariable("MOE_SCREENSHOT_DIR");
    if (d.isEmpty()) d = QDir::temp().filePath("moe-screenshots");
    QDir().mkpath(d);
    return d;
}

void shoot(QWidget* w, const QString& name) {
    const QString path = QDir(screenshot_dir()).filePath(name + ".png");
    QVERIFY(w->grab().save(path));
    qInfo("screenshot: %s", qPrintable(path));
}

// A small, quick project (tiny-tasks shrunk) for a finished run file.
Project small_project(int64_t steps) {
    Project p = test::shrunk_tiny_tasks(steps);
    p.name = "small-finished";
    p.training.log_every = 2;
    p.training.eval_every = 10;
    p.training.routing_every = 10;
    return p;
}

QAction* action(QWidget* w, const char* name) { return w->findChild<QAction*>(name); }

// Exports one plot in every format; each file must exist and hold something.
void export_all(QCustomPlot* plot, const views::CsvContent& csv, const QString& stem) {
    const QDir d(screenshot_dir());
    for (const char* ext : {"png", "pdf", "svg"}) {
        const QString path = d.filePath(QString("%1.%2").arg(stem, ext));
        QString error;
        QVERIFY2(views::export_plot(plot, path, &error), qPrintable(error));
        QVERIFY2(QFileInfo(path).size() > 0, qPrintable(path));
    }
    if (csv.series.empty() && !csv.matrix) return;
    const QString path = d.filePath(stem + ".csv");
    QString error;
    QVERIFY2(views::write_csv(path, csv, &error), qPrintable(error));
    QVERIFY2(QFileInfo(path).size() > 0, qPrintable(path));
}

views::CsvContent matrix_csv(const views::Matrix& m) {
    views::CsvContent c;
    c.matrix = m;
    return c;
}

// Raises a dock and saves the whole window.
void shoot_dock(MainWindow& w, const char* dock, const QString& name) {
    w.findChild<QDockWidget*>(dock)->raise();
    QTest::qWait(150);  // queued replots
    shoot(&w, name);
}

}  // namespace

class TestGuiWorkbench : public QObject {
    Q_OBJECT

    QTemporaryDir dir_;
    QString finished_run_;

private slots:
    // The application icon is compiled in from resources/.
    void iconResource() {
        QVERIFY(QFile::exists(":/icons/moe-workbench.svg"));
        QVERIFY(!QIcon(":/icons/moe-workbench.svg").pixmap(32, 32).isNull());
    }

    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);  // settings go to a test location
        QCoreApplication::setOrganizationName("moe-workbench-tests");
        QCoreApplication::setApplicationName("tst_gui_workbench");
        qputenv("MOE_PROJECTS_DIR", QByteArray(MOE_SOURCE_DIR "/projects"));
        QVERIFY(dir_.isValid());
        // A finished run to open later, written by the engine directly.
        finished_run_ = dir_.filePath("finished/small.h5");
        Trainer t(small_project(20), {finished_run_.toStdString(), ""}, 1);
        while (!t.finished()) t.step();
        t.close();
    }

    void init() { QSettings().clear(); }

    void startupShowsDefaultProject() {
        MainWindow w;
        w.set_runs_dir(dir_.filePath("runs0"));
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QCOMPARE(QString::fromStdString(w.launcher()->project().name), QString("tiny-tasks"));
        QVERIFY(w.launcher()->start_button()->isEnabled());
        const auto* summary = w.launcher()->findChild<QLabel*>("modelSummary");
        QVERIFY(summary->text().contains("active"));
        for (const char* dock : {"launcherDock", "browserDock", "curvesDock", "expertLoadDock", "routingDock",
                                 "sparsityDock", "modelDock", "logDock"})
            QVERIFY2(w.findChild<QDockWidget*>(dock), dock);
        QTest::qWait(100);
        shoot(&w, "workbench-start");

        // Invalid as you type: the engine's message next to the field, Start off.
        auto* topk = qobject_cast<QSpinBox*>(w.launcher()->form()->editor("topk_group"));
        topk->setValue(9);
        QVERIFY(!w.launcher()->start_button()->isEnabled());
        QVERIFY(!action(&w, "actionStart")->isEnabled());
        QCOMPARE(w.launcher()->form()->error_field(), QString("topk_group"));
        QVERIFY(w.launcher()->form()->error().contains("topk_group"));
        QTest::qWait(50);
        shoot(&w, "workbench-invalid-field");
        topk->setValue(2);
        QVERIFY(w.launcher()->start_button()->isEnabled());

        // Sliding window: validated by the engine like every field, its saving in the summary.
        auto* window = qobject_cast<QSpinBox*>(w.launcher()->form()->editor("sliding_window"));
        QVERIFY(window);
        QCOMPARE(window->value(), 0);
        QVERIFY(!window->toolTip().isEmpty());
        window->setValue(-1);
        QCOMPARE(w.launcher()->form()->error_field(), QString("sliding_window"));
        QVERIFY(!w.launcher()->start_button()->isEnabled());
        window->setValue(64);
        QVERIFY(w.launcher()->start_button()->isEnabled());
        QCOMPARE(w.launcher()->project().model.sliding_window, int64_t(64));
        QTRY_VERIFY2(summary->text().contains("sliding window 64: attention FLOPs -25.2%"), qPrintable(summary->text()));
        window->setValue(0);
        QTRY_VERIFY(!summary->text().contains("sliding window"));
    }

    void trainPauseStepResumeStop() {
        MainWindow w;
        const QString runs = dir_.filePath("runs1");
        w.set_runs_dir(runs);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        ProjectForm* form = w.launcher()->form();
        qobject_cast<QSpinBox*>(form->editor("training.steps"))->setValue(30);
        // 100 warmup steps in a 30-step run: the engine says so, Start stays off.
        QVERIFY(!w.launcher()->start_button()->isEnabled());
        QCOMPARE(form->error_field(), QString("training.optimizer.schedule.warmup_steps"));
        qobject_cast<QSpinBox*>(form->editor("training.optimizer.schedule.warmup_steps"))->setValue(5);
        qobject_cast<QSpinBox*>(form->editor("training.log_every"))->setValue(5);
        QVERIFY2(w.launcher()->start_button()->isEnabled(), qPrintable(form->error()));
        w.launcher()->findChild<QSpinBox*>("threads")->setValue(1);

        // The event loop's longest gap, measured by a 5 ms timer while training runs.
        QElapsedTimer clock;
        qint64 last = -1, max_gap = 0;
        QTimer ticker;
        ticker.setInterval(5);
        connect(&ticker, &QTimer::timeout, [&] {
            const qint64 now = clock.elapsed();
            if (last >= 0) max_gap = std::max(max_gap, now - last);
            if (last >= 0 && now - last > 40 && qEnvironmentVariableIsSet("MOE_TRACE_GAPS"))
                qInfo("gap %lld ms at %lld ms (step %lld, %s)", now - last, now,
                      (long long)w.session()->steps_done(), to_string(w.session()->state()));
            last = now;
        });

        // Baseline: the same measure with nothing training (what the machine's load alone costs).
        clock.start();
        ticker.start();
        QTest::qWait(1000);
        ticker.stop();
        const qint64 idle_gap = max_gap;
        max_gap = 0;
        last = -1;

        QTest::mouseClick(w.launcher()->start_button(), Qt::LeftButton);
        QTRY_VERIFY_WITH_TIMEOUT(w.session_run() != nullptr, 60000);
        clock.start();
        ticker.start();
        QTRY_VERIFY_WITH_TIMEOUT(w.session_run()->metric_rows() >= 3, 120000);
        QTRY_COMPARE(qobject_cast<views::TrainingCurvesView*>(w.view_widget("curvesDock"))->runCount(), 1);
        QVERIFY(!w.launcher()->start_button()->isEnabled());  // one run at a time

        action(&w, "actionPause")->trigger();
        QTRY_COMPARE_WITH_TIMEOUT(w.session()->state(), SessionState::Paused, 30000);
        const int64_t n = w.session()->steps_done();
        QTest::qWait(400);
        QCOMPARE(w.session()->steps_done(), n);
        QCOMPARE(w.session_run()->metric_rows(), n);
        QVERIFY(action(&w, "actionStep")->isEnabled());

        action(&w, "actionStep")->trigger();
        QTRY_COMPARE_WITH_TIMEOUT(w.session()->steps_done(), n + 1, 30000);
        QTest::qWait(400);
        QCOMPARE(w.session()->steps_done(), n + 1);  // exactly one
        QCOMPARE(w.session_run()->metric_rows(), n + 1);
        QCOMPARE(w.session()->state(), SessionState::Paused);
        QVERIFY(w.findChild<QLabel*>("statusStep")->text().contains(QString("step %1 / 30").arg(n + 1)));
        ticker.stop();  // the screenshot (grab + PNG) is the test's work, not the window's
        shoot(&w, "workbench-paused");
        last = -1;
        ticker.start();

        action(&w, "actionResume")->trigger();
        QTRY_VERIFY_WITH_TIMEOUT(w.session()->steps_done() >= n + 3, 60000);
        action(&w, "actionStop")->trigger();
        QTRY_COMPARE_WITH_TIMEOUT(w.session()->state(), SessionState::Finished, 60000);
        ticker.stop();
        const int64_t done = w.session()->steps_done();
        QVERIFY(done < 30);

        // Stopped: a checkpoint of the last step, a closed file holding every step.
        const QString run_file = w.session()->run_file();
        QString ckpt = run_file;
        ckpt.replace(".h5", ".ckpt");
        QVERIFY2(QDir(ckpt).exists(QString("step-%1").arg(done, 8, 10, QChar('0'))), qPrintable(ckpt));
        QCOMPARE(RunReader(run_file.toStdString()).metrics_count(), done);
        QTRY_VERIFY_WITH_TIMEOUT(w.session_run()->expert_rows() >= 1, 5000);
        QVERIFY(w.log_view()->toPlainText().contains("run stopped at step"));  // engine log lines
        QVERIFY(w.recent_runs().contains(run_file));
        QVERIFY(action(&w, "actionStart")->isEnabled());
        QTest::qWait(100);
        shoot(&w, "workbench-stopped");

        qInfo("event loop: longest gap %lld ms while training (target < 50 ms); %lld ms idle; "
              "longest GUI work (view refresh, run-file poll) %.1f ms",
              max_gap, idle_gap, w.longest_gui_work_ms());
        // Only bounds that catch the engine blocking the GUI thread for a whole run: the 50 ms
        // target is measured by moe-bench-gui, not asserted on a machine of unknown speed.
        if (max_gap >= 50) qWarning("event loop gap above the 50 ms target: %lld ms", max_gap);
        QVERIFY2(w.longest_gui_work_ms() < 5000,
                 qPrintable(QString("GUI work took %1 ms").arg(w.longest_gui_work_ms())));
        QVERIFY2(max_gap < 5000, qPrintable(QString("event loop blocked for %1 ms").arg(max_gap)));
    }

    void openFinishedRun() {
        MainWindow w;
        w.set_runs_dir(dir_.filePath("finished"));
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QVERIFY(w.open_run(finished_run_));
        RunController* c = w.run(QFileInfo(finished_run_).absoluteFilePath());
        QVERIFY(c);
        QCOMPARE(c->metric_rows(), int64_t(20));
        QCOMPARE(c->series("loss").y.size(), size_t(20));
        QVERIFY(c->eval_rows() >= 2);
        QCOMPARE(c->expert_load(0).cols, 8);
        QVERIFY(c->expert_load(0).rows >= 10);
        auto* curves = qobject_cast<views::TrainingCurvesView*>(w.view_widget("curvesDock"));
        QTRY_COMPARE(curves->runCount(), 1);
        QVERIFY(curves->graph(0, views::Metric::Loss, false));
        auto* experts = qobject_cast<views::ExpertLoadView*>(w.view_widget("expertLoadDock"));
        QTRY_COMPARE(experts->data().step_count(), int(c->expert_rows()));
        QCOMPARE(experts->data().experts, 8);
        QVERIFY(w.recent_runs().contains(c->path()));
        QTest::qWait(100);
        shoot(&w, "workbench-finished-run");
    }

    // Run > Evaluate quantized weights…: the engine runs off the GUI thread, the table fills.
    void quantizedWeightsDialog() {
        const QString run_file = dir_.filePath("qweights/run.h5");
        const QString root = InspectionController::checkpoint_root(run_file);
        {
            Trainer t(small_project(10), {run_file.toStdString(), root.toStdString()}, 1);
            while (!t.finished()) t.step();
            t.close();
        }
        MainWindow w;
        w.set_runs_dir(dir_.filePath("qweights"));
        w.show();
        QVERIFY(w.findChild<QAction*>("actionQuantizedWeights"));
        WeightFormatsDialog* d = w.weight_formats_dialog();
        QSignalSpy done(d, &WeightFormatsDialog::finished_evaluation);
        d->evaluate(root + "/step-00000010");
        QVERIFY(d->busy());  // evaluate() returned at once: the engine works off the GUI thread
        QVERIFY(done.wait(60000));
        QCOMPARE(d->table()->rowCount(), 5);
        QCOMPARE(d->table()->item(0, 0)->text(), QString("fp32"));
        QCOMPARE(d->table()->item(0, 4)->text(), QString("+0.00%"));
        QCOMPARE(d->table()->item(1, 0)->text(), QString("fp8"));
        QVERIFY(d->table()->item(1, 2)->text() != QString("0.00%"));
        QVERIFY2(d->status()->text().contains("step 10"), qPrintable(d->status()->text()));
        // A folder that is not a checkpoint: an error in the dialog, nothing thrown.
        d->evaluate(dir_.filePath("qweights"));
        QVERIFY(done.wait(30000));
        QVERIFY2(d->status()->text().startsWith("Could not evaluate") &&
                     d->status()->text().contains("trainer_state.json"),
                 qPrintable(d->status()->text()));
    }

    void everyDockShowsData() {
        // A run with checkpoints, written by the engine directly.
        const QString run_file = dir_.filePath("docks/ckpt.h5");
        {
            Project p = small_project(20);
            p.name = "with-checkpoints";
            p.training.checkpoint_every = 10;
            p.training.keep_checkpoints = 0;
            Trainer t(p, {run_file.toStdString(), InspectionController::checkpoint_root(run_file).toStdString()}, 1);
            while (!t.finished()) t.step();
            t.close();
        }
        MainWindow w;
        w.set_runs_dir(dir_.filePath("docks"));
        w.resize(1440, 900);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QVERIFY(w.open_run(run_file));
        RunController* c = w.run(QFileInfo(run_file).absoluteFilePath());
        QVERIFY(c);

        // Curves: points, and the tokens and time columns filled.
        auto* curves = qobject_cast<views::TrainingCurvesView*>(w.view_widget("curvesDock"));
        QTRY_COMPARE(curves->runCount(), 1);
        curves->flush();
        QVERIFY(curves->graph(0, views::Metric::Loss, false)->dataCount() >= 10);
        const views::RunCurves rc = c->curves();
        QCOMPARE(rc.tokens.size(), rc.step.size());
        QCOMPARE(rc.wall_s.size(), rc.step.size());
        QVERIFY(rc.tokens.back() > rc.tokens.front());
        QVERIFY(rc.wall_s.back() > 0);
        curves->setXAxis(views::XAxisKind::Tokens);
        curves->flush();
        QVERIFY(curves->graph(0, views::Metric::Loss, false)->dataCount() >= 10);
        QCOMPARE(curves->graph(0, views::Metric::Loss, false)->data()->at(curves->graph(0, views::Metric::Loss, false)->dataCount() - 1)->key, rc.tokens.back());
        curves->setXAxis(views::XAxisKind::Step);
        curves->flush();
        export_all(curves->plot(views::TrainingCurvesView::PanelLoss),
                   curves->csvFor(views::TrainingCurvesView::PanelLoss), "export-curves-loss");

        // Expert load: rows at the logged step numbers, named layers.
        auto* experts = qobject_cast<views::ExpertLoadView*>(w.view_widget("expertLoadDock"));
        QTRY_COMPARE(experts->data().step_count(), int(c->expert_rows()));
        QVERIFY(experts->data().step_count() >= 10);
        QCOMPARE(experts->data().steps.back(), 20.0);
        QCOMPARE(experts->data().layer_names.front(), QString("layer 1"));
        QCOMPARE(experts->data().layer_names.back(), QString("MTP 1"));
        QVERIFY(experts->loadTrainingPlot()->xAxis->range().upper >= 20);
        QVERIFY(experts->loadTrainingPlot()->titleElement()->text().endsWith("layer 1"));
        export_all(experts->loadTrainingPlot(), matrix_csv(experts->loadTrainingPlot()->toMatrix()), "export-expert-load");

        // Model: the run's own config, with totals.
        auto* model = qobject_cast<views::ModelView*>(w.view_widget("modelDock"));
        QCOMPARE(w.model_source(), c->path());
        QVERIFY(model->totalsItem());
        QVERIFY(model->totalsItem()->text(0).contains("with-checkpoints"));
        QVERIFY(model->table()->topLevelItemCount() > 3);
        export_all(model->diagram(), {}, "export-model-diagram");
        {
            const QString csv = QDir(screenshot_dir()).filePath("export-model-table.csv");
            QVERIFY(model->exportTableCsv(csv));
            QVERIFY(QFileInfo(csv).size() > 0);
        }

        // Routing inspector: checkpoints listed; Inspect runs off the GUI thread.
        auto* routing = qobject_cast<views::RoutingInspectorView*>(w.view_widget("routingDock"));
        InspectionController* ins = w.inspection();
        QCOMPARE(ins->checkpoints(), QStringList({"step-00000010", "step-00000020"}));
        QCOMPARE(routing->checkpointBox()->currentText(), QString("step-00000020"));
        QVERIFY(routing->sampleBox()->count() > 3);
        QVERIFY(routing->sampleBox()->findText("probe text (all labels)") > 0);
        routing->setText("12+34=46\ncopy:abc>abc\n");
        QElapsedTimer clock;
        clock.start();
        QTest::mouseClick(routing->inspectButton(), Qt::LeftButton);
        // The click returns while the engine works elsewhere (busy is still set); the time is
        // only a bound against a hang.
        QVERIFY(clock.elapsed() < 10000);
        QVERIFY(ins->busy());
        QVERIFY(!routing->inspectButton()->isEnabled());
        QTRY_VERIFY_WITH_TIMEOUT(!ins->busy(), 60000);
        QVERIFY(ins->last_inspection());
        const int T = routing->data().n_tokens(), K = routing->data().top_k;
        QCOMPARE(T, 22);
        QCOMPARE(routing->heatmap()->markerCount(), T * K);
        QVERIFY(!routing->data().specialization.empty());
        QVERIFY(routing->data().specialization.front().rows > 0);
        QCOMPARE(ins->cached_inspectors(), 1);
        export_all(routing->specializationPlot(), matrix_csv(routing->data().specialization.front()), "export-routing-specialization");

        // Sparsity: the mask of the inspected text, attention, never-chosen curves, a note.
        auto* sparsity = qobject_cast<views::SparsityView*>(w.view_widget("sparsityDock"));
        const views::Matrix mask = sparsity->maskPlot()->toMatrix();
        QCOMPARE(mask.rows * mask.cols, T * routing->data().experts);
        double chosen = 0;
        for (double v : mask.values) chosen += v;
        QCOMPARE(int(chosen), T * K);
        QVERIFY(sparsity->attentionPlot()->toMatrix().values.size() > 0);
        QCOMPARE(sparsity->neverChosenPlot()->graphCount(), int(c->header().n_layers()));
        QVERIFY(sparsity->neverChosenPlot()->graph(0)->dataCount() >= 10);
        // Format version 2: near-zero FFN outputs per FFN layer from /sparsity, no note.
        QCOMPARE(sparsity->nearZeroPlot()->graphCount(), int(c->header().n_ffn_layers()));
        QVERIFY(sparsity->nearZeroPlot()->graph(0)->dataCount() >= 10);
        QVERIFY(sparsity->nearZeroNote().isEmpty());
        export_all(sparsity->maskPlot(), matrix_csv(mask), "export-sparsity-mask");
        shoot_dock(w, "sparsityDock", "workbench-sparsity");

        // Comparison of two checkpoints: an agreement headline.
        routing->comparisonBox()->setCurrentIndex(routing->comparisonBox()->findText("step-00000010"));
        routing->inspectButton()->click();
        QTRY_VERIFY_WITH_TIMEOUT(!ins->busy(), 60000);
        QVERIFY(routing->data().has_comparison);
        QVERIFY(!routing->agreementLabel()->isHidden());
        QVERIFY2(routing->agreementLabel()->text().contains("%"), qPrintable(routing->agreementLabel()->text()));
        QCOMPARE(ins->cached_inspectors(), 2);
        QCOMPARE(routing->comparisonHeatmap()->markerCount(), T * K);

        // Generate: the checkpoint continues the text with its KV cache off the GUI thread, the
        // inspector follows the growing text live, and the final text lands in the text box.
        routing->comparisonBox()->setCurrentIndex(0);
        GenerationController* gen = w.generation();
        views::GenerationControls* controls = routing->generationControls();
        QVERIFY(controls->button()->isEnabled());
        controls->tokensBox()->setValue(24);
        QSignalSpy done(gen, &GenerationController::generation_done);
        clock.restart();
        QTest::mouseClick(controls->button(), Qt::LeftButton);
        QVERIFY(clock.elapsed() < 10000);
        QVERIFY(gen->running());
        QCOMPARE(controls->button()->text(), QString("Stop"));
        QVERIFY(done.wait(60000));
        QCOMPARE(done.takeFirst().at(0).toBool(), true);
        QVERIFY(!gen->running());
        QCOMPARE(controls->button()->text(), QString("Generate"));
        QVERIFY(gen->updates_shown() >= 1);
        QVERIFY2(routing->text().startsWith("12+34=46\ncopy:abc>abc\n") && routing->text().size() > 22,
                 qPrintable(routing->text()));
        // The inspector shows the whole text: the prompt's 22 tokens and the new ones (the byte
        // model may stop early at its context, never later).
        QVERIFY(routing->data().n_tokens() > T && routing->data().n_tokens() <= T + 24);
        QCOMPARE(routing->heatmap()->markerCount(), routing->data().n_tokens() * K);
        shoot_dock(w, "routingDock", "workbench-generated");

        shoot_dock(w, "curvesDock", "workbench-curves");
        shoot_dock(w, "expertLoadDock", "workbench-experts");
        shoot_dock(w, "routingDock", "workbench-routing");
        shoot_dock(w, "modelDock", "workbench-model");
    }

    // A person's look at a real run (MOE_REAL_RUN=/path/run.h5 with its .ckpt folder).
    void realRunScreenshots() {
        const QString real = qEnvironmentVariable("MOE_REAL_RUN");
        if (real.isEmpty()) QSKIP("set MOE_REAL_RUN to a run file");
        MainWindow w;
        w.resize(1440, 900);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QVERIFY(w.open_run(real));
        auto* routing = qobject_cast<views::RoutingInspectorView*>(w.view_widget("routingDock"));
        QTRY_VERIFY(w.inspection()->run() != nullptr);
        const int probe = routing->sampleBox()->findText("probe text (all labels)");
        if (probe > 0) routing->setText(routing->sampleBox()->itemData(probe).toString().left(120));
        if (routing->comparisonBox()->count() > 2) routing->comparisonBox()->setCurrentIndex(1);
        routing->inspectButton()->click();
        QTRY_VERIFY_WITH_TIMEOUT(!w.inspection()->busy(), 120000);
        for (const char* d : {"curvesDock", "expertLoadDock", "routingDock", "sparsityDock", "modelDock"})
            shoot_dock(w, d, QString("real-%1").arg(d));
    }

    void overlayFromBrowser() {
        // Two runs selected in the browser are both shown.
        QDir d(dir_.filePath("finished"));
        QFile::copy(finished_run_, d.filePath("copy.h5"));
        MainWindow w;
        w.set_runs_dir(d.path());
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        w.show_runs({finished_run_, d.filePath("copy.h5")});
        QCOMPARE(w.shown_runs().size(), 2);
        QTRY_COMPARE(qobject_cast<views::TrainingCurvesView*>(w.view_widget("curvesDock"))->runCount(), 2);
    }

    void corruptFilesAreReported() {
        MainWindow w;
        w.set_runs_dir(dir_.filePath("bad"));
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        const QString garbage = dir_.filePath("bad/garbage.h5");
        {
            QFile f(garbage);
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write("this is not an HDF5 file\n");
        }
        const QString truncated = dir_.filePath("bad/truncated.h5");
        {
            QFile in(finished_run_);
            QVERIFY(in.open(QIODevice::ReadOnly));
            const QByteArray all = in.readAll();
            QFile out(truncated);
            QVERIFY(out.open(QIODevice::WriteOnly));
            out.write(all.left(all.size() / 3));
        }
        for (const QString& bad : {garbage, truncated}) {
            QVERIFY(!w.open_run(bad));
            QVERIFY(!w.last_error().isEmpty());
            auto* box = w.findChild<QMessageBox*>("errorBox");
            QVERIFY(box);
            QTRY_VERIFY(box->isVisible());
            qInfo("reported: %s", qPrintable(w.last_error()));
            box->accept();
            QTRY_VERIFY(!w.findChild<QMessageBox*>("errorBox"));
        }
        QVERIFY(w.log_view()->toPlainText().contains("garbage.h5"));
        // Still usable: a good run opens.
        QVERIFY(w.open_run(finished_run_));
    }

    void settingsRoundTrip() {
        QByteArray state;
        {
            MainWindow w;
            w.show();
            QVERIFY(QTest::qWaitForWindowExposed(&w));
            w.resize(1100, 760);
            w.findChild<QDockWidget*>("logDock")->hide();
            w.findChild<QDockWidget*>("browserDock")->raise();
            QTest::qWait(50);
            w.save_settings();
            state = w.saveState();
        }
        MainWindow w2;  // restores in its constructor
        w2.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w2));
        QVERIFY(w2.findChild<QDockWidget*>("logDock")->isHidden());
        QVERIFY(!w2.findChild<QDockWidget*>("curvesDock")->isHidden());
        QVERIFY2(w2.size() == QSize(1100, 760) || w2.size() == w2.minimumSizeHint().expandedTo(QSize(1100, 760)), qPrintable(QString("%1x%2, min %3x%4").arg(w2.width()).arg(w2.height()).arg(w2.minimumSizeHint().width()).arg(w2.minimumSizeHint().height())));
        // The dock arrangement came back (raw state bytes differ by the views' own sizes).
        QVERIFY(w2.tabifiedDockWidgets(w2.findChild<QDockWidget*>("launcherDock"))
                    .contains(w2.findChild<QDockWidget*>("browserDock")));
        QVERIFY(!state.isEmpty());
    }
};

QTEST_MAIN(TestGuiWorkbench)
#include "tst_gui_workbench.moc"
