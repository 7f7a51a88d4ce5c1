"""A minimal valid `llama` GGUF model for tests that need no trained weights.

A Python port of tests/common/gguf_builder.hpp's tiny_llama() (without its extra test keys): a
SentencePiece vocabulary of <unk>, <s>, </s>, the 256 byte tokens and a few pieces, one layer of
deterministic small F32 weights (the same LCG), so frugal loads and runs it in microseconds.
Written from the GGUF layout (ggml docs/gguf.md), stdlib only, little-endian as GGUF itself.
"""
from __future__ import annotations

import array
import struct
import sys

_U8, _U32, _I32, _F32, _STRING, _ARRAY = 0, 4, 5, 6, 8, 9
_GGML_F32 = 0
_ALIGN = 32


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(kind, v) -> bytes:
    if kind == _U32:
        return struct.pack("<I", v)
    if kind == _F32:
        return struct.pack("<f", v)
    if kind == _STRING:
        return _str(v)
    raise ValueError(kind)


def _array(elem, items) -> bytes:
    out = [struct.pack("<IQ", elem, len(items))]
    if elem == _STRING:
        out += [_str(x) for x in items]
    elif elem == _F32:
        out.append(struct.pack(f"<{len(items)}f", *items))
    elif elem == _I32:
        out.append(struct.pack(f"<{len(items)}i", *items))
    return b"".join(out)


def tokens():
    t = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    sp = "\u2581"  # SentencePiece's space
    for p in ("a", "b", "c", "e", "h", "t", "ab", "he", "the"):
        t += [p, sp + p]
    t.append(sp)
    return t


def tiny_llama(n_embd=8, n_layer=1, n_head=2, n_head_kv=1, n_ff=16, n_ctx=64, seed=1) -> bytes:
    """The bytes of the model file."""
    toks = tokens()
    n_vocab = len(toks)
    scores, types = [], []
    for i, t in enumerate(toks):
        byte = 3 <= i < 259
        types.append(2 if i == 0 else (3 if i < 3 else (6 if byte else 1)))  # unknown, control, byte, normal
        scores.append(0.0 if i < 3 or byte else -100.0 + len(t.encode("utf-8")))

    kv = [
        ("general.architecture", _STRING, "llama"),
        ("general.name", _STRING, "tiny-llama"),
        ("general.alignment", _U32, _ALIGN),
        ("llama.context_length", _U32, n_ctx),
        ("llama.embedding_length", _U32, n_embd),
        ("llama.block_count", _U32, n_layer),
        ("llama.feed_forward_length", _U32, n_ff),
        ("llama.attention.head_count", _U32, n_head),
        ("llama.attention.head_count_kv", _U32, n_head_kv),
        ("llama.rope.dimension_count", _U32, n_embd // n_head),
        ("llama.attention.layer_norm_rms_epsilon", _F32, 1e-5),
        ("tokenizer.ggml.model", _STRING, "llama"),
        ("tokenizer.ggml.tokens", _ARRAY, (_STRING, toks)),
        ("tokenizer.ggml.scores", _ARRAY, (_F32, scores)),
        ("tokenizer.ggml.token_type", _ARRAY, (_I32, types)),
        ("tokenizer.ggml.bos_token_id", _U32, 1),
        ("tokenizer.ggml.eos_token_id", _U32, 2),
        ("tokenizer.ggml.unknown_token_id", _U32, 0),
    ]

    state = (seed * 2654435761 + 12345) & 0xFFFFFFFF

    def rnd(n):
        nonlocal state
        out = array.array("f", bytes(4 * n))
        for i in range(n):
            state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
            out[i] = ((state >> 8) / float(1 << 24) - 0.5) * 0.5
        return out

    def ones(n):
        return array.array("f", [1.0] * n)

    E, F = n_embd, n_ff
    hd = E // n_head
    q_dim, kv_dim = n_head * hd, n_head_kv * hd
    tensors = [("token_embd.weight", (E, n_vocab), rnd(E * n_vocab)),
               ("output_norm.weight", (E,), ones(E)),
               ("output.weight", (E, n_vocab), rnd(E * n_vocab))]
    for layer in range(n_layer):
        k = f"blk.{layer}."
        tensors += [(k + "attn_norm.weight", (E,), ones(E)),
                    (k + "attn_q.weight", (E, q_dim), rnd(E * q_dim)),
                    (k + "attn_k.weight", (E, kv_dim), rnd(E * kv_dim)),
                    (k + "attn_v.weight", (E, kv_dim), rnd(E * kv_dim)),
                    (k + "attn_output.weight", (q_dim, E), rnd(q_dim * E)),
                    (k + "ffn_norm.weight", (E,), ones(E)),
                    (k + "ffn_gate.weight", (E, F), rnd(E * F)),
                    (k + "ffn_up.weight", (E, F), rnd(E * F)),
                    (k + "ffn_down.weight", (F, E), rnd(F * E))]

    if sys.byteorder != "little":
        for _, _, data in tensors:
            data.byteswap()

    out = [struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(kv))]
    for key, kind, v in kv:
        out.append(_str(key) + struct.pack("<I", kind))
        out.append(_array(*v) if kind == _ARRAY else _value(kind, v))
    offset = 0
    for name, ne, data in tensors:
        offset = (offset + _ALIGN - 1) // _ALIGN * _ALIGN
        out.append(_str(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne)
                   + struct.pack("<IQ", _GGML_F32, offset))
        offset += 4 * len(data)
    head = b"".join(out)
    body = [head, bytes(-len(head) % _ALIGN)]
    pos = 0
    for _, _, data in tensors:
        pad = -pos % _ALIGN
        body.append(bytes(pad))
        raw = data.tobytes()
        body.append(raw)
        pos += pad + len(raw)
    return b"".join(body)


def write(path, **kw) -> str:
    with open(path, "wb") as f:
        f.write(tiny_llama(**kw))
    return str(path)


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else "tiny-llama.gguf"))
