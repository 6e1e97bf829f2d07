#!/usr/bin/env bash
# The CUDA backend on a GPU machine, in two halves (the GPU machine has CUDA, cuBLAS and
# compute-sanitizer but no Qt, HDF5, OpenBLAS or the other dev packages, so it runs binaries
# built here):
#
#   scripts/gpu-test.sh bundle   # HERE: build gpu_ops_test, gpu_model_test, moe-bench-gpu and
#                                # moe-train (BUILD_DIR, default build-gpu; ARCH, default 80;90)
#                                # and collect them with the shared libraries they need (ldd) into
#                                # .device-carry/gpu-bundle
#   scripts/gpu-test.sh run      # THERE, in about 5 minutes: the op tests, the model-level test
#                                # (whole model and training, GPU vs CPU), compute-sanitizer
#                                # memcheck on whole-model training steps, the training benchmark
#                                # (projects/small-gpu.json, B 8 x S 1024, no MTP, fp32 and bf16,
#                                # tokens/s and MFU, also with MOE_CUDA_REFERENCE_PATHS=1) and
#                                # moe-bench-gpu (grouped vs looped experts, fused vs kept
#                                # attention probabilities); logs to $OUT, a summary at the end
#   scripts/gpu-test.sh bench    # THERE, a second command: the PyTorch peers
#                                # (bench/peers/torch_peer.py: block, MoE with torch._grouped_mm,
#                                # the small-gpu model eager and compiled) and FP8 vs bf16 on
#                                # projects/fp8-gemm-bound.json
#
# With the workplace's device tool: after `bundle`, call run with
#   command: scripts/gpu-test.sh run      carry: [".device-carry/gpu-bundle.tar.xz"]
#   command: scripts/gpu-test.sh bench    carry: the same
# The bundle leaves out the driver (libcuda), cuBLAS (libcublas*, 500+ MB: the GPU machine's
# own CUDA 13 libraries are used) and glibc/libstdc++ (the machine's newer ones serve).
# Env: BUILD_DIR (build-gpu), ARCH (80;90), PEAK_FP32 / PEAK_BF16 (TFLOP/s for the MFU; H200
#      measured with cuBLASLt at 8192^3: 51 and 820), BENCH_STEPS (3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="$ROOT/.device-carry/gpu-bundle"
cd "$ROOT"

bundle() {
    local build="${BUILD_DIR:-$ROOT/build-gpu}" arch="${ARCH:-80;90}"
    cmake -S "$ROOT" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
    nice cmake --build "$build" -j"${JOBS:-2}" --target gpu_ops_test gpu_model_test moe-bench-gpu moe-train moe-generate
    rm -rf "$BUNDLE"
    mkdir -p "$BUNDLE/bin" "$BUNDLE/lib"
    local bins=("$build/gpu/gpu_ops_test" "$build/gpu/gpu_model_test" "$build/bench/moe-bench-gpu" "$build/app/moe-train" "$build/app/moe-generate")
    for b in "${bins[@]}"; do
        cp "$b" "$BUNDLE/bin/"
        strip --strip-debug "$BUNDLE/bin/$(basename "$b")"
    done
    # Every resolved shared library except the ones the GPU machine must provide itself.
    ldd "${bins[@]}" | awk '/=> \//{print $3}' | sort -u | while read -r lib; do
        case "$(basename "$lib")" in
            libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
            libcuda.so*|libcublas.so*|libcublasLt.so*|libnvidia-*|libnccl.so*) ;;
            *) cp -L "$lib" "$BUNDLE/lib/" ;;
        esac
    done
    # OpenMPI's runtime (mpirun, orted, their plugins and help texts; PMIx and its plugins):
    # the GPU machine has no OpenMPI, and even one rank starts an orted. Laid out as under
    # /usr, so OPAL_PREFIX relocates it. NCCL (218 MB) is the machine's own, like cuBLAS.
    local ompi="$BUNDLE/ompi"
    mkdir -p "$ompi/bin" "$ompi/lib/x86_64-linux-gnu" "$ompi/share"
    cp -L /usr/bin/orterun "$ompi/bin/mpirun"
    cp -L /usr/bin/orted "$ompi/bin/orted"
    cp -rL /usr/lib/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/pmix2 "$ompi/lib/x86_64-linux-gnu/"
    cp -rL /usr/share/openmpi "$ompi/share/"
    find "$ompi" -name '*.so*' -type f -print0 | xargs -0 ldd 2>/dev/null | cat - <(ldd "$ompi/bin/mpirun" "$ompi/bin/orted") \
        | awk '/=> \//{print $3}' | sort -u | while read -r lib; do
        case "$(basename "$lib")" in
            libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
            libcuda.so*|libnvidia-*|libnccl.so*|libcublas*) ;;
            *) [[ -e "$BUNDLE/lib/$(basename "$lib")" ]] || cp -L "$lib" "$BUNDLE/lib/" ;;
        esac
    done
    # xz: OpenBLAS alone is 35 MB; the device tool carries at most 64 MiB.
    tar -C "$(dirname "$BUNDLE")" -cJf "$BUNDLE.tar.xz" "$(basename "$BUNDLE")"
    rm -rf "$BUNDLE"
    du -sh "$BUNDLE.tar.xz"
    echo "bundle ready: call the device tool with command 'scripts/gpu-test.sh run' and carry ['.device-carry/gpu-bundle.tar.xz']"
}

