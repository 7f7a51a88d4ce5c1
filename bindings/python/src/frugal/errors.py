"""Exceptions: one class per frugal_status error code, all derived from frugal.Error.

Every exception carries the library's status code (``code``), its static name (``status``, e.g.
"context full") and the library's full message (``message``, which names the offending value: the
path, the token id, the byte offset ...). ``str(e)`` is the message.

Where a Python built-in exception means the same thing, the class also derives from it, so
``except ValueError`` / ``except OSError`` / ``except MemoryError`` catch frugal's errors too.
"""
from __future__ import annotations


class Error(Exception):
    """A failed frugal call.

    Attributes:
        code: the frugal_status (a negative int, e.g. -5 for FRUGAL_ERR_CONTEXT_FULL).
        status: the library's name for the code ("context full").
        message: the library's message, offending values included.
    """

    code = -100
    status = "error"

    def __init__(self, code: int, message: str):
        # args = (message,) so str(e), repr(e) and tracebacks show the message; OSError
        # subclasses keep that form too (a single argument sets no errno).
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.status = _STATUS_NAMES.get(self.code, "unknown status")

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return (type(self), (self.code, self.message))


class InvalidArgument(Error, ValueError):
    """FRUGAL_ERR_INVALID_ARGUMENT (-1): a value out of range, invalid UTF-8, a closed handle ..."""


class OutOfMemory(Error, MemoryError):
    """FRUGAL_ERR_OUT_OF_MEMORY (-2)."""


class IoError(Error, OSError):
    """FRUGAL_ERR_IO (-3): a file could not be opened or read (the message names it)."""


class UnsupportedModel(Error):
    """FRUGAL_ERR_UNSUPPORTED_MODEL (-4): a valid file frugal cannot run."""


class ContextFull(Error):
    """FRUGAL_ERR_CONTEXT_FULL (-5): the tokens do not fit in the session's context."""


class Cancelled(Error):
    """FRUGAL_ERR_CANCELLED (-6): Session.cancel() or a progress callback stopped the call."""


class BufferTooSmall(Error):
    """FRUGAL_ERR_BUFFER_TOO_SMALL (-7). The binding grows its buffers, so this never escapes."""


class StructSize(Error):
    """FRUGAL_ERR_STRUCT_SIZE (-8): an options struct from a newer header."""


class InvalidModel(Error):
    """FRUGAL_ERR_INVALID_MODEL (-9): a malformed model file."""


class InternalError(Error):
    """FRUGAL_ERR_INTERNAL (-100): a bug in frugal; please report it with the message."""


class LibraryNotFoundError(ImportError):
    """libfrugal could not be loaded (raised by ``import frugal``)."""


class VersionMismatchError(ImportError):
    """The loaded libfrugal is not the C ABI version this binding was written for."""


_BY_CODE = {
    -1: InvalidArgument,
    -2: OutOfMemory,
    -3: IoError,
    -4: UnsupportedModel,
    -5: ContextFull,
    -6: Cancelled,
    -7: BufferTooSmall,
    -8: StructSize,
    -9: InvalidModel,
    -100: InternalError,
}

_STATUS_NAMES = {
    -1: "invalid argument",
    -2: "out of memory",
    -3: "i/o error",
    -4: "unsupported model",
    -5: "context full",
    -6: "cancelled",
    -7: "buffer too small",
    -8: "unknown fields in options struct",
    -9: "invalid model file",
    -100: "internal error",
}


def error_class(code: int) -> type:
    """The Error subclass for a status code (Error itself for a code this binding does not know)."""
    return _BY_CODE.get(int(code), Error)


def closed(what: str) -> InvalidArgument:
    return InvalidArgument(-1, f"{what} is closed")
