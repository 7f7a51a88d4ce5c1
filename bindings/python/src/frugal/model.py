"""frugal.Model: a loaded GGUF model (frugal_model_*)."""
from __future__ import annotations

import ctypes
from ctypes import byref, c_void_p
from typing import Callable, Dict, Iterable, List, Optional, Union

from . import _native as N
from ._handle import Handle
from .tokenizer import Tokenizer


class Model(Handle):
    """A model loaded from a GGUF file. Immutable once loaded: any number of sessions and threads
    may share it.

    >>> with frugal.Model("stories260K.gguf") as model:
    ...     session = model.session(temperature=0)
    ...     print("".join(session.generate("Once upon a time", max_tokens=32)))

    Args:
        path: the .gguf file.
        n_threads: threads for evaluations (0 = the physical cores this process may use).
        use_mmap: map the file (True, default) or read it into memory.
        repack_weights: rewrite Q4_0 and Q5_0 matrices at load into a faster decode layout where this
            CPU decodes that faster (True, default: CPUs without AVX-512 VNNI; no extra memory), or use
            every weight in place (False: processes mapping the same
            file then share its pages).
        progress: optional callable(fraction: float) called while loading; returning False (or
            raising) stops the load, which then raises Cancelled (or re-raises the exception).

    Raises IoError (the message names the path), InvalidModel for a malformed file,
    UnsupportedModel for an architecture or tensor type frugal cannot run.

    close() (or leaving a ``with`` block, or garbage collection) drops this object's reference;
    sessions and tokenizers made from it stay valid, since they keep the weights alive.
    """

    _kind = "frugal.Model"

    def __init__(self, path, n_threads: int = 0, use_mmap: bool = True,
                 progress: Optional[Callable[[float], Optional[bool]]] = None, repack_weights: bool = True):
        self.path = path
        opts = N.ModelOptions()
        N.check(N.lib.frugal_model_options_init(byref(opts), ctypes.sizeof(opts)), c_void_p())
        opts.n_threads = int(n_threads)
        opts.use_mmap = 1 if use_mmap else 0
        opts.repack_weights = 1 if repack_weights else 0
        raised = []
        if progress is not None:
            def on_progress(fraction, _user_data):
                try:
                    return 1 if progress(float(fraction)) is False else 0
                except BaseException as e:  # re-raised below, after the load stopped
                    raised.append(e)
                    return 1
            opts.progress = N.PROGRESS_FN(on_progress)
        out = c_void_p()
        err = c_void_p()
        st = N.lib.frugal_model_load(N.path_arg(path), byref(opts), byref(out), byref(err))
        if st != N.OK:
            e = N.take_error(st, err)
            if raised:
                raise raised[0] from e
            raise e
        self._adopt(out.value, N.lib.frugal_model_free)
        self._metadata = None

    # ---- what it is -------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        return int(N.lib.frugal_model_n_vocab(self._handle()))

    @property
    def n_ctx_train(self) -> int:
        """The context length the model was trained for."""
        return int(N.lib.frugal_model_n_ctx_train(self._handle()))

    @property
    def n_embd(self) -> int:
        return int(N.lib.frugal_model_n_embd(self._handle()))

    @property
    def n_layers(self) -> int:
        return int(N.lib.frugal_model_n_layers(self._handle()))

    @property
    def n_heads(self) -> int:
        return int(N.lib.frugal_model_n_heads(self._handle()))

    @property
    def n_heads_kv(self) -> int:
        return int(N.lib.frugal_model_n_heads_kv(self._handle()))

    @property
    def n_params(self) -> int:
        return int(N.lib.frugal_model_n_params(self._handle()))

    @property
    def size_bytes(self) -> int:
        """Bytes of the weights as stored."""
        return int(N.lib.frugal_model_size_bytes(self._handle()))

    @property
    def n_experts(self) -> int:
        """Routed experts (0 for a dense model)."""
        return int(N.lib.frugal_model_n_experts(self._handle()))

    @property
    def n_experts_used(self) -> int:
        """Experts used per token (0 for a dense model)."""
        return int(N.lib.frugal_model_n_experts_used(self._handle()))

    @property
    def kv_bytes_per_token(self) -> int:
        """KV cache bytes one context position costs, all layers."""
        return int(N.lib.frugal_model_kv_bytes_per_token(self._handle()))

    @property
    def architecture(self) -> str:
        """"llama", "qwen2" or "deepseek2"."""
        return N.lib.frugal_model_architecture(self._handle()).decode("utf-8", "replace")

    @property
    def name(self) -> str:
        """general.name from the file, or ""."""
        return N.lib.frugal_model_name(self._handle()).decode("utf-8", "replace")

    @property
    def bos(self) -> int:
        """Id of the beginning-of-sequence token, or -1."""
        return int(N.lib.frugal_model_token_bos(self._handle()))

    @property
    def eos(self) -> int:
        """Id of the end-of-sequence token, or -1."""
        return int(N.lib.frugal_model_token_eos(self._handle()))

    def is_eog(self, token: int) -> bool:
        """True if `token` ends generation (EOS, EOT and similar)."""
        return bool(N.lib.frugal_model_token_is_eog(self._handle(), int(token)))

    @property
    def metadata(self) -> Dict[str, str]:
        """The GGUF metadata: key -> value as text (strings whole, arrays summarised)."""
        h = self._handle()
        if self._metadata is None:
            md = {}
            for i in range(int(N.lib.frugal_model_meta_count(h))):
                key = N.text_call(N.lib.frugal_model_meta_key, h, i, nul=True)
                md[key.decode("utf-8", "replace")] = N.text_call(
                    N.lib.frugal_model_meta_value, h, key, nul=True).decode("utf-8", "replace")
            self._metadata = md
        return dict(self._metadata)

    # ---- what it makes ------------------------------------------------------------------------
    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer, as a Tokenizer of its own (it keeps the weights alive until closed)."""
        out = c_void_p()
        err = c_void_p()
        N.check(N.lib.frugal_model_get_tokenizer(self._handle(), byref(out), byref(err)), err)
        return Tokenizer._own(out.value, self.path)

    def session(self, n_ctx: int = 0, **params) -> "Session":
        """A new Session (KV cache + sampler) over this model; see Session for the arguments."""
        from .session import Session
        return Session(self, n_ctx, **params)

    def tokenize(self, text: Union[str, bytes], add_special: bool = True, parse_special: bool = True) -> List[int]:
        """Same as ``model.tokenizer().encode(...)``."""
        data = N.to_utf8(text)
        return N.ids_call(N.lib.frugal_tokenize, self._handle(), data, len(data), int(bool(add_special)),
                          int(bool(parse_special)), cap=len(data) + 8)

    def detokenize(self, ids: Iterable[int], special: bool = False, errors: str = "replace") -> str:
        """Same as ``model.tokenizer().decode(...)``."""
        arr, n = N.token_array(ids)
        data = N.text_call(N.lib.frugal_detokenize, self._handle(), arr, n, int(bool(special)), cap=8 * n + 16)
        return data.decode("utf-8", errors)

    def __repr__(self) -> str:
        if self.closed:
            return f"<frugal.Model {self.path!r} (closed)>"
        return (f"<frugal.Model {self.path!r} architecture={self.architecture!r} name={self.name!r} "
                f"n_params={self.n_params}>")

