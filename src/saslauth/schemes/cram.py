"""CRAM-MD5 / HMAC-MD5 stored credentials: the two HMAC-MD5 midstates.

Dovecot stores 32 bytes: the MD5 state words (a, b, c, d, each little-endian) after one block
of ``key XOR opad`` (outer) and then after one block of ``key XOR ipad`` (inner).  hashlib does
not expose MD5 midstates, so this module carries a pure-Python MD5 compression function.  The
CRAM-MD5 mechanism can resume HMAC from these states with :func:`hmac_md5_from_context`.
"""

from __future__ import annotations

import hashlib
import math
import struct

CONTEXT_LEN = 32

_MASK = 0xFFFFFFFF
_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_K = tuple(int(abs(math.sin(i + 1)) * 2**32) & _MASK for i in range(64))
_S = (7, 12, 17, 22) * 4 + (5, 9, 14, 20) * 4 + (4, 11, 16, 23) * 4 + (6, 10, 15, 21) * 4


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK


def md5_compress(state: tuple[int, int, int, int], block: bytes) -> tuple[int, int, int, int]:
    """One MD5 compression of a 64-byte ``block`` into ``state``."""
    m = struct.unpack("<16I", block)
    a, b, c, d = state
    for i in range(64):
        if i < 16:
            f, g = (b & c) | (~b & d), i
        elif i < 32:
            f, g = (d & b) | (~d & c), (5 * i + 1) % 16
        elif i < 48:
            f, g = b ^ c ^ d, (3 * i + 5) % 16
        else:
            f, g = c ^ (b | (~d & _MASK)), (7 * i) % 16
        a, b, c, d = d, (b + _rotl((a + f + _K[i] + m[g]) & _MASK, _S[i])) & _MASK, b, c
    return (
        (state[0] + a) & _MASK,
        (state[1] + b) & _MASK,
        (state[2] + c) & _MASK,
        (state[3] + d) & _MASK,
    )


def cram_md5_context(password: bytes) -> bytes:
    """The 32-byte CRAM-MD5 context Dovecot stores for ``password``."""
    key = hashlib.md5(password).digest() if len(password) > 64 else password  # noqa: S324
    key = key.ljust(64, b"\x00")
    outer = md5_compress(_IV, bytes(k ^ 0x5C for k in key))
    inner = md5_compress(_IV, bytes(k ^ 0x36 for k in key))
    return struct.pack("<8I", *outer, *inner)


def _md5_finish(state: tuple[int, int, int, int], data: bytes, prefix_len: int) -> bytes:
    total = prefix_len + len(data)
    padded = data + b"\x80" + b"\x00" * ((55 - total) % 64) + struct.pack("<Q", total * 8)
    for off in range(0, len(padded), 64):
        state = md5_compress(state, padded[off : off + 64])
    return struct.pack("<4I", *state)


def hmac_md5_from_context(context: bytes, message: bytes) -> bytes:
    """HMAC-MD5(key, message) computed from a stored CRAM-MD5 ``context`` of that key."""
    if len(context) != CONTEXT_LEN:
        raise ValueError("a CRAM-MD5 context is 32 bytes")
    words = struct.unpack("<8I", context)
    outer, inner = words[:4], words[4:]
    inner_digest = _md5_finish(inner, message, 64)
    return _md5_finish(outer, inner_digest, 64)
