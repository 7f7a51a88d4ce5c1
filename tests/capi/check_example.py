#!/usr/bin/env python3
"""check_example.py GENERATE_C [SHARED_DIR]

Runs examples/c/generate.c (greedy, through the C ABI) on stories260K with no prompt and as many
tokens as reference.json's greedy_from_bos run, and compares its stdout with that run's text
(plus the final newline the example prints). Exit 77 (skipped) when ../shared is absent.
"""
import json
import os
import subprocess
import sys


def main() -> int:
    exe = sys.argv[1]
    shared = os.environ.get("FRUGAL_SHARED_DIR") or (sys.argv[2] if len(sys.argv) > 2 else "")
    data = os.path.join(shared, "data", "stories260K")
    model = os.path.join(data, "stories260K.gguf")
    ref_path = os.path.join(data, "reference.json")
    if not (os.path.isfile(model) and os.path.isfile(ref_path)):
        print(f"SKIP: {data} is not available")
        return 77
    with open(ref_path, encoding="utf-8") as f:
        ref = json.load(f)["greedy_from_bos"]
    n = len(ref["generated_ids"])
    run = subprocess.run([exe, model, "", str(n)], capture_output=True, timeout=300)
    if run.returncode != 0:
        print(f"example_c: {exe} exited with {run.returncode}")
        print(run.stderr.decode("utf-8", "replace"))
        return 1
    try:
        got = run.stdout.decode("utf-8")  # the C ABI promises valid UTF-8 pieces
    except UnicodeDecodeError as e:
        print(f"example_c: output is not valid UTF-8: {e}")
        return 1
    want = ref["text"] + "\n"
    if got != want:
        i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        print(f"example_c: output differs from reference.json at character {i} "
              f"(got {len(got)} characters, want {len(want)})")
        print(f"  got:  {got[max(0, i - 40):i + 40]!r}")
        print(f"  want: {want[max(0, i - 40):i + 40]!r}")
        return 1
    print(f"example_c: {n} greedy tokens match reference.json ({len(got)} characters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
