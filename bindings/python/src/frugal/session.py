"""frugal.Session: one conversation with a model (frugal_session_*), and its streaming generator."""
from __future__ import annotations

import array
import ctypes
from ctypes import byref, c_int32, c_size_t, c_void_p
from typing import List, NamedTuple, Optional, Sequence, Union

from . import _native as N
from ._handle import Handle
from .tokenizer import Message, Tokenizer, _render

_F32_PARAMS = {
    "temperature": N.PARAM_TEMPERATURE,
    "top_p": N.PARAM_TOP_P,
    "min_p": N.PARAM_MIN_P,
    "repeat_penalty": N.PARAM_REPEAT_PENALTY,
}
_I64_PARAMS = {
    "top_k": N.PARAM_TOP_K,
    "seed": N.PARAM_SEED,
    "repeat_last_n": N.PARAM_REPEAT_LAST_N,
    "n_threads": N.PARAM_N_THREADS,
}
PARAMS = tuple(_F32_PARAMS) + tuple(_I64_PARAMS)

REASONING = "reasoning"
CONTENT = "content"

_KV_TYPES = {"f16": N.KV_F16, "q8_0": N.KV_Q8_0, "f32": N.KV_F32}


class Piece(NamedTuple):
    """A piece of generated text from ``generate(..., split_reasoning=True)``.

    kind: "reasoning" (between <think> and </think>, tags removed) or "content" (the answer).
    text: whole UTF-8 characters. token: the id of the token that completed it.
    """
    kind: str
    text: str
    token: int


