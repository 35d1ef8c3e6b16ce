"""crypt(3) through ctypes: ``crypt_rn`` from libxcrypt, falling back to ``crypt_r``.

The stdlib ``crypt`` module is gone in Python 3.13 (and never released the GIL); a ctypes call
releases the GIL, so verifications in a thread pool use every core.  Each thread owns one
output buffer (``threading.local``): 32 KiB is ``sizeof(struct crypt_data)`` in libxcrypt,
which ``crypt_rn`` is told; an old glibc ``crypt_r`` has no size argument and a bigger
``struct crypt_data`` (about 128 KiB), so that fallback gets 256 KiB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable

CRYPT_RN_BUFFER = 32 * 1024
CRYPT_R_BUFFER = 256 * 1024

_CryptFn = Callable[[bytes, bytes, "ctypes.Array[ctypes.c_char]"], "bytes | None"]


def _open() -> ctypes.CDLL | None:
    names = ["libcrypt.so.1", "libcrypt.so.2"]
    found = ctypes.util.find_library("crypt")
    if found:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            continue
        if hasattr(lib, "crypt_rn") or hasattr(lib, "crypt_r"):
            return lib
    return None


def _load(*, use_crypt_rn: bool = True) -> tuple[_CryptFn | None, int]:
    """The crypt function and its buffer size (``use_crypt_rn=False`` lets tests try crypt_r)."""
    lib = _open()
    if lib is None:
        return None, 0
    if use_crypt_rn and hasattr(lib, "crypt_rn"):
        rn = lib.crypt_rn
        rn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_int]
        rn.restype = ctypes.c_char_p

        def call_rn(
            phrase: bytes, setting: bytes, buf: ctypes.Array[ctypes.c_char]
        ) -> bytes | None:
            result: bytes | None = rn(phrase, setting, buf, len(buf))
            return result

        return call_rn, CRYPT_RN_BUFFER
    r = lib.crypt_r
    r.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p]
    r.restype = ctypes.c_char_p

    def call_r(phrase: bytes, setting: bytes, buf: ctypes.Array[ctypes.c_char]) -> bytes | None:
        ctypes.memset(buf, 0, len(buf))  # glibc wants crypt_data.initialized == 0
        result: bytes | None = r(phrase, setting, buf)
        if result is None or result.startswith(b"*"):  # failure token "*0" / "*1"
            return None
        return result

    return call_r, CRYPT_R_BUFFER


_CRYPT, _BUFFER_SIZE = _load()
_local = threading.local()


def available() -> bool:
    """True when a usable crypt(3) was found."""
    return _CRYPT is not None


def crypt(phrase: bytes, setting: bytes) -> bytes | None:
    """crypt(3) of ``phrase`` with ``setting`` (a salt or a whole hash); None on failure.

    Failure means an unknown or malformed setting.  Both arguments are C strings, so anything
    after a NUL byte is invisible to libcrypt; callers decide what a NUL means for them.
    """
    if _CRYPT is None:
        return None
    buf: ctypes.Array[ctypes.c_char] | None = getattr(_local, "buf", None)
    if buf is None:
        buf = ctypes.create_string_buffer(_BUFFER_SIZE)
        _local.buf = buf
    return _CRYPT(phrase, setting, buf)


def supports(setting: bytes, phrase: bytes, expected: bytes) -> bool:
    """Self-test: does this libcrypt produce ``expected`` (Dovecot registers schemes this way)?"""
    return crypt(phrase, setting) == expected
