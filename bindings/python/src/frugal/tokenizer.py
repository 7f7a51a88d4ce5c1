"""frugal.Tokenizer: text <-> token ids and chat templates (frugal_tokenizer_*)."""
from __future__ import annotations

from ctypes import byref, c_void_p
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import _native as N
from ._handle import Handle
from .errors import InvalidArgument

Message = Union[Mapping[str, str], Tuple[str, str]]


class Tokenizer(Handle):
    """A tokenizer: from a GGUF file (its vocabulary only, no weights are read), from a Hugging Face
    tokenizer folder (tokenizer.json + tokenizer_config.json) or tokenizer.json file, or a model's own
    (``Model.tokenizer()``). Immutable; may be shared by threads.

    >>> tok = frugal.Tokenizer("tokenizers/deepseek-v3")
    >>> tok.encode("Hello world")
    [0, 19923, 2058]

    Raises IoError for a missing path, InvalidModel / UnsupportedModel for files it cannot use.
    """

    _kind = "frugal.Tokenizer"

    def __init__(self, path):
        self.path = path
        out = c_void_p()
        err = c_void_p()
        N.check(N.lib.frugal_tokenizer_load(N.path_arg(path), byref(out), byref(err)), err)
        self._adopt(out.value, N.lib.frugal_tokenizer_free)

    @classmethod
    def _own(cls, handle: int, path=None) -> "Tokenizer":
        """Wraps a handle this object will free (from frugal_model_get_tokenizer)."""
        self = cls.__new__(cls)
        self.path = path
        self._adopt(handle, N.lib.frugal_tokenizer_free)
        return self

    # ---- properties ------------------------------------------------------------------------
    @property
    def n_vocab(self) -> int:
        """Number of tokens in the vocabulary."""
        return int(N.lib.frugal_tokenizer_n_vocab(self._handle()))

    @property
    def bos(self) -> int:
        """Id of the beginning-of-sequence token, or -1."""
        return int(N.lib.frugal_tokenizer_token_bos(self._handle()))

    @property
    def eos(self) -> int:
        """Id of the end-of-sequence token, or -1."""
        return int(N.lib.frugal_tokenizer_token_eos(self._handle()))

    def is_eog(self, token: int) -> bool:
        """True if `token` ends generation (EOS, EOT and similar)."""
        return bool(N.lib.frugal_tokenizer_token_is_eog(self._handle(), int(token)))

    @property
    def chat_format(self) -> str:
        """The built-in chat format the tokenizer's template calls for: "deepseek-r1", "deepseek-v3",
        "deepseek-v2", "chatml", "llama3", "llama3.1", or "none"."""
        return N.lib.frugal_tokenizer_chat_format(self._handle()).decode("utf-8")

    # ---- encode / decode ---------------------------------------------------------------------
    def encode(self, text: Union[str, bytes], add_special: bool = True, parse_special: bool = True) -> List[int]:
        """Text -> token ids.

        add_special: add BOS/EOS as the vocabulary asks. parse_special: control-token texts in the
        text (e.g. "<｜User｜>") become those tokens. Bytes are taken as UTF-8; invalid UTF-8 raises
        InvalidArgument naming the byte offset.
        """
        data = N.to_utf8(text)
        h = self._handle()
        return N.ids_call(N.lib.frugal_tokenizer_encode, h, data, len(data), int(bool(add_special)),
                          int(bool(parse_special)), cap=len(data) + 8)

    def decode_bytes(self, ids: Iterable[int], special: bool = False) -> bytes:
        """Token ids -> the UTF-8 bytes they stand for (may end inside a character)."""
        arr, n = N.token_array(ids)
        h = self._handle()
        return N.text_call(N.lib.frugal_tokenizer_decode, h, arr, n, int(bool(special)), cap=8 * n + 16)

    def decode(self, ids: Iterable[int], special: bool = False, errors: str = "replace") -> str:
        """Token ids -> text. special: render control tokens (BOS, <｜User｜> ...) as text.

        Ids that end in the middle of a UTF-8 character decode with U+FFFD (errors="replace", as Hugging
        Face does); pass errors="strict" to get UnicodeDecodeError instead. An id outside the
        vocabulary raises InvalidArgument.
        """
        return self.decode_bytes(ids, special).decode("utf-8", errors)

    def token_to_piece(self, token: int, special: bool = True) -> str:
        """The text of one token (control tokens included by default)."""
        return self.decode([token], special)

    # ---- chat ----------------------------------------------------------------------------------
    def apply_chat_template(self, messages: Sequence[Message], add_generation_prompt: bool = True,
                            format: Optional[str] = None) -> str:
        """Renders a conversation into prompt text, byte for byte what the publisher's template gives.

        messages: dicts {"role": ..., "content": ...} or (role, content) tuples; role is "system",
        "user" or "assistant". add_generation_prompt: end with the assistant's opening (for R1: the
        Assistant token, then "<think>" and a newline). format: None for the tokenizer's own
        chat_format, or one of the names listed there. The text starts with the BOS text where the
        template writes it (Session.prompt then adds no second BOS). An unknown role or format, or
        format "none", raises InvalidArgument.
        """
        return _render(self._handle(), messages, add_generation_prompt, format)

    def __repr__(self) -> str:
        if self.closed:
            return "<frugal.Tokenizer (closed)>"
        return f"<frugal.Tokenizer n_vocab={self.n_vocab} chat_format={self.chat_format!r}>"


def _render(handle: int, messages: Sequence[Message], add_generation_prompt: bool, format: Optional[str]) -> str:
    arr = _messages_array(messages)
    fmt = None if format is None else N.to_utf8(format, "format")
    need = sum(arr[i].content_len for i in range(len(messages))) + 64 * (len(messages) + 1)
    out = N.text_call(N.lib.frugal_chat_apply_template, handle, fmt, arr, len(messages),
                      int(bool(add_generation_prompt)), cap=need)
    return out.decode("utf-8")


def _messages_array(messages: Sequence[Message]):
    if isinstance(messages, (str, bytes)) or not hasattr(messages, "__len__"):
        raise TypeError("messages must be a list of {'role', 'content'} dicts or (role, content) tuples")
    arr = (N.ChatMessage * max(len(messages), 1))()
    for i, m in enumerate(messages):
        if isinstance(m, Mapping):
            try:
                role, content = m["role"], m["content"]
            except KeyError as e:
                raise TypeError(f"messages[{i}] has no {e.args[0]!r} key") from None
        elif isinstance(m, (tuple, list)) and len(m) == 2:
            role, content = m
        else:
            raise TypeError(f"messages[{i}] must be a {{'role', 'content'}} dict or a (role, content) tuple, "
                            f"not {type(m).__name__}")
        role_b = N.to_utf8(role, f"messages[{i}].role")
        if b"\0" in role_b:
            raise InvalidArgument(N.ERR_INVALID_ARGUMENT, f"messages[{i}].role {role!r} contains a NUL byte")
        content_b = N.to_utf8(content, f"messages[{i}].content")
        arr[i].role = role_b
        arr[i].content = content_b
        arr[i].content_len = len(content_b)
    return arr
