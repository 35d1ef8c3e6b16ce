"""Sans-I/O server side of the Dovecot auth-client protocol (h11 style: bytes in, events out).

Rules, all from Dovecot 2.3 (``dovecot-auth-protocol.md`` sections 1-3):

1. Every violation — bad handshake, unknown command, malformed AUTH/CONT/CANCEL, unsupported
   mechanism, missing ``service``, duplicate active id, a field after ``resp``, an empty line,
   16384 bytes without LF — raises :class:`RemoteProtocolError`: the caller closes the
   connection without a reply, exactly as Dovecot does.  There are no error lines.
2. Request ids are tracked here and only here.  An id is *active* from AUTH until its OK or FAIL
   is sent, it is cancelled, or it is rejected.  Each active id is either BUSY (the server is
   working on it) or WAITING (a server CONT was sent and the client's answer is due).  Unlike
   Dovecot, a delayed FAIL keeps its id active until it is sent, so an id is never answered
   twice (Dovecot's stale-FAIL quirk, T26).
3. Problems that Dovecot answers with an immediate FAIL (bad base64, CONT for an unknown id or
   when none is expected) come out of :meth:`ServerConnection.next_event` as :class:`Rejected`.
"""

from __future__ import annotations

import enum
from binascii import Error as BinasciiError
from binascii import a2b_base64
from collections.abc import Container, Iterable

from saslauth import authfields, replies, wire
from saslauth.errors import LocalProtocolError, RemoteProtocolError
from saslauth.events import (
    AuthRequest,
    Cancel,
    Challenge,
    ClientEvent,
    Continue,
    Fields,
    Ok,
    Rejected,
    ServerEvent,
)
from saslauth.fieldvalues import ADDRESSES, MAX_ID, address, port, uint32


class Handshake(enum.Enum):
    EXPECT_VERSION = enum.auto()
    EXPECT_CPID = enum.auto()
    READY = enum.auto()


class RequestState(enum.Enum):
    BUSY = enum.auto()  # the server's turn
    WAITING = enum.auto()  # a CONT was sent; the client's turn


