from __future__ import annotations

from pathlib import Path

import pytest

from saslauth import config
from saslauth.errors import ConfigError

MINIMAL = """\
listen:
  - path: /tmp/auth
passdb:
  - driver: passwd-file
    path: /etc/saslauth/users
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(text, "s.yaml")
    return info.value.render().splitlines()


def test_minimal_defaults() -> None:
    cfg = config.parse(MINIMAL, "s.yaml")
    assert cfg.failure_delay == 2.0 and cfg.tempfail == "fail"
    assert cfg.mechanisms == ("PLAIN", "LOGIN") and cfg.user == "saslauth"
    assert cfg.verifier.user == "root"


def test_durations() -> None:
    for text, seconds in [("2s", 2.0), ("500ms", 0.5), ("0", 0.0), ("1.5", 1.5)]:
        cfg = config.parse(MINIMAL + f"failure_delay: {text}\n", "s.yaml")
        assert cfg.failure_delay == seconds


def test_every_error_with_file_and_line() -> None:
    text = """\
user: root
failure_delay: 2x
mechanisms: [PLAIN, DIGEST-MD5]
tempfail: maybe
listen:
  - path: /tmp/x
    mode: 0660
  - address: "127.0.0.1:99999"
passdb:
  - driver: passwd-file
    pathh: x
bogus: 1
"""
    assert problems(text) == [
        "s.yaml:1: user: the network-facing process must not run as root",
        "s.yaml:2: failure_delay: a duration like 2s, 500ms, 10m or 1d",
        "s.yaml:4: tempfail: Input should be 'fail' or 'disconnect'",
        "s.yaml:3: mechanisms: unknown mechanism DIGEST-MD5 (known: PLAIN, LOGIN)",
        's.yaml:7: listen.0.mode: an octal mode in quotes, like "0660"',
        "s.yaml:8: listen.1.address: HOST:PORT, like 127.0.0.1:12345 or [::1]:12345",
        "s.yaml:10: passdb.0.path: Field required",
        "s.yaml:11: passdb.0.pathh: Extra inputs are not permitted",
        "s.yaml:12: bogus: Extra inputs are not permitted",
    ]


def test_failure_delay_must_stay_under_postfix_timeout() -> None:
    assert problems(MINIMAL + "failure_delay: 10s\n") == [
        "s.yaml:6: failure_delay: must be under 10s: Postfix gives up on the auth server after 10 s"
    ]


def test_yaml_syntax_error_has_line() -> None:
    assert problems("listen:\n  - path: [\n")[0].startswith("s.yaml:3: yaml: ")


def test_missing_sections_and_wrong_type() -> None:
    assert problems("user: x\n") == [
        "s.yaml:1: listen: Field required",
        "s.yaml:1: passdb: Field required",
    ]
    assert problems("- a\n") == ["s.yaml:1: config: the file must hold a YAML mapping"]


def test_unknown_driver() -> None:
    lines = problems(MINIMAL.replace("passwd-file", "nosuch"))
    assert lines[0].startswith("s.yaml:4: passdb.0.driver: unknown driver 'nosuch' (known: ")


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path / "nope.yaml")
    assert "nope.yaml:1: config: cannot read" in str(info.value)


def test_example_config_is_valid() -> None:
    example = Path(__file__).parents[2] / "examples" / "saslauth.yaml"
    cfg = config.load(example)
    assert isinstance(cfg.passdb[0], config.PasswdFileSettings)
    assert cfg.passdb[0].path == "users"


def test_fronts_auto_or_a_count() -> None:
    import os

    auto = config.parse(MINIMAL, "s.yaml")
    assert auto.fronts == "auto"
    assert auto.front_count == max(1, min(os.cpu_count() or 1, config.AUTO_FRONTS_MAX))
    assert config.parse(MINIMAL + "fronts: 3\n", "s.yaml").front_count == 3
    assert config.parse(MINIMAL + "fronts: 64\n", "s.yaml").front_count == 64
    for bad in ("0", "65", "many", "true", "1.5", "-1", '"2"'):
        assert problems(MINIMAL + f"fronts: {bad}\n") == [
            "s.yaml:6: fronts: auto, or a whole number from 1 to 64"
        ], bad


def test_pin_fronts_auto_by_default_else_true_or_false() -> None:
    assert config.parse(MINIMAL, "s.yaml").pin_fronts == "auto"
    assert config.parse(MINIMAL + "pin_fronts: auto\n", "s.yaml").pin_fronts == "auto"
    assert config.parse(MINIMAL + "pin_fronts: true\n", "s.yaml").pin_fronts is True
    assert config.parse(MINIMAL + "pin_fronts: false\n", "s.yaml").pin_fronts is False
    for bad in ("maybe", "2", "1", "[1]", '"true"', "Auto"):
        assert problems(MINIMAL + f"pin_fronts: {bad}\n") == [
            "s.yaml:6: pin_fronts: auto, true or false"
        ], bad


def test_fronts_with_limits_is_one_front() -> None:
    # the limiter counts in the front's memory: auto means one front, more is an error
    assert config.parse(MINIMAL + "limits: {}\n", "s.yaml").front_count == 1
    assert config.parse(MINIMAL + "limits: {}\nfronts: 1\n", "s.yaml").front_count == 1
    off = config.parse(MINIMAL + "limits: {enabled: false}\nfronts: 2\n", "s.yaml")
    assert off.front_count == 2
    (problem,) = problems(MINIMAL + "limits: {}\nfronts: 2\n")
    assert problem.startswith("s.yaml:7: fronts: with limits on, one front only")


def test_auth_log_reaches_the_sessions() -> None:
    """auth_log: failures (the default) has no line for successful attempts; all has; anything
    else is an error naming file and line."""
    from saslauth.frontprep import session_settings

    quiet = config.parse(MINIMAL, "s.yaml")
    assert quiet.auth_log == "failures" and not session_settings(quiet).log_successes
    every = config.parse(MINIMAL + "auth_log: all\n", "s.yaml")
    assert every.auth_log == "all" and session_settings(every).log_successes
    assert problems(MINIMAL + "auth_log: none\n") == [
        "s.yaml:6: auth_log: Input should be 'all' or 'failures'"
    ]
