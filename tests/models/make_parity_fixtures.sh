#!/usr/bin/env bash
# Generates the llama.cpp parity fixtures into OUT_DIR (a build folder, never the source tree):
# seeded random-weight GGUF models from ../shared/tools/make_models.py (plus K-quant files made by
# llama.cpp's own quantizer), and for each model llama.cpp's raw logits of every position of a
# fixed token sequence and its 64-token greedy continuation. Exits 77 (ctest: skipped) when
# ../shared/tools or its llama.cpp peer is missing.
set -euo pipefail
out=${1:?usage: make_parity_fixtures.sh OUT_DIR [SHARED_DIR]}
shared=${2:-${FRUGAL_SHARED_DIR:-$(cd "$(dirname "$0")/../../.." && pwd)/shared}}
tools=$shared/tools
if ! "$tools/llamacpp-logits" --version >/dev/null 2>&1; then
    echo "SKIP: $tools or its llama.cpp peer is not available (run $tools/setup-peer.sh)"
    exit 77
fi
export PYTHONDONTWRITEBYTECODE=1
mkdir -p "$out"
stamp=$out/.complete-v13
[[ -f $stamp ]] && { echo "parity fixtures up to date in $out"; exit 0; }

models=()
for arch in llama qwen2; do
    for t in f32 f16 bf16 q8_0 q4_0; do models+=("tiny-$arch-$t"); done
done
"$tools/make_models.py" --out "$out" "${models[@]}" tiny256-qwen2-f32 tiny256-llama-f32 >/dev/null
# K-quants need rows that are multiples of 256: quantize the tiny256 models with llama.cpp.
"$tools/llamacpp-quantize" "$out/tiny256-qwen2-f32.gguf" "$out/tiny256-qwen2-q4_k_m.gguf" Q4_K_M >/dev/null
"$tools/llamacpp-quantize" "$out/tiny256-llama-f32.gguf" "$out/tiny256-llama-q5_k_m.gguf" Q5_K_M >/dev/null
# The two smallest K-quants: a Q3_K_M mix (Q3_K with Q4_K, Q5_K and Q6_K) and a Q2_K one (Q2_K
# with Q3_K and Q6_K).
"$tools/llamacpp-quantize" "$out/tiny256-qwen2-f32.gguf" "$out/tiny256-qwen2-q3_k_m.gguf" Q3_K_M >/dev/null
"$tools/llamacpp-quantize" "$out/tiny256-llama-f32.gguf" "$out/tiny256-llama-q2_k.gguf" Q2_K >/dev/null
# IQ4_XS: IQ4_NL's levels in K-quant super-blocks (no importance matrix needed).
"$tools/llamacpp-quantize" "$out/tiny256-qwen2-f32.gguf" "$out/tiny256-qwen2-iq4_xs.gguf" IQ4_XS >/dev/null
# IQ4_NL: the same levels in 32-element blocks, each with its fp16 scale.
"$tools/llamacpp-quantize" "$out/tiny256-qwen2-f32.gguf" "$out/tiny256-qwen2-iq4_nl.gguf" IQ4_NL >/dev/null
models+=(tiny256-qwen2-q4_k_m tiny256-llama-q5_k_m tiny256-qwen2-q3_k_m tiny256-llama-q2_k tiny256-qwen2-iq4_xs
         tiny256-qwen2-iq4_nl)
# Q5_0 (llama.cpp's fallback for K-quant rows that are not a multiple of 256; frugal repacks it at
# load): rows of 2 blocks (tiny) and of 8 and 24 (tiny256), so both forms of the fifth bits.
"$tools/llamacpp-quantize" "$out/tiny-qwen2-f32.gguf" "$out/tiny-qwen2-q5_0.gguf" Q5_0 >/dev/null
"$tools/llamacpp-quantize" "$out/tiny256-qwen2-f32.gguf" "$out/tiny256-qwen2-q5_0.gguf" Q5_0 >/dev/null
models+=(tiny-qwen2-q5_0 tiny256-qwen2-q5_0)
# Q4_1: 4-bit quants with a scale and an offset per block.
"$tools/llamacpp-quantize" "$out/tiny-llama-f32.gguf" "$out/tiny-llama-q4_1.gguf" Q4_1 >/dev/null
models+=(tiny-llama-q4_1)

# deepseek2: V2-Lite-like (no q_lora, softmax gating, leading dense layer) and V3-like (q_lora,
# sigmoid gating with selection bias, expert groups, normalised top-k, scale 2.5), each in both
# MLA tensor styles: split attn_k_b/attn_v_b (current converter) and legacy attn_kv_b.
ds_models=()
for arch in deepseek2 deepseek3; do
    for t in f32 q8_0; do ds_models+=("tiny-$arch-$t"); done
