#!/usr/bin/env bash
# Trains the fp8-vs-bf16 presets (the same model and data with fp32, bf16 and fp8 projection
# GEMMs), prints each run's losses and the gap to fp32, then the validation loss of the fp32
# run's final weights quantized to fp8 / int8 / int4 for inference.
# Usage: scripts/precision-study.sh [OUT_DIR] [extra moe-train args]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/precision-study}
shift || true
mkdir -p "$out"
for mode in fp32 bf16 fp8; do
  run="$out/$mode.h5"
  [ -e "$run" ] || build/app/moe-train "projects/fp8-vs-bf16-$mode.json" --out "$run" "$@" > "$out/$mode.log"
done
for mode in fp32 bf16 fp8; do
  echo "== $mode"
  build/app/moe-train --report "$out/$mode.h5" | grep -E "precision|last step|eval at|quantization"
done
ckpt=$(ls -d "$out"/fp32.ckpt/step-* | tail -1)
echo "== inference with quantized weights ($ckpt)"
build/app/moe-train --quant-eval "$ckpt"
