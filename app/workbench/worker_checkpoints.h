#pragma once
// Checkpoints of a run that trained on a moe-worker: they stay in the worker's runs folder, so
// listing and inspecting them are requests to the worker (docs/remote-protocol.md). The
// answers come on the connection's (GUI) thread; `context` going away drops them.
#include <QObject>
#include <QString>

#include <functional>
#include <map>
#include <optional>

#include "inspect/routing_inspection.h"

namespace moe::remote {
class RemoteConnection;
}

namespace moe::workbench {

// The worker-side checkpoint folder of a worker-side run file: "a/x.h5" -> "a/x.ckpt".
QString worker_checkpoint_root(const QString& remote_run_file);

// step-* folders under the root: name ("step-00000010") -> folder relative to the runs folder.
using CheckpointDirs = std::map<QString, QString>;
void list_worker_checkpoints(remote::RemoteConnection* worker, const QString& remote_run_file,
                             QObject* context,
                             std::function<void(CheckpointDirs dirs, QString error)> done);

// The routing of `text` by a checkpoint, computed on the worker's `device`.
void inspect_on_worker(
    remote::RemoteConnection* worker, const QString& checkpoint_dir, const QString& text,
    const QString& device, QObject* context,
    std::function<void(std::optional<Inspection> inspection, QString error)> done);

// The device a run trained on (its project's training.device), where its checkpoints are
// inspected and continued on the worker; "cpu" when the header does not say.
QString training_device(const std::string& project_json);

}  // namespace moe::workbench
