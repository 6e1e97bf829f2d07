#include "workbench/worker_checkpoints.h"

#include <QFileInfo>
#include <QPointer>
#include <QRegularExpression>

#include <nlohmann/json.hpp>

#include "remote_connection.h"
#include "session_codec.h"

namespace moe::workbench {

using nlohmann::json;

namespace {
QString message_of(const json& m) {
    return QString::fromStdString(m.value("message", m.dump().substr(0, 200)));
}
}  // namespace

QString worker_checkpoint_root(const QString& remote_run_file) {
    const int slash = int(remote_run_file.lastIndexOf('/'));
    return remote_run_file.left(slash + 1) + QFileInfo(remote_run_file).completeBaseName() +
           ".ckpt";
}

void list_worker_checkpoints(remote::RemoteConnection* worker, const QString& remote_run_file,
                             QObject* context, std::function<void(CheckpointDirs, QString)> done) {
    const QString root = worker_checkpoint_root(remote_run_file) + "/";
    QPointer<QObject> guard(context);
    worker->request({{"type", "list_files"}}, [guard, root, done](const json& m,
                                                                  const QByteArray&) {
        if (!guard) return;
        if (m.value("type", "") != "result") {
            done({}, QObject::tr("The worker did not list its checkpoints: %1").arg(message_of(m)));
            return;
        }
        // A checkpoint is a step-* folder with its config.json, directly under the root.
        static const QRegularExpression step("^(step-\\d+)/config\\.json$");
        CheckpointDirs dirs;
        for (const json& f : m.value("files", json::array())) {
            const QString path = QString::fromStdString(f.value("path", ""));
            if (!path.startsWith(root)) continue;
            const auto match = step.match(path.mid(root.size()));
            if (match.hasMatch()) dirs[match.captured(1)] = root + match.captured(1);
        }
        done(std::move(dirs), QString());
    });
}

void inspect_on_worker(remote::RemoteConnection* worker, const QString& checkpoint_dir,
                       const QString& text, const QString& device, QObject* context,
                       std::function<void(std::optional<Inspection>, QString)> done) {
    QPointer<QObject> guard(context);
    worker->request({{"type", "inspect"},
                     {"checkpoint", checkpoint_dir.toStdString()},
                     {"text", text.toStdString()},
                     {"attention", true},
                     {"device", device.toStdString()}},
                    [guard, done, checkpoint_dir](const json& m, const QByteArray&) {
                        if (!guard) return;
                        if (m.value("type", "") != "result") {
                            done(std::nullopt, QObject::tr("The worker could not inspect %1: %2")
                                                   .arg(checkpoint_dir, message_of(m)));
                            return;
                        }
                        try {
                            done(remote::inspection_from_json(m.at("inspection")), QString());
                        } catch (const std::exception& e) {
                            done(std::nullopt,
                                 QObject::tr("The worker's inspection of %1 is not readable: %2")
                                     .arg(checkpoint_dir, QString::fromStdString(e.what())));
                        }
                    });
}

QString training_device(const std::string& project_json) {
    try {
        const json p = json::parse(project_json);
        return QString::fromStdString(p.at("training").value("device", std::string("cpu")));
    } catch (const std::exception&) {
        return "cpu";
    }
}

}  // namespace moe::workbench
