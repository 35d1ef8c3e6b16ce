"""``driver: shadow``: system accounts checked against /etc/passwd and /etc/shadow.

Runs in the verifier child, which must be root or in group ``shadow`` (Debian) to read the
file.  The hash is any crypt(3) string libcrypt knows (yescrypt ``$y$`` -- Debian 12's
default --, ``$gy$``, ``$6$``, ``$5$``, ``$2b$``, ``$1$``, DES), verified through
:mod:`saslauth.schemes` as ``{CRYPT}``.  The order of checks follows ``login``/pam_unix:

1. the name (:func:`saslauth.passdb.system.system_name`), then the account must be in
   /etc/passwd (else unknown) and pass ``min_uid``/``max_uid``/groups (else disabled);
2. a locked (``!``, ``*``), empty or unusable hash fails (disabled / mismatch);
3. the password; only a right password reaches
4. password ageing (:func:`saslauth.passdb.unixfiles.check_ageing`): an expired account is
   disabled, an expired or must-change password is ``expired``.

Whatever fails before step 3 still costs one hash check against a real hash from the file, so
unknown, refused and locked accounts answer in the time a wrong password takes.  Reasons go to
the log (``Lookup.log_reason``) only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter
from concurrent.futures import Executor
from typing import ClassVar, final

from saslauth import schemes
from saslauth.config import ShadowSettings
from saslauth.errors import SchemeError
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb.system import needs_groups, policy_refusal, system_name
from saslauth.passdb.unixfiles import (
    Ageing,
    CachedFile,
    Groups,
    PasswdEntry,
    ShadowEntry,
    check_ageing,
    parse_group,
    parse_passwd,
    parse_shadow,
)
from saslauth.verifier import VerifyRequest

log = logging.getLogger("saslauth.passdb")

_AGEING_VERDICTS = {
    Ageing.ACCOUNT_EXPIRED: Verdict.USER_DISABLED,
    Ageing.INACTIVE: Verdict.USER_DISABLED,
    Ageing.CHANGE_REQUIRED: Verdict.PASS_EXPIRED,
    Ageing.PASSWORD_EXPIRED: Verdict.PASS_EXPIRED,
}


def is_locked(stored: str) -> bool:
    """``!`` (usermod -L, passwd -l) or ``*`` (no login) in front: never matches."""
    return stored.startswith(("!", "*"))


# What libxcrypt reads: $id$ methods, BSDi "_" extended DES, traditional 13-character DES.
_CRYPT_HASH = re.compile(
    r"\$(y|gy|7|2[abxy]|6|5|1|sha1|md5|3)\$.*|_[./0-9A-Za-z]{19}|[./0-9A-Za-z]{13}"
)
_METHOD_ID = re.compile(r"[0-9a-z]{1,4}")  # what an unknown method id may look like to be named


def hash_problem(stored: str) -> str | None:
    """Why ``stored`` is no crypt(3) hash this system writes (never quoting it), or None."""
    if _CRYPT_HASH.fullmatch(stored):
        return None
    method = stored[1:].partition("$")[0] if stored.startswith("$") else ""
    if _METHOD_ID.fullmatch(method):  # crypt ids are short (1, 5, 6, y, gy, 2b, sha1, md5)
        return f"unsupported hash method ${method}$"
    return "not a crypt(3) hash"  # no part of it is shown: it could be a plaintext password


def _usable(stored: str) -> bool:
    return bool(stored) and not is_locked(stored) and stored != "x"


@final
class Shadow:
    driver: ClassVar[str] = "shadow"

    def __init__(self, settings: ShadowSettings, executor: Executor) -> None:
        self.settings = settings
        self.name = settings.label
        self._executor = executor
        self._shadow = CachedFile(settings.shadow_file, parse_shadow)
        self._passwd = CachedFile(settings.passwd_file, parse_passwd)
        self._groups = CachedFile(settings.group_file, parse_group)
        self._dummy_for: dict[str, ShadowEntry] | None = None
        self._dummy = ""

    def _dummy_hash(self, shadow: dict[str, ShadowEntry]) -> str:
        """A real hash of the file's most common kind and cost, for checks that must fail."""
        if shadow is not self._dummy_for:
            self._dummy_for = shadow
            kinds: dict[str, str] = {}
            counts: Counter[str] = Counter()
            for entry in shadow.values():
                if _usable(entry.password) and hash_problem(entry.password) is None:
                    kind = entry.password.rsplit("$", 2)[0]  # "$y$j9T", "$6$rounds=N"
                    kinds.setdefault(kind, entry.password)
                    counts[kind] += 1
            common = counts.most_common(1)
            self._dummy = (
                kinds[common[0][0]] if common else schemes.generate("SHA512-CRYPT", b"dummy")
            )
        return self._dummy

    async def _check(self, password: bytes, stored: str) -> bool:
        crypt = "{CRYPT}" + stored  # a shadow hash is always crypt(3), never "{SCHEME}..."
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: schemes.verify(password, crypt, default_scheme="CRYPT")
        )

    async def _refuse(
        self, password: bytes, shadow: dict[str, ShadowEntry], verdict: Verdict, reason: str
    ) -> Lookup:
        with contextlib.suppress(SchemeError):
            await self._check(password, self._dummy_hash(shadow))
        return Lookup(verdict, backend=self.name, log_reason=reason)

    def _account(self, name: str) -> tuple[PasswdEntry | None, Groups | None]:
        account = self._passwd.get().get(name)
        groups = self._groups.get() if account and needs_groups(self.settings) else None
        return account, groups

    async def verify_plain(self, request: VerifyRequest) -> Lookup:
        name, bad_name = system_name(request.user, self.settings)
        if name is None:
            # No hash check needed: this says nothing about any account, only about the name.
            return Lookup(Verdict.USER_UNKNOWN, backend=self.name, log_reason=bad_name)
        shadow = self._shadow.get()
        account, groups = self._account(name)
        password = request.password
        if account is None:
            return await self._refuse(password, shadow, Verdict.USER_UNKNOWN, "no such account")
        member = groups.of(name, account.gid) if groups is not None else frozenset()
        refusal = policy_refusal(account.uid, member, self.settings)
        if refusal is not None:
            return await self._refuse(password, shadow, Verdict.USER_DISABLED, refusal)
        entry = shadow.get(name)
        if entry is None and account.password != "x":  # noqa: S105 - "see shadow"
            entry = ShadowEntry(name, account.password)  # an unshadowed /etc/passwd hash
        if entry is None:
            return await self._refuse(password, shadow, Verdict.USER_UNKNOWN, "no shadow entry")
        if is_locked(entry.password):
            return await self._refuse(password, shadow, Verdict.USER_DISABLED, "account locked")
        if not entry.password:
            return await self._refuse(
                password, shadow, Verdict.PASSWORD_MISMATCH, "empty password"
            )
        problem = hash_problem(entry.password)
        if problem is not None:
            log.error("shadow: user %s: %s", name, problem)
            return await self._refuse(password, shadow, Verdict.SCHEME_NOT_AVAILABLE, problem)
        try:
            matched = await self._check(password, entry.password)
        except SchemeError as exc:
            log.error("shadow: user %s: unusable password hash: %s", name, exc)
            return Lookup(Verdict.SCHEME_NOT_AVAILABLE, backend=self.name, log_reason=str(exc))
        if not matched:
            return Lookup(Verdict.PASSWORD_MISMATCH, backend=self.name)
        ageing = check_ageing(entry, int(time.time() // 86400))
        if ageing is not Ageing.OK:
            return Lookup(_AGEING_VERDICTS[ageing], backend=self.name, log_reason=ageing.value)
        return Lookup(Verdict.OK, backend=self.name)
