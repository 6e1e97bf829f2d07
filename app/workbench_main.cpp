// moe-workbench: the desktop front end.
//   moe-workbench [--project FILE.json] [--open RUN.h5 ...] [--runs-dir DIR]
//                 [--view DOCK --screenshot FILE.png]   (documentation figures, then quit)
// Opens the default project (tiny-tasks) in the run launcher unless --project names another.
#include <QApplication>
#include <QCommandLineParser>
#include <QDockWidget>
#include <QIcon>
#include <QTimer>

#include "backend_factory.h"
#include "openmp_wait_policy.h"

#include "workbench/main_window.h"
#include "workbench/run_launcher.h"

int main(int argc, char** argv) {
    moe::app::ensure_passive_openmp_waits(argv);  // the GUI thread shares the cores
    moe::app::install_backend_factory();           // local runs may train on cuda:N
    QApplication app(argc, argv);
    QApplication::setOrganizationName("MoE Workbench");
    QApplication::setApplicationName("moe-workbench");
    QApplication::setApplicationVersion(MOE_VERSION);
    QApplication::setWindowIcon(QIcon(":/icons/moe-workbench.svg"));

    QCommandLineParser parser;
    parser.setApplicationDescription("MoE Workbench: train and study DeepSeek-V3-style MoE models");
    parser.addHelpOption();
    parser.addVersionOption();
    const QCommandLineOption project({"p", "project"}, "Project file to open in the launcher.", "FILE");
    const QCommandLineOption open({"o", "open"}, "Run file to open (repeatable).", "RUN.h5");
    const QCommandLineOption runs_dir("runs-dir", "Folder for new runs.", "DIR");
    const QCommandLineOption view("view", "Dock to bring to front, by object name (e.g. quantDock).", "DOCK");
    const QCommandLineOption screenshot("screenshot", "Save the window to FILE.png after loading, then quit.",
                                        "FILE.png");
    parser.addOptions({project, open, runs_dir, view, screenshot});
    parser.process(app);

    moe::workbench::MainWindow window;
    if (parser.isSet(runs_dir)) window.set_runs_dir(parser.value(runs_dir));
    if (parser.isSet(project)) window.launcher()->open_project(parser.value(project));
    for (const QString& run : parser.values(open)) window.open_run(run);
    window.show();
    if (parser.isSet(view)) {
        if (auto* dock = window.findChild<QDockWidget*>(parser.value(view))) dock->raise();
        else qWarning("--view: no dock named %s", qPrintable(parser.value(view)));
    }
    if (parser.isSet(screenshot)) {
        // Runs load and views redraw on timers: give them a moment before the grab.
        QTimer::singleShot(2500, &window, [&] {
            const QString file = parser.value(screenshot);
            if (!window.grab().save(file)) qWarning("--screenshot: cannot write %s", qPrintable(file));
            app.quit();
        });
    }
    return app.exec();
}
