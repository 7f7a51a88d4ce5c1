#!/usr/bin/env python3
"""End-to-end checks of the `frugal` CLI (run, info, logits, errors) on the trained stories260K model.

usage: cli_check.py FRUGAL_EXE SHARED_DIR SCRATCH_DIR. Exits 77 (ctest: skipped) without ../shared.
"""
import json
import struct
import subprocess
import sys
from pathlib import Path

exe, shared, scratch = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
model = shared / "data/stories260K/stories260K.gguf"
ref_path = shared / "data/stories260K/reference.json"
if not model.exists() or not ref_path.exists():
    print(f"SKIP: {model} is not available")
    sys.exit(77)
ref = json.loads(ref_path.read_text())
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(*args):
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)


# Greedy from BOS: stdout is the published llama2.c sample, the stats go to stderr.
g = ref["greedy_from_bos"]
r = run("run", "-m", str(model), "-n", str(g["steps"]), "--temp", "0", "-t", "2")
check(r.returncode == 0, f"run exits 0 (got {r.returncode}: {r.stderr[-300:]})")
check(r.stdout.rstrip("\n") == g["text"], "run: greedy 256 tokens from BOS print the reference story")
for word in ("prompt:", "decode:", "tokens/s", "peak RSS", "KV cache"):
    check(word in r.stderr, f"run: stats on stderr mention '{word}'")

# A prompted continuation: the prompt is echoed with --show-prompt, then the reference text.
p = ref["prompts"][0]
r = run("run", "-m", str(model), "-p", p["prompt"], "-n", str(len(p["generated_ids"])), "--temp", "0", "--show-prompt",
        "--kv-type", "f32")
check(r.returncode == 0 and r.stdout.rstrip("\n") == p["prompt"] + p["generated_text"],
      f"run -p '{p['prompt']}': prompt + reference continuation")

# Seeded sampling is reproducible and seed-dependent.
runs = [run("run", "-m", str(model), "-n", "48", "--temp", "1.0", "--seed", s).stdout for s in ("7", "7", "8")]
check(runs[0] == runs[1], "run: the same seed gives the same text")
check(runs[0] != runs[2], "run: another seed gives other text")

# info: metadata and the tensor summary.
r = run("info", str(model))
check(r.returncode == 0 and "general.architecture" in r.stdout and "llama" in r.stdout, "info: prints metadata")
check("tensors: 48" in r.stdout, "info: counts the 48 tensors")

# logits: the binary dump's first row equals reference logits of position 0 within 1e-4 (an F32
# KV cache, as numpy's forward pass; the default F16 cache moves them by ~1e-3).
out = scratch / "stories_logits.bin"
r = run("logits", "-m", str(model), "--tokens", "1", "-o", str(out), "--kv-type", "f32")
data = out.read_bytes() if out.exists() else b""
header_end = data.find(b"\n") + 1
header = json.loads(data[:header_end]) if header_end > 0 else {}
check(r.returncode == 0 and header.get("shape") == [1, 512] and header_end % 64 == 0, "logits: header and shape")
if header_end > 0 and len(data) >= header_end + 512 * 4:
    row = struct.unpack("<512f", data[header_end:header_end + 512 * 4])
    diff = max(abs(a - b) for a, b in zip(row, g["logits_first_8_pos"][0]))
    check(diff < 1e-4, f"logits: position 0 within 1e-4 of numpy (max diff {diff:.2e})")

# tokenize: the prompts' llama2.c ids (BOS included), and back; a tokenizer.json folder when ../shared has one.
for p in ref["prompts"]:
    r = run("tokenize", "-m", str(model), "-p", p["prompt"])
    check(r.returncode == 0 and json.loads(r.stdout) == p["prompt_ids"], f"tokenize '{p['prompt']}': reference ids")
    ids = ",".join(str(i) for i in p["prompt_ids"])
    r = run("tokenize", "-m", str(model), "--decode", ids)
    check(r.returncode == 0 and r.stdout == p["prompt"], f"tokenize --decode {ids}: the prompt")
r = subprocess.run([exe, "tokenize", "-m", str(model), "--pieces"], input="Once upon", capture_output=True, text=True)
check(r.returncode == 0 and r.stdout.splitlines()[0].startswith("1\t"), "tokenize --pieces from stdin: BOS first")
hf = shared / "data/tokenizers/deepseek-v3"
if hf.exists():
    r = run("tokenize", "-m", str(hf), "-p", "Hello world<\uff5cUser\uff5c>")
    check(r.returncode == 0 and json.loads(r.stdout) == [0, 19923, 2058, 128803], "tokenize: a tokenizer.json folder")

# run --chat: -p becomes a user turn in the chosen format; R1 opens the reasoning, which a pipe gets
# as generated and --hide-reasoning drops (stories260K never closes it).
r1_prompt = "<s><\uff5cUser\uff5c>Once<\uff5cAssistant\uff5c><think>\n"
chat = ["run", "-m", str(model), "--chat", "--chat-format", "deepseek-r1", "-p", "Once", "-n", "16", "--temp", "0"]
r = run(*chat, "--show-prompt")
check(r.returncode == 0 and r.stdout.startswith(r1_prompt) and len(r.stdout.strip()) > len(r1_prompt),
      "run --chat --show-prompt: the R1 prompt, then the generated text")
