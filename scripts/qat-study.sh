#!/usr/bin/env bash
# Quantization-aware training against post-training quantization: trains qat-study-fp32 (600
# steps in fp32) and qat-study-int4 (the same, the last 150 steps with INT4 QAT per channel),
# then evaluates both final checkpoints with their projection weights in int8 / int4 (per
# channel and per group of 32, symmetric and asymmetric): validation loss and routing agreement
# with each run's own fp32 weights. A QAT run's INT4 row is the model it trained.
# Usage: scripts/qat-study.sh [OUT_DIR] [extra moe-train args]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/qat-study}
shift || true
mkdir -p "$out"
for run in fp32 int4; do
  [ -e "$out/$run.h5" ] || build/app/moe-train "projects/qat-study-$run.json" --out "$out/$run.h5" "$@" > "$out/$run.log"
done
for run in fp32 int4; do
  ckpt=$(ls -d "$out/$run.ckpt"/step-* | tail -1)
  echo "== qat-study-$run: $ckpt"
  build/app/moe-train --quant-eval "$ckpt" --formats fp32,int8,int4,int4-asym,int4-g32
done