# Unpacks the bundle (when packed) and points the loader at it and at the machine's cuBLAS.
setup_bundle() {
    if [[ -f "$BUNDLE.tar.xz" ]]; then
        local unpack; unpack="$(mktemp -d)"
        tar -C "$unpack" -xJf "$BUNDLE.tar.xz"
        BUNDLE="$unpack/gpu-bundle"
    fi
    [[ -d "$BUNDLE/bin" ]] || { echo "no bundle: run 'scripts/gpu-test.sh bundle' on the build machine first"; exit 2; }
    # cuBLAS from the machine: the toolkit's lib64, or the nvidia-cublas wheel of its Python.
    local cublas_dir=""
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [[ -e "$d/libcublas.so.13" ]] && cublas_dir="$d" && break
    done
    if [[ -z "$cublas_dir" ]] && command -v python3 >/dev/null; then
        cublas_dir="$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null || true)"
    fi
    # NCCL from the machine as well: the toolkit's, or the nvidia-nccl wheel of its PyTorch.
    local nccl_dir=""
    for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
        [[ -e "$d/libnccl.so.2" ]] && nccl_dir="$d" && break
    done
    if [[ -z "$nccl_dir" ]] && command -v python3 >/dev/null; then
        nccl_dir="$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null || true)"
    fi
    export LD_LIBRARY_PATH="$BUNDLE/lib${cublas_dir:+:$cublas_dir}${nccl_dir:+:$nccl_dir}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export OMP_WAIT_POLICY=PASSIVE
    # The bundled OpenMPI, relocated; root allowed (the device machine runs as root).
    if [[ -d "$BUNDLE/ompi" ]]; then
        export OPAL_PREFIX="$BUNDLE/ompi" PATH="$BUNDLE/ompi/bin:$PATH"
        export PMIX_INSTALL_PREFIX="$BUNDLE/ompi/lib/x86_64-linux-gnu/pmix2"
        export OMPI_MCA_mca_base_component_path="$BUNDLE/ompi/lib/x86_64-linux-gnu/openmpi/lib/openmpi3"
        export PMIX_MCA_mca_base_component_path="$BUNDLE/ompi/lib/x86_64-linux-gnu/pmix2/lib/pmix"
    fi
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    export OMPI_MCA_btl_vader_single_copy_mechanism=none
}

