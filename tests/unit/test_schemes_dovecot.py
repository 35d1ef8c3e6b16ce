"""saslauth.schemes against the real Dovecot: ``doveadm pw`` is the oracle.

* hashes ``doveadm pw -s X`` makes at run time verify here (and wrong passwords do not);
* every ``generate()`` output passes ``doveadm pw -t``;
* for malformed values, Dovecot and saslauth agree on match / mismatch / error.

Skipped, with the reason, when ``doveadm`` (Debian package dovecot-core) is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Final

import pytest

from saslauth import schemes
from saslauth.errors import InvalidHashError, UnknownSchemeError
from tests.unit.test_schemes import DOVECOT_SCHEMES, VECTORS

pytestmark = [
    pytest.mark.dovecot,
    pytest.mark.skipif(
        shutil.which("doveadm") is None,
        reason="doveadm not found (apt-get install dovecot-core): Dovecot oracle tests skipped",
    ),
]

USER: Final = "user@example.org"
PASSWORDS: Final = ["secret", "pässwörd€", "x" * 100, "sp ace\"'\\$`"]


def _passwords(scheme: str) -> list[str]:
    # argon2 at Dovecot's defaults costs ~0.2 s per hash on each side: one password is enough
    return ["pässwörd€"] if scheme.startswith("ARGON2") else PASSWORDS


def doveadm_generate(scheme: str, password: str, *, rounds: int | None = None) -> str:
    args = ["doveadm", "pw", "-s", scheme, "-p", password, "-u", USER]
    if rounds is not None:
        args += ["-r", str(rounds)]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip()


def doveadm_verdict(stored: str, password: str) -> str:
    """ "match", "mismatch", "unknown" or "invalid", as ``doveadm pw -t`` reports it."""
    done = subprocess.run(
        ["doveadm", "pw", "-t", stored, "-p", password, "-u", USER],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0 and "(verified)" in done.stdout:
        return "match"
    if "Password mismatch" in done.stderr:
        return "mismatch"
    if "Unknown scheme" in done.stderr:
        return "unknown"
    return "invalid"


def our_verdict(stored: str, password: str) -> str:
    try:
        return "match" if schemes.verify(password.encode(), stored, user=USER) else "mismatch"
    except UnknownSchemeError:
        return "unknown"
    except InvalidHashError:
        return "invalid"


@pytest.mark.parametrize("scheme", DOVECOT_SCHEMES)
def test_doveadm_hashes_verify_here(scheme: str) -> None:
    for password in _passwords(scheme):
        stored = doveadm_generate(scheme, password)
        assert stored.startswith("{" + scheme + "}")
        if scheme == "PLAIN-TRUNC":
            # doveadm writes "{PLAIN-TRUNC}<password>", which Dovecot itself then refuses
            assert doveadm_verdict(stored, password) == "invalid"
            assert our_verdict(stored, password) == "invalid"
            continue
        assert schemes.verify(password.encode(), stored, user=USER), stored
        assert not schemes.verify(b"!" + password.encode(), stored, user=USER)
        assert not schemes.verify(b"", stored, user=USER)


@pytest.mark.parametrize("scheme", DOVECOT_SCHEMES)
def test_generated_hashes_pass_doveadm(scheme: str) -> None:
    for password in _passwords(scheme):
        stored = schemes.generate(scheme, password.encode(), user=USER)
        assert doveadm_verdict(stored, password) == "match", stored
        assert doveadm_verdict(stored, "!" + password) == "mismatch"


@pytest.mark.parametrize(
    ("scheme", "rounds"),
    [
        ("sha512-crypt", None),
        ("SHA512-CRYPT", 10000),
        ("SHA512-CRYPT", 5000),
        ("SHA256-CRYPT", 7),
        ("BLF-CRYPT", 4),
        ("BLF-CRYPT", 6),
        ("CRYPT", 4),
        ("PBKDF2", 1),
        ("PBKDF2", 7000),
        ("SCRAM-SHA-1", 5000),
        ("SCRAM-SHA-256", 4097),
        ("ARGON2I", 3),
        ("ARGON2ID", 1),
        ("SHA256.HEX", None),
        ("Sha512.b64", None),
        ("SSHA.hex", None),
        ("SSHA512.HEX", None),
        ("SMD5.hex", None),
        ("PLAIN.b64", None),
        ("PLAIN.HEX", None),
        ("LDAP-MD5.hex", None),
        ("PLAIN-MD5.b64", None),
        ("PLAIN-MD4.BASE64", None),
        ("CRAM-MD5.b64", None),
        ("DIGEST-MD5.b64", None),
        ("SHA512-CRYPT.b64", None),
        ("PBKDF2.hex", None),
    ],
)
def test_generate_variants_pass_doveadm(scheme: str, rounds: int | None) -> None:
    password = "pässwörd€"
    stored = schemes.generate(scheme, password.encode(), user=USER, rounds=rounds)
    assert stored.startswith("{" + scheme.upper() + "}")
    assert doveadm_verdict(stored, password) == "match", stored
    assert schemes.verify(password.encode(), stored, user=USER)
    if rounds is None or scheme.startswith("SCRAM"):
        return  # doveadm ignores -r for SCRAM in 2.3.19
    theirs = doveadm_generate(scheme, password, rounds=rounds)
    assert schemes.verify(password.encode(), theirs, user=USER)
    assert _parameters(stored) == _parameters(theirs)


def _parameters(stored: str) -> str:
    """The cost/rounds part of a crypt-style string (without salt and hash)."""
    data = stored.partition("}")[2]
    if data.startswith("$2"):
        return data.rsplit("$", 1)[0]
    if data.startswith(("$5$", "$6$", "$argon2")):
        return data.rsplit("$", 2)[0]
    return ""


def test_reference_vectors_still_pass_doveadm() -> None:
    """The vectors embedded in test_schemes.py are what Dovecot accepts."""
    for user, stored in VECTORS:
        if stored.startswith(("{ARGON2", "{DIGEST-MD5}")) or user != "-":
            continue
        password = stored[7:] if stored.startswith("{PLAIN}") else "secret"
        assert doveadm_verdict(stored, password) == "match", stored


def test_bcrypt_72_bytes_like_dovecot() -> None:
    stored = doveadm_generate("BLF-CRYPT", "a" * 100)
    assert schemes.verify(b"a" * 72, stored)
    assert schemes.verify(b"a" * 100, stored)
    assert not schemes.verify(b"a" * 71, stored)
    ours = schemes.generate("BLF-CRYPT", b"b" * 100)
    assert doveadm_verdict(ours, "b" * 72) == "match"
    assert doveadm_verdict(ours, "b" * 71) == "mismatch"


def test_bcrypt_2x_and_2a_with_8bit_passwords_like_dovecot() -> None:
    """$2x$ (the sign-extension bug) and $2a$'s safety measure, made by libcrypt."""
    from saslauth.schemes import libcrypt

    for prefix in (b"$2x$05$", b"$2a$05$", b"$2b$05$"):
        setting = prefix + b"/mIEhn5MEZIayz.ldOIimO"
        for password in ("pässwörd€", "\xff\xa3 ab\x80"):
            crypted = libcrypt.crypt(password.encode(), setting)
            assert crypted is not None
            stored = "{BLF-CRYPT}" + crypted.decode()
            assert doveadm_verdict(stored, password) == "match"
            assert our_verdict(stored, password) == "match"


