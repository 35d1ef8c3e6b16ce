"""The in-tree build backend: a build asks for mypy only when it will compile."""

from __future__ import annotations

import importlib.util
import sysconfig
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = ["setuptools>=68"]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "saslauth_backend", ROOT / "packaging" / "backend" / "saslauth_backend.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Any:
    module = _load()
    monkeypatch.delenv("SASLAUTH_COMPILE", raising=False)
    monkeypatch.setattr(module, "toolchain_missing", lambda: "")
    # setuptools' own hooks run setup.py egg_info: stand in for them
    for hook in ("get_requires_for_build_wheel", "get_requires_for_build_editable"):
        monkeypatch.setattr(module.build_meta, hook, lambda settings=None: list(SETUPTOOLS))
    return module


def compile_requires() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as file:
        pyproject = tomllib.load(file)
    assert pyproject["build-system"]["requires"] == SETUPTOOLS  # nothing else, always
    requires: list[str] = pyproject["tool"]["saslauth"]["compile-requires"]
    assert any(r.startswith("mypy") for r in requires)
    return requires


def test_a_wheel_with_a_toolchain_asks_for_mypy(backend: Any) -> None:
    assert backend.get_requires_for_build_wheel() == SETUPTOOLS + compile_requires()


def test_no_toolchain_no_mypy(backend: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "toolchain_missing", lambda: "no C compiler (cc)")
    assert backend.get_requires_for_build_wheel() == SETUPTOOLS
    monkeypatch.setenv("SASLAUTH_COMPILE", "1")  # insisting: setup.py then says what is missing
    assert backend.get_requires_for_build_wheel() == SETUPTOOLS + compile_requires()


def test_compile_0_and_editable_installs_ask_for_nothing_more(
    backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert backend.get_requires_for_build_editable() == SETUPTOOLS
    monkeypatch.setenv("SASLAUTH_COMPILE", "0")
    assert backend.get_requires_for_build_wheel() == SETUPTOOLS
    monkeypatch.setenv("SASLAUTH_COMPILE", "1")
    assert backend.get_requires_for_build_editable() == SETUPTOOLS + compile_requires()


def test_toolchain_missing_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _load()
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: "no-such-cc -pthread")
    assert module.toolchain_missing() == "no C compiler (no-such-cc)"
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: "sh")  # exists everywhere
    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"include": "/nonexistent"})
    assert module.toolchain_missing() == "no Python headers (Python.h; Debian: python3-dev)"
