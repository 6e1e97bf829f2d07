#!/bin/sh
# Runs a test under a forced OpenBLAS kernel family, so a result that depends on the CPU's GEMM
# kernels shows up on whatever machine the suite runs on.
#   with_openblas_coretype.sh haswell|alternate COMMAND...
# haswell: the AVX2 kernels (Haswell/Zen), on any CPU with AVX2.
# alternate: SkylakeX (AVX-512) where the CPU has it, else Sandybridge (AVX) kernels, so each
# machine runs two different kernel families besides its own default.
set -eu
kind=$1
shift
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { case " $flags " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
case $kind in
  haswell) if has avx2 && has fma; then core=Haswell; else core=Sandybridge; fi ;;
  alternate) if has avx512f && has avx512bw && has avx512vl; then core=SkylakeX; else core=Sandybridge; fi ;;
  *) echo "with_openblas_coretype.sh: unknown kind '$kind' (haswell or alternate)" >&2; exit 2 ;;
esac
if ! has avx; then core=Prescott; fi
echo "OPENBLAS_CORETYPE=$core"
OPENBLAS_CORETYPE=$core exec "$@"
