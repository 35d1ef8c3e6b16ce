"""The compiled build is all or nothing: every module pyproject.toml lists, or none, runs from
an extension (a module that failed to compile, or a stale extension, would show here)."""

from __future__ import annotations

import importlib
import tomllib
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from saslauth import buildinfo

REPO = Path(__file__).resolve().parents[2]


def _listed() -> list[str]:
    with open(REPO / "pyproject.toml", "rb") as file:
        paths = tomllib.load(file)["tool"]["saslauth"]["compiled"]
    names = []
    for path in paths:
        assert (REPO / path).is_file(), path
        name = path.removeprefix("src/").removesuffix(".py").replace("/", ".")
        names.append(name.removesuffix(".__init__"))
    return names


def test_every_listed_module_or_none_is_compiled() -> None:
    loaded = {}
    for name in _listed():
        file = importlib.import_module(name).__file__ or ""
        # (a module of the compiled group names its extension even when that file is missing)
        loaded[name] = file.endswith(tuple(EXTENSION_SUFFIXES)) and Path(file).is_file()
    assert "saslauth.session" in loaded and "saslauth.verifier" in loaded
    assert set(loaded.values()) == {buildinfo.compiled()}, loaded


def test_describe_says_which() -> None:
    text = buildinfo.describe()
    assert ("compiled (mypyc)" in text) is buildinfo.compiled()
    assert ("pure Python" in text) is not buildinfo.compiled()