# Values Dovecot reads in a particular way; saslauth must give the same verdict for "secret".
DIFFERENTIAL: Final = [
    "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ",
    "{SHA} 5en6G6Mez\tRroT3XKqkdPOmY/BfQ=",
    "{SHA}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4",
    "{SHA.hex}e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4 ",
    "{SHA256}2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25",
    "{sha.BASE64}5en6G6MezRroT3XKqkdPOmY/BfQ=",
    "{SHA.x}5en6G6MezRroT3XKqkdPOmY/BfQ=",
    "{}secret",
    "{NOSUCH}secret",
    "{PLAIN.b64}c2VjcmV0===",
    "{PLAIN.b64}cw= =",
    "{PLAIN.b64}c2Vj=cmV0",
    "{PLAIN.hex}736563726574",
    "{PLAIN-TRUNC}3-secret",
    "{PLAIN-TRUNC}3-sec",
    "{PLAIN-TRUNC}x-secret",
    "{MD5}Pqt/qCo2Jx0lM",
    "{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
    "{MD5-CRYPT}Pqt/qCo2Jx0lM",
    "{MD5-CRYPT}$1$am9lU0i3$55ziQO1TQU4tm482xO2Rc1$junk",
    "{SSHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
    "{SMD5.hex}293dda71c4e30921280d01e77e50cf7f649422e9",
    "{CRYPT}",
    "{CRYPT}$2y$",
    "{CRYPT}$2y$05$abc",
    "{CRYPT}*0",
    "{CRYPT}_J9..abcd/H6HLCcf7nw",
    "{SHA512-CRYPT}Pqt/qCo2Jx0lM",
    "{BLF-CRYPT}$2y$03$/mIEhn5MEZIayz.ldOIimO61POvIx7UUlMcchnJGhQNAHg7Cti23S",
    "{BLF-CRYPT}$2q$05$/mIEhn5MEZIayz.ldOIimO61POvIx7UUlMcchnJGhQNAHg7Cti23S",
    "{BLF-CRYPT}$2y$05$/mIEhn5MEZIayz.ldOIimO61POvIx7UUlMcchnJGhQNAHg7Cti23Sxx",
    "{BLF-CRYPT}$6$FcIr1Zaj0aoQOifJ$3i2XZl0gn8NcFHU9q/2NgO3dKi2Pd",
    "{PBKDF2}$1$abc$+7$ac1dd7f6c1f3e153df35670cf932a747dc86f7ca",
    "{PBKDF2}$1$abc$07$ac1dd7f6c1f3e153df35670cf932a747dc86f7ca",
    "{PBKDF2}$2$abc$7$ac1dd7f6c1f3e153df35670cf932a747dc86f7ca",
    "{PBKDF2}$1$abc$7$ac1dd7f6c1f3e153df35670cf932a747dc86f7ca$",
    "{SCRAM-SHA-1}1000,MDEy,ZnqDkbqfwR2KKV/RA37Ut+cv+dg=,XH6+sRFySz39hhtQA1fE+aOQl/U=",
    "{SCRAM-SHA-1}04096,MDEyMzQ1Njc4OWFiY2RlZg,ZnqDkbqfwR2KKV/RA37Ut+cv+dg=,"
    "XH6+sRFySz39hhtQA1fE+aOQl/U=",
    "{SCRAM-SHA-1}4096,!!MDEyMzQ1Njc4OWFiY2RlZg==,ZnqDkbqfwR2KKV/RA37Ut+cv+dg=,"
    "XH6+sRFySz39hhtQA1fE+aOQl/U=",
    "{SCRAM-SHA-1}4096,MDEy,ZnqDkbqfwR2KKV/RA37Ut+cv+dg,XH6+sRFySz39hhtQA1fE+aOQl/U=",
    "{OTP}md5 5 seed 0011223344556677",
    "{OTP}MD5 5 seed 0011223344556677",
    "{OTP}md5\t5 seed 0011223344556677",
    "{OTP}md5 5 0123456789abcdefg 0011223344556677",
    "{OTP}md5 5 seed 001122334455667x",
    "{ARGON2ID}$argon2d$v=19$m=32768,t=4,p=1$ZezrEphCp/whqdavLr71Kg$bAj2CWDDl12Ivaa7NlG9dBCucXK"
    "+vr9+EqB/ea5ZRJg",
    "{ARGON2ID}$argon2i$v=19$m=32768,t=4,p=1$ZezrEphCp/whqdavLr71Kg$bAj2CWDDl12Ivaa7NlG9dBCucXK"
    "+vr9+EqB/ea5ZRJg",
]

# Deliberate differences: Dovecot accepts ANY password for these degenerate entries.
DEVIATIONS: Final = {
    "{PBKDF2}$1$abc$0$0000000000000000000000000000000000000000": ("match", "mismatch"),
    "{PLAIN-TRUNC}-": ("match", "mismatch"),
}


@pytest.mark.parametrize("stored", DIFFERENTIAL)
def test_same_verdict_as_dovecot(stored: str) -> None:
    assert our_verdict(stored, "secret") == doveadm_verdict(stored, "secret")


@pytest.mark.parametrize(("stored", "verdicts"), DEVIATIONS.items())
def test_documented_deviations(stored: str, verdicts: tuple[str, str]) -> None:
    dovecot, ours = verdicts
    assert doveadm_verdict(stored, "anything") == dovecot
    assert our_verdict(stored, "anything") == ours
