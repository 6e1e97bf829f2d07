#!/usr/bin/env bash
# CPU training throughput: the engine (moe-bench-train) against eager PyTorch
# (bench/torch_train.py) on the two benchmark configs, same batch, threads and step.
#   scripts/bench-cpu.sh            # 2 threads, 3 repeats, configs from ../shared/bench
# Env: THREADS (2), REPEATS (3), BENCH_DIR (config folder), BUILD_DIR (build), TORCH_PY
# (/usr/bin/python3: Debian's python with torch 1.13).
# Each repeat runs the engine and then PyTorch back to back, so both see the same machine load;
# the table shows the median over the repeats of each figure, and the ratio of the medians.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
BENCH_DIR="${BENCH_DIR:-$ROOT/../shared/bench}"
[[ -d "$BENCH_DIR" ]] || BENCH_DIR=/work/shared/bench
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
TORCH_PY="${TORCH_PY:-/usr/bin/python3}"
LOG_DIR="${LOG_DIR:-$BUILD_DIR/bench-logs}"

cd "$ROOT"
[[ -f "$BUILD_DIR/CMakeCache.txt" ]] || cmake --preset default
cmake --build "$BUILD_DIR" --target moe-bench-train
mkdir -p "$LOG_DIR"

# Both sides run with OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of spinning).
# On the shared 2-core box this was the best setting for both: torch's OpenBLAS is the pthread
# build, whose pool spins against torch's OpenMP pool otherwise (tiny: ~2x slower), and under
# load from other processes the engine's spinning barriers lose up to 10x (measured 130-800 vs
# 2800-3000 tok/s on tiny at load average 8). Override with WAIT_POLICY=ACTIVE or "".
WAIT_POLICY="${WAIT_POLICY-PASSIVE}"
ENV=(X_BENCH=1)
[[ -n "$WAIT_POLICY" ]] && ENV=(OMP_WAIT_POLICY="$WAIT_POLICY")

# name  batch  seq  steps  warmup
CONFIGS=("tiny 16 128 10 3" "d512 8 256 4 1")

field() {  # field KEY FILE: the value of KEY=... on the BENCH line
    awk -v k="$1" '/^BENCH /{for(i=2;i<=NF;i++){split($i,a,"=");if(a[1]==k)print a[2]}}' "$2"
}
median() { sort -g | awk '{v[NR]=$1} END{if(NR%2)print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }

ROWS=()
for c in "${CONFIGS[@]}"; do
    read -r name B T steps warmup <<<"$c"
    cfg="$BENCH_DIR/$name.json"
    for r in $(seq 1 "$REPEATS"); do
        echo "== $name repeat $r/$REPEATS: engine"
        env "${ENV[@]}" "$BUILD_DIR"/bench/moe-bench-train --config "$cfg" --batch "$B" --seq "$T" \
            --threads "$THREADS" --steps "$steps" --warmup "$warmup" | tee "$LOG_DIR/$name.engine.$r.log"
        echo "== $name repeat $r/$REPEATS: torch"
        env "${ENV[@]}" "$TORCH_PY" bench/torch_train.py --config "$cfg" --batch "$B" \
            --seq "$T" --threads "$THREADS" --steps "$steps" --warmup "$warmup" \
            | tee "$LOG_DIR/$name.torch.$r.log"
    done
    med() { for r in $(seq 1 "$REPEATS"); do field "$1" "$LOG_DIR/$name.$2.$r.log"; done | median; }
    e=$(med tok_s engine); t=$(med tok_s torch)
    share=$(med gemm_share engine); gf=$(med gemm_gflops engine); blas=$(med blas_gflops engine)
    ROWS+=("$(awk -v n="$name" -v b="$B" -v T="$T" -v e="$e" -v t="$t" -v s="$share" -v g="$gf" -v o="$blas" \
        'BEGIN{printf "| %s | %dx%d | %.0f | %.0f | %.2f | %.1f%% | %.1f | %.1f |", n, b, T, e, t, e/t, 100*s, g, o}')")
done

echo
echo "CPU training throughput, $THREADS threads, fp32, OMP_WAIT_POLICY=${WAIT_POLICY:-default}, median of $REPEATS runs ($(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo "| config | batch x seq | engine tok/s | torch tok/s | ratio | GEMM share | engine GEMM GFLOP/s | OpenBLAS sgemm GFLOP/s (2048x512x512) |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
