"""A minimal ctypes binding of Linux-PAM (libpam.so.0): authenticate, then account management.

Why not python-pam or pamela (libraries.md section 3): python-pam cannot set ``PAM_RHOST``, and
both hold the password as a ``str``.  Here it stays the ``bytes`` object the verifier received;
the conversation callback copies it straight into a ``malloc``'d C buffer that PAM owns (and
pam_unix wipes and frees), so no other Python copy of it exists.

One :func:`authenticate` call is one PAM transaction (``pam_start`` ... ``pam_end``) on the
calling thread: it blocks (modules may do network or disk I/O), so callers run it on a thread
pool.  The failure delay (pam_unix asks for about 2 s) is taken over through the
``PAM_FAIL_DELAY`` item and returned, so the thread is free at once.  ctypes releases the
GIL during the calls.  A handle is never shared.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("saslauth.passdb")

# Return codes (security/_pam_types.h, Linux-PAM numbering).
SUCCESS, OPEN_ERR, SYMBOL_ERR, SERVICE_ERR, SYSTEM_ERR, BUF_ERR = 0, 1, 2, 3, 4, 5
PERM_DENIED, AUTH_ERR, CRED_INSUFFICIENT, AUTHINFO_UNAVAIL, USER_UNKNOWN = 6, 7, 8, 9, 10
MAXTRIES, NEW_AUTHTOK_REQD, ACCT_EXPIRED, CRED_UNAVAIL, CRED_EXPIRED = 11, 12, 13, 15, 16
NO_MODULE_DATA, CONV_ERR, AUTHTOK_ERR, AUTHTOK_LOCK_BUSY, TRY_AGAIN = 18, 19, 20, 22, 24
ABORT, AUTHTOK_EXPIRED, MODULE_UNKNOWN, BAD_ITEM, CONV_AGAIN, INCOMPLETE = 26, 27, 28, 29, 30, 31

PAM_RHOST, PAM_FAIL_DELAY = 4, 10
PAM_SILENT = 0x8000
PAM_DISALLOW_NULL_AUTHTOK = 0x0001
PROMPT_ECHO_OFF, PROMPT_ECHO_ON, ERROR_MSG, TEXT_INFO = 1, 2, 3, 4


class PamMessage(ctypes.Structure):
    _fields_ = [("msg_style", ctypes.c_int), ("msg", ctypes.c_char_p)]


class PamResponse(ctypes.Structure):
    _fields_ = [("resp", ctypes.c_void_p), ("resp_retcode", ctypes.c_int)]


CONV_FUNC = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_int,
    ctypes.POINTER(ctypes.POINTER(PamMessage)),
    ctypes.POINTER(ctypes.POINTER(PamResponse)),
    ctypes.c_void_p,
)


# void (*delay_fn)(int retval, unsigned usec_delay, void *appdata_ptr), the PAM_FAIL_DELAY item
DELAY_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)


class PamConv(ctypes.Structure):
    _fields_ = [("conv", CONV_FUNC), ("appdata_ptr", ctypes.c_void_p)]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What PAM said: ``stage`` is ``start``, ``authenticate`` or ``acct_mgmt``."""

    code: int
    stage: str
    message: str  # pam_strerror, plus what the stack said in the conversation (log only)
    delay: float = 0.0  # the failure delay the stack asked for (pam_unix: about 2 s)

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS


class _Lib:
    def __init__(self, cdll: ctypes.CDLL, libc: ctypes.CDLL) -> None:
        handle_p = ctypes.POINTER(ctypes.c_void_p)
        self.start = cdll.pam_start
        self.start.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(PamConv), handle_p]
        self.start_confdir = getattr(cdll, "pam_start_confdir", None)
        if self.start_confdir is not None:
            self.start_confdir.argtypes = [
                ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(PamConv), ctypes.c_char_p,
                handle_p,
            ]
        self.set_item = cdll.pam_set_item
        self.set_item.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self.authenticate = cdll.pam_authenticate
        self.authenticate.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.acct_mgmt = cdll.pam_acct_mgmt
        self.acct_mgmt.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.end = cdll.pam_end
        self.end.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.strerror = cdll.pam_strerror
        self.strerror.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.strerror.restype = ctypes.c_char_p
        self.calloc = libc.calloc
        self.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
        self.calloc.restype = ctypes.c_void_p
        self.free = libc.free
        self.free.argtypes = [ctypes.c_void_p]


_lib: _Lib | None = None
_load_error = ""


def library() -> _Lib:
    """The loaded library; call :func:`load` first."""
    assert _lib is not None, load()
    return _lib


def load() -> str | None:
    """Load libpam once; None when usable, else why not."""
    global _lib, _load_error
    if _lib is None and not _load_error:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _lib = _Lib(ctypes.CDLL("libpam.so.0"), libc)
        except (OSError, AttributeError) as exc:
            _load_error = f"libpam is not usable ({exc}); install libpam0g"
    return None if _lib is not None else _load_error


