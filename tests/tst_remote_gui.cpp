// The workbench window driving a moe-worker: Connect to engine (state in the dialog and the
// status bar, the worker's devices in the launcher's device box), a run started on the worker
// from the launcher, followed live in the same views as a local run, its final run file
// mirrored locally. Recent servers remembered without the token. Screenshots for a person.
#include <QAction>
#include <QInputDialog>
#include <QTimer>
#include <QtTest>

#include <QComboBox>
#include <QDockWidget>
#include <QLabel>
#include <QLineEdit>
#include <QProcess>
#include <QPushButton>
#include <QRegularExpression>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QStatusBar>
#include <QTemporaryDir>

#include "model_fixtures.h"
#include "remote_connection.h"
#include "store/run_reader.h"
#include "communication_view.h"
#include "generation_controls.h"
#include "routing_inspector_view.h"
#include "workbench/connect_dialog.h"
#include "workbench/generation_controller.h"
#include "workbench/inspection_controller.h"
#include "workbench/main_window.h"
#include "workbench/run_controller.h"
#include "workbench/run_launcher.h"
#include "workbench/session_controller.h"

using namespace moe;
using namespace moe::workbench;

class TestRemoteGui : public QObject {
    Q_OBJECT

    QTemporaryDir dir_;
    QProcess worker_;
    quint16 port_ = 0;
    QString token_;

    void shoot(QWidget* w, const QString& name) {
        QString d = qEnvironmentVariable("MOE_SCREENSHOT_DIR");
        if (d.isEmpty()) d = QDir::temp().filePath("moe-screenshots");
        QDir().mkpath(d);
        QVERIFY(w->grab().save(QDir(d).filePath(name + ".png")));
    }

private slots:
    void initTestCase() {
        QStandardPaths::setTestModeEnabled(true);
        QCoreApplication::setOrganizationName("moe-workbench-tests");
        QCoreApplication::setApplicationName("tst_remote_gui");
        QSettings().clear();
        worker_.setProcessChannelMode(QProcess::MergedChannels);
        worker_.start(MOE_WORKER_EXE, {"--port", "0", "--runs-dir", dir_.filePath("worker-runs"), "--token-file",
                                       dir_.filePath("token")});
        QByteArray out;
        QVERIFY(QTest::qWaitFor([&] {
            worker_.waitForReadyRead(50);
            out += worker_.readAll();
            const auto m = QRegularExpression("listening on 127\\.0\\.0\\.1:(\\d+)").match(QString::fromUtf8(out));
            if (m.hasMatch()) port_ = quint16(m.captured(1).toUInt());
            return port_ != 0;
        }, 30000));
        QFile f(dir_.filePath("token"));
        QVERIFY(f.open(QIODevice::ReadOnly));
        token_ = QString::fromLatin1(f.readAll().trimmed());
    }

    void cleanupTestCase() {
        worker_.terminate();
        if (!worker_.waitForFinished(20000)) worker_.kill();
    }

