"""The sliver of IMAP4rev1 (RFC 3501) a login check needs, sans I/O: commands out, responses in.

Arguments go out as quoted strings when every byte is a 7-bit TEXT-CHAR (``"`` and ``\\`` are
escaped), otherwise as synchronizing literals (``{n}`` CRLF, then the bytes after the server's
``+`` continuation).  NUL cannot be sent at all (RFC 3501 CHAR8 excludes it).

Responses are split into lines of at most :data:`MAX_LINE` bytes; a literal announced at the end
of a data response is read by length (at most :data:`MAX_LITERAL` bytes, at most
:data:`MAX_RESPONSE` for the whole response).  Anything malformed raises
:class:`ImapProtocolError`, which is an outage (temporary failure), never a verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from saslauth.errors import BackendError

MAX_LINE = 8192
MAX_LITERAL = 65536
MAX_RESPONSE = 131072
STATUS = frozenset({b"OK", b"NO", b"BAD", b"BYE", b"PREAUTH"})
_TAG = re.compile(rb"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|~]+|\*")  # ASTRING-CHAR minus "+"
_LITERAL_AT_END = re.compile(rb"\{(\d{1,10})\}$")
_QUOTABLE = frozenset(range(0x01, 0x80)) - {0x0A, 0x0D}


class ImapProtocolError(BackendError):
    """The IMAP server sent something this client cannot accept."""


# ---- commands ----------------------------------------------------------------------------------


def needs_literal(data: bytes) -> bool:
    """True unless ``data`` fits a quoted string (bytes 0x01-0x7F other than CR and LF)."""
    return not _QUOTABLE.issuperset(data)


def quoted(data: bytes) -> bytes:
    """``data`` as an IMAP quoted string; the caller checked :func:`needs_literal`."""
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def command(tag: bytes, verb: bytes, *args: bytes) -> list[bytes]:
    """A command as chunks: send the first, then each next one after a ``+`` continuation.

    Raises ValueError for an argument holding NUL (no IMAP string can carry it).
    """
    chunks: list[bytes] = []
    current = tag + b" " + verb
    for arg in args:
        if b"\0" in arg:
            raise ValueError("an IMAP string cannot hold NUL")
        if needs_literal(arg):
            chunks.append(current + b" {%d}\r\n" % len(arg))
            current = arg
        else:
            current += b" " + quoted(arg)
    chunks.append(current + b"\r\n")
    return chunks


# ---- responses ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    """One server response.

    ``tag`` is ``b"*"`` (untagged), ``b"+"`` (continuation) or the command's tag; ``kind`` the
    upper-cased status (``OK``, ``NO``, ``BAD``, ``BYE``, ``PREAUTH``) or data keyword
    (``CAPABILITY``, or a number for ``* 3 EXISTS``); ``code`` the response code without its
    brackets; ``text`` the rest.
    """

    tag: bytes
    kind: bytes
    code: bytes = b""
    text: bytes = b""

    @property
    def capabilities(self) -> frozenset[str] | None:
        """The capabilities this response announces (``* CAPABILITY`` or ``[CAPABILITY ...]``)."""
        if self.kind == b"CAPABILITY" and self.tag == b"*":
            words = self.text
        elif self.code[:11].upper() == b"CAPABILITY " or self.code.upper() == b"CAPABILITY":
            words = self.code[11:]
        else:
            return None
        return frozenset(word.upper() for word in words.decode("ascii", "replace").split())

    @property
    def code_name(self) -> bytes:
        """The response code's atom, upper-cased (``AUTHENTICATIONFAILED``, ``UNAVAILABLE``)."""
        return self.code.split(b" ", 1)[0].upper()


def parse(line: bytes) -> Response:
    """Parse one complete response (without its final CRLF)."""
    if line[:1] == b"+":
        return Response(b"+", b"", b"", line[1:].removeprefix(b" "))
    tag, sep, rest = line.partition(b" ")
    if not sep or not _TAG.fullmatch(tag):
        raise ImapProtocolError("malformed response line")
    word, _, rest = rest.partition(b" ")
    kind = word.upper()
    if not kind or (tag != b"*" and kind not in (b"OK", b"NO", b"BAD")):
        raise ImapProtocolError("malformed response line")
    code = b""
    if kind in STATUS and rest[:1] == b"[":
        end = rest.find(b"]")
        if end < 0:
            raise ImapProtocolError("unterminated response code")
        code, rest = rest[1:end], rest[end + 1 :].removeprefix(b" ")
    return Response(tag, kind, code, rest)


def _is_status_or_continuation(line: bytes) -> bool:
    if line[:1] == b"+":
        return True
    parts = line.split(b" ", 2)
    return len(parts) >= 2 and (parts[0] != b"*" or parts[1].upper() in STATUS)


class ResponseReader:
    """Turns received bytes into :class:`Response` objects, with bounded sizes."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._parts: list[bytes] = []
        self._size = 0
        self._literal_left = 0

    @property
    def pending(self) -> bool:
        """True when bytes were received that do not yet form a whole response."""
        return bool(self._buffer or self._parts or self._literal_left)

    def _grow(self, size: int) -> None:
        self._size += size
        if self._size > MAX_RESPONSE:
            raise ImapProtocolError(f"response longer than {MAX_RESPONSE} bytes")

    def feed(self, data: bytes) -> list[Response]:
        self._buffer += data
        out: list[Response] = []
        while True:
            if self._literal_left:
                if not self._buffer:
                    return out
                take = bytes(self._buffer[: self._literal_left])
                del self._buffer[: len(take)]
                self._literal_left -= len(take)
                self._parts.append(take)
                self._grow(len(take))
                continue
            end = self._buffer.find(b"\n")
            if end < 0 or end > MAX_LINE:
                if len(self._buffer) > MAX_LINE:
                    raise ImapProtocolError(f"response line longer than {MAX_LINE} bytes")
                return out
            line = bytes(self._buffer[:end]).removesuffix(b"\r")
            del self._buffer[: end + 1]
            self._grow(len(line) + 2)
            literal = None
            if self._parts or not _is_status_or_continuation(line):
                literal = _LITERAL_AT_END.search(line)
            self._parts.append(line)
            if literal:
                self._literal_left = int(literal.group(1))
                if self._literal_left > MAX_LITERAL:
                    raise ImapProtocolError(f"literal longer than {MAX_LITERAL} bytes")
                continue
            whole = b"".join(self._parts)
            self._parts, self._size = [], 0
            out.append(parse(whole))


def printable(text: bytes, limit: int = 160) -> str:
    """Server text made safe for a log line: decoded, control characters replaced, cut short."""
    decoded = text[:limit].decode("utf-8", "replace")
    cleaned = "".join(c if c.isprintable() else "?" for c in decoded)
    return cleaned + ("..." if len(text) > limit else "")
