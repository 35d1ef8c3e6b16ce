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
    return wire.join_fields(
        [
            b"V",
            b"%d" % seq,
            wire.encode_text(req.user),
            wire.escape(req.password),
            wire.encode_text(req.service),
            (req.rip or "").encode(),
            (req.lip or "").encode(),
            b"1" if req.secured else b"0",
        ]
    )


def decode_request(line: bytes) -> tuple[int, VerifyRequest]:
    fields = wire.split_fields(line)
    if len(fields) != 8 or fields[0] != b"V" or not fields[1].isdigit():
        raise VerifierError("malformed verify request")
    text = wire.decode_text
    return int(fields[1]), VerifyRequest(
        user=text(fields[2]),
        password=fields[3],
        service=text(fields[4]),
        rip=text(fields[5]) or None,
        lip=text(fields[6]) or None,
        secured=fields[7] == b"1",
    )


_REPLY_TAGS = {"": b"R", "hit": b"R:hit", "miss": b"R:miss"}
_CACHE_STATES = {tag: state for state, tag in _REPLY_TAGS.items()}


def encode_reply(seq: int, lookup: Lookup) -> bytes:
    parts = [
        _REPLY_TAGS.get(lookup.cache, b"R"),
        b"%d" % seq,
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

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        if b"\n" not in data:
            if len(self._buffer) > MAX_LINE:
                raise VerifierError("line too long")
            return []
        *lines, rest = self._buffer.split(b"\n")
        self._buffer = bytearray(rest)
        if len(rest) > MAX_LINE or any(len(line) > MAX_LINE for line in lines):
            raise VerifierError("line too long")
        return [bytes(line) for line in lines]
