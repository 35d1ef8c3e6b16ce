"""Build step only (all configuration is in pyproject.toml): compile the per-request modules.

The modules listed under ``[tool.saslauth] compiled`` in pyproject.toml are compiled to C
extensions with mypyc (part of mypy: the same type-checked source, no hand-written C) when
saslauth is built as a wheel (``pip install .``) on a machine with a C compiler and Python's
headers (Debian: ``gcc python3-dev``).  Otherwise they stay pure Python, which behaves the same
and is slower (README, "Performance").  ``SASLAUTH_COMPILE=0`` never compiles, ``=1``
compiles or fails; an editable install (``pip install -e .``) is not compiled unless
``SASLAUTH_COMPILE=1``, so that edited sources take effect at once.  ``scripts/compile``
builds the same extensions in place in ``src/`` (the test suite runs on them).
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    with open(HERE / "pyproject.toml", "rb") as file:
        return list(tomllib.load(file)["tool"]["saslauth"]["compiled"])


def cannot_compile() -> str:
    """Why the extensions cannot be built here, or "" when they can."""
    sys.path.insert(0, str(HERE / "packaging" / "backend"))
    from saslauth_backend import toolchain_missing

    missing = toolchain_missing()
    if missing:
        return missing
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc (mypy) is not installed"
    return ""


def extensions() -> list[object]:
    mode = os.environ.get("SASLAUTH_COMPILE", "auto")
    if mode not in ("auto", "0", "1"):
        sys.exit(f"SASLAUTH_COMPILE={mode!r}: use 0 (never), 1 (always) or auto")
    commands = set(sys.argv[1:])
    editable = bool(commands & {"editable_wheel", "develop"})
    metadata_only = bool(commands & {"egg_info", "dist_info", "sdist"})
    if mode == "0" or metadata_only or (editable and mode == "auto"):
        return []
    missing = cannot_compile()
    if missing:
        if mode == "1":
            sys.exit(f"SASLAUTH_COMPILE=1, but {missing}")
        print(f"saslauth: the per-request modules stay pure Python: {missing}", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    os.chdir(HERE)  # mypycify takes paths relative to here and writes its C files to build/
    # Type-checking is CI's job (mypy strict): a build only needs the types, and an optional
    # extra (uvloop, redis, SQL and LDAP drivers) may be missing from it.
    relaxed = ["--ignore-missing-imports", "--no-warn-return-any", "--allow-subclassing-any"]
    return list(mypycify([*relaxed, *compiled_modules()], opt_level="3", group_name="saslauth"))


setup(ext_modules=extensions())
