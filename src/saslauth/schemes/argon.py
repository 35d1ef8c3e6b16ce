"""ARGON2I and ARGON2ID: Dovecot's libsodium ``crypto_pwhash`` strings, through argon2-cffi.

* Verification accepts either variant under either scheme name (Dovecot calls the generic
  ``crypto_pwhash_str_verify``) and, like Dovecot, treats *every* failure, a malformed string
  included, as a mismatch.
* Generation copies Dovecot's parameter choice: the rounds (opslimit) default to libsodium's
  INTERACTIVE value and pick the INTERACTIVE, MODERATE or SENSITIVE memory limit; ARGON2ID
  then raises the rounds to at least 3 (Dovecot's workaround for libsodium 1.0.13); ARGON2I
  below 3 rounds is refused, as libsodium refuses it.  16-byte salt, 32-byte hash, p=1.
* At Dovecot's defaults one verification costs about 0.2 s of CPU and 32-64 MiB of RAM, so a
  module-wide semaphore caps how many run at once (:func:`set_argon2_limit`, default 2).
"""

from __future__ import annotations

import os
import threading

from argon2 import Type, exceptions, low_level

from saslauth.schemes.unixcrypt import c_string

DEFAULT_ARGON2_LIMIT = 2
SALT_LEN = 16
HASH_LEN = 32
_MIB = 1024 * 1024

# libsodium's (opslimit, memlimit) for INTERACTIVE, MODERATE, SENSITIVE.
_ARGON2I_LIMITS = ((4, 32 * _MIB), (6, 128 * _MIB), (8, 512 * _MIB))
_ARGON2ID_LIMITS = ((2, 64 * _MIB), (3, 256 * _MIB), (4, 1024 * _MIB))
_ARGON2I_OPSLIMIT_MIN = 3
_ARGON2ID_ROUNDS_MIN = 3

_semaphore = threading.BoundedSemaphore(DEFAULT_ARGON2_LIMIT)


def set_argon2_limit(limit: int) -> None:
    """Allow at most ``limit`` concurrent argon2 computations (running ones are not affected)."""
    global _semaphore
    if limit < 1:
        raise ValueError("the argon2 concurrency limit must be at least 1")
    _semaphore = threading.BoundedSemaphore(limit)


def argon2_verify(password: bytes, raw: bytes, user: str) -> bool:
    raw = c_string(raw)
    if raw.startswith(b"$argon2id$"):
        kind = Type.ID
    elif raw.startswith(b"$argon2i$"):
        kind = Type.I
    else:
        return False
    with _semaphore:
        try:
            return low_level.verify_secret(raw, password, kind)
        except (exceptions.VerificationError, exceptions.InvalidHashError):
            return False


def _memlimit(rounds: int, limits: tuple[tuple[int, int], ...]) -> int:
    (_, interactive), (moderate_ops, moderate), (sensitive_ops, sensitive) = limits
    if rounds >= sensitive_ops:
        return sensitive
    if rounds >= moderate_ops:
        return moderate
    return interactive


def _hash(password: bytes, ops: int, memlimit: int, kind: Type) -> bytes:
    with _semaphore:
        return low_level.hash_secret(
            password,
            os.urandom(SALT_LEN),
            time_cost=ops,
            memory_cost=memlimit // 1024,
            parallelism=1,
            hash_len=HASH_LEN,
            type=kind,
        )


def argon2i_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    ops = rounds or _ARGON2I_LIMITS[0][0]
    if ops < _ARGON2I_OPSLIMIT_MIN:
        raise ValueError(f"ARGON2I needs at least {_ARGON2I_OPSLIMIT_MIN} rounds")
    return _hash(password, ops, _memlimit(ops, _ARGON2I_LIMITS), Type.I)


def argon2id_generate(password: bytes, user: str, rounds: int | None) -> bytes:
    ops = rounds or _ARGON2ID_LIMITS[0][0]
    memlimit = _memlimit(ops, _ARGON2ID_LIMITS)
    return _hash(password, max(ops, _ARGON2ID_ROUNDS_MIN), memlimit, Type.ID)
