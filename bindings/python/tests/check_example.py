#!/usr/bin/env python3
"""Runs examples/python/generate.py as a user would (FRUGAL_LIBRARY=... python3 generate.py MODEL ...)
on stories260K: greedy from BOS it must print reference.json's greedy_from_bos text exactly, and
--chat (R1 format) must put the reasoning on stderr. Exit 77 (SKIP) without ../shared."""
from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
EXAMPLE = os.path.join(REPO, "examples", "python", "generate.py")


def main() -> int:
    shared = os.environ.get("FRUGAL_SHARED_DIR") or os.path.join(REPO, "..", "shared")
    data = os.path.join(shared, "data", "stories260K")
    model = os.path.join(data, "stories260K.gguf")
    if not os.path.isfile(model):
        print(f"SKIP: {data} is not available (set FRUGAL_SHARED_DIR)")
        return 77
    with open(os.path.join(data, "reference.json"), encoding="utf-8") as f:
        ref = json.load(f)["greedy_from_bos"]
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the example finds the binding of the checkout by itself
    cmd = [sys.executable, EXAMPLE, model, "-n", str(ref["steps"]), "--temp", "0", "--threads", "1"]
    run = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
    if run.returncode != 0:
        print(f"example_python: {cmd} exited with {run.returncode}\n{run.stderr.decode('utf-8', 'replace')}")
        return 1
    got, want = run.stdout.decode("utf-8"), ref["text"] + "\n"
    if got != want:
        print(f"example_python: output differs from reference.json\n got: {got!r}\nwant: {want!r}")
        return 1
    print(f"greedy from BOS: {ref['steps']} tokens equal reference.json")

    cmd = [sys.executable, EXAMPLE, model, "Hi", "--chat", "--chat-format", "deepseek-r1", "-n", "24", "--temp", "0",
           "--threads", "1"]
    run = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
    err = run.stderr.decode("utf-8", "replace")
    if run.returncode != 0 or run.stdout.decode() != "\n" or len(err.split("[load")[0].strip()) < 10:
        print(f"example_python: --chat: exit {run.returncode}, stdout {run.stdout!r}, stderr {err!r}")
        return 1
    print(f"--chat: reasoning on stderr: {err.split('[load')[0].strip()[:60]!r}...")

    run = subprocess.run([sys.executable, EXAMPLE, os.path.join(data, "no-such-model.gguf")], capture_output=True,
                         env=env, timeout=60)
    if run.returncode != 1 or b"no-such-model.gguf" not in run.stderr:
        print(f"example_python: a missing model: exit {run.returncode}, stderr {run.stderr!r}")
        return 1
    print("a missing model: exit 1 with the path in the message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
