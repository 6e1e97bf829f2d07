#!/usr/bin/env bash
# The CUDA backend on a GPU machine, in two halves (the GPU machine has CUDA, cuBLAS and
# compute-sanitizer but no Qt, HDF5, OpenBLAS or the other dev packages, so it runs binaries
# built here):
#
#   scripts/gpu-test.sh bundle   # HERE: build gpu_ops_test, moe-bench-gpu and moe-train for
#                                # sm_90 (BUILD_DIR, default build-gpu) and collect them with the
#                                # shared libraries they need (ldd) into .device-carry/gpu-bundle
#   scripts/gpu-test.sh run      # THERE: the GPU op tests, compute-sanitizer (memcheck, racecheck,
#                                # initcheck) on a training step, the benchmark; logs to $OUT
#
# With the workplace's device tool: after `bundle`, call run with
#   command: scripts/gpu-test.sh run      carry: [".device-carry/gpu-bundle"]
# The bundle leaves out the driver (libcuda), cuBLAS (libcublas*, 500+ MB: the GPU machine's
# own CUDA 13 libraries are used) and glibc/libstdc++ (the machine's newer ones serve).
# Env: BUILD_DIR (build-gpu), ARCH (90), BENCH_ARGS (moe-bench-gpu's flags),
#      PEAK_TFLOPS (67: H100 SXM dense FP32; use 60 for H100 PCIe).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="$ROOT/.device-carry/gpu-bundle"
cd "$ROOT"

bundle() {
    local build="${BUILD_DIR:-$ROOT/build-gpu}" arch="${ARCH:-90}"
    cmake -S "$ROOT" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
    nice cmake --build "$build" -j"${JOBS:-2}" --target gpu_ops_test moe-bench-gpu moe-train
    rm -rf "$BUNDLE"
    mkdir -p "$BUNDLE/bin" "$BUNDLE/lib"
    local bins=("$build/gpu/gpu_ops_test" "$build/bench/moe-bench-gpu" "$build/app/moe-train")
    for b in "${bins[@]}"; do
        cp "$b" "$BUNDLE/bin/"
        strip --strip-debug "$BUNDLE/bin/$(basename "$b")"
    done
    # Every resolved shared library except the ones the GPU machine must provide itself.
    ldd "${bins[@]}" | awk '/=> \//{print $3}' | sort -u | while read -r lib; do
        case "$(basename "$lib")" in
            libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
            libcuda.so*|libcublas.so*|libcublasLt.so*|libnvidia-*) ;;
            *) cp -L "$lib" "$BUNDLE/lib/" ;;
        esac
    done
    du -sh "$BUNDLE"
    echo "bundle ready: call the device tool with command 'scripts/gpu-test.sh run' and carry ['.device-carry/gpu-bundle']"
}

run() {
    local out="${OUT:-$ROOT/gpu-test-out}"
    mkdir -p "$out"
    [[ -d "$BUNDLE/bin" ]] || { echo "no bundle: run 'scripts/gpu-test.sh bundle' on the build machine first"; exit 2; }
    # cuBLAS from the machine: the toolkit's lib64, or the nvidia-cublas wheel of its Python.
    local cublas_dir=""
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [[ -e "$d/libcublas.so.13" ]] && cublas_dir="$d" && break
    done
    if [[ -z "$cublas_dir" ]] && command -v python3 >/dev/null; then
        cublas_dir="$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null || true)"
    fi
    export LD_LIBRARY_PATH="$BUNDLE/lib${cublas_dir:+:$cublas_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export OMP_WAIT_POLICY=PASSIVE
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt" || true
    ldd "$BUNDLE/bin/gpu_ops_test" | grep -E "not found|cublas|cudart" | tee -a "$out/gpu.txt" || true
    local status=0
    echo "== GPU op tests (CudaBackend vs CpuBackend)"
    "$BUNDLE/bin/gpu_ops_test" 2>&1 | tee "$out/gpu_ops_test.log" || status=1
    echo "== moe-train --device cuda:0 (expected: the clear 'not yet on the device' refusal)"
    "$BUNDLE/bin/moe-train" "$ROOT/projects/tiny-tasks.json" --device cuda:0 --summary 2>&1 | tee "$out/device_choice.log" || true
    # A small training step (forward, backward, AdamW) under each sanitizer tool.
    local small=(--batch 2 --seq 64 --dim 128 --heads 4 --head-dim 32 --experts 8 --topk 2 --ffn 64 --iters 1 --warmup 1)
    if command -v compute-sanitizer >/dev/null; then
        for tool in memcheck racecheck initcheck; do
            echo "== compute-sanitizer --tool $tool on one training step"
            compute-sanitizer --tool "$tool" --error-exitcode 3 "$BUNDLE/bin/moe-bench-gpu" "${small[@]}" \
                >"$out/sanitizer_$tool.log" 2>&1 || status=1
            tail -3 "$out/sanitizer_$tool.log"
        done
        echo "== compute-sanitizer memcheck on the op tests"
        compute-sanitizer --tool memcheck --error-exitcode 3 "$BUNDLE/bin/gpu_ops_test" \
            >"$out/sanitizer_ops.log" 2>&1 || status=1
        tail -3 "$out/sanitizer_ops.log"
    else
        echo "compute-sanitizer not found: sanitizer runs skipped" | tee "$out/sanitizer_memcheck.log"
    fi
    echo "== benchmark (median of the timed steps)"
    # shellcheck disable=SC2086
    "$BUNDLE/bin/moe-bench-gpu" --peak-tflops "${PEAK_TFLOPS:-67}" ${BENCH_ARGS:-} 2>&1 | tee "$out/bench.log" || status=1
    "$BUNDLE/bin/moe-bench-gpu" --peak-tflops "${PEAK_TFLOPS:-67}" --window 256 ${BENCH_ARGS:-} 2>&1 | tee -a "$out/bench.log" || status=1
    echo "== summary"
    grep -E "checks passed|^FAIL|SKIP" "$out/gpu_ops_test.log" || true
    grep -hE "ERROR SUMMARY|RACECHECK SUMMARY|sanitizer not found" "$out"/sanitizer_*.log || true
    grep -E "tokens/s" "$out/bench.log" || true
    exit $status
}

case "${1:-}" in
    bundle) bundle ;;
    run) run ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
esac
