// Lessons, presentation mode and legibility, offscreen: every shipped lesson end to end (each
// step's action performed, each highlight found, a screenshot per step), broken lesson files
// named by file, step and field, a lesson's runs kept for the next class, presentation mode in
// and out, and the plots' text sizes at 1280x720.
#include <QtTest>

#include <qcustomplot.h>
#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDir>
#include <QDockWidget>
#include <QLabel>
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QSettings>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTextBrowser>
#include <QToolBar>

#include <fstream>

#include "highlight_frame.h"
#include "model_fixtures.h"
#include "plot_export.h"
#include "plot_style.h"
#include "routing_inspector_view.h"
#include "store/run_reader.h"
#include "train/trainer.h"
#include "training_curves_view.h"
#include "workbench/generation_controller.h"
#include "workbench/lesson.h"
#include "workbench/lesson_runner.h"
#include "workbench/lessons_panel.h"
#include "workbench/main_window.h"
#include "workbench/presentation_mode.h"
#include "workbench/run_controller.h"
#include "workbench/session_controller.h"

using namespace moe;
using namespace moe::workbench;

namespace {

const QString kProjects = QStringLiteral(MOE_SOURCE_DIR "/projects");
const QString kLessons = kProjects + "/lessons";

QString screenshot_dir() {
    QString d = qEnvironmentVariable("MOE_SCREENSHOT_DIR");
    if (d.isEmpty()) d = QDir::temp().filePath("moe-screenshots");
    d = QDir(d).filePath("lessons");
    QDir().mkpath(d);
    return d;
}

bool shoot(QWidget* w, const QString& name) {
    const QString path = QDir(screenshot_dir()).filePath(name + ".png");
    qInfo("screenshot: %s", qPrintable(path));
    return w->grab().save(path);
}

// Steps of the lessons' runs here: short, so the suite stays quick; MOE_LESSON_STEP_LIMIT=0
// runs them as shipped (for screenshots of real runs).
int64_t step_limit() {
    bool ok = false;
    const int64_t v = qEnvironmentVariableIntValue("MOE_LESSON_STEP_LIMIT", &ok);
    return ok ? v : 16;
}

void write(const QString& path, const std::string& text) {
    std::ofstream(path.toStdString()) << text;
}

// The smallest valid lesson, with one field replaced by `patch` (a JSON fragment of a step).
std::string lesson_with_step(const std::string& step, const std::string& runs = "[]") {
    return R"({"format": "moe-workbench-lesson", "version": 1, "title": "t", "runs": )" + runs +
           R"(, "steps": [{"title": "first", "text": "x", "view": "curves"}, )" + step + "]}";
}

}  // namespace

