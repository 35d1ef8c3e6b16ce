"""decode_reply remembers recent reply lines: it must answer exactly as the plain decoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from saslauth import verifier
from saslauth.errors import VerifierError
from saslauth.passdb import Lookup, Verdict

texts = st.text(max_size=12)
lookups = st.builds(
    Lookup,
    verdict=st.sampled_from(list(Verdict)),
    user=st.none() | st.text(min_size=1, max_size=12),
    backend=texts,
    extra=st.lists(
        st.tuples(
            st.text(min_size=1, max_size=8).filter(lambda t: "=" not in t), st.none() | texts
        ),
        max_size=3,
    ).map(tuple),
    nodelay=st.booleans(),
    log_reason=st.none() | st.text(min_size=1, max_size=20),
    cache=st.sampled_from(["", "hit", "miss"]),
)


@settings(max_examples=300)
@given(lookup=lookups, seqs=st.lists(st.integers(0, 2**40), min_size=1, max_size=4))
def test_memoised_decoding_is_the_plain_decoding(lookup: Lookup, seqs: list[int]) -> None:
    for seq in seqs:  # the second and later decodings of one reply come from the memo
        line = verifier.encode_reply(seq, lookup)[:-1]
        assert verifier.decode_reply(line) == verifier._decode_reply(line)
        number, decoded = verifier.decode_reply(line)
        assert number == seq and decoded == verifier._decode_reply(line)[1]


@pytest.mark.parametrize(
    "line",
    [
        b"R\tx1\tok\t\tpasswd-file\t0\t",
        b"R\t\tok\t\tpasswd-file\t0\t",
        b"R\t1\tok",
        b"X\t1\tok\t\tb\t0\t",
    ],
)
def test_malformed_replies_fail_even_after_a_good_one(line: bytes) -> None:
    verifier.decode_reply(b"R\t7\tok\t\tpasswd-file\t0\t")
    with pytest.raises(VerifierError):
        verifier.decode_reply(line)


def test_the_memo_is_bounded() -> None:
    for seq in range(verifier._DECODED_LIMIT * 2):
        verifier.decode_reply(b"R\t%d\tok\t\tbackend-%d\t0\t" % (seq, seq))
    assert len(verifier._DECODED) <= verifier._DECODED_LIMIT
    long = b"R\t1\tok\t\t" + b"b" * verifier._DECODED_MAX_LINE + b"\t0\t"
    verifier.decode_reply(long)
    assert all(len(key) <= verifier._DECODED_MAX_LINE for key in verifier._DECODED)
