#!/usr/bin/env bash
# Pruning study (docs/pruning.md): trains projects/pruning-study.json (400 steps), then with
# moe-prune removes 0, 12.5, 25 and 50 % of every MoE layer's routed experts (ranked by the
# masked-loss increase; load and gate mass compared at 25 %) and 0, 25, 50 and 75 % of every
# FFN's hidden channels (first-order saliency), each fine-tuned for FT steps at LR. Prints one
# table row per pruned checkpoint (validation loss before, pruned, fine-tuned; parameters and
# forward FLOPs per token saved; times) and checks two pruned checkpoints against the PyTorch
# reference (tests/reference/deepseek_v3_ref.py, the stand-in for HF tooling).
# Usage: scripts/pruning-study.sh [OUT_DIR]   (env: FT=60 LR=0.001 BATCHES=4 THREADS=0)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/pruning-study}
ft=${FT:-60}
lr=${LR:-0.001}
batches=${BATCHES:-4}
threads=${THREADS:-0}
mkdir -p "$out"
t0=$(date +%s)
if [ ! -e "$out/base.h5" ]; then
  build/app/moe-train projects/pruning-study.json --out "$out/base.h5" --threads "$threads" > "$out/base.log"
fi
ckpt=$(ls -d "$out/base.ckpt"/step-* | tail -1)
echo "baseline $ckpt trained in $(( $(date +%s) - t0 )) s (wall, or earlier)"

prune() {  # name, moe-prune arguments...
  local name=$1
  shift
  [ -e "$out/$name/pruning.json" ] && return
  build/app/moe-prune "$ckpt" "$@" --out "$out/$name" --force --batches "$batches" \
    --finetune "$ft" --lr "$lr" --threads "$threads" | tee "$out/$name.log"
}
for f in 0 0.125 0.25 0.5; do prune "experts-masked_loss-$f" --experts "$f" --by masked_loss; done
for by in load gate_mass; do prune "experts-$by-0.25" --experts 0.25 --by "$by"; done
for f in 0 0.25 0.5 0.75; do prune "channels-$f" --channels "$f"; done

/usr/bin/python3 - "$out" <<'EOF'
import json, glob, os, sys
out = sys.argv[1]
rows = []
for path in sorted(glob.glob(os.path.join(out, "*", "pruning.json"))):
    r = json.load(open(path))
    s = r["summary"]
    b, a = s["before"], s["after"]
    what = r.get("criterion", "saliency")
    rows.append((r["kind"], r["fraction"], what,
                 a["total_params"] + a["mtp_params"], 1 - (a["total_params"] + a["mtp_params"]) / (b["total_params"] + b["mtp_params"]),
                 1 - a["active_params"] / b["active_params"],
                 1 - a["forward_flops_per_token"] / b["forward_flops_per_token"],
                 s["val_loss_before"], s["val_loss_pruned"], s.get("val_loss_finetuned", float("nan")),
                 s["measure_s"], s.get("finetune_s", float("nan"))))
print("| kind | removed | ranked by | parameters | saved | active saved | FLOPs/token saved | val loss before | pruned | fine-tuned | measure s | fine-tune s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for k, f, w, p, ps, act, fl, l0, l1, l2, ms, fs in sorted(rows, key=lambda r: (r[0], r[2], r[1])):
    print(f"| {k} | {f:.3g} | {w} | {p:,} | {ps:.1%} | {act:.1%} | {fl:.1%} | {l0:.4f} | {l1:.4f} | {l2:.4f} | {ms:.1f} | {fs:.1f} |")
EOF

# The pruned checkpoints in the HF layout through an independent reader: the PyTorch reference's
# logits against the engine's.
/usr/bin/python3 tests/reference/deepseek_v3_ref.py make-batch --vocab 256 --batch 2 --seq 32 --seed 5 \
  --out "$out/tokens.txt"
for name in experts-masked_loss-0.25 channels-0.5; do
  /usr/bin/python3 tests/reference/deepseek_v3_ref.py logits --checkpoint "$out/$name" \
    --tokens "$out/tokens.txt" --out "$out/$name-ref.safetensors"
  build/app/moe-train --logits "$out/$name" --tokens "$out/tokens.txt" \
    --out "$out/$name-engine.safetensors" --overwrite > /dev/null
  /usr/bin/python3 - "$out/$name" <<'EOF'
import sys, numpy as np
sys.path.insert(0, "tests/reference")
import safetensors_io
base = sys.argv[1]
ref = safetensors_io.load(base + "-ref.safetensors")[0]["logits"]
eng = safetensors_io.load(base + "-engine.safetensors")[0]["logits"]
d = float(np.abs(ref.reshape(eng.shape) - eng).max())
print(f"{base}: PyTorch reference vs engine logits, max |diff| {d:.2e} (|logit| up to {float(np.abs(ref).max()):.2f})")
sys.exit(0 if d < 1e-3 else 1)
EOF
done
echo "study done in $(( $(date +%s) - t0 )) s"