class ServerConnection:
    """Protocol state of one client connection.

    Args:
        mechanisms: the configured mechanism names (upper case) with their MECH flag words.
    """

    def __init__(self, mechanisms: Iterable[tuple[str, Iterable[str]]]) -> None:
        self._mechs = {name.upper(): tuple(flags) for name, flags in mechanisms}
        self._mech_names = {name.encode(): name for name in self._mechs}  # as clients send them
        self._buffer: bytes | bytearray = b""  # unparsed input from _pos on
        self._pos = 0
        self.handshake = Handshake.EXPECT_VERSION
        self.client_minor = 0
        self.requests: dict[int, RequestState] = {}

    def greeting(self, spid: int, cuid: int, cookie: str) -> bytes:
        """The whole 2.3 handshake, sent at once on accept."""
        return replies.greeting(self._mechs, spid, cuid, cookie)

    # ---- input --------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if self._pos:  # drop what was parsed before appending
            self._buffer = self._buffer[self._pos :]
            self._pos = 0
        if not self._buffer:
            self._buffer = data  # the usual case: whole lines in one read, kept without a copy
            return
        if type(self._buffer) is not bytearray:  # a line in pieces: grow in place, not by copies
            self._buffer = bytearray(self._buffer)
        self._buffer += data

    def auth_line(self, data: bytes) -> ClientEvent | None:
        """``receive_data(data)`` then ``next_event()`` when ``data`` is one whole AUTH line
        (no CR or NUL, within the length limit) and nothing is buffered: the usual read, parsed
        without the buffer's bookkeeping.  None, with nothing consumed, for anything else."""
        line = self._whole_auth_line(data)
        return None if line is None else self._auth(line)

    def _whole_auth_line(self, data: bytes) -> bytes | None:
        """``data`` without its LF when it is one whole AUTH line (no CR or NUL, within the
        length limit) and nothing is buffered; None otherwise."""
        if self._buffer or self.handshake is not Handshake.READY or data[:5] != b"AUTH\t":
            return None
        end = len(data) - 1
        if data.find(b"\n") != end or end >= wire.MAX_LINE or 13 in data or 0 in data:
            return None
        return data[:end]

    def quick_auth(self, data: bytes, mechanisms: Container[str]) -> authfields.QuickAuth | None:
        """:meth:`auth_line` for the commonest request, without an AuthRequest: one whole AUTH
        line with nothing escaped, for one of ``mechanisms`` (spelt as configured), with an
        initial response (``resp=`` neither empty nor ``=``) that is valid base64.  The id is
        then BUSY, as after ``auth_line``.  None, with nothing consumed, for anything else:
        ``auth_line`` or ``next_event`` then give their usual answer.

        The fields are those ``_auth`` reads (``service``, ``lip``, ``rip``, ``secured``), the
        same rules (:mod:`saslauth.authfields`); the service comes as sent, a field that needs
        no escaping.
        """
        if self._buffer or self.handshake is not Handshake.READY:
            return None
        postfix = authfields.POSTFIX_AUTH.fullmatch(data)  # Postfix's read: the usual one
        if postfix is not None and len(data) <= wire.MAX_LINE:
            number, name, service, lip, rip, flag, resp = postfix.groups()
            secured = flag is not None
            request_id: int | None = int(number)  # (at most 10 digits: the match's)
        else:
            line = self._whole_auth_line(data)
            if line is None or 1 in line:  # (an escape byte: the general parse unescapes)
                return None
            found = authfields.usual_fields(line)
            if found is None:
                return None
            number, name, service, some_lip, some_rip, secured, resp = found
            lip, rip = some_lip or b"", some_rip or b""  # (address: None and b"" alike)
            request_id = uint32(number)
        mechanism = self._mech_names.get(name)
        if (
            mechanism is None
            or mechanism not in mechanisms
            or request_id is None
            or not 0 < request_id <= MAX_ID
            or request_id in self.requests
        ):
            return None
        if 32 in resp:  # (the match's resp has no whitespace; other lines may: b64decode's)
            initial = wire.b64decode(resp)
            if initial is None:
                return None
        else:
            try:
                initial = a2b_base64(resp, strict_mode=True)  # (wire.b64decode's, inline)
            except BinasciiError:
                return None
        self.requests[request_id] = RequestState.BUSY
        known = ADDRESSES.get  # address()'s memory read first: a server sees the same few
        lip_text, rip_text = known(lip, ""), known(rip, "")
        if lip_text == "":
            lip_text = address(lip)
        if rip_text == "":
            rip_text = address(rip)
        return request_id, mechanism, service, initial, lip_text, rip_text, secured

    def next_event(self) -> ClientEvent | None:
        """Parse buffered input until one event results; None when more data is needed."""
        while True:
            buffer, start = self._buffer, self._pos
            end = buffer.find(b"\n", start, start + wire.MAX_LINE)
            if end < 0:
                if len(buffer) - start >= wire.MAX_LINE:
                    raise RemoteProtocolError(f"client sent more than {wire.MAX_LINE} bytes")
                return None
            line = bytes(buffer[start:end])  # (no copy of a bytes slice: it is one already)
            if end + 1 == len(buffer):
                self._buffer, self._pos = b"", 0
            else:
                self._pos = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if 0 in line:  # the line is handled as a C string: a NUL truncates it
                line = line[: line.find(b"\x00")]
            event = self._handle_line(line)
            if event is not None:
                return event

    def _handle_line(self, line: bytes) -> ClientEvent | None:
        if self.handshake is Handshake.READY:
            command, _, rest = line.partition(b"\t")
            if command == b"AUTH":
                return self._auth(line)
            if command == b"CONT":
                return self._cont(rest)
            if command == b"CANCEL":
                return self._cancel(rest)
            raise RemoteProtocolError(f"unknown command: {command[:32]!r}")
        fields = line.split(b"\t")
        if self.handshake is Handshake.EXPECT_VERSION:
            if len(fields) != 3 or fields[0] != b"VERSION":
                raise RemoteProtocolError("invalid VERSION line")
            major, minor = uint32(fields[1]), uint32(fields[2])
            if major is None or minor is None:
                raise RemoteProtocolError("invalid VERSION line")
            if major != replies.SERVER_VERSION[0]:
                raise RemoteProtocolError(f"client protocol version {major} is not compatible")
            self.client_minor = minor
            self.handshake = Handshake.EXPECT_CPID
            return None
        if len(fields) != 2 or fields[0] != b"CPID" or uint32(fields[1], nonzero=True) is None:
            raise RemoteProtocolError("invalid CPID line")
        self.handshake = Handshake.READY
        return None

    def _auth(self, line: bytes) -> ClientEvent:
        request_id, mech_name, params, flags, resp = authfields.auth_fields(line)
        mechanism = self._mech_names.get(mech_name)
        if mechanism is None:
            mechanism = mech_name.decode("ascii", "replace").upper()
            if mechanism not in self._mechs:
                raise RemoteProtocolError(f"unsupported mechanism {mechanism[:32]!r}")
        service = params.get(b"service")
        if service is None:
            raise RemoteProtocolError("AUTH without service")
        if request_id in self.requests:
            raise RemoteProtocolError(f"duplicate request id {request_id}")
        initial: bytes | None = None
        if resp is not None and (resp or self.client_minor >= 2):
            # Clients with minor < 2 (Postfix, Exim) send an empty resp= to mean "none"; a lone
            # "=" is the SMTP/IMAP convention for an empty initial response (RFC 4954).
            initial = b"" if resp == b"=" else wire.b64decode(resp)
            if initial is None:
                return Rejected(request_id, replies.REASON_BAD_INITIAL, "invalid_base64")
        self.requests[request_id] = RequestState.BUSY
        lip, rip = params.get(b"lip"), params.get(b"rip")
        return AuthRequest(
            request_id,
            mechanism,
            wire.decode_text(service),
            initial,
            address(lip),
            address(rip),
            port(params.get(b"lport")),
            port(params.get(b"rport")),
            b"secured" in flags or b"secured" in params,
            b"valid-client-cert" in flags,
            b"no-penalty" in flags,
            b"final-resp-ok" in flags,
            params,
        )

    def _cont(self, rest: bytes) -> ClientEvent:
        # Dovecot 2.3 takes everything after the second TAB verbatim (no unescaping).
        raw_id, tab, data = rest.partition(b"\t")
        request_id = uint32(raw_id)
        if not tab or request_id is None:
            raise RemoteProtocolError("invalid CONT line")
        state = self.requests.get(request_id)
        if state is None:
            return Rejected(request_id, replies.REASON_TIMED_OUT)
        del self.requests[request_id]
        if state is RequestState.BUSY:
            return Rejected(request_id, replies.REASON_UNEXPECTED, aborted=True)
        decoded = wire.b64decode(data)
        if decoded is None:
            reason = replies.REASON_BAD_CONTINUED
            return Rejected(request_id, reason, "invalid_base64", aborted=True)
        self.requests[request_id] = RequestState.BUSY
        return Continue(request_id, decoded)

    def _cancel(self, rest: bytes) -> Cancel | None:
        request_id = uint32(rest)  # Dovecot: str_to_uint over the whole rest, so no extra field
        if request_id is None:
            raise RemoteProtocolError("invalid CANCEL line")
        if self.requests.pop(request_id, None) is None:
            return None  # unknown ids are ignored silently
        return Cancel(request_id)

    # ---- output -------------------------------------------------------------------------
    def expire(self, request_id: int) -> None:
        """Forget a request silently (its idle timeout ran out)."""
        self.requests.pop(request_id, None)

    def send(self, event: ServerEvent) -> bytes:
        """Render a reply and update the request's state."""
        if isinstance(event, Ok):
            return self.ok(event.id, event.user, event.fields)
        self._check_busy(event.id)
        head = b"%d" % event.id
        if isinstance(event, Challenge):
            self.requests[event.id] = RequestState.WAITING
            return b"CONT\t" + head + b"\t" + wire.b64encode(event.data) + b"\n"
        del self.requests[event.id]
        return replies.render([b"FAIL", head], event.fields)

    def ok(self, request_id: int, user: str, fields: Fields) -> bytes:
        """``send(Ok(request_id, user, fields))`` without the Ok (the session's usual reply)."""
        if self.requests.get(request_id) is not RequestState.BUSY:
            self._check_busy(request_id)  # (it raises)
        del self.requests[request_id]
        if not fields:  # the usual OK: nothing but the user name
            return b"OK\t%d\tuser=%s\n" % (request_id, wire.encode_name(user))
        head = [b"OK", b"%d" % request_id, b"user=" + wire.encode_name(user)]
        return replies.render(head, fields)

    def _check_busy(self, request_id: int) -> None:
        """Only a BUSY request may be answered (the server's turn): else it is our bug."""
        state = self.requests.get(request_id)
        if state is not RequestState.BUSY:
            raise LocalProtocolError(f"reply for request {request_id} in state {state}")

    @staticmethod
    def reject(event: Rejected) -> bytes:
        """The FAIL line of a Rejected event (a method: mypyc cannot compile the alias)."""
        return replies.reject(event)
