#!/usr/bin/env bash
# Sets up, builds (release) and generates text: the README's main-job command.
#   scripts/run.sh                                   # default model (downloaded once into the cache)
#   scripts/run.sh -m path/to/model.gguf -p "Once upon a time" -n 128
# Any `frugal run` option may follow; -m defaults to FRUGAL_MODEL or the documented default.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
default_model=${FRUGAL_MODEL:-hf://unsloth/DeepSeek-R1-Distill-Qwen-1.5B-GGUF/DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf}
"$root/scripts/setup.sh"
export CCACHE_BASEDIR=$root CCACHE_NOHASHDIR=1
cmake --preset release -S "$root" >/dev/null
cmake --build "$root/build/release" -j "${FRUGAL_JOBS:-2}" --target frugal_cli >/dev/null

args=("$@")
have_model=0
for a in "${args[@]}"; do [[ $a == -m || $a == --model || $a == --model=* ]] && have_model=1; done
if ((!have_model)); then
    # The default model gets a default question; a model given with -m and no -p starts from BOS.
    have_prompt=0
    for a in "${args[@]}"; do [[ $a == -p || $a == --prompt || $a == --prompt=* || $a == --prompt-ids* ]] && have_prompt=1; done
    ((have_prompt)) || args+=(-p "Why is the sky blue?")
    args=(-m "$default_model" "${args[@]}")
fi
exec "$root/build/release/bin/frugal" run "${args[@]}"
