#!/usr/bin/env bash
# Side-by-side speed against llama.cpp on the same GGUF file: runs `frugal bench` and
# ../shared/tools/llamacpp-bench alternately (A B A B ...), then prints the medians of each test
# and their ratio. The machines are shared and noisy: only these same-run ratios mean anything.
#   scripts/bench_vs_llamacpp.sh MODEL.gguf [rounds=2] [-- extra bench args, e.g. -p 512 -n 128 -r 2 -t 2]
# Both engines on their AVX2 code on an AVX-512 machine, as on an AVX2-only CPU:
#   FRUGAL_MAX_CPU_ISA=avx2 FRUGAL_LLAMACPP_CPU=haswell scripts/bench_vs_llamacpp.sh MODEL.gguf
# ... and on AVX2 with AVX-VNNI (Intel's client cores), where the CPU has it:
#   FRUGAL_MAX_CPU_ISA=avx2_vnni FRUGAL_LLAMACPP_CPU=alderlake scripts/bench_vs_llamacpp.sh MODEL.gguf
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:?usage: bench_vs_llamacpp.sh MODEL.gguf [ROUNDS] [-- BENCH ARGS]}
rounds=${2:-2}
shift $(( $# >= 2 ? 2 : 1 ))
[[ ${1:-} == -- ]] && shift
args=("$@")
((${#args[@]})) || args=(-p 512 -n 128 -r 2 -t 2)
tools=${FRUGAL_SHARED_DIR:-$root/../shared}/tools
frugal=${FRUGAL_BIN:-$root/build/release/bin/frugal}
out=$(mktemp -d)
# Read the file once first: whichever engine ran first would otherwise pay for reading it from
# disk (an earlier model's runs may have evicted it), which skewed the load times in its disfavour.
# Its cached pages are dropped before (GNU dd's nocache), so that the read brings them back in the
# large folios a read from disk gets, which both engines then map as huge pages: a file written on
# this machine (make_models.py, llamacpp-quantize, a download) sits in the cache in small ones,
# which cost the 1.5B Q8_0's decode 12-20 % in frugal and 5-15 % in llama.cpp on a Zen 5 VM
# (docs/PERF.md, "Zen 5 (2026-12-02 05:14-)"). FRUGAL_BENCH_KEEP_CACHE=1 keeps the cache as it is.
[[ ${FRUGAL_BENCH_KEEP_CACHE:-0} == 1 ]] || dd if="$model" iflag=nocache count=0 status=none
cat "$model" > /dev/null
# llama.cpp's own choice of CPU build, except where its AMX build (sapphirerapids) fails on the
# file, as it aborts on deepseek2 files (GGML_ASSERT in ggml_backend_sched_split_graph,
# node-llama-cpp 3.21.1): then its cooperlake build (AVX-512 VNNI and BF16, no AMX), said once.
peer_bench() { # OUT_FILE
    "$tools/llamacpp-bench" "$model" "${args[@]}" 2>/dev/null > "$1" && return 0
    [[ -z ${FRUGAL_LLAMACPP_CPU:-} ]] && grep -qw amx_tile /proc/cpuinfo || return 1
    echo "llama.cpp's AMX build failed on this file: its cooperlake build instead" >&2
    export FRUGAL_LLAMACPP_CPU=cooperlake
    "$tools/llamacpp-bench" "$model" "${args[@]}" 2>/dev/null > "$1"
}
for ((i = 0; i < rounds; ++i)); do
    "$frugal" bench -m "$model" "${args[@]}" > "$out/frugal.$i.jsonl"
    peer_bench "$out/llamacpp.$i.jsonl"
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(engine):
    tests, by_round, mem, load_s, extra, gemm, isa = {}, {}, None, [], {}, "?", "?"
    huge = None  # frugal's (resident KiB in huge pages, resident KiB), the round with the least
    for i in range(rounds):
        for line in open(f"{out}/{engine}.{i}.jsonl"):
            line = line.strip()
            if not line.startswith("{"): continue
            j = json.loads(line)
            if "test" in j:
                tests.setdefault(j["test"], []).extend(j["tps"])
                by_round.setdefault(j["test"], {}).setdefault(i, []).extend(j["tps"])
                if "bound_tps" in j: extra.setdefault(j["test"], []).append(j["bound_tps"])
            if "peak_rss_kib" in j: mem = max(mem or 0, j["peak_rss_kib"])
            if "huge_pages_kib" in j and (huge is None or j["huge_pages_kib"] < huge[0]):
                huge = (j["huge_pages_kib"], j["rss_kib"])
            if "load_s" in j: load_s.append(j["load_s"])
            isa = j.get("cpu_isa", j.get("cpu_backend", isa))  # frugal's kernels; llama.cpp's CPU backend
            if "prefill_gemm" in j:
                shares = sorted(j.get("prefill_paths", {}).items(), key=lambda x: -x[1])
                paths = ", ".join(f"{p} {share:.0%}" for p, share in shares)
                gemm = j["prefill_gemm"] + (f" (a prompt token's multiply-adds here: {paths})" if paths else "")
                if j.get("prefill_amx") and any(p == "bf16" for p, _ in shares):
                    gemm += "; bf16 GEMMs on AMX tiles"
                if j.get("prefill_panels") and any(p in ("f32", "bf16") for p, _ in shares):
                    gemm += "; f32" + ("" if j.get("prefill_amx") else "/bf16") + " GEMMs on oneDNN's brgemm panels"
    return tests, by_round, mem, load_s, extra, gemm, isa, huge
f, f_rounds, fm, fl, bounds, gemm, f_isa, f_huge = load("frugal")
l, l_rounds, lm, ll, _, _, l_isa, _ = load("llamacpp")
print(f"frugal's prefill GEMM: {gemm}")
print(f"kernels: frugal {f_isa}, llama.cpp {l_isa}")
# Each round ran the two engines back to back, so its own ratio is the least disturbed by the
# machine's drift: their range shows how far the noise moved the ratio of medians.
print(f"{'test':12} {'frugal t/s':>12} {'llama.cpp t/s':>14} {'ratio':>7} {'rounds':>11}  decode bound t/s (frugal / llama.cpp share)")
for t in f:
    if t in l:
        a, b = statistics.median(f[t]), statistics.median(l[t])
        roof = ""
        if t in bounds:  # frugal measured the read bandwidth right after its decode runs
            bound = statistics.median(bounds[t])
            roof = f"  {bound:.2f} ({a / bound:.0%} / {b / bound:.0%})"
        paired = [statistics.median(f_rounds[t][i]) / statistics.median(l_rounds[t][i])
                  for i in f_rounds[t] if i in l_rounds.get(t, {})]
        spread = f"{min(paired):.2f}-{max(paired):.2f}" if len(paired) > 1 else ""
        print(f"{t:12} {a:12.2f} {b:14.2f} {a / b:7.2f}x {spread:>11}{roof}")
print(f"peak RSS: frugal {fm / 1024:.0f} MiB, llama.cpp {lm / 1024:.0f} MiB ({fm / lm:.2f}x)")
if f_huge:  # small folios in the page cache or THP off show here (docs/PERF.md, "Zen 5 (2026-12-02 05:14-)")
    print(f"frugal's resident set in huge pages: {f_huge[0] / 1024:.0f} of {f_huge[1] / 1024:.0f} MiB")
print(f"load time (median): frugal {statistics.median(fl):.2f} s, llama.cpp {statistics.median(ll):.2f} s")
PY
