"""The front<->verifier line codec: the verifier's fast paths against the plain encodings."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from saslauth import verifier, wire
from saslauth.errors import VerifierError
from saslauth.passdb import Lookup, Verdict

_TEXT = st.text(max_size=12)
_OPT_TEXT = st.one_of(st.none(), st.text(min_size=1, max_size=12))

requests = st.builds(
    verifier.VerifyRequest,
    user=_TEXT,
    password=st.binary(max_size=16),
    service=_TEXT,
    rip=st.one_of(st.none(), st.sampled_from(["192.0.2.1", "::1"])),
    lip=st.one_of(st.none(), st.sampled_from(["127.0.0.1", "2001:db8::1"])),
    secured=st.booleans(),
)

lookups = st.builds(
    Lookup,
    verdict=st.sampled_from(list(Verdict)),
    user=_OPT_TEXT,
    backend=_TEXT,
    # (a name holding "=" does not survive decode_reply: not a field passdbs produce)
    extra=st.lists(
        st.tuples(st.text(max_size=6).filter(lambda n: "=" not in n), _OPT_TEXT), max_size=3
    ).map(tuple),
    nodelay=st.booleans(),
    log_reason=_OPT_TEXT,
    cache=st.sampled_from(["", "hit", "miss"]),
)


def plain_decode_request(line: bytes) -> tuple[int, verifier.VerifyRequest]:
    """decode_request as it was: the generated constructor, wire.decode_text."""
    fields = wire.split_fields(line)
    text = wire.decode_text
    return int(fields[1]), verifier.VerifyRequest(
        user=text(fields[2]),
        password=fields[3],
        service=text(fields[4]),
        rip=text(fields[5]) or None,
        lip=text(fields[6]) or None,
        secured=fields[7] == b"1",
    )


@settings(max_examples=300, deadline=None)
@given(seq=st.integers(0, 2**40), request=requests)
def test_decode_request_round_trip(seq: int, request: verifier.VerifyRequest) -> None:
    line = verifier.encode_request(seq, request)[:-1]
    decoded = verifier.decode_request(line)
    assert decoded == (seq, request) == plain_decode_request(line)
    assert type(decoded[1]) is verifier.VerifyRequest
    assert repr(decoded[1]) == repr(request)
    with pytest.raises(AttributeError):  # still frozen
        decoded[1].user = "x"  # type: ignore[misc]


def test_decoded_request_hides_the_password() -> None:
    line = verifier.encode_request(1, verifier.VerifyRequest("u", b"hunter2", "smtp"))[:-1]
    assert "hunter2" not in repr(verifier.decode_request(line)[1])


@pytest.mark.parametrize(
    "line",
    [b"", b"V\t1", b"X\t1\tu\tp\ts\t\t\t0", b"V\tx\tu\tp\ts\t\t\t0", b"V\t1\tu\tp\ts\t\t\t0\t"],
)
def test_decode_request_refuses_malformed(line: bytes) -> None:
    with pytest.raises(VerifierError, match="malformed"):
        verifier.decode_request(line)


_FIELD = st.binary(max_size=6).filter(lambda b: b"\t" not in b)


@settings(max_examples=500, deadline=None)
@given(
    line=st.one_of(
        st.builds(  # request-shaped lines with odd bytes anywhere: tag, number, count
            lambda tag, seq, fields: b"\t".join([tag, seq, *fields]),
            st.sampled_from([b"V", b"V", b"v", b""]),
            st.one_of(  # numbers of up to 22 digits: 20 at most are taken
                st.integers(1, 22).map(lambda digits: b"9" * digits),
                st.from_regex(rb"\A[0-9]{1,22}\Z"),
                _FIELD,
            ),
            st.lists(_FIELD, min_size=5, max_size=7),  # 7 to 9 fields in all: 8 are taken
        ),
        st.builds(lambda seq, r: verifier.encode_request(seq, r)[:-1], st.integers(0), requests),
    )
)
@example(line=b"V\t" + b"9" * 20 + b"\tu\tp\tsmtp\t\t\t0")  # the longest number taken
@example(line=b"V\t" + b"9" * 21 + b"\tu\tp\tsmtp\t\t\t0")
@example(line=b"V\t1\tu\tp\tsmtp\t\t0")  # 7 fields
@example(line=b"V\t1\tu\tp\tsmtp\t\t\t0\t")  # 9
@example(line=b"V\t1\tu\x01\tp\tsmtp\t\t\t0")  # escaped: decode_request's
def test_usual_request_takes_what_decode_request_takes_unescaped(line: bytes) -> None:
    """The verifier's per-request parse: the fields of a line with no escape byte that
    decode_request would take, which request_of then decodes as decode_request does; None
    for every other line (then decode_request answers, or refuses)."""
    fields = verifier.usual_request(line)
    try:
        decoded = verifier.decode_request(line)
    except VerifierError:
        assert fields is None
        return
    if 1 in line:
        assert fields is None
    else:
        assert fields is not None and verifier.request_of(fields) == decoded


@settings(max_examples=300, deadline=None)
@given(seq=st.integers(0, 2**40), lookup=lookups, cache=st.sampled_from(["", "hit", "miss"]))
def test_reply_encoder_matches_encode_reply(seq: int, lookup: Lookup, cache: str) -> None:
    expected = verifier.encode_reply(seq, replace(lookup, cache=cache) if cache else lookup)
    encoder = verifier.ReplyEncoder()
    assert encoder.encode(seq, lookup, cache) == expected
    assert encoder.encode(seq, lookup, cache) == expected  # remembered
    assert encoder.encode(seq + 1, lookup) == verifier.encode_reply(seq + 1, lookup)
    decoded = verifier.decode_reply(expected[:-1])
    assert decoded == (seq, replace(lookup, user=lookup.user or None, cache=cache or lookup.cache))


def test_reply_encoder_is_bounded_and_keyed_by_identity() -> None:
    encoder = verifier.ReplyEncoder()
    for i in range(verifier.ENCODED_LIMIT + 10):
        lookup = Lookup(Verdict.OK, backend=f"b{i}")  # fresh ones, as SQL or LDAP answer
        assert encoder.encode(i, lookup) == verifier.encode_reply(i, lookup)
        assert len(encoder._known) <= verifier.ENCODED_LIMIT
    one, other = Lookup(Verdict.OK, backend="x"), Lookup(Verdict.OK, backend="y")
    assert encoder.encode(1, one) != encoder.encode(1, other)


def _split_stream(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    cuts=st.lists(st.integers(0, 300), max_size=6),
    kind=st.sampled_from([bytes, bytearray]),
)
def test_line_reader_any_chunking(lines: list[bytes], cuts: list[int], kind: type) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    reader = verifier.LineReader()
    got: list[bytes] = []
    for chunk in _split_stream(stream + b"tail", cuts):
        out = reader.feed(kind(chunk))
        assert all(type(line) is bytes for line in out)
        got += out
    assert got == lines
    assert reader.feed(b"\n") == [b"tail"]


def test_line_reader_limits() -> None:
    ok = b"x" * verifier.MAX_LINE
    assert verifier.LineReader().feed(ok + b"\n" + ok + b"\n") == [ok, ok]
    for data in (ok + b"x", ok + b"x\n", b"a\n" + ok + b"x", b"a\n" + ok + b"x\nb\n"):
        with pytest.raises(VerifierError, match="too long"):
            verifier.LineReader().feed(data)
    reader = verifier.LineReader()
    assert reader.feed(b"a\n" + b"y" * 10) == [b"a"]
    with pytest.raises(VerifierError, match="too long"):
        reader.feed(b"y" * verifier.MAX_LINE + b"\n")  # buffered part + new part
