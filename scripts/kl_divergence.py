#!/usr/bin/python3
"""Fidelity of quantised inference as numbers: the KL divergence of each candidate's next-token
distribution from a reference's (e.g. the F32 model run by llama.cpp), over every position.

    scripts/kl_divergence.py REFERENCE.bin CANDIDATE.bin [CANDIDATE.bin ...]

Files are frugal-logits-v1 dumps (`frugal logits -o`, `llamacpp-logits --format bin --out`):
one JSON header line with "shape": [rows, n_vocab], then rows x n_vocab float32. Prints, per
candidate: mean and max over positions of KL(P_ref || P_cand) in nats, the 99th percentile, and
how often the argmax agrees with the reference's.
"""
import json
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        head = f.readline()
    shape = json.loads(head)["shape"]
    return np.fromfile(path, "<f4", offset=len(head)).reshape(shape).astype(np.float64)


def log_softmax(x):
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    ref = log_softmax(load(argv[1]))
    p = np.exp(ref)
    print(f"{'candidate':60} {'mean KL':>10} {'p99 KL':>10} {'max KL':>10} {'top-1':>7}")
    for path in argv[2:]:
        cand = load(path)
        if cand.shape != ref.shape:
            sys.exit(f"{path}: shape {list(cand.shape)} differs from the reference's {list(ref.shape)}")
        kl = (p * (ref - log_softmax(cand))).sum(axis=1)
        top1 = float((ref.argmax(axis=1) == cand.argmax(axis=1)).mean())
        print(f"{path[-60:]:60} {kl.mean():10.3e} {np.percentile(kl, 99):10.3e} {kl.max():10.3e} {top1:7.3f}")


if __name__ == "__main__":
    main(sys.argv)
