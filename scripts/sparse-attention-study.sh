#!/usr/bin/env bash
# Dynamic top-k sparse attention against dense attention and a sliding window of the same number
# of keys (docs/performance.md, "Sparse attention"):
#   1. the op benchmark at T = 2048 with DeepSeek-shaped heads (moe-bench-sparse-attention):
#      forward + backward time of dense causal, sliding-window and top-k attention, the
#      indexer's own cost, ratios to dense measured in the same run;
#   2. three trainings of projects/sparse-attention.json (300 steps, 256-token sequences):
#      top-32 sparse attention (50 dense warm-up steps), the same model dense (index_topk 0),
#      and a 32-token sliding window instead; final validation loss, tokens/s and the summary's
#      attention FLOPs of each.
# Runs already in OUT_DIR are kept. Usage: scripts/sparse-attention-study.sh [OUT_DIR] [extra
# moe-train args] (e.g. --threads 1). ~15 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/sparse-attention-study}
shift || true
mkdir -p "$out"
train=build/app/moe-train
py=/usr/bin/python3

echo "== op benchmark, T 2048 (best of 2)"
[ -e "$out/bench.txt" ] || build/bench/moe-bench-sparse-attention --T 2048 --topk 128,256,512 --reps 2 > "$out/bench.txt"
cat "$out/bench.txt"

# The dense and sliding-window variants: the same project with index_topk 0 (and a window).
variant() {
  "$py" - "$1" "$2" "$3" <<'EOF'
import json, sys
src, dst, kind = sys.argv[1:]
p = json.load(open(src))
p["name"] = f"sparse-attention-{kind}"
if kind != "topk":
    p["model"]["index_topk"] = 0
    p["training"]["index_warmup_steps"] = 0
if kind == "window":
    p["model"]["sliding_window"] = 32
json.dump(p, open(dst, "w"), indent=2)
EOF
}
for kind in topk dense window; do
  variant projects/sparse-attention.json "$out/$kind.json" "$kind"
  [ -e "$out/$kind.h5" ] || $train "$out/$kind.json" --out "$out/$kind.h5" "$@" > "$out/$kind.log"
done

echo
echo "== training, 300 steps of 8 x 256 tokens"
printf "%-8s %10s %10s %12s  %s\n" run "val loss" "train loss" "tokens/s" "attention FLOPs (summary)"
for kind in dense topk window; do
  val=$($train --report "$out/$kind.h5" | awk '/eval at step/ { print $NF }')
  last=$(grep -E '^step ' "$out/$kind.log" | tail -1)
  loss=$(sed -E 's/.*  loss ([0-9.]+).*/\1/' <<< "$last")
  # Mean tokens/s over the logged steps after the warm-up (the run file's metrics).
  tps=$("$py" -c "import h5py, sys; m = h5py.File(sys.argv[1])['metrics']; t = m['tokens_per_s'][:]; print(f'{t[len(t)//4:].mean():.0f}')" "$out/$kind.h5")
  flops=$($train "$out/$kind.json" --summary | awk -F'KFLOP  ' '/attention scores \+ values/ { print $2 }')
  printf "%-8s %10s %10s %12s  %s\n" "$kind" "$val" "$loss" "$tps" "${flops:-dense}"
done