class Session(Handle):
    """A conversation with a model: a KV cache of n_ctx positions and a sampler.

    Use it from one thread at a time; cancel() is the exception (any thread). Made by
    ``model.session(...)``; the session keeps the model's weights alive, so the Model object may be
    closed or collected first.

    Args:
        model: the Model.
        n_ctx: context positions (0 = min(training context, 4096)).
        kv_type: the KV cache's element type: "f16" (default; half the memory, as llama.cpp's
            default cache), "q8_0" (about a quarter, as llama.cpp's -ctk/-ctv q8_0; for models
            whose attention heads are a multiple of 32 values wide, else InvalidArgument) or
            "f32" (keys and values exactly as computed).
        temperature, top_k, top_p, min_p, seed, repeat_penalty, repeat_last_n, n_threads:
            sampling and run parameters (see set_params); None keeps the library's default
            (for DeepSeek-R1-family models: temperature 0.6, top-p 0.95).
    """

    _kind = "frugal.Session"

    def __init__(self, model, n_ctx: int = 0, *, kv_type: str = "f16", temperature: Optional[float] = None,
                 top_k: Optional[int] = None, top_p: Optional[float] = None, min_p: Optional[float] = None,
                 seed: Optional[int] = None, repeat_penalty: Optional[float] = None,
                 repeat_last_n: Optional[int] = None, n_threads: Optional[int] = None):
        if kv_type not in _KV_TYPES:
            raise ValueError(f"kv_type {kv_type!r} is not one of {sorted(_KV_TYPES)}")
        mh = model._handle()
        opts = N.SessionOptions()
        N.lib.frugal_session_options_init(byref(opts), ctypes.sizeof(opts))
        opts.n_ctx = int(n_ctx)
        opts.kv_type = _KV_TYPES[kv_type]
        out = c_void_p()
        err = c_void_p()
        N.check(N.lib.frugal_session_create_v2(mh, byref(opts), byref(out), byref(err)), err)
        sh = out.value
        # Two references to the model's tokenizer: a private one, freed with the session (for
        # chat() and end-of-generation checks), and the one the tokenizer property hands out.
        toks = []
        for _ in range(2):
            tok = c_void_p()
            st = N.lib.frugal_model_get_tokenizer(mh, byref(tok), byref(err))
            if st != N.OK:
                for t in toks:
                    N.lib.frugal_tokenizer_free(t)
                N.lib.frugal_session_free(sh)
                raise N.take_error(st, err)
            toks.append(tok.value)
        self._adopt(sh, N.lib.frugal_session_free, (N.lib.frugal_tokenizer_free, toks[0]))
        self._tok_h = toks[0]
        self._tokenizer = Tokenizer._own(toks[1], getattr(model, "path", None))
        self._buf_cap = 256
        self._buf = ctypes.create_string_buffer(self._buf_cap)
        # Token accounting for generate(): whether the next pull samples without first evaluating a
        # pending token, and n_past after the previous pull (see Generation._pull_part).
        self._fresh = True
        self._last_n_past = -1
        self.set_params(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed,
                        repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n, n_threads=n_threads)

    # ---- state ------------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        """Context positions."""
        return int(N.lib.frugal_session_n_ctx(self._handle()))

    @property
    def n_past(self) -> int:
        """Positions used (prompt and evaluated generated tokens)."""
        return int(N.lib.frugal_session_n_past(self._handle()))

    @property
    def kv_bytes(self) -> int:
        """Bytes of the KV cache (n_ctx x the per-token cost of its type)."""
        return int(N.lib.frugal_session_kv_bytes(self._handle()))

    @property
    def kv_type(self) -> str:
        """The KV cache's element type: "f16", "q8_0" or "f32"."""
        code = int(N.lib.frugal_session_kv_type(self._handle()))
        return next(name for name, c in _KV_TYPES.items() if c == code)

    @property
    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer (its own reference: closing it does not affect the session)."""
        self._handle()
        return self._tokenizer

    def set_params(self, *, temperature: Optional[float] = None, top_k: Optional[int] = None,
                   top_p: Optional[float] = None, min_p: Optional[float] = None, seed: Optional[int] = None,
                   repeat_penalty: Optional[float] = None, repeat_last_n: Optional[int] = None,
                   n_threads: Optional[int] = None) -> None:
        """Sets sampling and run parameters; None leaves one unchanged. They persist for the session.

        temperature (<= 0 = greedy), top_k (0 = off), top_p in (0, 1], min_p in [0, 1],
        seed (restarts the sampler's random stream), repeat_penalty (> 0, 1 = off),
        repeat_last_n (tokens looked back for the penalty), n_threads (threads for this session).
        Out-of-range values raise InvalidArgument with the library's message.
        """
        values = dict(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, seed=seed,
                      repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n, n_threads=n_threads)
        h = None
        err = c_void_p()
        for name, value in values.items():
            if value is None:
                continue
            h = h or self._handle()
            if name in _F32_PARAMS:
                N.check(N.lib.frugal_session_set_param_f32(h, _F32_PARAMS[name], float(value), byref(err)), err)
            else:
                v = int(value)
                if name == "seed":
                    v &= 0xFFFFFFFFFFFFFFFF  # the library keeps seeds as uint64
                    if v >= 2**63:
                        v -= 2**64
                elif not -2**63 <= v < 2**63:
                    raise N.error_class(N.ERR_INVALID_ARGUMENT)(N.ERR_INVALID_ARGUMENT,
                                                                f"{name} {value} is out of range")
                N.check(N.lib.frugal_session_set_param_i64(h, _I64_PARAMS[name], v, byref(err)), err)

    # ---- input ------------------------------------------------------------------------------
    def prompt(self, text: Union[str, bytes]) -> None:
        """Evaluates prompt text (special-token texts recognised; BOS added at the start of the
        context when the model asks for it and the text does not already start with it).

        Raises ContextFull when it does not fit (nothing is evaluated), Cancelled when cancel() stopped
        it (the session is as before), InvalidArgument for invalid UTF-8 (with the byte offset).
        """
        data = N.to_utf8(text, "prompt")
        err = c_void_p()
        N.check(N.lib.frugal_session_prompt(self._handle(), data, len(data), byref(err)), err)
        self._fresh = True

    def prompt_tokens(self, ids: Sequence[int]) -> None:
        """Evaluates token ids as given (no BOS added). An id outside the vocabulary raises
        InvalidArgument naming it; ContextFull / Cancelled as prompt()."""
        arr, n = N.token_array(ids)
        err = c_void_p()
        N.check(N.lib.frugal_session_prompt_tokens(self._handle(), arr, n, byref(err)), err)
        self._fresh = True

    def reset(self) -> None:
        """Forgets the conversation (the KV cache stays allocated) and reseeds the sampler."""
        err = c_void_p()
        N.check(N.lib.frugal_session_reset(self._handle(), byref(err)), err)
        self._fresh = True

    def cancel(self) -> None:
        """Asks a running prompt or generation step on this session to stop: it raises Cancelled and
        the session stays usable. Safe from any thread; a no-op when nothing runs (or after close)."""
        with self._lock:
            h = self._h
            if h:
                N.lib.frugal_session_cancel(h)

    def logits(self) -> Optional[array.array]:
        """A copy of the logits of the most recent evaluation: array('f') of n_vocab floats (None before
        any). After generate() yielded token t they are the logits t was drawn from."""
        n = c_int32(0)
        p = N.lib.frugal_session_logits(self._handle(), byref(n))
        if not p:
            return None
        out = array.array("f")
        out.frombytes(ctypes.string_at(p, int(n.value) * 4))
        return out

    # ---- output ---------------------------------------------------------------------------------
    def generate(self, prompt: Union[str, bytes, Sequence[int], None] = None, max_tokens: Optional[int] = 256, *,
                 split_reasoning: bool = False, **params) -> "Generation":
        """Streams a completion.

        prompt: text (as prompt()) or token ids (as prompt_tokens()) to evaluate first, or None to
        continue from the session's current state. The prompt is evaluated now, so its errors raise
        here; sampling happens as the returned iterator is consumed.
        max_tokens: tokens to sample at most (None: until an end-of-generation token; a full
        context then raises ContextFull).
        split_reasoning: yield Piece(kind, text, token) with reasoning ("<think>" ... "</think>", also
        when the prompt opened it) apart from content, instead of plain str pieces.
        params: sampling parameters set first with set_params (they persist).

        Returns a Generation: iterate it for str pieces (or Pieces); afterwards .tokens, .text,
        .finish_reason tell what happened. Every piece is whole UTF-8 characters and non-empty (a
        token whose text is held back, e.g. half a character, yields nothing until it is complete).
        """
        if params:
            unknown = set(params) - set(PARAMS)
            if unknown:
                raise TypeError(f"generate() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
            self.set_params(**params)
        if prompt is not None:
            if isinstance(prompt, (str, bytes, bytearray, memoryview)):
                self.prompt(prompt)
            else:
                self.prompt_tokens(prompt)
        return Generation(self, max_tokens, split_reasoning)

    def chat(self, messages: Sequence[Message], max_tokens: Optional[int] = 256, *, split_reasoning: bool = False,
             add_generation_prompt: bool = True, format: Optional[str] = None, reset: bool = True,
             **params) -> "Generation":
        """Renders messages with the model's chat template and streams the assistant's reply.

        reset: start from an empty context (default), since the template renders the whole
        conversation; pass False to append the rendered text to what the session holds.
        The other arguments are those of generate() and Tokenizer.apply_chat_template().
        """
        self._handle()
        text = _render(self._tok_h, messages, add_generation_prompt, format)
        if reset:
            self.reset()
        return self.generate(text, max_tokens, split_reasoning=split_reasoning, **params)

    def __repr__(self) -> str:
        if self.closed:
            return "<frugal.Session (closed)>"
        return f"<frugal.Session n_ctx={self.n_ctx} n_past={self.n_past}>"


class Generation:
    """The iterator generate() and chat() return.

    Iterating yields str pieces (or Piece tuples with split_reasoning). Attributes, filled as it runs:
        tokens: the ids sampled so far (an end-of-generation token is not included).
        text: all text yielded so far (with split_reasoning: the content only).
        reasoning: with split_reasoning, the reasoning text yielded so far.
        finish_reason: None while running, "stop" (end-of-generation token; stop_token holds it) or
            "length" (max_tokens reached).
    An exception (Cancelled, ContextFull ...) propagates from the step that failed; the session stays
    usable and iterating again resumes where it stopped.
    """

    def __init__(self, session: Session, max_tokens: Optional[int], split_reasoning: bool):
        if max_tokens is not None and int(max_tokens) < 0:
            raise N.error_class(N.ERR_INVALID_ARGUMENT)(N.ERR_INVALID_ARGUMENT,
                                                        f"max_tokens {max_tokens} is negative")
        self._s = session
        self.max_tokens = None if max_tokens is None else int(max_tokens)
        self.split_reasoning = bool(split_reasoning)
        self.tokens: List[int] = []
        self.finish_reason: Optional[str] = None
        self.stop_token: Optional[int] = None
        self._text: List[str] = []
        self._reasoning: List[str] = []

    @property
    def text(self) -> str:
        return "".join(self._text)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    def __iter__(self) -> "Generation":
        return self

    def __next__(self):
        while self.finish_reason is None:
            if self.max_tokens is not None and len(self.tokens) >= self.max_tokens:
                self.finish_reason = "length"
                break
            piece = self._pull_part() if self.split_reasoning else self._pull()
            if piece is not None:
                return piece
        raise StopIteration

    def read(self) -> str:
        """Consumes the rest and returns .text (all text; with split_reasoning the content)."""
        for _ in self:
            pass
        return self.text

    def close(self) -> None:
        """Stops the generation early (later iteration yields nothing)."""
        if self.finish_reason is None:
            self.finish_reason = "closed"

    # One call of frugal_session_next / _next_part, growing the session's buffer on demand.
    def _call(self, fn, *out):
        s = self._s
        h = s._handle()
        n = c_size_t(0)
        err = c_void_p()
        while True:
            st = fn(h, *out, s._buf, s._buf_cap, byref(n), byref(err))
            if st != N.ERR_BUFFER_TOO_SMALL:
                break
            N.free_error(err)  # the same token is delivered by the next call
            s._buf_cap = max(int(n.value), 2 * s._buf_cap)
            s._buf = ctypes.create_string_buffer(s._buf_cap)
        N.check(st, err)
        return st, ctypes.string_at(s._buf, int(n.value)).decode("utf-8", "replace")

    def _pull(self) -> Optional[str]:
        tok = c_int32(-1)
        st, text = self._call(N.lib.frugal_session_next, byref(tok))
        s = self._s
        s._last_n_past = s.n_past
        if st == N.DONE:
            s._fresh = True
            self.finish_reason = "stop"
            self.stop_token = int(tok.value)
        else:
            s._fresh = False
            self.tokens.append(int(tok.value))
        if not text:
            return None
        self._text.append(text)
        return text

    def _pull_part(self) -> Optional[Piece]:
        tok = c_int32(-1)
        kind = c_int32(0)
        st, text = self._call(N.lib.frugal_session_next_part, byref(tok), byref(kind))
        s = self._s
        token = int(tok.value)
        n_past = s.n_past
        # A token whose text is both reasoning and content comes in two calls with the same id;
        # only the first sampled it. Sampling again first evaluates the pending token, so n_past
        # grows, except right after a prompt / reset / end of generation (nothing pending).
        sampled = s._fresh or n_past != s._last_n_past
        s._last_n_past = n_past
        if st == N.DONE:
            s._fresh = True
            self.finish_reason = "stop"
            self.stop_token = token
        else:
            s._fresh = False
            if sampled and not N.lib.frugal_tokenizer_token_is_eog(s._tok_h, token):
                self.tokens.append(token)
        if not text:
            return None
        k = REASONING if kind.value == N.TEXT_REASONING else CONTENT
        (self._reasoning if k == REASONING else self._text).append(text)
        return Piece(k, text, token)
