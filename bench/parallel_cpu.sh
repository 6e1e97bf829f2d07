#!/usr/bin/env bash
# Step time of the tiny preset on this machine's CPU: one process with 2 threads against
# 2 ranks of 1 thread each under mpirun (expert parallelism ep=2, data parallelism dp=2), and
# the share of each rank's step spent in communication (from the run file's /parallel rows).
# Usage: bench/parallel_cpu.sh [BUILD_DIR] [STEPS]   (docs/performance.md quotes its output)
set -euo pipefail
build="${1:-build}"
steps="${2:-40}"
root="$(cd "$(dirname "$0")/.." && pwd)"
train="$build/app/moe-train"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_WAIT_POLICY=PASSIVE
project="$root/projects/tiny-tasks.json"
"$train" "$project" --steps "$steps" --threads 2 --out "$tmp/one.h5" >/dev/null
mpirun -np 2 "$train" "$project" --steps "$steps" --threads 1 --parallel ep=2 --out "$tmp/ep2.h5" >/dev/null
mpirun -np 2 "$train" "$project" --steps "$steps" --threads 1 --parallel dp=2 --out "$tmp/dp2.h5" >/dev/null
/usr/bin/python3 - "$tmp" <<'PY'
import sys, h5py, numpy as np
tmp = sys.argv[1]
def step_time(f):
    w = f["metrics/wall_s"][:]
    d = np.diff(w)[5:]  # past the warm-up steps
    return float(np.median(d))
with h5py.File(f"{tmp}/one.h5", "r") as f:
    base = step_time(f)
print(f"one process, 2 threads: median step {base*1000:.1f} ms")
for name in ("ep2", "dp2"):
    with h5py.File(f"{tmp}/{name}.h5", "r") as f:
        t = step_time(f)
        p = f["parallel"]
        keep = p["step"][:] > 5
        step_s = p["step_s"][:][keep].mean(axis=0)
        comm = (p["all_reduce_s"][:] + p["all_to_all_s"][:])[keep].mean(axis=0)
        a2a = p["all_to_all_bytes"][:][keep].mean(axis=0)
        ar = p["all_reduce_bytes"][:][keep].mean(axis=0)
        sent = p["tokens_sent"][:][keep].mean(axis=0)
        print(f"{p.attrs['layout']}, 2 ranks x 1 thread: median step {t*1000:.1f} ms "
              f"({base/t:.2f}x one process)")
        for r in range(len(step_s)):
            print(f"  rank {r}: communication {100*comm[r]/step_s[r]:.0f}% of the step "
                  f"(all-reduce {ar[r]/1e6:.2f} MB, all-to-all {a2a[r]/1e6:.2f} MB, "
                  f"{sent[r]:.0f} token copies sent per step)")
PY
