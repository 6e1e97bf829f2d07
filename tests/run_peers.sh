#!/usr/bin/env bash
# ctest "peers": the PyTorch peers of the GPU benchmarks (bench/peers/torch_peer.py) run on this
# CPU with Debian's torch (no torch._grouped_mm, no SDPA: their fallbacks), each part for two
# steps at toy sizes: they must run and give finite losses. And the peer's FLOP count of the
# whole model must equal the engine's (moe-train --summary --no-mtp), so MFUs compare.
# Usage: run_peers.sh PYTHON MOE_TRAIN SOURCE_DIR
set -euo pipefail
py="$1" train="$2" src="$3"
peer="$src/bench/peers/torch_peer.py"
if ! "$py" -c "import torch" 2>/dev/null; then
    echo "SKIP: $py has no torch"
    exit 0
fi
small=(--batch 2 --seq 32 --dim 64 --heads 4 --head-dim 16 --experts-n 8 --topk 2 --ffn 32
       --steps 2 --warmup 1 --device cpu --dtype fp32)
for part in model block moe; do
    out="$("$py" "$peer" --part "$part" --project "$src/projects/tiny-tasks.json" "${small[@]}")"
    echo "$out"
    grep -q "^PEER part=$part " <<<"$out" || { echo "FAIL: no PEER line for $part"; exit 1; }
done
for project in small-gpu tiny-tasks; do
    peer_gflop="$("$py" -c "
import json, sys
sys.path.insert(0, '$src/bench/peers')
import torch_peer
c = json.load(open('$src/projects/$project.json'))['model']
print(torch_peer.model_flops_per_token(c, json.load(open('$src/projects/$project.json'))['training']['seq_len']) / 1e6)")"
    engine_mflop="$("$train" "$src/projects/$project.json" --summary --no-mtp | awk '/training step/ {print $3}')"
    echo "$project: peer $peer_gflop MFLOP per training token, engine $engine_mflop"
    "$py" -c "import sys; a, b = float('$peer_gflop'), float('$engine_mflop'); sys.exit(0 if abs(a - b) <= 0.01 * b else 1)" \
        || { echo "FAIL: the peer counts other FLOPs than the engine for $project"; exit 1; }
done
echo "peers: all parts ran, FLOP counts agree"
