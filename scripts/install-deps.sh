#!/usr/bin/env bash
# Installs every Debian package MoE Workbench needs to build, run and test.
# Idempotent: packages already present are skipped; uses sudo when not root.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config git
  # engine
  libhdf5-dev hdf5-tools libspdlog-dev libfmt-dev libopenblas-openmp-dev nlohmann-json3-dev libcli11-dev
  # tokenizer (HF tokenizer.json split regexes)
  libpcre2-dev
  # several processes (data and expert parallelism): OpenMPI, mpirun
  libopenmpi-dev openmpi-bin
  # GUI
  qt6-base-dev qt6-base-dev-tools qt6-svg-dev libqcustomplot-dev libgl-dev
  # moe-worker: TLS (Qt's OpenSSL backend loads libssl3), self-signed certificates (--tls-generate)
  libssl3 openssl
  # the protocol fuzz target: clang with libFuzzer (a gcc fallback driver runs without them)
  clang libclang-rt-dev
  # tests: PyTorch reference, h5py readers, headless GUI
  python3 python3-numpy python3-torch python3-h5py xvfb xauth
  # data: Debian's fortune files, the multilingual corpus of engine/data/fortunes_corpus.h
  # (en: fortunes-min + fortunes, pt: fortunes-br, zh: fortunes-zh, the rest by language code;
  # Debian 12 has no French set)
  fortunes-min fortunes fortunes-de fortunes-es fortunes-it fortunes-ru fortunes-zh fortunes-pl
  fortunes-br fortunes-cs fortunes-bg fortunes-eo fortunes-ga
)

# tests: node and npm for the tokenizer test's JavaScript peer (scripts/install-test-tools.sh);
# Debian's, unless a node is installed already
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
