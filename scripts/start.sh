#!/usr/bin/env bash
# Installs what is missing, builds, and starts the workbench (GUI) on the default project.
# Without a display (no DISPLAY, no WAYLAND_DISPLAY) it runs under xvfb-run, or set
# QT_QPA_PLATFORM=offscreen yourself. Arguments go to moe-workbench (--project, --open).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset default
cmake --build build --target moe-workbench moe-train
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ]; then
  if command -v xvfb-run >/dev/null; then
    exec xvfb-run -a build/app/moe-workbench "$@"
  fi
  export QT_QPA_PLATFORM=offscreen
fi
exec build/app/moe-workbench "$@"
