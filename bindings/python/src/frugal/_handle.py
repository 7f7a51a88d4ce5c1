"""The ownership of one C handle by one Python object.

A handle is freed exactly once: by close(), by ``with``, or when the object is garbage collected
(a weakref.finalize, which also runs at interpreter exit). The finalizer holds the handle's value,
not the object, so reference cycles and collection order do not matter. The C library reference
counts models (sessions and tokenizers keep theirs alive), so Python objects may die in any order.
"""
from __future__ import annotations

import threading
import weakref

from .errors import closed


class Handle:
    __slots__ = ("_h", "_finalizer", "_lock", "__weakref__")

    _kind = "frugal handle"

    def _adopt(self, handle: int, free_fn, *more) -> None:
        """Takes ownership of `handle` (and of `more` handles freed after it by the same finalizer)."""
        self._h = handle
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _free, free_fn, handle, *more)

    def _handle(self) -> int:
        h = getattr(self, "_h", None)
        if not h:
            raise closed(self._kind)
        return h

    @property
    def closed(self) -> bool:
        """True once close() ran (or the object was never opened)."""
        return not getattr(self, "_h", None)

    def close(self) -> None:
        """Frees the C handle now. Idempotent; later calls on the object raise InvalidArgument."""
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            self._h = None
            self._finalizer()  # runs the free at most once

    def __enter__(self):
        self._handle()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _free(free_fn, handle, *more) -> None:
    free_fn(handle)
    for pair in more:
        pair[0](pair[1])
