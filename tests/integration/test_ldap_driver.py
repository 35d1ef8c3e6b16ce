"""The ldap passdb driver, in process, against a real throwaway slapd (one per module)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from saslauth import schemes
from saslauth.config import LdapSettings
from saslauth.errors import BackendError
from saslauth.passdb import Lookup, Verdict
from saslauth.verifier import VerifyRequest
from tests.fixtures.ports import free_tcp_port
from tests.fixtures.slapd import (
    BASE_DN,
    READER_DN,
    READER_PASSWORD,
    WRONG_NAME_HOST,
    Slapd,
    start_slapd,
    user_ldif,
)
from tests.fixtures.tlsca import make_test_ca

pytest.importorskip("ldap3")
from saslauth.passdb.ldap import Ldap


def crypt(password: str) -> str:
    # slapd knows {CRYPT} (crypt(3)), not Dovecot's {SHA512-CRYPT} name for the same hash.
    return "{CRYPT}" + schemes.generate("SHA512-CRYPT", password.encode()).split("}", 1)[1]


LDIF = (
    f"dn: ou=staff,{BASE_DN}\nobjectClass: organizationalUnit\nou: staff\n\n"
    + user_ldif("alice", schemes.generate("SSHA", b"wonderland"))
    + user_ldif("bob", crypt("bob pw"))
    + user_ldif("star*", schemes.generate("SSHA", b"starpw"))
    + user_ldif("twin", "{SSHA}" + schemes.generate("SSHA", b"twinpw")[6:])
    + user_ldif("twin", schemes.generate("SSHA", b"twinpw"), ou="staff")
)


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = start_slapd(tmp_path_factory.mktemp("slapd"), LDIF)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def secret(slapd: Slapd) -> Path:
    path = slapd.directory / "reader.secret"
    path.write_text(READER_PASSWORD + "\n")
    return path


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


class Driver:
    def __init__(self, settings: dict[str, Any], executor: ThreadPoolExecutor) -> None:
        self.ldap = Ldap(LdapSettings.model_validate({"driver": "ldap", **settings}), executor)

    def verify(self, user: str, password: str | bytes) -> Lookup:
        raw = password.encode() if isinstance(password, str) else password
        return asyncio.run(self.ldap.verify_plain(VerifyRequest(user, raw)))

    def verdict(self, user: str, password: str | bytes) -> Verdict:
        return self.verify(user, password).verdict


@pytest.fixture
def make(executor: ThreadPoolExecutor) -> Iterator[Any]:
    made: list[Driver] = []

    def factory(**settings: Any) -> Driver:
        made.append(Driver(settings, executor))
        return made[-1]

    yield factory
    for driver in made:
        driver.ldap.close()


def modes(slapd: Slapd, secret: Path) -> dict[str, dict[str, Any]]:
    ca = str(slapd.ca.ca_cert)
    service = {"bind_dn": READER_DN, "bind_password_file": str(secret)}
    return {
        "bind-search-starttls": {"uris": [slapd.uri], "ca_file": ca, "base": BASE_DN, **service},
        "bind-anonymous-ldaps": {"uris": [slapd.ldaps_uri], "ca_file": ca, "base": BASE_DN},
        "bind-user-dn": {
            "uris": [slapd.uri], "tls": "none", "user_dn": f"uid=%u,ou=people,{BASE_DN}",
        },
        "password": {
            "uris": [slapd.uri], "ca_file": ca, "auth": "password", "base": BASE_DN, **service,
        },
        "password-user-dn": {
            "uris": [slapd.ldaps_uri], "ca_file": ca, "auth": "password",
            "user_dn": f"uid=%u,ou=people,{BASE_DN}", **service,
        },
    }  # fmt: skip


MODES = ["bind-search-starttls", "bind-anonymous-ldaps", "bind-user-dn", "password",
         "password-user-dn"]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_right_wrong_unknown(slapd: Slapd, secret: Path, make: Any, mode: str) -> None:
    driver = make(**modes(slapd, secret)[mode])
    assert driver.verdict("alice", "wonderland") is Verdict.OK  # {SSHA}
    assert driver.verdict("bob", "bob pw") is Verdict.OK  # {CRYPT}$6$
    assert driver.verdict("alice", "wonderlanD") is Verdict.PASSWORD_MISMATCH
    unknown = driver.verdict("mallory", "wonderland")
    # A DN template cannot tell an unknown DN from a wrong password (the server says 49 both).
    expected = Verdict.PASSWORD_MISMATCH if mode == "bind-user-dn" else Verdict.USER_UNKNOWN
    assert unknown is expected


INJECTIONS = [
    "*", "a*", "al*e", "*)(uid=*", "alice)(uid=*", "alice)(|(uid=*", "*)(objectClass=*",
    "alice\\", "alice\\2a", "alice\0", "\\61lice", "alice,ou=people," + BASE_DN,
    "uid=alice,ou=people," + BASE_DN, "alice+cn=alice", "#0405616c696365", " alice", "alice ",
    "al ice", "ali\u00adce", "\uff41lice", "alice@", "star\\2a", "star\\*",
]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_injection_attempts_match_nothing_else(
    slapd: Slapd, secret: Path, make: Any, mode: str
) -> None:
    driver = make(**modes(slapd, secret)[mode])
    for name in INJECTIONS:
        for password in ("wonderland", "starpw"):
            lookup = driver.verify(name, password)
            assert lookup.verdict is not Verdict.OK, (name, password)
            assert lookup.verdict is not Verdict.INTERNAL_FAILURE, (name, lookup)
    # The special character is a character like any other: "star*" is that user, literally.
    assert driver.verdict("star*", "starpw") is Verdict.OK


@pytest.mark.parametrize("mode", MODES)
def test_empty_password_never_reaches_the_directory(
    slapd: Slapd, secret: Path, make: Any, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver = make(**modes(slapd, secret)[mode])
    calls: list[str] = []
    directory = driver.ldap._directory

    def bind(*args: object) -> tuple[bool, str]:
        calls.append("bind")
        return True, ""

    def search(*args: object) -> list[object]:
        calls.append("search")
        return []

    monkeypatch.setattr(directory, "bind", bind)
    monkeypatch.setattr(directory, "search", search)
    for user in ("alice", "mallory"):
        assert driver.verdict(user, b"") is Verdict.PASSWORD_MISMATCH
        assert driver.verdict(user, b"wonder\0land") is Verdict.PASSWORD_MISMATCH
    assert calls == []


def test_unknown_user_costs_a_bind_in_bind_mode(
    slapd: Slapd, secret: Path, make: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    driver: Driver = make(**modes(slapd, secret)["bind-search-starttls"])
    directory = driver.ldap._directory
    real_bind = directory.bind
    binds: list[str] = []

    def counting_bind(dn: str, password: bytes) -> tuple[bool, str]:
        binds.append(dn)
        return real_bind(dn, password)

    monkeypatch.setattr(directory, "bind", counting_bind)
    assert driver.verdict("mallory", "x") is Verdict.USER_UNKNOWN
    assert driver.verdict(" alice", "x") is Verdict.USER_UNKNOWN  # refused before any search
    assert driver.verdict("alice", "x") is Verdict.PASSWORD_MISMATCH
    assert len(binds) == 3
    assert binds[0] == binds[1] == f"cn=saslauth-no-such-user,{BASE_DN}"
    # The dummy bind costs the server nothing, so it is padded to what real binds cost.
    driver.ldap._bind_cost = 0.3
    started = time.monotonic()
    assert driver.verdict("mallory", "x") is Verdict.USER_UNKNOWN
    assert 0.25 < time.monotonic() - started < 1.5


@pytest.mark.parametrize("mode", ["bind-search-starttls", "password"])
def test_several_entries_are_an_error(
    slapd: Slapd, secret: Path, make: Any, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    driver = make(**modes(slapd, secret)[mode])
    with caplog.at_level(logging.ERROR, "saslauth.passdb"):
        lookup = driver.verify("twin", "twinpw")
    assert lookup.verdict is Verdict.INTERNAL_FAILURE
    assert "several entries match user twin" in caplog.text
    assert "twinpw" not in caplog.text


def test_password_mode_without_service_account_sees_no_password(
    slapd: Slapd, make: Any
) -> None:
    driver = make(uris=[slapd.uri], tls="none", auth="password", base=BASE_DN)
    lookup = driver.verify("alice", "wonderland")
    assert lookup.verdict is Verdict.PASSWORD_MISMATCH
    assert lookup.log_reason == "entry has no userPassword"


def test_wrong_service_password_is_an_outage(slapd: Slapd, make: Any, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-password\n")
    driver = make(
        uris=[slapd.uri], tls="none", base=BASE_DN, bind_dn=READER_DN,
        bind_password_file=str(wrong),
    )  # fmt: skip
    with pytest.raises(BackendError, match="service bind as cn=reader"):
        driver.verify("alice", "wonderland")


def test_fail_over_to_the_second_uri(
    slapd: Slapd, secret: Path, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"ldap://127.0.0.1:{free_tcp_port()}"
    settings = modes(slapd, secret)["bind-search-starttls"]
    driver = make(**{**settings, "uris": [dead, slapd.uri]})
    with caplog.at_level(logging.WARNING, "saslauth.passdb"):
        assert driver.verdict("alice", "wonderland") is Verdict.OK
    assert f"using {slapd.uri}" in caplog.text
    alone = make(**{**settings, "uris": [dead]})
    with pytest.raises(BackendError, match="no LDAP server reachable"):
        alone.verify("alice", "wonderland")


def test_a_hung_server_times_out_and_the_next_uri_answers(slapd: Slapd, make: Any) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        hung = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        alone = make(uris=[hung], tls="none", base=BASE_DN, timeout="1s")
        started = time.monotonic()
        with pytest.raises(BackendError):
            alone.verify("alice", "wonderland")
        assert time.monotonic() - started < 4
        both = make(uris=[hung, slapd.uri], tls="none", base=BASE_DN, timeout="1s")
        assert both.verdict("alice", "wonderland") is Verdict.OK


@pytest.mark.parametrize("uri_kind", ["starttls", "ldaps"])
def test_certificates_are_checked(slapd: Slapd, make: Any, uri_kind: str) -> None:
    other_ca = make_test_ca(slapd.directory / f"other-ca-{uri_kind}")
    uri = slapd.uri if uri_kind == "starttls" else slapd.ldaps_uri
    base = {"uris": [uri], "base": BASE_DN}
    for wrong in (
        {"ca_file": str(other_ca.ca_cert)},  # a CA that did not sign the server's certificate
        {},  # the system's CAs do not know the test CA either
    ):
        with pytest.raises(BackendError, match="CERTIFICATE_VERIFY_FAILED"):
            make(**base, **wrong).verify("alice", "wonderland")
    right = make(**base, ca_file=str(slapd.ca.ca_cert))
    assert right.verdict("alice", "wonderland") is Verdict.OK
    unchecked = make(**base, ca_file=str(other_ca.ca_cert), tls_verify=False)
    assert unchecked.verdict("alice", "wonderland") is Verdict.OK


def test_missing_ca_file_is_an_outage_not_a_crash(slapd: Slapd, make: Any, tmp_path: Path) -> None:
    driver = make(uris=[slapd.uri], base=BASE_DN, ca_file=str(tmp_path / "missing.pem"))
    with pytest.raises(BackendError, match="cannot load ca_file"):
        driver.verify("alice", "wonderland")


def test_host_name_is_checked(slapd: Slapd, make: Any) -> None:
    # Same server, reached by an address its certificate does not name.
    uri = f"ldaps://{WRONG_NAME_HOST}:{slapd.ldaps_port}"
    driver = make(uris=[uri], base=BASE_DN, ca_file=str(slapd.ca.ca_cert))
    with pytest.raises(BackendError, match="IP address mismatch"):
        driver.verify("alice", "wonderland")
    by_name = make(
        uris=[f"ldaps://localhost:{slapd.ldaps_port}"], base=BASE_DN, ca_file=str(slapd.ca.ca_cert)
    )
    assert by_name.verdict("alice", "wonderland") is Verdict.OK


@pytest.mark.parametrize("mode", ["bind-search-starttls", "password"])
def test_server_stopped_then_back(slapd: Slapd, secret: Path, make: Any, mode: str) -> None:
    driver = make(**modes(slapd, secret)[mode])
    assert driver.verdict("alice", "wonderland") is Verdict.OK  # connections are open now
    slapd.stop()
    try:
        with pytest.raises(BackendError):
            driver.verify("alice", "wonderland")
        with pytest.raises(BackendError):
            driver.verify("mallory", "wonderland")
    finally:
        slapd.start()
    assert driver.verdict("alice", "wonderland") is Verdict.OK  # same driver: no restart
    assert driver.verdict("alice", "nope") is Verdict.PASSWORD_MISMATCH