run() {
    local out="${OUT:-$ROOT/gpu-test-out}"
    mkdir -p "$out"
    setup_bundle
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt" || true
    ldd "$BUNDLE/bin/gpu_ops_test" | grep -E "not found|cublas|cudart" | tee -a "$out/gpu.txt" || true
    local status=0
    echo "== GPU op tests (CudaBackend vs CpuBackend)"
    "$BUNDLE/bin/gpu_ops_test" 2>&1 | tee "$out/gpu_ops_test.log" || status=1
    echo "== model-level test (whole model and training, CudaBackend vs CpuBackend)"
    "$BUNDLE/bin/gpu_model_test" 2>&1 | tee "$out/gpu_model_test.log" || status=1
    local tmp; tmp="$(mktemp -d)"
    if command -v compute-sanitizer >/dev/null; then
        echo "== compute-sanitizer memcheck on whole-model training (tiny-tasks, 2 steps, cuda:0)"
        timeout 300 compute-sanitizer --tool memcheck --error-exitcode 3 "$BUNDLE/bin/moe-train" \
            "$ROOT/projects/tiny-tasks.json" --device cuda:0 --steps 2 --out "$tmp/memcheck.h5" \
            >"$out/sanitizer_train.log" 2>&1 || status=1
        tail -3 "$out/sanitizer_train.log"
    else
        echo "compute-sanitizer not found: sanitizer run skipped" | tee "$out/sanitizer_train.log"
    fi
    echo "== a real run on the GPU (tiny-tasks, 40 steps) and its report"
    "$BUNDLE/bin/moe-train" "$ROOT/projects/tiny-tasks.json" --device cuda:0 --steps 40 \
        --out "$tmp/tiny.h5" 2>&1 | tail -4 | tee "$out/train_tiny.log" || status=1
    "$BUNDLE/bin/moe-train" --report "$tmp/tiny.h5" 2>&1 | tee -a "$out/train_tiny.log" || status=1
    echo "== quantized-weights study of that run's checkpoint, on the GPU"
    "$BUNDLE/bin/moe-train" --quant-eval "$tmp/tiny.ckpt/step-00000040" --device cuda:0 \
        --formats fp32,fp8,int8,int4 2>&1 | tee "$out/quant_eval.log" || status=1
    echo "== generation from that checkpoint on the GPU: plain vs MTP speculative (same tokens)"
    "$BUNDLE/bin/moe-generate" "$tmp/tiny.ckpt/step-00000040" --device cuda:0 --prompt "5 + 7 =" \
        --max-new-tokens 64 --speculative --compare-plain --routing table 2>&1 | tail -30 \
        | tee "$out/generate.log" || status=1
    echo "== several ranks (docs/parallelism.md): the final loss of tiny-tasks after 20 steps, one"
    echo "   process against 2 CPU ranks over MPI (dp=2, ep=2) and against NCCL on the GPU"
    local last='step 20/20'
    # mpirun gives the ranks a terminal: progress lines come with \r and ESC[K.
    par() { "$@" 2>&1 | tr '\r' '\n' | sed 's/\x1b\[K//g' | grep -aE "^$last|error" | tail -1 | tee -a "$out/parallel.log"; }
    : >"$out/parallel.log"
    # The loss after 20 steps: the same within 1e-3 relative (other orders of the sums).
    same_loss() { awk -v a="$(echo "$1" | awk '{print $4}')" -v b="$(echo "$2" | awk '{print $4}')" \
        'BEGIN { d = a - b; if (d < 0) d = -d; m = b < 0 ? -b : b; exit !(a != "" && d <= 1e-3 * m) }'; }
    local cpu_one gpu_one
    cpu_one="$(par "$BUNDLE/bin/moe-train" "$ROOT/projects/tiny-tasks.json" --steps 20 --threads 1 --out "$tmp/p1.h5")"
    for layout in dp=2 ep=2; do
        same_loss "$(par mpirun -np 2 "$BUNDLE/bin/moe-train" "$ROOT/projects/tiny-tasks.json" --steps 20 --threads 1 \
            --parallel "$layout" --out "$tmp/p-$layout.h5")" "$cpu_one" \
            || { echo "FAIL: MPI $layout loss differs from one process"; status=1; }
    done
    gpu_one="$(par "$BUNDLE/bin/moe-train" "$ROOT/projects/tiny-tasks.json" --device cuda:0 --steps 20 --out "$tmp/g1.h5")"
    same_loss "$(par "$BUNDLE/bin/moe-train" "$ROOT/projects/tiny-tasks.json" --device cuda:0 --steps 20 --parallel dp=1 \
        --out "$tmp/g-nccl.h5")" "$gpu_one" || { echo "FAIL: NCCL (one rank) loss differs from the plain GPU run"; status=1; }
    local ngpu; ngpu="$(nvidia-smi -L 2>/dev/null | wc -l)"
    if (( ngpu >= 2 )); then
        for layout in "dp=$ngpu" "ep=2,dp=$((ngpu / 2))"; do
            (( ngpu % 2 == 0 )) || [[ $layout == dp=* ]] || continue
            same_loss "$(par mpirun -np "$ngpu" "$BUNDLE/bin/moe-train" "$ROOT/projects/tiny-tasks.json" --device cuda:0 \
                --steps 20 --parallel "$layout" --out "$tmp/g-$layout.h5")" "$gpu_one" \
                || { echo "FAIL: NCCL $layout differs"; status=1; }
        done
    fi
    echo "== a model larger than the GPU: a clear message, nothing allocated (expected: error)"
    "$BUNDLE/bin/moe-train" "$ROOT/projects/deepseek-v3-671b.json" --device cuda:0 --step \
        2>&1 | tail -2 | tee "$out/too_large.log" || true
    grep -qE "not enough memory on cuda:0|available on cuda:0" "$out/too_large.log" || { echo "FAIL: no memory message"; status=1; }
    echo "== one MoE block (B 8 x T 1024, D 1024, 64 experts top-6, F 512): grouped experts vs a loop"
    "$BUNDLE/bin/moe-bench-gpu" --moe both --iters 10 --peak-tflops "${PEAK_FP32:-51}" 2>&1 \
        | tee -a "$out/bench.log" || status=1
    "$BUNDLE/bin/moe-bench-gpu" --moe grouped --attention probs --iters 10 \
        --peak-tflops "${PEAK_FP32:-51}" 2>&1 | tee -a "$out/bench.log" || status=1
    "$BUNDLE/bin/moe-bench-gpu" --moe grouped --attention fused-bf16 --iters 10 \
        --peak-tflops "${PEAK_FP32:-51}" 2>&1 | tee -a "$out/bench.log" || status=1
    echo "== training benchmark: projects/small-gpu.json, B 8 x S 1024, no MTP"
    for mode in fp32 bf16; do
        local peak="${PEAK_FP32:-51}"
        [[ $mode == bf16 ]] && peak="${PEAK_BF16:-820}"
        "$BUNDLE/bin/moe-train" "$ROOT/projects/small-gpu.json" --device cuda:0 --precision "$mode" \
            --batch 8 --seq 1024 --no-mtp --bench-steps "${BENCH_STEPS:-3}" --peak-tflops "$peak" \
            2>&1 | tee -a "$out/bench.log" || status=1
        if [[ $mode == bf16 ]]; then
            echo "(the same with training.precision.attention bf16: fused attention on the tensor cores)" \
                | tee -a "$out/bench.log"
            "$BUNDLE/bin/moe-train" "$ROOT/projects/small-gpu.json" --device cuda:0 --precision bf16 \
                --attention bf16 --batch 8 --seq 1024 --no-mtp --bench-steps "${BENCH_STEPS:-3}" \
                --peak-tflops "$peak" 2>&1 | tee -a "$out/bench.log" || status=1
        fi
        echo "(the same with MOE_CUDA_REFERENCE_PATHS=1: attention probabilities kept, experts looped)" \
            | tee -a "$out/bench.log"
        MOE_CUDA_REFERENCE_PATHS=1 "$BUNDLE/bin/moe-train" "$ROOT/projects/small-gpu.json" \
            --device cuda:0 --precision "$mode" --batch 8 --seq 1024 --no-mtp \
            --bench-steps "${BENCH_STEPS:-3}" --peak-tflops "$peak" 2>&1 | tee -a "$out/bench.log" || status=1
    done
    rm -rf "$tmp"
    echo "== summary"
    grep -HE "checks passed|^FAIL|SKIP" "$out/gpu_ops_test.log" "$out/gpu_model_test.log" || true
    grep -hE "ERROR SUMMARY|sanitizer not found" "$out"/sanitizer_*.log || true
    grep -E "^bench:|^BENCH|experts: step|grouped / loop" "$out/bench.log" || true
    exit $status
}

