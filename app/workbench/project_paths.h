#pragma once
// Where the workbench finds its presets and keeps its runs.
#include <QString>

namespace moe::workbench {

// The presets folder: $MOE_PROJECTS_DIR, then <exe dir>/../../projects (the build tree),
// <exe dir>/../projects (an install), ./projects. "" when none exists.
QString find_projects_dir();

// Default folder for new runs and their checkpoints (per user, created on demand).
QString default_runs_dir();

}  // namespace moe::workbench