done
"$tools/make_models.py" --out "$out" "${ds_models[@]}" >/dev/null
"$tools/make_models.py" --out "$out" --mla-style legacy "${ds_models[@]}" >/dev/null
for m in "${ds_models[@]}"; do models+=("$m" "$m-legacy"); done
# llama.cpp's K-quant mixes of a V3-like model with 256-wide rows: attn_k_b (128-wide rows)
# falls back to Q5_0 (Q4_K_M), Q5_1 (Q5_K_M) and IQ4_NL (Q2_K, the mix people run the 671B
# models in on CPUs), as in real DeepSeek files.
"$tools/make_models.py" --out "$out" tiny256-deepseek3-f32 >/dev/null
"$tools/llamacpp-quantize" "$out/tiny256-deepseek3-f32.gguf" "$out/tiny256-deepseek3-q4_k_m.gguf" Q4_K_M >/dev/null
"$tools/llamacpp-quantize" "$out/tiny256-deepseek3-f32.gguf" "$out/tiny256-deepseek3-q5_k_m.gguf" Q5_K_M >/dev/null
"$tools/llamacpp-quantize" "$out/tiny256-deepseek3-f32.gguf" "$out/tiny256-deepseek3-q2_k.gguf" Q2_K >/dev/null
models+=(tiny256-deepseek3-q4_k_m tiny256-deepseek3-q5_k_m tiny256-deepseek3-q2_k)
# The V3-like model with an MTP block appended (frugal must skip it; not a llama.cpp fixture).
/usr/bin/python3 "$(dirname "$0")/add_mtp_block.py" "$tools" "$out/tiny-deepseek3-f32.gguf" "$out/tiny-deepseek3-f32-mtp.gguf"

# A fixed 24-token prompt (ids valid in every tiny vocabulary of 8192).
tokens=1925,346,5193,264,882,13,576,1052,572,264,3974,2885,6941,429,6364,13,1084,2948,311,1486,4889,304,279,6118
echo "$tokens" > "$out/prompt.txt"
# On CPUs with AMX, llama.cpp picks its sapphirerapids build, which aborts on deepseek2 files
# (GGML_ASSERT in ggml_backend_sched_split_graph, node-llama-cpp 3.21.1) and moves Q4_0 and Q8_0
# products onto AMX kernels no other machine runs; its cooperlake build (AVX-512 VNNI and BF16)
# gives the fixtures every AVX-512 machine gets. FRUGAL_LLAMACPP_CPU, when set, still decides.
if [[ -z ${FRUGAL_LLAMACPP_CPU:-} ]] && grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
    export FRUGAL_LLAMACPP_CPU=cooperlake
fi
# llama.cpp's informational stderr goes to a log, shown only when a call fails.
oracle() {
    "$tools/llamacpp-logits" "$@" 2>"$out/llamacpp-logits.log" || { cat "$out/llamacpp-logits.log" >&2; return 1; }
}
for m in "${models[@]}"; do
    oracle "$out/$m.gguf" --tokens "$tokens" --format bin --out "$out/$m.logits.bin" >/dev/null
    oracle "$out/$m.gguf" --tokens "$tokens" --greedy 64 > "$out/$m.greedy.json"
done
printf '%s\n' "${models[@]}" > "$out/models.txt"

# F16 and Q8_0 KV caches (parity_test.cpp): llama.cpp's logits with its cache in F16 (flash
# attention off, the path that rounds only the cache and the query) and in Q8_0 for the F32-weight
# models, so that the only rounding either engine adds is the cache's.
for m in tiny-qwen2-f32 tiny-llama-f32 tiny-deepseek2-f32 tiny-deepseek2-f32-legacy tiny-deepseek3-f32 \
         tiny-deepseek3-f32-legacy; do
    oracle "$out/$m.gguf" --tokens "$tokens" --kv-type f16 --fa off --format bin --out "$out/$m.kv16.logits.bin" >/dev/null
    # Q8_0 keys and values (llama.cpp quantizes V only under flash attention, which then also
    # quantizes the query to Q8_0 for the scores).
    oracle "$out/$m.gguf" --tokens "$tokens" --kv-type q8_0 --fa on --format bin --out "$out/$m.kvq8.logits.bin" >/dev/null
done

# Fidelity (parity_test.cpp): llama.cpp's logits of 256 seeded random tokens for quantized files
# and for the F32 models they were made from (the reference); 24 positions are too few to tell
# KL divergences apart on MoE models, where one flipped expert choice dominates.
/usr/bin/python3 -c 'import random; random.seed(11); print(",".join(str(random.randrange(8000)) for _ in range(256)))' \
    > "$out/fidelity.txt"
for m in tiny-qwen2-f32 tiny-qwen2-q8_0 tiny-llama-f32 tiny-llama-q4_0 tiny256-qwen2-f32 tiny256-qwen2-q4_k_m \
         tiny256-llama-f32 tiny256-llama-q5_k_m tiny-deepseek2-f32 tiny-deepseek2-q8_0 tiny-deepseek3-f32 \
         tiny-deepseek3-q8_0 tiny256-deepseek3-f32 tiny256-deepseek3-q4_k_m tiny-qwen2-bf16 tiny256-qwen2-q3_k_m tiny256-llama-q2_k \
         tiny256-deepseek3-q2_k tiny256-qwen2-iq4_xs tiny256-qwen2-iq4_nl tiny-llama-q4_1 tiny-qwen2-f16; do
    oracle "$out/$m.gguf" --tokens-file "$out/fidelity.txt" --format bin --out "$out/$m.fidelity.logits.bin" >/dev/null
done
touch "$stamp"
echo "parity fixtures: ${#models[@]} models in $out"