# THERE, after run (its own command: the device tool allows 10 minutes a command): the PyTorch
# peers on the same GPU and the FP8-vs-bf16 preset; figures appended to $OUT/bench.log.
bench() {
    local out="${OUT:-$ROOT/gpu-test-out}"
    mkdir -p "$out"
    setup_bundle
    local status=0
    if python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
        echo "== PyTorch peers on the same GPU (bench/peers/torch_peer.py)"
        peer() {  # one failing peer does not hide the others
            python3 "$ROOT/bench/peers/torch_peer.py" --device cuda --steps 10 --warmup 3 "$@" ||
                echo "error: torch_peer.py $* failed"
        }
        {
            peer --part block --dtype fp32 --experts loop --peak-tflops "${PEAK_FP32:-51}"
            peer --part block --dtype fp32 --experts loop --tf32 --peak-tflops "${PEAK_FP32:-51}"
            peer --part moe --batch 8 --seq 1024 --dtype bf16 --experts loop
            peer --part moe --batch 8 --seq 1024 --dtype bf16 --experts grouped --check
            peer --part model --project "$ROOT/projects/small-gpu.json" --dtype bf16 \
                --peak-tflops "${PEAK_BF16:-820}"
            peer --part model --project "$ROOT/projects/small-gpu.json" --dtype bf16 --compile \
                --peak-tflops "${PEAK_BF16:-820}"
        } 2>&1 | grep -E "^PEER|^CHECK|Error|error" | tee -a "$out/bench.log" || status=1
    else
        echo "python3 with CUDA torch not found: PyTorch peers skipped" | tee -a "$out/bench.log"
    fi
    echo "== FP8 vs bf16 on a GEMM-bound preset (projects/fp8-gemm-bound.json, no MTP)"
    for mode in bf16 fp8; do
        "$BUNDLE/bin/moe-train" "$ROOT/projects/fp8-gemm-bound.json" --device cuda:0 \
            --precision "$mode" --no-mtp --bench-steps "${BENCH_STEPS:-3}" \
            --peak-tflops "${PEAK_BF16:-820}" 2>&1 | tee -a "$out/bench.log" || status=1
    done
    echo "== generation on the GPU, random weights: time to first token (a 2,000-token prompt's"
    echo "   prefill) and decode tokens/s; small-gpu, then DeepSeek-V2-Lite's shapes (15.7B)"
    local prompt
    prompt=$(head -c 2000 "$ROOT/README.md")
    for p in small-gpu deepseek-v2-lite-shapes; do
        timeout 400 "$BUNDLE/bin/moe-generate" --random "$ROOT/projects/$p.json" --device cuda:0 \
            --prompt "$prompt" --max-new-tokens 128 --prefill-chunk 512 2>&1 >/dev/null |
            grep -E "prompt tokens|moe-generate" | tee -a "$out/bench.log" || status=1
    done
    grep -E "^bench:|^BENCH|^PEER|^CHECK|prompt tokens" "$out/bench.log" || true
    exit $status
}

case "${1:-}" in
    bundle) bundle ;;
    run) run ;;
    bench) bench ;;
    *) sed -n '2,20p' "$0"; exit 2 ;;
esac
