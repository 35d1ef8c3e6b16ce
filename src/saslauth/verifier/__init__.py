"""The line protocol between the front process and the privileged verifier child.

Plain data only (never pickle): one request or reply per LF-terminated line, TAB-separated
fields with Dovecot's tab-escaping (:mod:`saslauth.wire`), at most :data:`MAX_LINE` bytes.

``V <seq> <user> <password> <service> <rip> <lip> <secured>``  front -> child
``R <seq> <verdict> <user> <backend> <nodelay> <log_reason> [key[=value] ...]``  child -> front
``READY <pid>``  child -> front, once, when it can take requests

The reply tag is ``R`` when the verification cache was not consulted, ``R:hit`` or ``R:miss``
when it was; a reader of the plain ``R`` form needs no change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from saslauth import wire
from saslauth.errors import VerifierError
from saslauth.passdb import Lookup, Verdict

MAX_LINE = 65536
_VERDICTS = {v.value: v for v in Verdict}


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    user: str
    password: bytes = field(repr=False)
    service: str = ""
    rip: str | None = None
    lip: str | None = None
    secured: bool = False


def encode_request(seq: int, req: VerifyRequest) -> bytes:
    return b"V\t%d%s" % (seq, request_fields(req))


def request_fields(req: VerifyRequest) -> bytes:
    """A request line after its sequence number, TABs and LF included (what the front's
    sessions hand to :meth:`saslauth.verifier.client.VerifierClient.send`)."""
    return encode_fields(
        req.user, req.password, wire.encode_name(req.service), req.rip, req.lip, req.secured
    )


def encode_fields(
    user: str, password: bytes, service: bytes, rip: str | None, lip: str | None, secured: bool
) -> bytes:
    """:func:`request_fields` from the values themselves, without a VerifyRequest; ``service``
    already encoded (``wire.encode_name``: the session may have it as the client sent it)."""
    return b"\t%s\t%s\t%s\t%s\t%s\t%s\n" % (
        wire.encode_name(user),
        wire.escape(password),
        service,
        (rip or "").encode(),
        (lip or "").encode(),
        b"1" if secured else b"0",
    )


def make_request(
    user: str, password: bytes, service: str, rip: str | None, lip: str | None, secured: bool
) -> VerifyRequest:
    """``VerifyRequest(...)`` for the per-request paths (the session, decode_request)."""
    return VerifyRequest(user, password, service, rip, lip, secured)


def decode_request(line: bytes) -> tuple[int, VerifyRequest]:
    return request_of(wire.split_fields(line))


def _well_formed(fields: list[bytes]) -> bool:
    # (a sequence number of at most 20 digits: int() refuses over 4300 with a ValueError)
    return len(fields) == 8 and fields[0] == b"V" and fields[1].isdigit() and len(fields[1]) <= 20


def usual_request(line: bytes) -> list[bytes] | None:
    """The fields of a request line with nothing escaped in it, when decode_request would
    take it (then request_of takes them too); None for any other line (decode_request then
    answers for it)."""
    if 1 in line:  # the escape byte
        return None
    fields = line.split(b"\t")
    # (_well_formed, inline: the verifier's per-request call)
    seq = fields[1] if len(fields) == 8 and fields[0] == b"V" else b""
    return fields if seq.isdigit() and len(seq) <= 20 else None


def request_of(fields: list[bytes]) -> tuple[int, VerifyRequest]:
    """decode_request for a line split (and unescaped) into its fields."""
    if not _well_formed(fields):
        raise VerifierError("malformed verify request")
    _, seq, user, password, service, rip, lip, secured = fields
    # wire.decode_text, inline (the verifier decodes three fields per request)
    return int(seq), make_request(
        user.decode("utf-8", "surrogateescape"),
        password,
        service.decode("utf-8", "surrogateescape"),
        rip.decode("utf-8", "surrogateescape") if rip else None,
        lip.decode("utf-8", "surrogateescape") if lip else None,
        secured == b"1",
    )


_REPLY_TAGS = {"": b"R", "hit": b"R:hit", "miss": b"R:miss"}
_CACHE_STATES = {tag: state for state, tag in _REPLY_TAGS.items()}


def _reply_fields(lookup: Lookup) -> bytes:
    """Everything of a reply line after ``<tag> TAB <seq>``, TAB and LF included."""
    parts = [
        b"",
        lookup.verdict.value.encode(),
        wire.encode_text(lookup.user or ""),
        wire.encode_text(lookup.backend),
        b"1" if lookup.nodelay else b"0",
        wire.encode_text(lookup.log_reason or ""),
    ]
    for name, value in lookup.extra:
        item = name if value is None else f"{name}={value}"
        parts.append(wire.encode_text(item))
    return wire.join_fields(parts)


def encode_reply(seq: int, lookup: Lookup) -> bytes:
    return b"%s\t%d%s" % (_REPLY_TAGS.get(lookup.cache, b"R"), seq, _reply_fields(lookup))


ENCODED_LIMIT = 4096  # Lookups a ReplyEncoder remembers at most; then the memory starts over


class ReplyEncoder:
    """``encode_reply`` for the verifier child, remembering the encoded fields of recent
    Lookups by identity: a passdb that answers with one prebuilt Lookup per user (passwd-file)
    gets each encoded once, so a reply costs one formatting of the sequence number.

    A Lookup is frozen and its fields immutable, so the same object always encodes the same;
    the remembered Lookup is kept alive with its bytes, so its id cannot be reused meanwhile.
    """

    def __init__(self) -> None:
        self._known: dict[int, tuple[Lookup, bytes]] = {}

    def encode(self, seq: int, lookup: Lookup, cache: str = "") -> bytes:
        """``encode_reply(seq, replace(lookup, cache=cache))`` when ``cache``, else
        ``encode_reply(seq, lookup)``; without building that Lookup."""
        known = self._known.get(id(lookup))
        if known is not None and known[0] is lookup:
            fields = known[1]
        else:
            fields = _reply_fields(lookup)
            if len(self._known) >= ENCODED_LIMIT:
                self._known.clear()
            self._known[id(lookup)] = (lookup, fields)
        return b"%s\t%d%s" % (_REPLY_TAGS.get(cache or lookup.cache, b"R"), seq, fields)


# Reply lines without their sequence number -> the Lookup they decode to.  Replies repeat (the
# same verdict, backend and fields for every login of a user, often of all users), and a Lookup
# is an immutable value, so equal lines share one.  Short lines only, a bounded number of them.
_DECODED: dict[bytes, Lookup] = {}
_DECODED_LIMIT = 1024
_DECODED_MAX_LINE = 256


def decode_reply(line: bytes) -> tuple[int, Lookup]:
    first = line.find(b"\t")
    second = line.find(b"\t", first + 1)
    if first > 0 and second > first + 1 and len(line) <= _DECODED_MAX_LINE:
        seq = line[first + 1 : second]
        known = _DECODED.get(line[:first] + line[second:])
        if known is not None and seq.isdigit():
            return int(seq), known
    number, lookup = _decode_reply(line)
    if len(line) <= _DECODED_MAX_LINE:
        if len(_DECODED) >= _DECODED_LIMIT:
            _DECODED.clear()
        _DECODED[line[:first] + line[second:]] = lookup
    return number, lookup


def _decode_reply(line: bytes) -> tuple[int, Lookup]:
    fields = wire.split_fields(line)
    cache = _CACHE_STATES.get(fields[0]) if fields else None
    if len(fields) < 7 or cache is None or not fields[1].isdigit():
        raise VerifierError("malformed verifier reply")
    verdict = _VERDICTS.get(fields[2].decode("ascii", "replace"))
    if verdict is None:
        raise VerifierError("unknown verdict in verifier reply")
    text = wire.decode_text
    extra: list[tuple[str, str | None]] = []
    for raw in fields[7:]:
        name, eq, value = text(raw).partition("=")
        extra.append((name, value if eq else None))
    return int(fields[1]), Lookup(
        verdict=verdict,
        user=text(fields[3]) or None,
        backend=text(fields[4]),
        nodelay=fields[5] == b"1",
        log_reason=text(fields[6]) or None,
        extra=tuple(extra),
        cache=cache,
    )


class LineReader:
    """Splits a byte stream into lines of at most MAX_LINE bytes."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        if self._buffer or type(data) is not bytes:
            self._buffer += data
            data = bytes(self._buffer)
            self._buffer.clear()
        # The usual case, whole lines with nothing buffered, splits the bytes as they came.
        lines = data.split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_LINE or (
            len(data) > MAX_LINE and any(len(line) > MAX_LINE for line in lines)
        ):
            raise VerifierError("line too long")
        self._buffer += rest
        return lines
