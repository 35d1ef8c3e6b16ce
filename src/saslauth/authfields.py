"""The fields of one AUTH line, read without events for the usual request (what
:meth:`saslauth.protocol.ServerConnection.quick_auth` needs): pure, no connection state.

Reads in Postfix's field order are matched whole by :data:`POSTFIX_AUTH`; any other order
or set of fields is read field by field (:func:`usual_fields`), with the rules of
:func:`auth_fields`, which reads every AUTH line for ``ServerConnection._auth``.
"""

from __future__ import annotations

import re

from saslauth import wire
from saslauth.errors import RemoteProtocolError
from saslauth.fieldvalues import uint32

# What Postfix sends (xsasl_dovecot_server.c), field by field, as one whole read: the line
# and its LF, with no CR, NUL or escape byte (\x01) anywhere and no whitespace in resp, so
# that a match needs none of the checks that ServerConnection makes of other lines.
_FIELD = rb"[^\t\n\r\x00\x01]"
POSTFIX_AUTH = re.compile(
    rb"AUTH\t([0-9]{1,10})\t(%s*)\tservice=(%s*)\tnologin\tlip=(%s*)\trip=(%s*)"
    rb"(\tsecured)?\tresp=([^\t\n\r\x00\x01 ]+)\n" % ((_FIELD,) * 4)
)
_NO_RESP = (b"", b"=")  # resp values that are no initial response or an empty one: _auth's

# What ServerConnection.quick_auth finds: id, mechanism, service (a field as sent), initial
# response, lip, rip (both in normal form, or None) and whether the connection is secured.
QuickAuth = tuple[int, str, bytes, bytes, str | None, str | None, bool]

# id, mechanism (as sent), parameters (name=value), flags (name alone), resp (or None)
AuthFields = tuple[int, bytes, dict[bytes, bytes], set[bytes], bytes | None]


def auth_fields(line: bytes) -> AuthFields:
    """Any AUTH line's (without its LF) fields, or :class:`RemoteProtocolError` for a line
    with no id and mechanism, an invalid id, or a field after ``resp``.  Of two parameters
    with one name, the later counts."""
    fields = wire.split_fields(line)
    if len(fields) < 3:
        raise RemoteProtocolError("AUTH without id and mechanism")
    request_id = uint32(fields[1], nonzero=True)
    if request_id is None:
        raise RemoteProtocolError("AUTH with an invalid id")
    params: dict[bytes, bytes] = {}
    flags: set[bytes] = set()
    resp: bytes | None = None
    last = len(fields) - 1
    for index in range(3, len(fields)):
        name, eq, value = fields[index].partition(b"=")
        if name == b"resp":
            if index != last:
                raise RemoteProtocolError("AUTH has fields after resp")
            resp = value
        elif eq:
            params[name] = value
        elif name:
            flags.add(name)
    return request_id, fields[2], params, flags, resp


# id, mechanism, service, lip, rip, secured, initial response (base64, as sent)
UsualFields = tuple[bytes, bytes, bytes, bytes | None, bytes | None, bool, bytes]


def usual_fields(line: bytes) -> UsualFields | None:
    """An AUTH line's (without its LF) fields as ``_auth`` reads them, field by field, with the
    initial response after ``resp=`` (neither empty nor ``=``).  None when ``resp`` is not the
    last field or another field is named ``resp``, or when there is no ``service=``."""
    fields = line.split(b"\t")
    resp = fields[-1]
    last = len(fields) - 1
    if last < 4 or resp[:5] != b"resp=" or resp[5:] in _NO_RESP:
        return None
    service = lip = rip = None
    secured = False
    for index in range(3, last):
        name, eq, value = fields[index].partition(b"=")
        if name == b"resp":
            return None  # a field after resp: _auth's error
        if name == b"secured":  # a flag or a parameter
            secured = True
        elif not eq:
            continue
        elif name == b"service":
            service = value
        elif name == b"lip":
            lip = value
        elif name == b"rip":
            rip = value
    if service is None:
        return None
    return fields[1], fields[2], service, lip, rip, secured, resp[5:]
