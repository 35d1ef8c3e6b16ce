"""LDAP filter and DN templates: ``%u``/``%n``/``%d`` expanded with RFC 4515/4514 escaping.

Pure functions, no LDAP library: the settings validator and the driver both use them.

Variables (Dovecot's names): ``%u`` the whole user name, ``%n`` the part before the first
``@`` (the whole name when there is none), ``%d`` the part after it (empty when there is none);
``%{user}``, ``%{username}``, ``%{domain}`` are the long forms, ``%%`` is a literal ``%``.  The
modifiers ``L`` and ``U`` (``%Lu``, ``%Un``) lower- or upper-case the value before it is escaped.

A filter value is escaped as RFC 4515 asks (``*`` ``(`` ``)`` ``\\`` NUL as ``\\XX``, and
control characters, a leading ``#``/space and a trailing space too); a DN attribute value as
RFC 4514 asks (``, + " \\ < > ; = #`` with a backslash, a leading and a trailing space with a
backslash, NUL as ``\\00``).  So every character of a user name stands for itself and never
for filter or DN syntax.  What escaping cannot stop is the directory's own matching rules
folding names together (insignificant spaces, Unicode mapping):
:func:`directory_safe` tells whether a name survives those rules unchanged.
"""

from __future__ import annotations

import re
import stringprep
import unicodedata
from collections.abc import Callable

_FILTER_SPECIAL = {"*": "\\2a", "(": "\\28", ")": "\\29", "\\": "\\5c", "\0": "\\00"}
_DN_SPECIAL = frozenset(',+"\\<>;=#')  # "#" is only special first; ldap3 wants it always

_TOKEN = re.compile(r"%(?:\{(user|username|domain)\}|([LU]?)([und])|(%)|(.?))", re.DOTALL)
_LONG = {"user": "u", "username": "n", "domain": "d"}


class TemplateError(ValueError):
    """A template uses an unknown ``%`` sequence."""


def _hex(ch: str) -> str:
    return "".join(f"\\{byte:02x}" for byte in ch.encode("utf-8", "surrogatepass"))


def escape_filter_value(value: str) -> str:
    """RFC 4515 ``valueencoding``: the specials, NUL and controls as ``\\XX``, the rest as is.

    A leading ``#`` or white space and trailing white space are hex-escaped too: not needed by
    RFC 4515, but some client libraries (ldap3 among them) strip spaces around a value.
    """
    out = [
        _FILTER_SPECIAL.get(ch) or (_hex(ch) if ord(ch) < 0x20 or ch == "\x7f" else ch)
        for ch in value
    ]
    if value and (value[0] == "#" or value[0].isspace()):
        out[0] = _hex(value[0])
    if value and value[-1].isspace():
        out[-1] = _hex(value[-1])
    return "".join(out)


def escape_dn_value(value: str) -> str:
    """RFC 4514 ``string``: specials backslash-escaped, NUL as ``\\00``, edges protected."""
    out = []
    for index, ch in enumerate(value):
        if ch == "\0":
            out.append("\\00")
        elif (
            ch in _DN_SPECIAL
            or (ch == " " and index in (0, len(value) - 1))
        ):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def split_user(user: str) -> tuple[str, str]:
    """(``%n``, ``%d``): cut at the first ``@``, as Dovecot does."""
    name, _, domain = user.partition("@")
    return name, domain


def check_template(template: str) -> None:
    """Raise :class:`TemplateError` naming the first unknown ``%`` sequence."""
    for match in _TOKEN.finditer(template):
        if match.group(5) is not None:
            bad = match.group(0)
            raise TemplateError(
                f"unknown variable {bad!r} (use %u, %n, %d, %Lu, %{{user}}, or %% for a %)"
            )


def expand(template: str, user: str, escape: Callable[[str], str]) -> str:
    """``template`` with every variable replaced by the escaped value for ``user``."""
    name, domain = split_user(user)
    values = {"u": user, "n": name, "d": domain}

    def substitute(match: re.Match[str]) -> str:
        long_name, modifier, short, percent, bad = match.groups()
        if percent is not None:
            return "%"
        if bad is not None:
            raise TemplateError(f"unknown variable {match.group(0)!r}")
        value = values[_LONG[long_name] if long_name else short]
        if modifier == "L":
            value = value.lower()
        elif modifier == "U":
            value = value.upper()
        return escape(value)

    return _TOKEN.sub(substitute, template)


def expand_filter(template: str, user: str) -> str:
    return expand(template, user, escape_filter_value)


def expand_dn(template: str, user: str) -> str:
    return expand(template, user, escape_dn_value)


def _folded_away(ch: str) -> bool:
    """Characters LDAP string preparation (RFC 4518) maps to nothing or to a space."""
    return (
        stringprep.in_table_b1(ch)  # commonly mapped to nothing (soft hyphen, ZWJ, ...)
        or stringprep.in_table_c12(ch)  # non-ASCII spaces
        or stringprep.in_table_c21_c22(ch)  # control characters, NUL included
        or unicodedata.category(ch) in ("Cf", "Cc", "Zl", "Zp")
    )


def directory_safe(user: str) -> bool:
    """True if the directory's matching rules cannot fold ``user`` into another name.

    LDAP compares names after string preparation: leading, trailing and repeated spaces are
    insignificant, some characters vanish, and compatibility forms are normalised (a fullwidth
    ``a`` is ``a``).  A name where that would change anything is treated as unknown without
    asking the directory, so ``" alice"`` or ``"ali\\u00adce"`` can never log in as ``alice``.
    """
    if not user or user != user.strip(" ") or "  " in user:
        return False
    if any(_folded_away(ch) for ch in user):
        return False
    return unicodedata.normalize("NFKC", user) == user
