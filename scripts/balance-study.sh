#!/usr/bin/env bash
# Trains the balance-study presets (the same model and data under the four balancing modes) and
# prints each run's load balance. Usage: scripts/balance-study.sh [OUT_DIR] [extra moe-train args]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/balance-study}
shift || true
mkdir -p "$out"
for mode in aux-free seq-aux batch-aux none; do
  run="$out/$mode.h5"
  [ -e "$run" ] || build/app/moe-train "projects/balance-study-$mode.json" --out "$run" "$@" > "$out/$mode.log"
done
for mode in aux-free seq-aux batch-aux none; do
  echo "== $mode"
  build/app/moe-train --report "$out/$mode.h5" | grep -E "last step|eval at|mean MaxVio|layer"
done
