"""The hiredis-backed parser (``_resp.HiredisParser``) against the reference
parser (``_resp.Parser``): the same replies from the same bytes however they
are split, except that hiredis gives a simple string as bytes; bad bytes are
a :class:`ProtocolError` and leave it broken (and any bytes give replies,
NEED_DATA or that error: tests/redis/test_resp.py runs that property on both
parsers); the bus uses it when hiredis is installed (the ``redis`` and
``test`` extras install it).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bayeux_trio.redis._resp import (
    ErrorReply,
    HiredisParser,
    Parser,
    ProtocolError,
    Reply,
    encode_reply,
    make_parser,
)

from .test_resp import _parse_all, _replies


def _as_hiredis(reply: Reply) -> Reply:
    """``reply`` as hiredis gives it: simple strings as bytes."""
    if type(reply) is str:
        return reply.encode()
    if type(reply) is list:
        return [_as_hiredis(item) for item in reply]
    return reply


def test_the_bus_parses_with_hiredis() -> None:
    assert type(make_parser()) is HiredisParser


@settings(max_examples=800, deadline=None)
@given(st.lists(_replies, min_size=1, max_size=4), st.lists(st.integers(min_value=0), max_size=8))
@example([[b"a", None, []], "OK", ErrorReply("NOSCRIPT No matching script.")], [1, 5, 9])
def test_hiredis_gives_the_reference_replies_split_anywhere(
    replies: list[Reply], offsets: list[int]
) -> None:
    raw = b"".join(encode_reply(reply) for reply in replies)
    cuts = sorted(offset % (len(raw) + 1) for offset in offsets)
    reference = _parse_all(raw, cuts, Parser())
    assert reference == replies
    assert _parse_all(raw, cuts, HiredisParser()) == [_as_hiredis(r) for r in reference]


def test_a_stream_read_is_the_same_for_both() -> None:
    raw = (
        b"*1\r\n*2\r\n$3\r\nlog\r\n*2\r\n"
        b"*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\nc\r\n$2\r\n/a\r\n$1\r\np\r\n$2\r\n{}\r\n"
        b"*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nk\r\n$5\r\nevict\r\n"
    )
    cuts = list(range(0, len(raw), 7))
    assert _parse_all(raw, cuts, HiredisParser()) == _parse_all(raw, cuts, Parser())


def test_an_error_is_a_value_even_inside_an_array() -> None:
    parser = HiredisParser()
    parser.feed(b"*2\r\n-ERR inner\r\n:1\r\n-NOSCRIPT No matching script\r\n")
    assert parser.next_reply() == [ErrorReply("ERR inner"), 1]
    reply = parser.next_reply()
    assert reply == ErrorReply("NOSCRIPT No matching script")
    assert isinstance(reply, ErrorReply)
    assert reply.code == "NOSCRIPT"


def test_bytes_after_the_last_reply_are_pending() -> None:
    parser = HiredisParser()
    parser.feed(b":1\r\n:2")
    assert parser.next_reply() == 1
    assert parser.pending  # what _lean reports as more replies than commands


@pytest.mark.parametrize("raw", [b"?what\r\n", b"$x\r\n", b"*1\r\n!x\r\n"])
def test_garbage_is_a_protocol_error_for_good(raw: bytes) -> None:
    parser = HiredisParser()
    parser.feed(raw)
    with pytest.raises(ProtocolError):
        parser.next_reply()
    parser.feed(b"+OK\r\n")
    with pytest.raises(ProtocolError):
        parser.next_reply()
