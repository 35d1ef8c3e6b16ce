"""YAML read with the line of every key, so that a problem can name ``FILE:LINE``.

:func:`read` loads a document safely (plain data only) and maps each key path (mapping keys
and sequence indexes, from the root) to its line; :func:`locate` finds the line of a
validation error's location in that map.
"""

from __future__ import annotations

from collections.abc import Container

import yaml

from saslauth.errors import ConfigError

Lines = dict[tuple[str | int, ...], int]


def _record_lines(node: yaml.Node, path: tuple[str | int, ...], lines: Lines) -> None:
    """Add the line of every key under ``node`` (found at ``path``) to ``lines``."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            lines[(*path, key_node.value)] = key_node.start_mark.line + 1
            _record_lines(value_node, (*path, key_node.value), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _record_lines(item, (*path, index), lines)


def read(text: str, filename: str) -> tuple[dict[object, object], Lines]:
    """The YAML mapping in ``text`` and its lines; :class:`ConfigError` (naming the line) for
    a YAML error or a document that is not a mapping."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([(filename, line, "yaml", str(exc.problem or exc))]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([(filename, 1, "yaml", str(exc))]) from None
    if node is None or not isinstance(data, dict):
        raise ConfigError([(filename, 1, "config", "the file must hold a YAML mapping")])
    lines: Lines = {}
    _record_lines(node, (), lines)
    return data, lines


def locate(
    loc: tuple[str | int, ...], lines: Lines, tags: Container[str]
) -> tuple[int, str]:
    """Map a pydantic error location to (line, dotted key), skipping union ``tags`` (parts
    of a location that are no key in the file)."""
    path: tuple[str | int, ...] = ()
    for part in loc:
        if (*path, part) in lines:
            path = (*path, part)
        elif isinstance(part, str) and part not in tags:
            path = (*path, part)  # a missing key: report it at its parent's line
    line = 1
    for cut in range(len(path), 0, -1):
        if path[:cut] in lines:
            line = lines[path[:cut]]
            break
    return line, ".".join(str(p) for p in path) or "config"
