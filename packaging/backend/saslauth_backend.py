"""The build backend (pyproject.toml ``backend-path``): setuptools', plus one decision.

A build asks for mypy (mypyc, to compile the per-request modules) and the typed dependencies
mypyc reads, ``[tool.saslauth] compile-requires``, only when it will compile: a wheel, on a
machine with a C compiler and Python's headers, unless ``SASLAUTH_COMPILE=0``.  On a machine
without a compiler ``pip install .`` then installs pure Python without downloading mypy.
setup.py compiles, or explains why not, with :func:`toolchain_missing` too.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
import tomllib
from pathlib import Path

from setuptools import build_meta
from setuptools.build_meta import (  # noqa: F401  (the rest of the backend, unchanged)
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

ROOT = Path(__file__).resolve().parents[2]
Settings = dict[str, list[str] | str | int | bool | None] | None


def toolchain_missing() -> str:
    """What this machine lacks to build C extensions for this Python, or "" for nothing."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler ({compiler})"
    if not Path(sysconfig.get_paths()["include"], "Python.h").exists():
        return "no Python headers (Python.h; Debian: python3-dev)"
    return ""


def compile_requires(editable: bool) -> list[str]:
    """What a build needs besides setuptools to compile, or [] when it will not compile."""
    mode = os.environ.get("SASLAUTH_COMPILE", "auto")
    if mode == "0" or (editable and mode != "1") or (mode == "auto" and toolchain_missing()):
        return []  # (any other SASLAUTH_COMPILE: setup.py stops with a message)
    with open(ROOT / "pyproject.toml", "rb") as file:
        return list(tomllib.load(file)["tool"]["saslauth"]["compile-requires"])


def get_requires_for_build_wheel(config_settings: Settings = None) -> list[str]:
    return [*build_meta.get_requires_for_build_wheel(config_settings), *compile_requires(False)]


def get_requires_for_build_editable(config_settings: Settings = None) -> list[str]:
    requires = build_meta.get_requires_for_build_editable(config_settings)
    return [*requires, *compile_requires(True)]
