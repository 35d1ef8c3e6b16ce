"""The ldap driver's settings: defaults, FILE:LINE errors, check-config warnings, paths."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from saslauth import config
from saslauth.errors import ConfigError

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ldap3") is None, reason="ldap3 not installed (the ldap extra)"
)

HEAD = """\
listen:
  - path: /tmp/auth
passdb:
  - driver: ldap
"""


def parse(body: str) -> config.LdapSettings:
    settings = config.parse(HEAD + body, "s.yaml").passdb[0]
    assert isinstance(settings, config.LdapSettings)
    return settings


def problems(body: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(HEAD + body, "s.yaml")
    return info.value.render().splitlines()


def test_defaults() -> None:
    s = parse("    uris: [ldap://ldap.example.org]\n    base: dc=example,dc=org\n")
    assert s.auth == "bind" and s.tls_mode == "starttls" and s.tls_verify
    assert s.filter == "(&(objectClass=posixAccount)(uid=%u))"
    assert (s.connect_timeout, s.timeout, s.pool_size) == (2.0, 3.0, 4)
    assert s.password_attribute == "userPassword" and s.scope == "subtree"
    assert s.label == "ldap:ldap://ldap.example.org"
    assert s.warnings() == []
    ldaps = parse("    uris: [ldaps://a, 'ldaps://b:636']\n    base: dc=x\n    timeout: 500ms\n")
    assert ldaps.tls_mode == "ldaps" and ldaps.timeout == 0.5


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    uris: [http://x]\n    base: dc=x\n", "s.yaml:5: passdb.0.uris: 'http://x': expected"),
        ("    uris: [ldap://x/dc=x]\n    base: dc=x\n", "put the search base in 'base'"),
        ("    uris: []\n    base: dc=x\n", "s.yaml:5: passdb.0.uris: Tuple should have at least 1"),
        ("    uris: [ldap://x]\n", "s.yaml:4: passdb.0: set 'base'"),
        ("    uris: [ldaps://x]\n    tls: starttls\n    base: b\n", "starttls needs ldap://"),
        ("    uris: [ldap://x]\n    tls: ldaps\n    base: b\n", "ldaps needs ldaps:// URIs"),
        ("    uris: [ldap://x, ldaps://y]\n    base: b\n", "mix ldap:// and ldaps://"),
        ("    uris: [ldap://x]\n    tls: plain\n    base: b\n", "s.yaml:6: passdb.0.tls: Input"),
        ("    uris: [ldap://x]\n    base: b\n    filter: (uid=%x)\n", "unknown variable '%x'"),
        ("    uris: [ldap://x]\n    base: b\n    filter: uid=%u\n", "balanced parentheses"),
        ("    uris: [ldap://x]\n    base: b\n    filter: ((uid=%u)\n", "balanced parentheses"),
        ("    uris: [ldap://x]\n    user_dn: ou=people\n", "a DN template with the user"),
        ("    uris: [ldap://x]\n    base: b\n    bind_dn: cn=r\n", "go together"),
        ("    uris: [ldap://x]\n    base: b\n    pool_size: 0\n", "pool_size: Input should be"),
        ("    uris: [ldap://x]\n    base: b\n    auth: sasl\n", "passdb.0.auth: Input should be"),
        ("    uris: [ldap://x]\n    base: b\n    bogus: 1\n", "s.yaml:7: passdb.0.bogus: Extra"),
        ("    uris: [ldap://x]\n    base: b\n    password_attribute: a b\n", "an attribute"),
    ],
)
def test_errors(body: str, expected: str) -> None:
    lines = problems(body)
    assert any(expected in line for line in lines), lines


def test_user_dn_alone_is_enough_and_templates_are_checked() -> None:
    s = parse("    uris: [ldap://x]\n    user_dn: 'uid=%Ln,ou=%{domain},dc=org'\n")
    assert s.base == "" and s.user_dn == "uid=%Ln,ou=%{domain},dc=org"


def test_missing_library_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ldap3" else real(name, *a)
    )
    lines = problems("    uris: [ldap://x]\n    base: b\n")
    assert lines == [
        "s.yaml:4: passdb.0.driver: the ldap driver needs the ldap3 library: "
        "pip install 'saslauth[ldap]'"
    ]


def test_relative_paths_and_warnings(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    path = tmp_path / "s.yaml"
    path.write_text(
        HEAD + "    uris: [ldap://ldap.example.org, ldap://127.0.0.1]\n    base: b\n"
        "    tls: none\n    tls_verify: false\n    auth: password\n"
        "    ca_file: ca.pem\n    bind_dn: cn=r\n    bind_password_file: missing.secret\n"
    )
    settings = config.load(path).passdb[0].resolve(tmp_path)
    assert isinstance(settings, config.LdapSettings)
    assert settings.ca_file == str(tmp_path / "ca.pem")
    assert settings.bind_password_file == str(tmp_path / "missing.secret")
    notes = settings.warnings()
    assert any("clear text to ldap://ldap.example.org" in n for n in notes), notes
    assert any("tls_verify: false" in n for n in notes)
    assert any("missing.secret: not readable" in n for n in notes)
    assert not any("ca.pem" in n for n in notes)


def test_loopback_plaintext_and_anonymous_password_mode_notes() -> None:
    s = parse("    uris: [ldap://localhost, 'ldap://[::1]']\n    tls: none\n    base: b\n")
    assert s.warnings() == []
    anonymous = parse("    uris: [ldap://localhost]\n    base: b\n    auth: password\n")
    assert any("anonymously" in n for n in anonymous.warnings())


def test_example_config_is_valid() -> None:
    example = Path(__file__).parents[2] / "examples" / "saslauth-ldap.yaml"
    settings = config.load(example).passdb[0]
    assert isinstance(settings, config.LdapSettings)
    assert settings.tls_mode == "starttls" and settings.auth == "bind"
    assert settings.filter == "(&(objectClass=posixAccount)(uid=%n))"
