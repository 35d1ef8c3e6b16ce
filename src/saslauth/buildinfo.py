"""Whether the per-request modules run compiled (mypyc, see setup.py) or as pure Python."""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES

from saslauth import protocol


def compiled() -> bool:
    """True when the per-request modules were compiled (``pip install .`` with a compiler)."""
    return (protocol.__file__ or "").endswith(tuple(EXTENSION_SUFFIXES))


def describe() -> str:
    if compiled():
        return "per-request modules compiled (mypyc)"
    return "per-request modules in pure Python (slower; see README, Performance)"
