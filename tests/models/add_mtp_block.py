#!/usr/bin/env python3
"""Writes a copy of an F32 deepseek2 GGUF with one multi-token-prediction (MTP, "nextn") block
appended, laid out as DeepSeek-V3/R1 files that keep it: block_count + 1,
deepseek2.nextn_predict_layers = 1, and blk.<n>.* holding a full decoder block plus the
nextn.* tensors (eh_proj, enorm, hnorm, shared_head_norm). The main model is unchanged, so a
loader that skips the MTP block must give bit-identical logits.

usage: add_mtp_block.py SHARED_TOOLS_DIR IN.gguf OUT.gguf
"""
import sys

import numpy as np

sys.dont_write_bytecode = True
tools, src, dst = sys.argv[1:4]
sys.path.insert(0, tools)
from gguf_writer import GGUFFile, GGUFWriter, GT, VT  # noqa: E402

f = GGUFFile(src)
arch = f.get("general.architecture")
n_layer = f.get(f"{arch}.block_count")
n_embd = f.get(f"{arch}.embedding_length")

w = GGUFWriter(dst)
for key, entry in f.kv.items():
    if key == "general.alignment":
        continue  # the writer adds it itself when not the default
    value = n_layer + 1 if key == f"{arch}.block_count" else entry[1]
    w.add_kv(key, value, entry[0], entry[2] if len(entry) > 2 else None)
w.add_uint32(f"{arch}.nextn_predict_layers", 1)


def add(name, array):
    w.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32), GT.F32)


for name, (ne, gtype, _, _) in f.tensors.items():
    if gtype != GT.F32:
        sys.exit(f"{src}: {name} is not F32 (this script copies F32 models only)")
    add(name, f.tensor(name))
# The MTP block: a copy of the last decoder block (a valid MoE block) plus its own tensors.
last = f"blk.{n_layer - 1}."
for name in list(f.tensors):
    if name.startswith(last):
        add(f"blk.{n_layer}." + name[len(last):], f.tensor(name) * np.float32(1.5))
rng = np.random.default_rng(7)
mtp = f"blk.{n_layer}.nextn."
add(mtp + "eh_proj.weight", rng.standard_normal((n_embd, 2 * n_embd), dtype=np.float32) * np.float32(0.02))
for norm in ("enorm", "hnorm", "shared_head_norm"):
    add(mtp + norm + ".weight", np.ones(n_embd, np.float32))
w.write()
