"""Config keys of the shadow and pam drivers."""

from __future__ import annotations

from pathlib import Path

import pytest

from saslauth import config
from saslauth.config import PamSettings, ShadowSettings
from saslauth.errors import ConfigError
from saslauth.passdb.registry import DRIVERS

TEXT = """\
listen:
  - path: /tmp/auth
passdb:
  - driver: shadow
    shadow_file: shadow
    min_uid: 500
    allowed_domains: [example.org]
  - driver: pam
    deny_groups: [nosmtp]
"""


def test_defaults_and_chain() -> None:
    cfg = config.parse(TEXT, "s.yaml")
    shadow, pam = cfg.passdb
    assert isinstance(shadow, ShadowSettings) and isinstance(pam, PamSettings)
    assert shadow.min_uid == 500 and shadow.allowed_domains == ("example.org",)
    assert shadow.passwd_file == "/etc/passwd" and shadow.group_file == "/etc/group"
    assert not shadow.strip_domain and shadow.label == "shadow"
    assert pam.service == "smtp" and pam.threads == 8 and pam.timeout == 8.0
    assert pam.min_uid == 1000 and pam.deny_groups == ("nosmtp",) and pam.label == "pam:smtp"
    resolved = shadow.resolve(Path("/etc/saslauth"))
    assert resolved.shadow_file == "/etc/saslauth/shadow"
    assert resolved.passwd_file == "/etc/passwd"
    assert set(DRIVERS) >= {"shadow", "pam"}


def test_errors_have_lines() -> None:
    bad = TEXT.replace("min_uid: 500", "min_uid: -1").replace(
        "deny_groups: [nosmtp]", "threads: 0\n    service: ../etc/passwd\n    bogus: 1"
    )
    with pytest.raises(ConfigError) as info:
        config.parse(bad, "s.yaml")
    lines = info.value.render().splitlines()
    assert any(x.startswith("s.yaml:6: passdb.0.min_uid: ") for x in lines), lines
    assert any(x.startswith("s.yaml:9: passdb.1.threads: ") for x in lines), lines
    assert any(x.startswith("s.yaml:10: passdb.1.service: ") for x in lines), lines
    assert any(x.startswith("s.yaml:11: passdb.1.bogus: ") for x in lines), lines


def test_warnings(tmp_path: Path) -> None:
    missing = ShadowSettings(driver="shadow", shadow_file=str(tmp_path / "nope"))
    assert "not readable by this user" in missing.warnings()[0]
    readable = tmp_path / "shadow"
    readable.write_text("")
    assert ShadowSettings(driver="shadow", shadow_file=str(readable)).warnings() == []
    nosuch = PamSettings(driver="pam", service="saslauth-no-such-service")
    assert "/etc/pam.d/saslauth-no-such-service is missing" in nosuch.warnings()[0]
