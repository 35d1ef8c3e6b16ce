"""The fields of one AUTH line, read without events for the usual request (what
:meth:`saslauth.protocol.ServerConnection.quick_auth` needs): pure, no connection state.

Lines in Postfix's field order are read with one regular-expression match; any other order
or set of fields is read field by field, with the rules of ``ServerConnection._auth``.
"""

from __future__ import annotations

import re

# What Postfix sends (xsasl_dovecot_server.c), field by field.
POSTFIX_AUTH = re.compile(
    rb"AUTH\t([0-9]{1,10})\t([^\t]*)\tservice=([^\t]*)\tnologin"
    rb"\tlip=([^\t]*)\trip=([^\t]*)(\tsecured)?\tresp=([^\t]+)"
)
_NO_RESP = (b"", b"=")  # resp values that are no initial response or an empty one: _auth's

# id, mechanism, service, lip, rip, secured, initial response (base64, as sent)
UsualFields = tuple[bytes, bytes, bytes, bytes | None, bytes | None, bool, bytes]


def usual_fields(line: bytes) -> UsualFields | None:
    """An AUTH line's (without its LF) fields as ``_auth`` reads them, with the initial
    response after ``resp=`` (neither empty nor ``=``).  None when ``resp`` is not the last
    field or another field is named ``resp``, or when there is no ``service=``."""
    postfix = POSTFIX_AUTH.fullmatch(line)
    if postfix is not None:
        number, name, service, lip, rip, secured, resp = postfix.groups()
        return number, name, service, lip, rip, secured is not None, resp
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