    void run_on_the_worker_from_the_window() {
        MainWindow w;
        w.set_runs_dir(dir_.filePath("local-runs"));
        w.show();
        auto* engine_label = w.statusBar()->findChild<QLabel*>("statusEngine");
        QVERIFY(engine_label);
        // This computer's CPU (and its GPUs, where the build and the machine have them).
        const int local_devices = w.launcher()->device_box()->count();
        QVERIFY(local_devices >= 1);
        QCOMPARE(w.launcher()->device_id(), QString("cpu"));
        QCOMPARE(w.launcher()->project().training.device, std::string("cpu"));

        ConnectDialog* d = w.connect_dialog();
        d->show();
        d->connect_to("127.0.0.1", port_, token_, false);
        QVERIFY(QTest::qWaitFor([&] { return w.engine()->state() == remote::RemoteConnection::State::Connected; }, 15000));
        QVERIFY2(d->state_label()->text().contains("Connected"), qPrintable(d->state_label()->text()));
        QVERIFY(engine_label->text().contains(QString::number(port_)));
        QVERIFY(w.launcher()->device_box()->count() >= local_devices + 1);
        QVERIFY(w.launcher()->remote_selected());
        // The worker's first usable device (its CPU here), by the worker's own name for it.
        QCOMPARE(w.launcher()->device_box()->currentData().toString(), QString("remote:0:cpu"));
        QCOMPARE(w.launcher()->device_id(), QString("cpu"));
        shoot(d, "remote-connect-dialog");
        d->hide();
        // Recent servers: host and port, never the token.
        const QStringList recent = ConnectDialog::recent_servers();
        QVERIFY(!recent.isEmpty() && recent.front().contains(QString::number(port_)));
        QSettings s;
        for (const QString& k : s.allKeys()) QVERIFY2(!s.value(k).toString().contains(token_), qPrintable(k));

        Project p = test::shrunk_tiny_tasks(40);
        p.name = "remote-gui";
        p.training.log_every = 5;
        p.training.eval_every = 20;
        p.training.routing_every = 20;
        w.launcher()->set_project(p);
        QVERIFY(w.launcher()->start_button()->isEnabled());
        w.launcher()->start_button()->click();
        QVERIFY(w.session()->remote());
        QVERIFY(QTest::qWaitFor([&] { return w.session()->state() == SessionState::Finished ||
                                             w.session()->state() == SessionState::Failed; }, 120000));
        QCOMPARE(w.session()->state(), SessionState::Finished);
        QTest::qWait(200);
        RunController* run = w.session_run();
        QVERIFY(run);
        QCOMPARE(run->metric_rows(), int64_t(40));
        QVERIFY(run->expert_rows() >= 8);  // from the mirrored run file
        QVERIFY(run->path().startsWith(dir_.filePath("local-runs")));
        RunReader local(run->path().toStdString());
        QCOMPARE(local.metrics_count(), int64_t(40));
        shoot(&w, "remote-run-finished");

        // The routing inspector on the worker's checkpoints: listed from the worker, inspected
        // and continued there (nothing is loaded in this process), live routing while it writes.
        InspectionController* ins = w.inspection();
        QTRY_VERIFY_WITH_TIMEOUT(ins->worker() == w.engine() && ins->checkpoints().contains("step-00000040"), 15000);
        const QString ckpt_dir = ins->checkpoint_dir("step-00000040");
        QVERIFY2(ckpt_dir.endsWith(".ckpt/step-00000040") && !ckpt_dir.startsWith("/"), qPrintable(ckpt_dir));
        QVERIFY(QFileInfo(QDir(dir_.filePath("worker-runs")).filePath(ckpt_dir)).isDir());
        auto* routing = qobject_cast<views::RoutingInspectorView*>(w.view_widget("routingDock"));
        QVERIFY(routing);
        routing->checkpointBox()->setCurrentIndex(routing->checkpointBox()->findText("step-00000040"));
        routing->setText("12+34=46\n");
        QSignalSpy inspected(ins, &InspectionController::inspection_done);
        routing->inspectButton()->click();
        QVERIFY(inspected.wait(60000));
        QCOMPARE(inspected.takeFirst().at(0).toBool(), true);
        QVERIFY(ins->last_inspection());
        QCOMPARE(routing->data().n_tokens(), 9);
        QCOMPARE(ins->cached_inspectors(), 0);
        GenerationController* gen = w.generation();
        views::GenerationControls* controls = routing->generationControls();
        controls->tokensBox()->setValue(16);
        QSignalSpy generated(gen, &GenerationController::generation_done);
        controls->button()->click();
        QVERIFY(gen->running());
        QCOMPARE(controls->button()->text(), QString("Stop"));
        QVERIFY(generated.wait(60000));
        const QList<QVariant> outcome = generated.takeFirst();
        QVERIFY2(outcome.at(0).toBool(), qPrintable(routing->statusLabel()->text()));
        QVERIFY(outcome.at(1).toInt() >= 1 && outcome.at(1).toInt() <= 16);
        QVERIFY(gen->updates_shown() >= 2);  // live progress, then the final inspection
        QVERIFY2(routing->text().startsWith("12+34=46\n") && routing->text().size() > 9, qPrintable(routing->text()));
        QCOMPARE(routing->data().n_tokens(), 9 + outcome.at(1).toInt());
        QCOMPARE(controls->button()->text(), QString("Generate"));
        w.findChild<QDockWidget*>("routingDock")->raise();
        QTest::qWait(150);  // queued replots
        shoot(&w, "remote-generated");

        // Resume from a checkpoint on the worker: the window lists the worker's step-* folders.
        // Then it asks the step to train to: past the finished run's 40, as many again.
        QStringList offered;
        int proposed_target = 0;
        QTimer accept_dialog;
        connect(&accept_dialog, &QTimer::timeout, [&] {
            if (auto* dlg = qobject_cast<QInputDialog*>(QApplication::activeModalWidget())) {
                if (dlg->inputMode() == QInputDialog::IntInput) {
                    proposed_target = dlg->intValue();
                    dlg->setIntValue(50);
                } else {
                    offered = dlg->comboBoxItems();
                }
                dlg->accept();
            }
        });
        accept_dialog.start(50);
        const QString first_run = run->path();
        w.findChild<QAction*>("actionResumeCheckpoint")->trigger();
        QVERIFY(QTest::qWaitFor([&] { return !offered.isEmpty() && proposed_target != 0; }, 15000));
        accept_dialog.stop();
        QCOMPARE(proposed_target, 80);
        QVERIFY2(offered.last().contains("step-00000040") && !offered.last().startsWith("/"),
                 qPrintable(offered.join(", ")));
        QVERIFY(QTest::qWaitFor([&] { return w.session_run() && w.session_run()->path() != first_run &&
                                             (w.session()->state() == SessionState::Finished ||
                                              w.session()->state() == SessionState::Failed); }, 60000));
        QCOMPARE(w.session()->state(), SessionState::Finished);
        QVERIFY(w.session_run()->path().contains("resumed"));
        QTest::qWait(200);
        QCOMPARE(w.session_run()->metric_rows(), int64_t(10));  // steps 41..50

        // A run of several processes on the worker: two CPU processes with the experts split
        // over them (mpirun there), followed like any run; its Communication view fills.
        QComboBox* procs = w.launcher()->processes_box();
        QVERIFY(procs->findData(2) >= 0);
        procs->setCurrentIndex(procs->findData(2));
        QCOMPARE(w.launcher()->layout_edit()->text(), QString("ep=1,dp=2"));
        w.launcher()->layout_edit()->setText("ep=4");
        QVERIFY(!w.launcher()->start_button()->isEnabled());  // 4 processes' layout, 2 chosen
        w.launcher()->layout_edit()->setText("ep=2");
        QVERIFY(w.launcher()->start_button()->isEnabled());
        Project p2 = test::shrunk_tiny_tasks(10);
        p2.name = "remote-ep2";
        p2.training.batch_size = 4;
        p2.training.log_every = 5;
        w.launcher()->set_project(p2);
        const QString before = w.session_run()->path();
        w.launcher()->start_button()->click();
        QVERIFY(QTest::qWaitFor([&] { return w.session_run() && w.session_run()->path() != before &&
                                             (w.session()->state() == SessionState::Finished ||
                                              w.session()->state() == SessionState::Failed); }, 120000));
        QCOMPARE(w.session()->state(), SessionState::Finished);
        QCOMPARE(w.session_run()->header().world_size, int64_t(2));
        auto* comm = qobject_cast<views::CommunicationView*>(w.view_widget("commDock"));
        QVERIFY(comm);
        QTRY_VERIFY_WITH_TIMEOUT(comm->data().rows() >= 2, 10000);
        QCOMPARE(comm->data().ranks, 2);
        w.findChild<QDockWidget*>("commDock")->raise();
        QTest::qWait(150);
        shoot(&w, "remote-communication");
        procs->setCurrentIndex(0);

        // Back to this computer: the next run is local again.
        w.launcher()->device_box()->setCurrentIndex(0);
        QVERIFY(!w.launcher()->remote_selected());
        w.engine()->close();
        QTRY_COMPARE(w.launcher()->device_box()->count(), local_devices);
    }
};

QTEST_MAIN(TestRemoteGui)
#include "tst_remote_gui.moc"
