#!/usr/bin/env python3
"""Lifetime torture test of the Python binding (issue 5): handles freed in every order.

Each iteration loads a model, makes 1-3 sessions and a tokenizer (the model's own or one loaded
from the file), generates a few tokens on each session (plain, split into reasoning/content, or
through a chat template), sometimes keeps a Generation iterator, a model tokenizer or a session
for a later iteration, sometimes ties objects into reference cycles, then drops every reference
in a random (seeded) order, each by close() or by forgetting it, with gc.collect() (of a random
generation) at random places. Any double free, use after free or leak of a dangling handle shows up under ASan.

    FRUGAL_LIBRARY=build/release/capi/libfrugal.so python3 bindings/python/tests/lifetime_asan.py

Under AddressSanitizer (libfrugal built with the asan preset; Python itself is not instrumented,
so libasan is preloaded; detect_leaks=0 because CPython deliberately leaks interpreter state at
exit, which LeakSanitizer would report although libfrugal frees everything):

    LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
    FRUGAL_LIBRARY=build/asan/capi/libfrugal.so python3 bindings/python/tests/lifetime_asan.py

Options: --iterations N (1000), --seed S (1), --model PATH (default: a tiny random-weight llama
written by tiny_gguf.py, so no test data is needed). Exit 0 and a last line "lifetime: ... OK" on
success.
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _support import frugal, tiny_model_path  # noqa: E402

PROMPTS = ["the cat", "a hat", "<think>\nthe", "bab", "", "the the the", "ch\u00e9 \u732b"]


def one_iteration(rng: random.Random, path: str, pool: list, stats: dict) -> None:
    model = frugal.Model(path, n_threads=1, use_mmap=rng.random() < 0.8)
    objs = [model]
    for _ in range(rng.randint(1, 3)):
        s = model.session(n_ctx=rng.choice([0, 16, 32, 64]), temperature=rng.choice([0.0, 0.8]),
                          seed=rng.randrange(1 << 32))
        objs.append(s)
        n = rng.randint(1, 4)
        mode = rng.random()
        try:
            if mode < 0.15:
                gen = s.chat([("user", rng.choice(PROMPTS))], max_tokens=n, format="chatml",
                             split_reasoning=rng.random() < 0.5)
            else:
                gen = s.generate(rng.choice(PROMPTS), max_tokens=n, split_reasoning=mode < 0.5)
            if rng.random() < 0.3:
                next(iter(gen), None)  # leave it half-consumed, holding its session
                objs.append(gen)
            else:
                for _piece in gen:
                    pass
                stats["tokens"] += len(gen.tokens)
        except frugal.ContextFull:  # a chat template does not fit a 16-position context
            stats["context_full"] += 1
        if rng.random() < 0.1:
            s.cancel()  # nothing runs: a no-op
        if rng.random() < 0.2:
            objs.append(s.tokenizer)
        if rng.random() < 0.1:
            s.logits()
    tok = model.tokenizer() if rng.random() < 0.7 else frugal.Tokenizer(path)
    ids = tok.encode(rng.choice(PROMPTS))
    tok.decode(ids)
    objs.append(tok)
    if rng.random() < 0.1:
        model.metadata  # noqa: B018 (reads every key and value)

    if rng.random() < 0.2:  # a reference cycle only the cyclic collector frees
        a, b = rng.sample(objs, 2) if len(objs) > 1 else (objs[0], objs[0])
        cycle = [a, b]
        cycle.append(cycle)
        objs.append(cycle)
    if rng.random() < 0.3:  # something outlives this iteration
        pool.append(objs.pop(rng.randrange(len(objs))))
    while len(pool) > 8:
        pool.pop(rng.randrange(len(pool)))

    rng.shuffle(objs)
    del model, tok
    s = gen = None  # noqa: F841
    while objs:
        o = objs.pop()
        if rng.random() < 0.4 and hasattr(o, "close"):
            o.close()
            if rng.random() < 0.2:
                o.close()  # idempotent
            stats["closed"] += 1
        o = None
        if rng.random() < 0.25:
            # mostly the young generation (cheap); a full collection takes milliseconds
            gc.collect(rng.choices((0, 1, 2), (80, 15, 5))[0])
            stats["collections"] += 1
        if objs and rng.random() < 0.1:
            # whatever is still alive keeps working while its siblings are gone
            survivor = objs[-1]
            if isinstance(survivor, frugal.Session) and not survivor.closed:
                survivor.reset()
                stats["tokens"] += len(survivor.generate("the", max_tokens=2).read())
            elif isinstance(survivor, frugal.Tokenizer) and not survivor.closed:
                survivor.encode("the cat")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model", default=None, help="a GGUF model (default: a tiny generated one)")
    args = ap.parse_args(argv)
    path = args.model or tiny_model_path()
    rng = random.Random(args.seed)
    stats = {"tokens": 0, "closed": 0, "collections": 0, "context_full": 0}
    pool: list = []
    t0 = time.monotonic()
    for _ in range(args.iterations):
        one_iteration(rng, path, pool, stats)
    pool.clear()
    gc.collect()
    dt = time.monotonic() - t0
    print(f"lifetime: {args.iterations} iterations (seed {args.seed}, {os.path.basename(path)}, "
          f"{frugal.library_path}): {stats['tokens']} tokens, {stats['closed']} explicit closes, "
          f"{stats['collections']} gc.collect() calls, {stats['context_full']} ContextFull, {dt:.1f} s: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
