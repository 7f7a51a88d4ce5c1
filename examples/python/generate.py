#!/usr/bin/env python3
"""generate.py - stream a completion (or a chat reply) through frugal's Python binding.

    FRUGAL_LIBRARY=build/release/capi/libfrugal.so python3 examples/python/generate.py MODEL "Once upon a time"
    FRUGAL_LIBRARY=... python3 examples/python/generate.py MODEL --chat "Why is the sky blue?"

Without a prompt the model starts from BOS. With --chat the prompt is sent as a user message
through the model's chat template; a reasoning model's thinking is shown dimmed on a terminal and
written to stderr otherwise (--hide-reasoning drops it). Sampling options you do not give keep
the model's defaults (DeepSeek-R1 models: temperature 0.6, top-p 0.95). Speed goes to stderr.
Uses the binding from this checkout (bindings/python/src) unless frugal is installed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time



def _import_frugal():
    try:
        import frugal
    except ModuleNotFoundError as e:
        if e.name != "frugal":
            raise
        # not installed: use the binding of this checkout
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, os.path.join(here, "..", "..", "bindings", "python", "src"))
        import frugal
    return frugal


try:
    frugal = _import_frugal()
except ImportError as e:  # libfrugal not found, or not the version the binding expects
    sys.exit(f"generate.py: {e}")

DIM, RESET = "\033[2m", "\033[0m"


def parse_args(argv):
    ap = argparse.ArgumentParser(description="Stream a completion with frugal (Python binding).")
    ap.add_argument("model", help="a GGUF model file")
    ap.add_argument("prompt", nargs="?", default="", help="prompt text (default: start from BOS)")
    ap.add_argument("-n", "--n-predict", type=int, default=256, help="tokens to generate at most (256)")
    ap.add_argument("--chat", action="store_true", help="send the prompt as a user message (chat template)")
    ap.add_argument("--system", default=None, help="a system message (with --chat)")
    ap.add_argument("--chat-format", default=None,
                    help="force a chat format (deepseek-r1, deepseek-v3, deepseek-v2, chatml, llama3, llama3.1)")
    ap.add_argument("--hide-reasoning", action="store_true", help="with --chat: do not print the reasoning")
    ap.add_argument("--temp", type=float, default=None, help="temperature (0 = greedy)")
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--min-p", type=float, default=None)
    ap.add_argument("--repeat-penalty", type=float, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--threads", type=int, default=0, help="threads (0 = physical cores)")
    ap.add_argument("--ctx", type=int, default=0, help="context size (0 = min(training context, 4096))")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    out, err = sys.stdout, sys.stderr
    dim = out.isatty() and not os.environ.get("NO_COLOR")
    try:
        t_load = time.perf_counter()
        with frugal.Model(args.model, n_threads=args.threads) as model:
            session = model.session(args.ctx, temperature=args.temp, top_k=args.top_k, top_p=args.top_p,
                                    min_p=args.min_p, repeat_penalty=args.repeat_penalty, seed=args.seed)
        # the session keeps the weights alive: the Model object is closed already
        t_prompt = time.perf_counter()
        if args.chat:
            messages = [{"role": "system", "content": args.system}] if args.system else []
            messages.append({"role": "user", "content": args.prompt})
            gen = session.chat(messages, args.n_predict, split_reasoning=True, format=args.chat_format)
        else:
            gen = session.generate(args.prompt, args.n_predict)
            out.write(args.prompt)
        t_gen = time.perf_counter()
        in_reasoning = False
        for piece in gen:
            if not args.chat:
                out.write(piece)
            elif piece.kind == "reasoning":
                if args.hide_reasoning:
                    continue
                if dim:
                    out.write(piece.text if in_reasoning else DIM + piece.text)
                    in_reasoning = True
                else:
                    err.write(piece.text)
                    err.flush()
            else:
                if in_reasoning:
                    out.write(RESET)
                    in_reasoning = False
                out.write(piece.text)
            out.flush()
        if in_reasoning:
            out.write(RESET)
        out.write("\n")
        out.flush()
        t_end = time.perf_counter()
    except KeyboardInterrupt:
        out.write((RESET if dim else "") + "\n")
        return 130
    except frugal.Error as e:
        out.flush()
        err.write(f"\ngenerate.py: {e.status}: {e.message}\n")
        return 1
    n = len(gen.tokens)
    err.write(f"[load {1000 * (t_prompt - t_load):.0f} ms, prompt {1000 * (t_gen - t_prompt):.0f} ms, "
              f"{n} tokens in {t_end - t_gen:.2f} s ({n / max(t_end - t_gen, 1e-9):.1f} tokens/s), "
              f"stop: {gen.finish_reason}]\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