def _c_copy(lib: _Lib, data: bytes) -> int | None:
    """A NUL-terminated malloc'd copy of ``data`` (PAM frees it), or None when out of memory."""
    buf: int | None = lib.calloc(len(data) + 1, 1)
    if buf:
        ctypes.memmove(buf, data, len(data))
    return buf


ConverseFn = Callable[[int, Any, Any, Any], int]


def conversation(lib: _Lib, password: bytes, user: bytes, said: list[str]) -> ConverseFn:
    """The conversation function: echo-off prompts get ``password``, echo-on ones ``user``.

    Text and error messages are appended to ``said`` (for the log); any other prompt style,
    or an exception, frees what was allocated and answers PAM_CONV_ERR.  Replies are
    ``calloc``'d, as PAM frees them.
    """

    def converse(count: int, messages: Any, responses: Any, _data: Any) -> int:
        try:
            replies = lib.calloc(count, ctypes.sizeof(PamResponse))
            if not replies:
                return BUF_ERR
            array = ctypes.cast(replies, ctypes.POINTER(PamResponse))
            for i in range(count):
                message = messages[i].contents
                if message.msg_style in (PROMPT_ECHO_OFF, PROMPT_ECHO_ON):
                    answer = password if message.msg_style == PROMPT_ECHO_OFF else user
                    copy = _c_copy(lib, answer)
                    if copy is None:
                        _free_replies(lib, array, i)
                        return BUF_ERR
                    array[i].resp = copy
                elif message.msg_style in (ERROR_MSG, TEXT_INFO):
                    said.append((message.msg or b"").decode("utf-8", "replace"))
                else:
                    _free_replies(lib, array, i)
                    said.append(f"unsupported PAM prompt style {message.msg_style}")
                    return CONV_ERR
            responses[0] = array
            return SUCCESS
        except Exception:  # an exception must never cross into C
            log.exception("PAM conversation failed")
            return CONV_ERR

    return converse


def authenticate(
    service: str,
    user: str,
    password: bytes,
    *,
    rhost: str | None = None,
    confdir: str | None = None,
) -> Outcome:
    """pam_authenticate then pam_acct_mgmt for ``user``; never raises for PAM's own errors.

    The conversation answers echo-off prompts with ``password`` and echo-on prompts with the
    user name (what Dovecot does); text and error messages are kept for the log.  Any other
    prompt, or a failure inside the callback, answers PAM_CONV_ERR.

    The failure delay modules ask for (``pam_fail_delay``) is not slept here: it is returned
    in :attr:`Outcome.delay` for the caller to wait without holding a thread.
    """
    problem = load()
    if problem is not None:
        return Outcome(SYSTEM_ERR, "start", problem)
    lib = library()
    said: list[str] = []
    user_bytes = user.encode()
    converse = conversation(lib, password, user_bytes, said)
    callback = CONV_FUNC(converse)  # kept alive in this frame until pam_end
    delays: list[float] = []

    def on_delay(status: int, usec: int, _data: Any) -> None:
        if status != SUCCESS:  # libpam calls this instead of sleeping, after success too
            delays.append(usec / 1e6)

    delay_callback = DELAY_FUNC(on_delay)
    conv = PamConv(callback, None)
    handle = ctypes.c_void_p()
    service_b = service.encode()
    if confdir is not None and lib.start_confdir is not None:
        code = lib.start_confdir(service_b, user_bytes, ctypes.byref(conv), confdir.encode(),
                                 ctypes.byref(handle))
    else:
        code = lib.start(service_b, user_bytes, ctypes.byref(conv), ctypes.byref(handle))
    if code != SUCCESS or not handle.value:
        return Outcome(code or SYSTEM_ERR, "start", "pam_start failed")
    stage = "authenticate"
    try:
        lib.set_item(handle, PAM_FAIL_DELAY, ctypes.cast(delay_callback, ctypes.c_void_p))
        if rhost:
            rhost_c = ctypes.create_string_buffer(rhost.encode())
            lib.set_item(handle, PAM_RHOST, ctypes.cast(rhost_c, ctypes.c_void_p))
        code = lib.authenticate(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK)
        if code == SUCCESS:
            stage = "acct_mgmt"
            code = lib.acct_mgmt(handle, PAM_SILENT | PAM_DISALLOW_NULL_AUTHTOK)
        text = (lib.strerror(handle, code) or b"").decode("utf-8", "replace")
    finally:
        lib.end(handle, code)
    message = "; ".join([text, *said]) if said else text
    return Outcome(code, stage, message, max(delays, default=0.0))


def _free_replies(lib: _Lib, array: Any, filled: int) -> None:
    for j in range(filled):
        if array[j].resp:
            lib.free(array[j].resp)
    lib.free(ctypes.cast(array, ctypes.c_void_p))
