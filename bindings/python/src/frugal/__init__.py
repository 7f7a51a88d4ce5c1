"""frugal: CPU inference of DeepSeek-family models, the official Python binding.

A thin, dependency-free (ctypes) layer over libfrugal's stable C ABI (capi/frugal.h)::

    import frugal

    with frugal.Model("stories260K.gguf") as model:
        session = model.session(temperature=0)
        for piece in session.generate("Once upon a time", max_tokens=64):
            print(piece, end="", flush=True)

    # chat models, reasoning apart from the answer
    session = frugal.Model("DeepSeek-R1-Distill-Qwen-1.5B-Q4_K_M.gguf").session()
    for part in session.chat([{"role": "user", "content": "Why is the sky blue?"}], split_reasoning=True):
        print(part.text, end="", file=sys.stderr if part.kind == "reasoning" else sys.stdout)

libfrugal is found through $FRUGAL_LIBRARY (a full path), then next to this package, then
ctypes.util.find_library("frugal"), then the dynamic loader's search path ("libfrugal.so.0.1",
"libfrugal.so"). Importing fails with an ImportError (LibraryNotFoundError, VersionMismatchError)
saying what was tried when none loads or its MAJOR.MINOR differs from the ABI this binding was
written for.

Objects: Model, Tokenizer, Session (and the Generation iterator it returns, Piece parts). Errors:
Error and one subclass per status code. Every object frees its C handle on close(), at the end of
a ``with`` block, or when collected, in any order.
"""
from __future__ import annotations

import atexit
import logging
import threading
from typing import Callable, Optional, Union

from . import _native
from .errors import (BufferTooSmall, Cancelled, ContextFull, Error, InternalError, InvalidArgument, InvalidModel,
                     IoError, LibraryNotFoundError, OutOfMemory, StructSize, UnsupportedModel, VersionMismatchError)
from .model import Model
from .session import Generation, Piece, Session
from .tokenizer import Tokenizer

__version__ = "0.1.0"

#: Path or name libfrugal was loaded from.
library_path: str = _native.library_path
#: (major, minor, patch) of the loaded libfrugal.
library_version = _native.library_version
#: (major, minor, patch) of the frugal.h this binding mirrors.
header_version = _native.HEADER_VERSION

LOG_DEBUG = _native.LOG_LEVEL_DEBUG
LOG_INFO = _native.LOG_LEVEL_INFO
LOG_WARN = _native.LOG_LEVEL_WARN
LOG_ERROR = _native.LOG_LEVEL_ERROR

_LEVEL_NAMES = {"debug": LOG_DEBUG, "info": LOG_INFO, "warn": LOG_WARN, "warning": LOG_WARN, "error": LOG_ERROR}
_log_lock = threading.Lock()
_log_thunks = []  # every callback ever installed: a worker thread may still be inside an old one
_log_atexit = False


def version() -> str:
    """The loaded library's version string ("0.1.0")."""
    return _native.lib.frugal_version_string().decode("ascii")


def _level(level: Union[int, str]) -> int:
    if isinstance(level, str):
        try:
            return _LEVEL_NAMES[level.lower()]
        except KeyError:
            raise InvalidArgument(-1, f"log level {level!r} is not debug, info, warn or error") from None
    return int(level)


def set_log_callback(fn: Optional[Callable[[int, str], None]], level: Union[int, str] = "warn") -> None:
    """Routes the library's log to fn(level, message) for messages at `level` and above.

    level: LOG_DEBUG .. LOG_ERROR or "debug" / "info" / "warn" / "error". fn may be called from the
    library's worker threads. None restores the default (stderr at WARN and above; the environment
    variable FRUGAL_LOG=debug|info|warn|error changes that). Exceptions raised by fn are printed
    by ctypes and otherwise ignored.
    """
    global _log_atexit
    lvl = _level(level)
    with _log_lock:
        if fn is None:
            _native.lib.frugal_set_log_callback(_native.LOG_FN(), None, lvl)
            return

        def thunk(level_, message, _user_data):
            fn(int(level_), (message or b"").decode("utf-8", "replace"))

        c_fn = _native.LOG_FN(thunk)
        _log_thunks.append(c_fn)
        _native.lib.frugal_set_log_callback(c_fn, None, lvl)
        if not _log_atexit:
            # no Python callback may run once the interpreter is finalizing
            atexit.register(lambda: _native.lib.frugal_set_log_callback(_native.LOG_FN(), None, LOG_WARN))
            _log_atexit = True


def log_to_python(logger: Optional[logging.Logger] = None, level: Union[int, str] = "info") -> None:
    """Sends the library's log to a `logging` logger (default: logging.getLogger("frugal"))."""
    log = logger or logging.getLogger("frugal")
    to_py = {LOG_DEBUG: logging.DEBUG, LOG_INFO: logging.INFO, LOG_WARN: logging.WARNING, LOG_ERROR: logging.ERROR}
    set_log_callback(lambda lvl, msg: log.log(to_py.get(lvl, logging.ERROR), "%s", msg), level)


__all__ = [
    "Model", "Tokenizer", "Session", "Generation", "Piece",
    "Error", "InvalidArgument", "OutOfMemory", "IoError", "UnsupportedModel", "ContextFull", "Cancelled",
    "BufferTooSmall", "StructSize", "InvalidModel", "InternalError", "LibraryNotFoundError",
    "VersionMismatchError",
    "set_log_callback", "log_to_python", "version", "library_path", "library_version", "header_version",
    "LOG_DEBUG", "LOG_INFO", "LOG_WARN", "LOG_ERROR",
]
