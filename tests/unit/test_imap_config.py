"""``driver: imap`` settings: defaults, the plaintext rule, check-config (no network involved)."""

from __future__ import annotations

from pathlib import Path

import pytest

from saslauth import cli, config
from saslauth.config import ImapSettings
from saslauth.errors import ConfigError

HEAD = """\
listen:
  - path: /tmp/auth
passdb:
  - driver: imap
"""


def parse_imap(body: str) -> ImapSettings:
    cfg = config.parse(HEAD + body, "s.yaml")
    settings = cfg.passdb[0]
    assert isinstance(settings, ImapSettings)
    return settings


def problems(body: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(HEAD + body, "s.yaml")
    return info.value.render().splitlines()


def test_defaults_and_ports_by_tls_mode() -> None:
    imap = parse_imap("    host: mail.example.org\n")
    assert (imap.tls, imap.effective_port, imap.tls_verify) == ("implicit", 993, True)
    assert (imap.connect_timeout, imap.timeout, imap.ca_file) == (3.0, 5.0, None)
    assert imap.label == "imap:mail.example.org:993"
    assert parse_imap("    host: mail.example.org\n    tls: starttls\n").effective_port == 143
    assert parse_imap("    host: ::1\n    tls: none\n").effective_port == 143
    explicit = parse_imap("    host: h\n    port: 1993\n    timeout: 500ms\n    name: corp\n")
    assert (explicit.effective_port, explicit.timeout, explicit.label) == (1993, 0.5, "corp")


def test_plaintext_to_a_remote_host_is_refused() -> None:
    assert problems("    host: mail.example.org\n    tls: none\n") == [
        "s.yaml:6: passdb.0.tls: none would send passwords in clear to mail.example.org; "
        "use implicit or starttls, or set allow_plaintext: true"
    ]
    assert problems("    host: 10.0.0.1\n    tls: none\n")[0].startswith("s.yaml:6: passdb.0.tls:")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_plaintext_on_loopback_is_fine(host: str) -> None:
    imap = parse_imap(f'    host: "{host}"\n    tls: none\n')
    assert imap.tls == "none" and imap.warnings() == []


def test_allow_plaintext_lets_it_through_with_a_warning() -> None:
    imap = parse_imap("    host: mail.example.org\n    tls: none\n    allow_plaintext: true\n")
    assert imap.warnings() == [
        "passdb imap:mail.example.org:143: passwords cross the network in clear"
    ]


def test_other_errors_have_lines() -> None:
    assert problems("    host: h\n    tls: ssl\n    port: 0\n    hots: x\n") == [
        "s.yaml:7: passdb.0.port: Input should be greater than or equal to 1",
        "s.yaml:6: passdb.0.tls: Input should be 'implicit', 'starttls' or 'none'",
        "s.yaml:8: passdb.0.hots: Extra inputs are not permitted",
    ]
    assert problems("    tls: starttls\n") == ["s.yaml:4: passdb.0.host: Field required"]


def test_ca_file_is_relative_to_the_config(tmp_path: Path) -> None:
    conf = tmp_path / "saslauth.yaml"
    conf.write_text(HEAD + "    host: mail.example.org\n    ca_file: tls/ca.pem\n")
    imap = cli.load(str(conf)).passdb[0]
    assert isinstance(imap, ImapSettings) and imap.ca_file == str(tmp_path / "tls" / "ca.pem")
    absolute = parse_imap("    host: h\n    ca_file: /etc/ssl/ca.pem\n").resolve(tmp_path)
    assert absolute.ca_file == "/etc/ssl/ca.pem"


def test_check_config_refuses_plaintext_and_prints_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD + "    host: imap.example.net\n    tls: none\n")
    assert cli.main(["check-config", "--config", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:6: passdb.0.tls: none would send passwords in clear" in out

    noisy = tmp_path / "noisy.yaml"
    noisy.write_text(
        HEAD + "    host: imap.example.net\n    ca_file: missing.pem\n    tls_verify: false\n"
        "    timeout: 8s\n"
        "user: nobody\n"  # an account this host has (checked when run as root)
    )
    assert cli.main(["check-config", "--config", str(noisy)]) == 0
    out = capsys.readouterr().out
    assert f"ca_file {tmp_path / 'missing.pem'} is not readable" in out
    assert "tls_verify is off" in out
    assert "timeout >= 7s" in out


def test_example_is_valid() -> None:
    example = Path(__file__).parents[2] / "examples" / "saslauth-imap.yaml"
    cfg = config.load(example)
    imap = cfg.passdb[0]
    assert isinstance(imap, ImapSettings) and imap.tls == "implicit"
