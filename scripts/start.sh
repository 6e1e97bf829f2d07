#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on the default project (CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake --preset default
cmake --build build
exec build/app/moe-train projects/tiny-tasks.json "$@"
