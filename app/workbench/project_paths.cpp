#include "workbench/project_paths.h"

#include <QCoreApplication>
#include <QDir>
#include <QStandardPaths>

namespace moe::workbench {

QString find_projects_dir() {
    QStringList candidates;
    const QString env = qEnvironmentVariable("MOE_PROJECTS_DIR");
    if (!env.isEmpty()) candidates << env;
    const QString exe = QCoreApplication::applicationDirPath();
    candidates << exe + "/../../projects" << exe + "/../projects" << QDir::currentPath() + "/projects";
    for (const QString& c : candidates) {
        const QDir d(c);
        if (d.exists() && !d.entryList({"*.json"}, QDir::Files).isEmpty()) return d.canonicalPath();
    }
    return {};
}

QString default_runs_dir() {
    const QString base = QStandardPaths::writableLocation(QStandardPaths::AppLocalDataLocation);
    return QDir(base.isEmpty() ? QDir::homePath() + "/.moe-workbench" : base).filePath("runs");
}

}  // namespace moe::workbench
