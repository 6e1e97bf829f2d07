#!/usr/bin/env bash
# Quantization-aware training against post-training quantization (docs/precision.md): trains
# qat-study-fp32 (600 steps in fp32) and qat-study-int4 / -int3 / -int2 (the same run, its last
# 150 steps with QAT per channel at that width: identical to the fp32 run up to step 450, so
# each is a fine-tune of the fp32 run's step-450 weights), then
#   - evaluates the fp32 run's final checkpoint with its projection weights quantized to every
#     format (PTQ): validation loss and routing agreement with its fp32 weights;
#   - exports each QAT run's final checkpoint with its weights stored quantized
#     (moe-train --export-quantized) and evaluates the export (the model QAT trained, read back
#     from packed codes and scales) against the fp32 run (--reference): loss and routing
#     agreement with the same fp32 model the PTQ rows are compared with; the export's loss must
#     equal the QAT run's in-memory quantized loss;
#   - writes the table as CSV and the figure docs/images/qat-study.png (moe-bar-figure).
# Runs already in OUT_DIR are kept. Usage: scripts/qat-study.sh [OUT_DIR] [extra moe-train args]
# (e.g. --threads 1). ~30 min of CPU on 2 cores (five 600-step runs of ~5 min, evaluations); the
# last run is INT2 with learned scales (projects/qat-study-int2-learned.json).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/qat-study}
shift || true
mkdir -p "$out"
train=build/app/moe-train
declare -A format=([int4]=int4 [int3]=int3 [int2]=int2)
for run in fp32 int4 int3 int2; do
  [ -e "$out/$run.h5" ] || $train "projects/qat-study-$run.json" --out "$out/$run.h5" "$@" > "$out/$run.log"
done
last() { ls -d "$out/$1.ckpt"/step-* | tail -1; }

echo "== PTQ of the fp32 run: $(last fp32)"
$train --quant-eval "$(last fp32)" --formats fp32,int8,int4,int4-g32,int3,int3-g32,int3-asym,int2,int2-g32,int2-asym \
  | tee "$out/eval-fp32.txt"
for run in int4 int3 int2; do
  f=${format[$run]}
  $train --export-quantized "$(last "$run")" --format "$f" --out "$out/$run-export" --overwrite
  echo "== QAT run $run: its fp32 masters and in-memory $f, then the export against the fp32 run"
  $train --quant-eval "$(last "$run")" --formats fp32,"$f" | tee "$out/eval-$run.txt"
  $train --quant-eval "$out/$run-export" --formats fp32 --reference "$(last fp32)" | tee "$out/eval-$run-export.txt"
done

# Table: format, loss change vs the fp32 run (PTQ, QAT), routing unchanged vs the fp32 run's
# model (PTQ, QAT), from the evaluations above (columns: format bits err loss change routing top-1).
row() { awk -v f="$2" '$1 == f { print $4, $5, $6 }' "$1" | tr -d '%+'; }
{
  loss="val loss above the fp32 run (% log scale)" route="routing decisions as the fp32 run's (%)"
  echo "format,$loss|PTQ,$loss|QAT,$route|PTQ,$route|QAT"
  for run in int4 int3 int2; do
    f=${format[$run]}
    read -r _ ptq_change ptq_route <<< "$(row "$out/eval-fp32.txt" "$f")"
    read -r qat_loss _ _ <<< "$(row "$out/eval-$run.txt" "$f")"
    read -r export_loss qat_change qat_route <<< "$(row "$out/eval-$run-export.txt" fp32)"
    [ "$export_loss" = "$qat_loss" ] || { echo "export of $run: loss $export_loss, in memory $qat_loss" >&2; exit 1; }
    echo "$f,$ptq_change,$qat_change,$ptq_route,$qat_route"
  done
} > "$out/qat-study.csv"
cat "$out/qat-study.csv"
if [ -x build/bench/moe-bar-figure ]; then
  build/bench/moe-bar-figure --csv "$out/qat-study.csv" --out docs/images/qat-study.png --log "val loss above the fp32 run (% log scale)" \
    --title "tiny-tasks, projection weights per channel: PTQ of the fp32 run vs QAT (its last 150 of 600 steps)"
fi

# Learned scales (training.precision.qat.scale_lr): the INT2 run again with each group's clip
# learned, its export, against the fp32 run (docs/precision.md, "Learned scales").
[ -e "$out/int2-learned.h5" ] || $train projects/qat-study-int2-learned.json --out "$out/int2-learned.h5" "$@" > "$out/int2-learned.log"
$train --export-quantized "$(last int2-learned)" --format int2 --out "$out/int2-learned-export" --overwrite
echo "== INT2 QAT with learned scales, exported: $out/int2-learned-export (against the fp32 run)"
$train --quant-eval "$out/int2-learned-export" --formats fp32 --reference "$(last fp32)" | tee "$out/eval-int2-learned-export.txt"
