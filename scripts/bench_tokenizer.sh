#!/usr/bin/env bash
# Tokenizer throughput side by side: `frugal tokenize --bench` and Hugging Face's Rust tokenizers
# (../shared/tools/tok-oracle.mjs) encode the same file with the same tokenizer.json, alternately.
#   scripts/bench_tokenizer.sh TOKENIZER_DIR FILE [rounds=3] [reps=5]
# TOKENIZER_DIR is a Hugging Face tokenizer folder (e.g. ../shared/data/tokenizers/deepseek-v3).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tokenizer=${1:?usage: bench_tokenizer.sh TOKENIZER_DIR FILE [ROUNDS] [REPS]}
file=${2:?usage: bench_tokenizer.sh TOKENIZER_DIR FILE [ROUNDS] [REPS]}
rounds=${3:-3}
reps=${4:-5}
tools=${FRUGAL_SHARED_DIR:-$root/../shared}/tools
frugal=${FRUGAL_BIN:-$root/build/release/bin/frugal}
for ((i = 0; i < rounds; ++i)); do
    "$frugal" tokenize -m "$tokenizer" -f "$file" --no-bos --bench "$reps" 2>&1 >/dev/null
    node "$root/tests/tools/hf_tokenize_bench.mjs" "$tools/tok-oracle.mjs" "$tokenizer" "$file" "$reps"
done
