"""LDAP filter/DN escaping and template expansion (pure code; ldap3's parsers as the oracle)."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from saslauth.passdb.ldap_template import (
    TemplateError,
    check_template,
    directory_safe,
    escape_dn_value,
    escape_filter_value,
    expand_dn,
    expand_filter,
    split_user,
)

ldap3 = pytest.importorskip("ldap3")
from ldap3.operation.search import compile_filter, parse_filter  # noqa: E402
from ldap3.utils.dn import parse_dn  # noqa: E402

NASTY = "*()\\\0#, +\"<>;=~:&|!é@"
names = st.text(alphabet=st.sampled_from(NASTY) | st.characters(codec="utf-8"), max_size=24)


def sent_assertion(search_filter: str) -> tuple[str, bytes]:
    """What ldap3 puts on the wire for a one-item filter: (filter choice, assertion value)."""
    node = parse_filter(search_filter, None, False, True, None, False)  # type: ignore[no-untyped-call]
    compiled = compile_filter(node.elements[0])  # type: ignore[no-untyped-call]
    choice = compiled.getName()
    value = compiled[choice]["assertionValue"] if choice == "equalityMatch" else b""
    return choice, bytes(value)


def dn_unescape(value: str) -> str:
    """RFC 4514 section 3 decoding of one attribute value (test oracle)."""
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "\\":
            pair = value[i + 1 : i + 3]
            if re.fullmatch(r"[0-9a-fA-F]{2}", pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out += value[i + 1].encode()
            i += 2
        else:
            out += value[i].encode()
            i += 1
    return out.decode()


@given(names)
@example("*")
@example("alice)(uid=*")
@example(" #lead and trail ")
@example("\\2a")
def test_filter_value_is_one_literal_equality(name: str) -> None:
    escaped = escape_filter_value(name)
    assert not set(escaped) & set("*()\0")
    assert re.fullmatch(r"(?:[^\\]|\\[0-9a-f]{2})*", escaped)  # every backslash starts \XX
    choice, value = sent_assertion(f"(uid={escaped})")
    assert choice == "equalityMatch"  # never a presence or substring match
    assert value == name.encode()


@given(names)
def test_filter_template_keeps_its_shape(name: str) -> None:
    built = expand_filter("(&(objectClass=posixAccount)(uid=%u))", name)
    node = parse_filter(built, None, False, True, None, False)  # type: ignore[no-untyped-call]
    (and_node,) = node.elements
    assert [child.assertion["attr"] for child in and_node.elements] == ["objectClass", "uid"]


@given(names.filter(bool))  # user names are never empty (and ldap3 refuses empty values)
@example("#0405616c696365")
@example("alice,ou=people,dc=example,dc=org")
@example(" a ")
def test_dn_value_is_one_literal_rdn_value(name: str) -> None:
    dn = f"uid={escape_dn_value(name)},ou=people,dc=example,dc=org"
    parts = parse_dn(dn, escape=False, strip=False)
    assert [(attr, sep) for attr, _, sep in parts] == [
        ("uid", ","),
        ("ou", ","),
        ("dc", ","),
        ("dc", ""),
    ]
    assert dn_unescape(parts[0][1]) == name
    assert not escape_dn_value(name).startswith("#")


def test_examples() -> None:
    assert escape_filter_value("a*b(c)d\\e\0") == "a\\2ab\\28c\\29d\\5ce\\00"
    assert escape_filter_value(" #x ") == "\\20#x\\20"
    assert escape_filter_value("#x") == "\\23x"
    assert escape_dn_value('#a, b+c"<>;=\\ ') == '\\#a\\, b\\+c\\"\\<\\>\\;\\=\\\\\\ '
    assert escape_dn_value("a\0b") == "a\\00b"


def test_variables_and_modifiers() -> None:
    assert split_user("a@b@c") == ("a", "b@c")  # Dovecot cuts at the first @
    assert split_user("alice") == ("alice", "")
    got = expand_filter("(|(u=%u)(n=%n)(d=%d)(L=%Lu)(U=%Un)(x=%{domain}%{username})(%%))", "Al*@Ex")
    assert got == "(|(u=Al\\2a@Ex)(n=Al\\2a)(d=Ex)(L=al\\2a@ex)(U=AL\\2a)(x=ExAl\\2a)(%))"
    assert expand_dn("uid=%n,ou=%d,dc=org", "a,b@c+d") == "uid=a\\,b,ou=c\\+d,dc=org"


@pytest.mark.parametrize("template", ["(uid=%x)", "uid=%", "%{nope}", "%Lx", "a%Ku"])
def test_unknown_variables_are_refused(template: str) -> None:
    with pytest.raises(TemplateError, match="unknown variable"):
        check_template(template)
    with pytest.raises(TemplateError):
        expand_filter(template, "alice")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("alice", True),
        ("alice@example.org", True),
        ("a b", True),
        ("jürgen", True),
        ("*()\\#", True),
        ("", False),
        (" alice", False),
        ("alice ", False),
        ("a  b", False),
        ("ali\u00adce", False),  # soft hyphen: mapped to nothing
        ("ali\u200bce", False),  # zero-width space
        ("\uff41lice", False),  # fullwidth a: NFKC is "alice"
        ("alice\0", False),
        ("al\tice", False),
        ("a\u00a0b", False),  # no-break space: a space to LDAP
    ],
)
def test_directory_safe(name: str, safe: bool) -> None:
    assert directory_safe(name) is safe


@given(names)
def test_directory_safe_names_are_stable(name: str) -> None:
    if directory_safe(name):
        assert name == name.strip(" ") and "  " not in name
        assert all(ord(ch) >= 0x20 for ch in name)