r = run(*chat, "--hide-reasoning")
check(r.returncode == 0 and r.stdout.strip() == "", "run --chat --hide-reasoning: reasoning is not printed")
r = run("run", "-m", str(model), "--chat", "-p", "Once", "-n", "4")
check(r.returncode != 0 and "chat template" in r.stderr, "run --chat: a model without a chat template is an error")

# bench: -d puts context in the cache first, --profile adds a per-op breakdown whose shares add up to 1.
r = run("bench", "-m", str(model), "-p", "8", "-n", "4", "-r", "1", "-d", "16", "--profile")
lines = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
tests = {l["test"] for l in lines if "test" in l}
profiles = [l for l in lines if "profile" in l]
check(r.returncode == 0 and tests == {"pp8@d16", "tg4@d16"}, f"bench -d 16: tests {sorted(tests)}")
shares = [sum(op.get("share", 0) for op in p["ops"].values()) for p in profiles]
check(len(profiles) == 2 and all(abs(x - 1) < 1e-3 for x in shares) and all("matmul" in p["ops"] for p in profiles),
      f"bench --profile: two breakdowns whose shares add up to 1 ({shares})")
# The header says which GEMM takes what share of a prompt token's multiply-adds.
header = next((l for l in lines if "prefill_gemm" in l), {})
paths = header.get("prefill_paths", {})
check(paths and set(paths) <= {"f32", "bf16", "int8", "q8"} and abs(sum(paths.values()) - 1) < 2e-3,
      f"bench: prefill_paths shares add up to 1 ({paths})")
check(isinstance(header.get("prefill_panels"), bool), f"bench: prefill_panels says true or false ({header})")
check(isinstance(header.get("prefill_amx"), bool), f"bench: prefill_amx says true or false ({header})")
# Tokens per forward pass of a long prompt: 512 for a dense model (2048 with routed experts).
check(header.get("max_batch") == 512, f"bench: a dense model's prompt batches of 512 ({header})")
# The cache type: F16 by default, in the header and the memory line, whose kv_bytes it sets.
memory = next((l for l in lines if "kv_bytes" in l), {})
check(header.get("kv_type") == "f16" and memory.get("kv_type") == "f16", f"bench: an F16 cache by default ({header})")
# The share of the resident set in huge pages, from smaps_rollup: a count of KiB within the set.
huge = memory.get("huge_pages_kib")
check(isinstance(huge, int) and 0 <= huge <= memory.get("rss_kib", -1), f"bench: huge_pages_kib within rss_kib ({memory})")
r = run("bench", "-m", str(model), "-p", "8", "-n", "0", "-r", "1", "--prefill-gemm", "f32", "--kv-type", "f32")
lines32 = [json.loads(l) for l in r.stdout.splitlines() if l.startswith("{")]
header = next((l for l in lines32 if "prefill_gemm" in l), {})
memory32 = next((l for l in lines32 if "kv_bytes" in l), {})
check(header.get("prefill_paths") == {"f32": 1.0}, f"bench --prefill-gemm f32: all on f32 ({header})")
check(header.get("kv_type") == "f32" and memory32.get("kv_bytes_per_token") == 2 * memory.get("kv_bytes_per_token", -1),
      f"bench --kv-type f32: twice the bytes per position ({memory32})")
# A Q8_0 cache needs heads in whole blocks of 32; stories260K's are 8 wide: an error naming both.
r = run("bench", "-m", str(model), "-p", "8", "-n", "0", "-r", "1", "--kv-type", "q8_0")
check(r.returncode != 0 and "q8_0" in r.stderr and "are 8" in r.stderr and r.stdout.count("tps") == 0,
      f"bench --kv-type q8_0 on heads of 8: refused, naming them ({r.stderr.strip()})")

# Errors: non-zero exit, a message on stderr naming the problem, nothing on stdout.
r = run("run", "-m", str(scratch / "missing.gguf"), "-n", "4")
check(r.returncode != 0 and "missing.gguf" in r.stderr and r.stdout == "", "run: a missing file is an error naming it")
bad = scratch / "not_a_model.gguf"
bad.write_bytes(b"NOPE" + bytes(60))
r = run("info", str(bad))
check(r.returncode != 0 and "bad magic" in r.stderr, "info: a non-GGUF file is an error ('bad magic')")
r = run("run", "-m", str(model), "--prompt-ids", "1,99999", "-n", "4")
check(r.returncode != 0 and "99999" in r.stderr, "run: an out-of-range prompt id is an error naming it")
r = run("run", "-m", str(model), "-n", "600", "--temp", "0", "-c", "32")
check(r.returncode == 0 and "context full" in r.stderr, "run: generation stops cleanly at a full context")

print(f"{len(failures)} failed" if failures else "all CLI checks passed")
sys.exit(1 if failures else 0)
