"""``driver: pam``: ask the PAM stack ``/etc/pam.d/<service>`` (default ``smtp``, as saslauthd).

``pam_authenticate`` then ``pam_acct_mgmt`` (no setcred, no session: what Dovecot does), with
``PAM_RHOST`` set to the client's IP when known (for pam_faillock, fail2ban, pam_access).
PAM calls block, so they run on this driver's own bounded thread pool (``threads``, default
8) inside the verifier, never on the event loop.  The failure delay the stack asks for (pam_unix:
about 2 s) is not slept on that thread: libpam hands it to us (``PAM_FAIL_DELAY``) and the
failure is answered that much later by the event loop, so a failing login holds a thread only
while PAM works, and never delays other logins.  A call that takes longer than ``timeout`` is a
temporary failure (its thread finishes in the background).

Names and policy are those of :mod:`saslauth.passdb.system`; the uid and groups come from NSS
(``getpwnam``/``getgrouplist``), like the PAM modules see them.  A name refused by the policy
(or unknown to NSS while a policy is set) still runs one PAM transaction, for a user name that
cannot exist, so it takes the time an unknown user takes, and the real account's password is
never tried.

Verdicts: PAM_USER_UNKNOWN is an unknown user; PAM_ACCT_EXPIRED, PAM_AUTHTOK_EXPIRED and any other
refusal from ``pam_acct_mgmt`` are a disabled account; PAM_NEW_AUTHTOK_REQD is an expired
password; "cannot answer" codes (PAM_SYSTEM_ERR, PAM_BUF_ERR, PAM_AUTHINFO_UNAVAIL, PAM_ABORT,
PAM_SERVICE_ERR, PAM_TRY_AGAIN, ...) are temporary failures; everything else, a conversation
error included, is a wrong password.  PAM's message goes to the log only.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AsyncExitStack
from typing import ClassVar, final

from saslauth.config import PamSettings
from saslauth.errors import BackendTimeout
from saslauth.passdb import Lookup, Verdict
from saslauth.passdb import libpam as P
from saslauth.passdb.system import needs_groups, policy_refusal, system_name
from saslauth.verifier import VerifyRequest

log = logging.getLogger("saslauth.passdb")

DUMMY_USER = "saslauth-no-such-user:"  # ":" cannot be in a real account name

TEMPORARY = frozenset({
    P.OPEN_ERR, P.SYMBOL_ERR, P.SERVICE_ERR, P.SYSTEM_ERR, P.BUF_ERR, P.AUTHINFO_UNAVAIL,
    P.CRED_UNAVAIL, P.NO_MODULE_DATA, P.AUTHTOK_LOCK_BUSY, P.TRY_AGAIN, P.ABORT,
    P.MODULE_UNKNOWN, P.BAD_ITEM, P.CONV_AGAIN, P.INCOMPLETE,
})
_VERDICTS = {
    P.SUCCESS: Verdict.OK,
    P.USER_UNKNOWN: Verdict.USER_UNKNOWN,
    P.ACCT_EXPIRED: Verdict.USER_DISABLED,
    P.AUTHTOK_EXPIRED: Verdict.USER_DISABLED,
    P.NEW_AUTHTOK_REQD: Verdict.PASS_EXPIRED,
    P.CRED_EXPIRED: Verdict.PASS_EXPIRED,
}


def verdict_of(outcome: P.Outcome) -> Verdict:
    if outcome.code in TEMPORARY:
        return Verdict.INTERNAL_FAILURE
    # After a right password, any other "no" from the account stack means "not this account".
    otherwise = Verdict.USER_DISABLED if outcome.stage == "acct_mgmt" else Verdict.PASSWORD_MISMATCH
    return _VERDICTS.get(outcome.code, otherwise)


def nss_account(name: str) -> tuple[int, frozenset[str]] | None:
    """(uid, group names) from NSS, or None when NSS does not know ``name``."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    names: set[str] = set()
    for gid in os.getgrouplist(name, entry.pw_gid):
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return entry.pw_uid, frozenset(names)


@final
class Pam:
    driver: ClassVar[str] = "pam"

    def __init__(
        self, settings: PamSettings, executor: Executor, *, confdir: str | None = None
    ) -> None:
        # ``confdir`` (pam_start_confdir) lets tests use a PAM stack outside /etc/pam.d.
        self.settings = settings
        self.name = settings.label
        self._confdir = confdir
        self._pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="pam")

    async def start(self, stack: AsyncExitStack) -> None:
        problem = P.load()
        if problem is not None:
            log.error("passdb %s: %s", self.name, problem)
        stack.callback(self._pool.shutdown, wait=False, cancel_futures=True)

    def _policy(self, name: str) -> str | None:
        s = self.settings
        if s.min_uid is None and s.max_uid is None and not needs_groups(s):
            return None
        found = nss_account(name)
        if found is None:
            return "not known to NSS (min_uid/max_uid/groups need it)"
        uid, groups = found
        return policy_refusal(uid, groups, s)

    def _transaction(
        self, name: str, password: bytes, rip: str | None
    ) -> tuple[P.Outcome, str | None]:
        # A C string ends at NUL: "right\0junk" must not pass as "right".
        refusal = "password contains NUL" if b"\0" in password else self._policy(name)
        user = DUMMY_USER if refusal is not None else name
        outcome = P.authenticate(
            self.settings.service, user, password, rhost=rip, confdir=self._confdir
        )
        return outcome, refusal

    async def verify_plain(self, request: VerifyRequest) -> Lookup:
        name, bad_name = system_name(request.user, self.settings)
        if name is None:
            return Lookup(Verdict.USER_UNKNOWN, backend=self.name, log_reason=bad_name)
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(
            self._pool, self._transaction, name, request.password, request.rip
        )
        try:
            outcome, refusal = await asyncio.wait_for(job, self.settings.timeout or None)
        except TimeoutError:
            raise BackendTimeout(
                f"PAM service {self.settings.service} did not answer in "
                f"{self.settings.timeout:g}s"
            ) from None
        if outcome.delay and not outcome.ok:
            await asyncio.sleep(outcome.delay)  # PAM's failure delay, holding no thread
        if refusal is not None:
            verdict = verdict_of(outcome)
            if verdict is not Verdict.INTERNAL_FAILURE:
                nul = refusal.startswith("password")
                verdict = Verdict.PASSWORD_MISMATCH if nul else Verdict.USER_DISABLED
            return Lookup(verdict, backend=self.name, log_reason=refusal)
        verdict = verdict_of(outcome)
        reason = None if verdict is Verdict.OK else f"{outcome.stage}: {outcome.message}"
        if verdict is Verdict.INTERNAL_FAILURE:
            log.error("passdb %s: user %s: %s", self.name, name, reason)
        return Lookup(verdict, backend=self.name, log_reason=reason)
