"""The fields of one AUTH line, read without events for the usual request (what
:meth:`saslauth.protocol.ServerConnection.quick_auth` needs): pure, no connection state.

Reads in Postfix's field order are matched whole by :data:`POSTFIX_AUTH`; any other order
or set of fields is read field by field (:func:`usual_fields`), with the rules of
``ServerConnection._auth``.
"""

from __future__ import annotations

import re

# What Postfix sends (xsasl_dovecot_server.c), field by field, as one whole read: the line
# and its LF, with no CR, NUL or escape byte (\x01) anywhere and no whitespace in resp, so
# that a match needs none of the checks that ServerConnection makes of other lines.
_FIELD = rb"[^\t\n\r\x00\x01]"
POSTFIX_AUTH = re.compile(
    rb"AUTH\t([0-9]{1,10})\t(%s*)\tservice=(%s*)\tnologin\tlip=(%s*)\trip=(%s*)"
    rb"(\tsecured)?\tresp=([^\t\n\r\x00\x01 ]+)\n" % ((_FIELD,) * 4)
)
_NO_RESP = (b"", b"=")  # resp values that are no initial response or an empty one: _auth's

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