class TestGuiLessons : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName("moe-workbench-tests");
        QCoreApplication::setApplicationName("tst_gui_lessons");
        qputenv("MOE_PROJECTS_DIR", kProjects.toUtf8());
        QSettings().clear();
        QVERIFY(dir_.isValid());
    }

    // The seven shipped lessons load, and each trains for at most ~3 minutes on a 2-core CPU the
    // first time: measured here, fp32 runs of these models do ~4,200 tokens/s with their
    // evaluations (0.75 M tokens = 3 min) and the emulated fp8 ones ~1,740 (counted 2.5x).
    void shippedLessonsLoad() {
        std::vector<std::string> errors;
        const auto lessons = load_lessons(kLessons.toStdString(), kProjects.toStdString(), &errors);
        for (const auto& e : errors) qWarning("%s", e.c_str());
        QVERIFY(errors.empty());
        QCOMPARE(int(lessons.size()), 7);
        for (const Lesson& l : lessons) {
            QVERIFY2(l.steps.size() >= 3, l.id.c_str());
            double tokens = 0;
            for (const LessonRun& r : l.runs)
                tokens += double(r.project.training.steps) * double(r.project.training.batch_size) *
                          double(r.project.training.seq_len) *
                          (r.project.training.precision.mode == "fp8" ? 2.5 : 1.0);
            QVERIFY2(tokens <= 0.75e6,
                     qPrintable(QString("%1: %2 tokens").arg(l.id.c_str()).arg(tokens)));
            for (const LessonStep& s : l.steps) QVERIFY(!lesson_view_dock(s.view).empty());
        }
    }

    // Each broken lesson gets one message naming the file, the step and the field.
    void brokenLessonsNamed_data() {
        QTest::addColumn<QString>("text");
        QTest::addColumn<QStringList>("expected");
        const std::string run = R"([{"id": "r", "preset": "tiny-tasks.json"}])";
        QTest::newRow("unknown view")
            << QString::fromStdString(
                   lesson_with_step(R"({"title": "Look", "text": "x", "view": "curvs"})"))
            << QStringList{"step 2", "\"Look\"", "\"view\"", "curvs", "curves, experts"};
        QTest::newRow("missing text")
            << QString::fromStdString(lesson_with_step(R"({"title": "Look", "view": "model"})"))
            << QStringList{"step 2", "\"text\"", "missing"};
        QTest::newRow("unknown run")
            << QString::fromStdString(lesson_with_step(
                   R"({"title": "T", "text": "x", "view": "curves", "action": {"train": ["nope"]}})",
                   run))
            << QStringList{"step 2", "action.train", "nope", "(r)"};
        QTest::newRow("unknown field")
            << QString::fromStdString(lesson_with_step(
                   R"({"title": "T", "text": "x", "view": "model", "hilight": {"row": "x"}})"))
            << QStringList{"step 2", "\"hilight\"", "unknown field"};
        QTest::newRow("bad curve")
            << QString::fromStdString(lesson_with_step(
                   R"({"title": "T", "text": "x", "view": "curves", "highlight": {"curve": "los"}})"))
            << QStringList{"step 2", "highlight.curve", "los"};
        QTest::newRow("bad steps")
            << QString::fromStdString(lesson_with_step(
                   R"({"title": "T", "text": "x", "view": "curves", "highlight": {"steps": [9, 3]}})"))
            << QStringList{"step 2", "highlight.steps", "[9,3]"};
        QTest::newRow("missing preset") << QString::fromStdString(lesson_with_step(
                                               R"({"title": "T", "text": "x", "view": "model"})",
                                               R"([{"id": "r", "preset": "no-such.json"}])"))
                                        << QStringList{"runs[0].preset", "no-such.json"};
        QTest::newRow("invalid project")
            << QString::fromStdString(lesson_with_step(
                   R"({"title": "T", "text": "x", "view": "model"})",
                   R"([{"id": "r", "preset": "tiny-tasks.json", "set": {"training.steps": -5}}])"))
            << QStringList{"runs[0].set", "training.steps", "-5"};
        QTest::newRow("two actions")
            << QString::fromStdString(lesson_with_step(
                   R"({"title": "T", "text": "x", "view": "model", "action": {"model": "tiny-tasks.json", "train": ["r"]}})",
                   run))
            << QStringList{"step 2", "\"action\"", "exactly one"};
        QTest::newRow("bad checkpoint")
            << QString::fromStdString(lesson_with_step(
                   R"({"title": "T", "text": "x", "view": "routing", "action": {"inspect": "a", "run": "r", "checkpoint": "latest"}})",
                   run))
            << QStringList{"step 2", "action.checkpoint", "latest"};
        QTest::newRow("newer version")
            << QString(
                   R"({"format": "moe-workbench-lesson", "version": 7, "title": "t", "steps": []})")
            << QStringList{"\"version\"", "7", "newer"};
        QTest::newRow("not json") << QString("{\"format\": ") << QStringList{"broken.json"};
    }
    void brokenLessonsNamed() {
        QFETCH(QString, text);
        QFETCH(QStringList, expected);
        const QString path = dir_.filePath("broken/broken.json");
        QDir().mkpath(QFileInfo(path).path());
        write(path, text.toStdString());
        QString message;
        try {
            load_lesson(path.toStdString(), kProjects.toStdString());
        } catch (const std::exception& e) {
            message = QString::fromStdString(e.what());
        }
        QVERIFY2(!message.isEmpty(), "the broken lesson loaded");
        QVERIFY2(message.startsWith(path), qPrintable(message));
        for (const QString& e : expected)
            QVERIFY2(message.contains(e), qPrintable(message + "  (wanted: " + e + ")"));
        // In the panel: the lesson is left out and its message shown.
        MainWindow w;
        w.lessons_panel()->load(QFileInfo(path).path(), kProjects);
        QCOMPARE(int(w.lessons_panel()->lessons().size()), 0);
        QCOMPARE(w.lessons_panel()->load_errors().size(), 1);
        QVERIFY(w.lessons_panel()->load_errors().front().contains(path));
    }

    // Every shipped lesson, every step: the action is done, the highlight found, the view shown.
    void lessonEndToEnd_data() {
        QTest::addColumn<QString>("id");
        for (const QString& f : QDir(kLessons).entryList({"*.json"}, QDir::Files, QDir::Name))
            QTest::newRow(qPrintable(f)) << QFileInfo(f).completeBaseName();
    }
    void lessonEndToEnd() {
        QFETCH(QString, id);
        MainWindow w;
        w.set_runs_dir(dir_.filePath("runs"));
        w.lesson_runner()->set_step_limit(step_limit());
        w.resize(1440, 900);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        w.raise_view("lessonsDock");
        QVERIFY(w.lessons_panel()->start(id));
        LessonRunner* runner = w.lesson_runner();
        const Lesson* lesson = runner->lesson();
        QVERIFY(lesson);
        QSignalSpy ready(runner, &LessonRunner::step_ready);
        QSignalSpy failed(runner, &LessonRunner::action_failed);
        for (int s = 0; s < runner->step_count(); ++s) {
            if (s > 0) {
                QVERIFY(w.lessons_panel()->next_button()->isEnabled());
                w.lessons_panel()->next_button()->click();
            }
            QCOMPARE(runner->step(), s);
            // A paused run (pause_at) goes on when a later step needs all of it: press Resume.
            QElapsedTimer t;
            t.start();
            while (ready.isEmpty() && failed.isEmpty() && t.elapsed() < 300000) {
                QTest::qWait(50);
                if (w.session()->state() == SessionState::Paused && runner->busy())
                    w.findChild<QAction*>("actionResume")->trigger();
            }
            QVERIFY2(failed.isEmpty(),
                     failed.isEmpty() ? "" : qPrintable(failed.front().at(1).toString()));
            QVERIFY2(!ready.isEmpty(),
                     qPrintable(
                         QString("step %1 never got ready: %2").arg(s + 1).arg(runner->status())));
            const QList<QVariant> r = ready.takeFirst();
            QCOMPARE(r.at(0).toInt(), s);
            QVERIFY2(
                r.at(1).toBool(),
                qPrintable(QString("%1 step %2: %3").arg(id).arg(s + 1).arg(r.at(2).toString())));
            const LessonStep& step = lesson->steps[size_t(s)];
            const QString dock = QString::fromStdString(lesson_view_dock(step.view));
            QCOMPARE(w.presentation()->current_view(), dock);
            if (!step.highlight.empty())
                QVERIFY2(!views::HighlightFrame::shown(w.view_widget(dock)).isEmpty() ||
                             step.highlight.hasSteps() || step.highlight.layer >= 0,
                         qPrintable(QString("%1 step %2: nothing framed").arg(id).arg(s + 1)));
            QVERIFY(w.lessons_panel()->text_view()->toPlainText().size() > 20);
            QTest::qWait(100);  // the views' redraw tick
            QVERIFY(shoot(&w, QString("%1-step-%2").arg(id).arg(s + 1)));
        }
        QVERIFY(!w.lessons_panel()->next_button()->isEnabled());
        // Back goes to the previous step and places its highlight again.
        w.lessons_panel()->back_button()->click();
        QTRY_VERIFY_WITH_TIMEOUT(!ready.isEmpty(), 120000);
        QCOMPARE(ready.takeFirst().at(0).toInt(), runner->step_count() - 2);
        QTRY_VERIFY_WITH_TIMEOUT(!w.session()->active(), 60000);
        // Generation with MTP drafts says how many were accepted.
        if (id.contains("multi-token")) {
            QVERIFY(w.generation()->drafted() > 0);
            QVERIFY(w.generation()->accepted() >= 0 &&
                    w.generation()->accepted() <= w.generation()->drafted());
        }
    }

    // A lesson's runs are made once: the second time the lesson starts from the kept runs.
    void lessonRunsAreKept() {
        MainWindow w;
        w.set_runs_dir(dir_.filePath("runs"));  // where lessonEndToEnd made them
        w.lesson_runner()->set_step_limit(step_limit());
        QVERIFY(w.lessons_panel()->start("07-multi-token-prediction"));
        const Lesson* l = w.lesson_runner()->lesson();
        QVERIFY(w.lesson_runner()->run_complete(l->runs.front()));
        QSignalSpy ready(w.lesson_runner(), &LessonRunner::step_ready);
        QTRY_VERIFY_WITH_TIMEOUT(!ready.isEmpty(), 20000);
        QCOMPARE(w.session()->state(), SessionState::Idle);  // nothing trained
        QVERIFY(w.shown_runs().contains(w.lesson_runner()->run_path(l->runs.front())));
    }

    // Presentation mode: full screen, launcher hidden, one view, large plot text; keyboard
    // navigation between views and lesson steps; leaving restores the window.
    void presentationMode() {
        MainWindow w;
        w.set_runs_dir(dir_.filePath("runs"));
        w.lesson_runner()->set_step_limit(step_limit());
        w.resize(1280, 720);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        auto* curves = qobject_cast<views::TrainingCurvesView*>(w.view_widget("curvesDock"));
        QCustomPlot* loss = curves->plot(views::TrainingCurvesView::PanelLoss);
        const double normal_tick = loss->xAxis->tickLabelFont().pointSizeF();
        QVERIFY(normal_tick >= 9.0);
        QVERIFY(w.lessons_panel()->start("07-multi-token-prediction"));
        QSignalSpy ready(w.lesson_runner(), &LessonRunner::step_ready);
        QTRY_VERIFY_WITH_TIMEOUT(!ready.isEmpty(), 60000);

        QTest::keyClick(&w, Qt::Key_F11);
        QVERIFY(w.presentation()->active());
        QVERIFY(w.isFullScreen());
        QVERIFY(w.findChild<QDockWidget*>("launcherDock")->isHidden());
        QVERIFY(w.findChild<QDockWidget*>("logDock")->isHidden());
        QVERIFY(!w.findChild<QDockWidget*>("lessonsDock")->isHidden());  // a lesson is open
        for (QToolBar* t : w.findChildren<QToolBar*>()) QVERIFY(t->isHidden());
        QApplication::processEvents();
        loss->replot();
        QVERIFY2(loss->xAxis->tickLabelFont().pointSizeF() >= 14.0,
                 qPrintable(QString::number(loss->xAxis->tickLabelFont().pointSizeF())));
        QVERIFY(QApplication::font().pointSizeF() >= 16.0);
        QCOMPARE(w.presentation()->current_view(), QString("curvesDock"));
        QVERIFY(shoot(&w, "presentation-curves"));
        // Ctrl+Page Down: the next view; Alt+7: the model view; Page Down: the next lesson step.
        QTest::keyClick(&w, Qt::Key_PageDown, Qt::ControlModifier);
        QTRY_COMPARE(w.presentation()->current_view(), QString("expertLoadDock"));
        QTest::keyClick(&w, Qt::Key_PageUp, Qt::ControlModifier);
        QTRY_COMPARE(w.presentation()->current_view(), QString("curvesDock"));
        QTest::keyClick(&w, Qt::Key_7, Qt::AltModifier);
        QTRY_COMPARE(w.presentation()->current_view(), QString("modelDock"));
        QTest::keyClick(&w, Qt::Key_PageDown);
        QCOMPARE(w.lesson_runner()->step(), 1);
        QTRY_VERIFY_WITH_TIMEOUT(ready.size() >= 2, 60000);
        QCOMPARE(w.presentation()->current_view(), QString("curvesDock"));
        QTest::qWait(100);
        QVERIFY(shoot(&w, "presentation-lesson-step"));
        // An export in presentation style from a normal window, and back to normal.
        QTest::keyClick(&w, Qt::Key_F11);
        QVERIFY(!w.presentation()->active());
        QVERIFY(!w.isFullScreen());
        QVERIFY(!w.findChild<QDockWidget*>("launcherDock")->isHidden());
        loss->replot();
        QCOMPARE(loss->xAxis->tickLabelFont().pointSizeF(), normal_tick);
        const QString png = dir_.filePath("slides.png");
        QString error;
        QVERIFY2(views::export_plot_styled(loss, png, views::PlotStyle::presentation(), &error),
                 qPrintable(error));
        QVERIFY(QImage(png).width() > 0);
        QCOMPARE(loss->xAxis->tickLabelFont().pointSizeF(),
                 normal_tick);  // the window keeps its style
    }

    // At 1280x720 (a projector) every plot's text is at least 9 pt, and at 1440x900 the left
    // column stays narrow with a long runs path and the routing inspector needs no
    // horizontal scrolling.
    void legibleOnSmallScreens() {
        MainWindow w;
        const QString deep = dir_.filePath(
            "a/very/long/path/to/the/runs/folder/of/a/class/that/"
            "keeps/every/run/of/the/term/in/one/place");
        w.set_runs_dir(deep);
        w.resize(1440, 900);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        w.raise_view("browserDock");
        QApplication::processEvents();
        QVERIFY2(w.findChild<QDockWidget*>("browserDock")->width() < 440,
                 qPrintable(QString::number(w.findChild<QDockWidget*>("browserDock")->width())));
        w.raise_view("routingDock");
        QApplication::processEvents();
        auto* scroll =
            qobject_cast<QScrollArea*>(w.findChild<QDockWidget*>("routingDock")->widget());
        QVERIFY(scroll);
        QVERIFY2(!scroll->horizontalScrollBar()->isVisible(),
                 qPrintable(QString("routing view %1 px wide in %2")
                                .arg(scroll->widget()->minimumSizeHint().width())
                                .arg(scroll->viewport()->width())));
        w.resize(1280, 720);
        for (const char* dock : {"curvesDock", "expertLoadDock", "routingDock", "sparsityDock",
                                 "quantDock", "modelDock"}) {
            w.raise_view(dock);
            QApplication::processEvents();
            for (QCustomPlot* p : w.view_widget(dock)->findChildren<QCustomPlot*>()) {
                p->replot();
                for (QCPAxis* a : p->axisRect()->axes())
                    QVERIFY2(a->tickLabelFont().pointSizeF() >= 9.0 ||
                                 a->tickLabelFont().pixelSize() >= 12,
                             qPrintable(QString("%1 in %2: %3 pt")
                                            .arg(p->objectName(), dock)
                                            .arg(a->tickLabelFont().pointSizeF())));
            }
            QVERIFY(shoot(&w, QString("1280x720-%1").arg(dock)));
        }
    }

    // The curve panels a class first sees: an aux-loss-free run says it has no auxiliary loss
    // (no flat line on a +-1e-12 axis), the six panels fill the view's height, and the MTP
    // curve is the unweighted loss (the file holds it after lambda).
    void curvesPapercuts() {
        Project p = test::shrunk_tiny_tasks(24);
        p.name = "aux-free";
        p.training.log_every = 2;
        p.training.mtp.lambda = 0.3;
        p.training.mtp.late_lambda = 0.1;
        p.training.mtp.switch_fraction = 0.5;
        QVERIFY(p.model.aux_loss_alpha == 0.0);
        const QString path = dir_.filePath("papercuts/aux-free.h5");
        QDir().mkpath(QFileInfo(path).path());
        {
            Trainer t(p, {path.toStdString(), ""}, 1);
            while (!t.finished()) t.step();
            t.close();
        }
        MainWindow w;
        w.resize(1440, 900);
        w.show();
        QVERIFY(QTest::qWaitForWindowExposed(&w));
        QVERIFY(w.open_run(path));
        w.refresh_views_now();
        auto* v = qobject_cast<views::TrainingCurvesView*>(w.view_widget("curvesDock"));
        v->flush();
        QVERIFY(!v->graph(0, views::Metric::AuxLoss, true));
        QVERIFY(v->graph(0, views::Metric::Loss, true));
        // The six panels reach the bottom of the view (no empty strip for the hidden fp16 panel).
        QCustomPlot* bottom = v->plot(views::TrainingCurvesView::PanelThroughput);
        const int gap = v->height() - (bottom->y() + bottom->height());
        QVERIFY2(gap < v->height() / 12,
                 qPrintable(QString("%1 px below the panels of %2").arg(gap).arg(v->height())));
        // MTP: the file's weighted value divided by the weight of its step.
        const RunReader reader(path.toStdString());
        const MetricsColumns m = reader.metrics();
        const views::RunCurves c = w.run(path)->curves();
        QCOMPARE(c.mtp_loss.size(), m.mtp_loss.size());
        for (size_t i = 0; i < m.mtp_loss.size(); ++i) {
            const double lambda = p.training.mtp.lambda_at(m.step[i] - 1, p.training.steps);
            QVERIFY(std::abs(c.mtp_loss[i] - m.mtp_loss[i] / lambda) <
                    1e-9 * std::abs(c.mtp_loss[i]));
        }
        // Unweighted, it sits near the main loss (within 2x) and does not drop by 3x at the switch.
        QVERIFY(c.mtp_loss.back() > 0.5 * c.loss.back() && c.mtp_loss.back() < 2.0 * c.loss.back());
        QVERIFY(shoot(&w, "curves-aux-free"));
    }

private:
    QTemporaryDir dir_;
};

QTEST_MAIN(TestGuiLessons)
#include "tst_gui_lessons.moc"
