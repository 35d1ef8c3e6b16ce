"""Pure-Python MD4 (RFC 1320): OpenSSL 3 dropped it, and PLAIN-MD4 and OTP md4 need it.

Only ever used on short passwords (one or two 64-byte blocks), so speed does not matter.
"""

from __future__ import annotations

import struct

_MASK = 0xFFFFFFFF
_IV = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476)
_R1 = (3, 7, 11, 19)
_R2 = (3, 5, 9, 13)
_R3 = (3, 9, 11, 15)
_ORDER3 = (0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)


def _rotl(x: int, n: int) -> int:
    x &= _MASK
    return ((x << n) | (x >> (32 - n))) & _MASK


def _compress(state: tuple[int, int, int, int], block: bytes) -> tuple[int, int, int, int]:
    x = struct.unpack("<16I", block)
    a, b, c, d = state
    for i in range(16):
        f = (b & c) | (~b & d)
        a, b, c, d = d, _rotl(a + f + x[i], _R1[i % 4]), b, c
    for i in range(16):
        k = (i % 4) * 4 + i // 4
        g = (b & c) | (b & d) | (c & d)
        a, b, c, d = d, _rotl(a + g + x[k] + 0x5A827999, _R2[i % 4]), b, c
    for i in range(16):
        h = b ^ c ^ d
        a, b, c, d = d, _rotl(a + h + x[_ORDER3[i]] + 0x6ED9EBA1, _R3[i % 4]), b, c
    return (
        (state[0] + a) & _MASK,
        (state[1] + b) & _MASK,
        (state[2] + c) & _MASK,
        (state[3] + d) & _MASK,
    )


def md4(data: bytes) -> bytes:
    """The 16-byte MD4 digest of ``data``."""
    bit_len = (len(data) * 8) & 0xFFFFFFFFFFFFFFFF
    padded = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack("<Q", bit_len)
    state = _IV
    for off in range(0, len(padded), 64):
        state = _compress(state, padded[off : off + 64])
    return struct.pack("<4I", *state)
