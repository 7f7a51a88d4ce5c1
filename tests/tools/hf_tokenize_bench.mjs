// hf_tokenize_bench.mjs - times Hugging Face's Rust tokenizers (through ../shared/tools/tok-oracle.mjs,
// loaded at run time) encoding one file: node hf_tokenize_bench.mjs TOK_ORACLE TOKENIZER FILE REPS.
// Prints the median time and MB/s, the same line shape as `frugal tokenize --bench`.
import fs from "fs";
import { pathToFileURL } from "url";

const [oraclePath, tokenizer, file, reps] = process.argv.slice(2);
const { loadOracle } = await import(pathToFileURL(oraclePath).href);
const oracle = await loadOracle({ tokenizer });
const text = fs.readFileSync(file, "utf8");
const bytes = Buffer.byteLength(text);
let ids = await oracle.encode(text); // warm-up
const secs = [];
for (let i = 0; i < Number(reps); i++) {
  const t0 = process.hrtime.bigint();
  ids = await oracle.encode(text);
  secs.push(Number(process.hrtime.bigint() - t0) / 1e9);
}
secs.sort((a, b) => a - b);
const median = secs[Math.floor(secs.length / 2)];
console.log(`hf tokenizers: ${bytes} bytes -> ${ids.length} tokens; median of ${reps} runs ` +
            `${(median * 1e3).toFixed(2)} ms, ${(bytes / median / 1e6).toFixed(2)} MB/s`);
