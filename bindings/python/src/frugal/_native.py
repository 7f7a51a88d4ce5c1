"""Finding libfrugal and declaring its C ABI (capi/frugal.h) for ctypes.

Nothing here is public API: the classes in frugal.model, frugal.tokenizer and frugal.session
wrap it. The declarations mirror frugal.h 0.1 one for one; when the header changes, this file
changes with it (and HEADER_VERSION with the header's FRUGAL_VERSION_*).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, byref, c_char_p, c_float, c_int32, c_size_t, c_uint32,
                    c_uint64, c_void_p)

from .errors import Error, LibraryNotFoundError, VersionMismatchError, error_class

# The frugal.h this binding was written for. While 0.x the minor version may break the ABI, so
# MAJOR.MINOR of the library must equal these (the patch level may differ).
HEADER_VERSION = (0, 1, 0)

# ---- constants (frugal.h; append-only there, so new values only ever add lines here) ----------
OK = 0
DONE = 1
ERR_INVALID_ARGUMENT = -1
ERR_OUT_OF_MEMORY = -2
ERR_IO = -3
ERR_UNSUPPORTED_MODEL = -4
ERR_CONTEXT_FULL = -5
ERR_CANCELLED = -6
ERR_BUFFER_TOO_SMALL = -7
ERR_STRUCT_SIZE = -8
ERR_INVALID_MODEL = -9
ERR_INTERNAL = -100

LOG_LEVEL_DEBUG = 0
LOG_LEVEL_INFO = 1
LOG_LEVEL_WARN = 2
LOG_LEVEL_ERROR = 3

PARAM_TEMPERATURE = 1     # f32
PARAM_TOP_K = 2           # i64
PARAM_TOP_P = 3           # f32
PARAM_SEED = 4            # i64
PARAM_MIN_P = 5           # f32
PARAM_REPEAT_PENALTY = 6  # f32
PARAM_REPEAT_LAST_N = 7   # i64
PARAM_N_THREADS = 8       # i64

TEXT_CONTENT = 0
TEXT_REASONING = 1

KV_F32 = 0                # frugal_session_options.kv_type
KV_F16 = 1
KV_Q8_0 = 8

# ---- types ------------------------------------------------------------------------------------
PROGRESS_FN = CFUNCTYPE(c_int32, c_float, c_void_p)
LOG_FN = CFUNCTYPE(None, c_int32, c_char_p, c_void_p)


class ModelOptions(Structure):
    """frugal_model_options; always initialised by frugal_model_options_init."""
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_threads", c_int32),
        ("use_mmap", c_int32),
        ("reserved0", c_int32),
        ("progress", PROGRESS_FN),
        ("progress_user_data", c_void_p),
        ("repack_weights", c_int32),
        ("reserved1", c_int32),
    ]


class SessionOptions(Structure):
    """frugal_session_options; always initialised by frugal_session_options_init."""
    _fields_ = [
        ("struct_size", c_uint32),
        ("n_ctx", c_int32),
        ("kv_type", c_int32),
        ("reserved0", c_int32),
    ]


class ChatMessage(Structure):
    """frugal_chat_message. ctypes keeps the assigned bytes objects alive with the struct."""
    _fields_ = [
        ("role", c_char_p),
        ("content", c_char_p),
        ("content_len", c_size_t),
    ]


_P_I32 = POINTER(c_int32)
_P_SIZE = POINTER(c_size_t)
_P_HANDLE = POINTER(c_void_p)
_P_ERR = POINTER(c_void_p)
_BUF = POINTER(ctypes.c_char)  # char * buffers: ctypes.create_string_buffer

# name: (restype, argtypes). Handles are void pointers (Python ints on the way out).
_SIGNATURES = {
    "frugal_version_number": (c_uint32, []),
    "frugal_version_string": (c_char_p, []),
    "frugal_status_string": (c_char_p, [c_int32]),
    "frugal_error_code": (c_int32, [c_void_p]),
    "frugal_error_message": (c_char_p, [c_void_p]),
    "frugal_error_free": (None, [c_void_p]),
    "frugal_set_log_callback": (None, [LOG_FN, c_void_p, c_int32]),
    "frugal_model_options_init": (c_int32, [POINTER(ModelOptions), c_uint32]),
    "frugal_model_load": (c_int32, [c_char_p, POINTER(ModelOptions), _P_HANDLE, _P_ERR]),
    "frugal_model_free": (None, [c_void_p]),
    "frugal_model_n_vocab": (c_int32, [c_void_p]),
    "frugal_model_n_ctx_train": (c_int32, [c_void_p]),
    "frugal_model_n_embd": (c_int32, [c_void_p]),
    "frugal_model_n_layers": (c_int32, [c_void_p]),
    "frugal_model_n_heads": (c_int32, [c_void_p]),
    "frugal_model_n_heads_kv": (c_int32, [c_void_p]),
    "frugal_model_n_params": (c_uint64, [c_void_p]),
    "frugal_model_size_bytes": (c_uint64, [c_void_p]),
    "frugal_model_n_experts": (c_int32, [c_void_p]),
    "frugal_model_n_experts_used": (c_int32, [c_void_p]),
    "frugal_model_kv_bytes_per_token": (c_uint64, [c_void_p]),
    "frugal_model_architecture": (c_char_p, [c_void_p]),
    "frugal_model_name": (c_char_p, [c_void_p]),
    "frugal_model_token_bos": (c_int32, [c_void_p]),
    "frugal_model_token_eos": (c_int32, [c_void_p]),
    "frugal_model_token_is_eog": (c_int32, [c_void_p, c_int32]),
    "frugal_model_meta_count": (c_int32, [c_void_p]),
    "frugal_model_meta_key": (c_int32, [c_void_p, c_int32, _BUF, c_size_t, _P_SIZE, _P_ERR]),
    "frugal_model_meta_value": (c_int32, [c_void_p, c_char_p, _BUF, c_size_t, _P_SIZE, _P_ERR]),
    "frugal_tokenize": (c_int32, [c_void_p, c_char_p, c_size_t, c_int32, c_int32, _P_I32, c_size_t, _P_SIZE,
                                  _P_ERR]),
    "frugal_detokenize": (c_int32, [c_void_p, _P_I32, c_size_t, c_int32, _BUF, c_size_t, _P_SIZE, _P_ERR]),
    "frugal_tokenizer_load": (c_int32, [c_char_p, _P_HANDLE, _P_ERR]),
    "frugal_model_get_tokenizer": (c_int32, [c_void_p, _P_HANDLE, _P_ERR]),
    "frugal_tokenizer_free": (None, [c_void_p]),
    "frugal_tokenizer_n_vocab": (c_int32, [c_void_p]),
    "frugal_tokenizer_token_bos": (c_int32, [c_void_p]),
    "frugal_tokenizer_token_eos": (c_int32, [c_void_p]),
    "frugal_tokenizer_token_is_eog": (c_int32, [c_void_p, c_int32]),
    "frugal_tokenizer_encode": (c_int32, [c_void_p, c_char_p, c_size_t, c_int32, c_int32, _P_I32, c_size_t,
                                          _P_SIZE, _P_ERR]),
    "frugal_tokenizer_decode": (c_int32, [c_void_p, _P_I32, c_size_t, c_int32, _BUF, c_size_t, _P_SIZE,
                                          _P_ERR]),
    "frugal_tokenizer_chat_format": (c_char_p, [c_void_p]),
    "frugal_chat_apply_template": (c_int32, [c_void_p, c_char_p, POINTER(ChatMessage), c_size_t, c_int32, _BUF,
                                             c_size_t, _P_SIZE, _P_ERR]),
    "frugal_session_options_init": (c_int32, [POINTER(SessionOptions), c_uint32]),
    "frugal_session_create_v2": (c_int32, [c_void_p, POINTER(SessionOptions), _P_HANDLE, _P_ERR]),
    "frugal_session_create": (c_int32, [c_void_p, c_int32, _P_HANDLE, _P_ERR]),
    "frugal_session_free": (None, [c_void_p]),
    "frugal_session_n_ctx": (c_int32, [c_void_p]),
    "frugal_session_n_past": (c_int32, [c_void_p]),
    "frugal_session_kv_bytes": (c_uint64, [c_void_p]),
    "frugal_session_kv_type": (c_int32, [c_void_p]),
    "frugal_session_reset": (c_int32, [c_void_p, _P_ERR]),
    "frugal_session_set_param_f32": (c_int32, [c_void_p, c_int32, c_float, _P_ERR]),
    "frugal_session_set_param_i64": (c_int32, [c_void_p, c_int32, ctypes.c_int64, _P_ERR]),
    "frugal_session_prompt": (c_int32, [c_void_p, c_char_p, c_size_t, _P_ERR]),
    "frugal_session_prompt_tokens": (c_int32, [c_void_p, _P_I32, c_size_t, _P_ERR]),
    "frugal_session_next": (c_int32, [c_void_p, _P_I32, _BUF, c_size_t, _P_SIZE, _P_ERR]),
    "frugal_session_next_part": (c_int32, [c_void_p, _P_I32, _P_I32, _BUF, c_size_t, _P_SIZE, _P_ERR]),
    "frugal_session_logits": (POINTER(c_float), [c_void_p, _P_I32]),
    "frugal_session_cancel": (None, [c_void_p]),
}

_LIBRARY_NAMES = ("libfrugal.so.0.1", "libfrugal.so", "libfrugal.0.1.dylib", "libfrugal.dylib", "frugal.dll")


def _candidates():
    """(where it came from, what to pass to dlopen), in search order."""
    here = os.path.dirname(os.path.abspath(__file__))
    for name in _LIBRARY_NAMES:
        path = os.path.join(here, name)
        if os.path.exists(path):
            yield "next to the package", path
    found = ctypes.util.find_library("frugal")
    if found:
        yield "ctypes.util.find_library('frugal')", found
    for name in _LIBRARY_NAMES[:2]:
        yield "the dynamic loader's search path", name


def _open():
    """Opens libfrugal: $FRUGAL_LIBRARY, else next to the package, else the system's."""
    env = os.environ.get("FRUGAL_LIBRARY")
    if env:
        try:
            return ctypes.CDLL(env), env
        except OSError as e:
            raise LibraryNotFoundError(
                f"frugal: cannot load FRUGAL_LIBRARY={env!r}: {e}. Set FRUGAL_LIBRARY to the full path "
                f"of libfrugal.so (e.g. build/release/capi/libfrugal.so) or unset it.") from None
    tried = []
    for origin, name in _candidates():
        try:
            return ctypes.CDLL(name), name
        except OSError as e:
            tried.append(f"  {name} ({origin}): {e}")
    raise LibraryNotFoundError(
        "frugal: libfrugal was not found. Set FRUGAL_LIBRARY to the full path of libfrugal.so "
        "(e.g. FRUGAL_LIBRARY=build/release/capi/libfrugal.so), or install the library where the "
        "dynamic loader finds it. Tried:\n" + "\n".join(tried))


def _declare(lib):
    for name, (restype, argtypes) in _SIGNATURES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise VersionMismatchError(
                f"frugal: {getattr(lib, '_name', 'libfrugal')} has no symbol {name}; it is not the "
                f"libfrugal {HEADER_VERSION[0]}.{HEADER_VERSION[1]} this binding was written for") from None
        fn.restype = restype
        fn.argtypes = argtypes


def _check_version(lib, path):
    number = int(lib.frugal_version_number())
    have = (number // 10000, number // 100 % 100, number % 100)
    if have[:2] != HEADER_VERSION[:2]:
        raise VersionMismatchError(
            f"frugal: {path} is libfrugal {have[0]}.{have[1]}.{have[2]}, but this binding was written "
            f"for the {HEADER_VERSION[0]}.{HEADER_VERSION[1]} C ABI (major.minor must match)")
    return have


lib, library_path = _open()
_declare(lib)
library_version = _check_version(lib, library_path)

# ---- helpers shared by the wrappers --------------------------------------------------------------


def status_string(status: int) -> str:
    return lib.frugal_status_string(status).decode("utf-8", "replace")


def take_error(status: int, err: c_void_p) -> Error:
    """The exception for a failed call; frees the frugal_error (NULL is fine)."""
    try:
        if err.value:
            code = int(lib.frugal_error_code(err))
            message = (lib.frugal_error_message(err) or b"").decode("utf-8", "replace")
        else:
            code, message = status, ""
    finally:
        lib.frugal_error_free(err)
        err.value = None
    if not message:
        message = status_string(code)
    return error_class(code)(code, message)


def check(status: int, err: c_void_p) -> int:
    """Returns a non-negative status; raises the matching frugal.Error otherwise."""
    if status >= 0:
        if err.value:  # not expected on success, but never leak it
            lib.frugal_error_free(err)
            err.value = None
        return status
    raise take_error(status, err)


def free_error(err: c_void_p) -> None:
    if err.value:
        lib.frugal_error_free(err)
        err.value = None


def to_utf8(text, what: str = "text") -> bytes:
    """str -> UTF-8 bytes; bytes-like objects pass through unchanged.

    Lone surrogates are passed through ("surrogatepass"), so text that is not valid Unicode reaches
    the library, which rejects it with the byte offset, instead of failing here with less detail.
    """
    if isinstance(text, str):
        return text.encode("utf-8", "surrogatepass")
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    raise TypeError(f"{what} must be str or bytes, not {type(text).__name__}")


def path_arg(path) -> bytes:
    p = os.fspath(path)
    b = p if isinstance(p, bytes) else p.encode("utf-8", "surrogateescape")
    if b"\0" in b:
        raise error_class(ERR_INVALID_ARGUMENT)(ERR_INVALID_ARGUMENT, f"path {p!r} contains a NUL byte")
    return b


def text_call(fn, *args, cap: int = 256, nul: bool = False) -> bytes:
    """Calls fn(*args, buf, cap, &out_len, &err), growing buf on FRUGAL_ERR_BUFFER_TOO_SMALL.

    Returns the bytes written (without the NUL when nul is True).
    """
    cap = max(int(cap), 16)
    n = c_size_t(0)
    err = c_void_p()
    while True:
        buf = ctypes.create_string_buffer(cap)
        st = fn(*args, buf, cap, byref(n), byref(err))
        if st == ERR_BUFFER_TOO_SMALL:
            free_error(err)
            cap = max(int(n.value), cap * 2)
            continue
        check(st, err)
        size = int(n.value) - (1 if nul else 0)
        return ctypes.string_at(buf, size)


def ids_call(fn, *args, cap: int = 64) -> list:
    """Calls fn(*args, out, cap, &out_n, &err) for int32 ids, growing out as needed."""
    cap = max(int(cap), 16)
    n = c_size_t(0)
    err = c_void_p()
    while True:
        out = (c_int32 * cap)()
        st = fn(*args, out, cap, byref(n), byref(err))
        if st == ERR_BUFFER_TOO_SMALL:
            free_error(err)
            cap = max(int(n.value), cap * 2)
            continue
        check(st, err)
        return out[: int(n.value)]


def token_array(ids, what: str = "token ids"):
    """A sequence of ints -> (c_int32 array, count), checking each fits an int32."""
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of ints, not {type(ids).__name__}")
    ids = list(ids)
    arr = (c_int32 * max(len(ids), 1))()
    for i, t in enumerate(ids):
        if isinstance(t, bool) or not hasattr(t, "__index__"):
            raise TypeError(f"{what}[{i}] must be an int, not {type(t).__name__}")
        t = t.__index__()
        if not -2**31 <= t < 2**31:
            raise error_class(ERR_INVALID_ARGUMENT)(
                ERR_INVALID_ARGUMENT, f"{what}[{i}] = {t} does not fit a 32-bit token id")
        arr[i] = t
    return arr, len(ids)
