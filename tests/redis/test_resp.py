"""The sans-IO RESP2 codec (bayeux_trio/redis/_resp.py), without any Redis.

* commands encode as Redis expects them;
* any nest of replies encoded then parsed comes back equal, however the bytes
  are split between reads, and several replies in a row come back in order;
* bytes that are not RESP2 raise :class:`ProtocolError` (never another
  exception, never a loop that does not end), and the parser stays broken;
* a long bulk string fed in many small pieces is joined once.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bayeux_trio.redis._resp import (
    MAX_BULK,
    MAX_LINE,
    NEED_DATA,
    ErrorReply,
    HiredisParser,
    Parser,
    ProtocolError,
    Reply,
    encode,
    encode_many,
    encode_reply,
)

_line_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30)
_scalars = (
    st.binary(max_size=60)
    | st.binary(min_size=100, max_size=400)
    | st.sampled_from([b"", b"\r\n", b"$3\r\nabc\r\n", b"*1\r\n", b"-ERR x\r\n"])
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | _line_text
    | _line_text.map(ErrorReply)
    | st.none()
)
_replies: st.SearchStrategy[Reply] = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=6), max_leaves=40
)


def _pending(parser: Parser) -> bool:
    # (a call: mypy would take the property for constant between asserts)
    return parser.pending


def _parse_all(
    data: bytes, cuts: list[int], parser: Parser | HiredisParser | None = None
) -> list[Reply]:
    """Every reply in ``data`` fed in pieces cut at ``cuts`` (sorted offsets),
    to ``parser`` (a new :class:`Parser` by default)."""
    if parser is None:
        parser = Parser()
    out: list[Reply] = []
    last = 0
    for cut in [*cuts, len(data)]:
        parser.feed(data[last:cut])
        last = cut
        for _ in range(len(data) + 1):
            reply = parser.next_reply()
            if reply is NEED_DATA:
                break
            out.append(reply)
    assert not parser.pending
    return out


@settings(max_examples=800, deadline=None)
@given(st.lists(_replies, min_size=1, max_size=4), st.lists(st.integers(min_value=0), max_size=8))
@example([[b"a", None, []], None, ErrorReply("NOSCRIPT No matching script.")], [1, 5, 9])
def test_replies_round_trip_split_anywhere(replies: list[Reply], offsets: list[int]) -> None:
    raw = b"".join(encode_reply(reply) for reply in replies)
    cuts = sorted(offset % (len(raw) + 1) for offset in offsets)
    assert _parse_all(raw, cuts) == replies


@settings(max_examples=200, deadline=None)
@given(_replies)
def test_replies_round_trip_fed_a_byte_at_a_time(reply: Reply) -> None:
    raw = encode_reply(reply)
    assert _parse_all(raw, list(range(len(raw)))) == [reply]


def test_the_shapes_stay_apart() -> None:
    """A simple string is text, a bulk string bytes, nils are None, an
    error is a value (not raised)."""
    raw = b"+OK\r\n$2\r\nOK\r\n$-1\r\n*-1\r\n*0\r\n:-7\r\n-READONLY You can't write\r\n"
    assert _parse_all(raw, []) == [
        "OK",
        b"OK",
        None,
        None,
        [],
        -7,
        ErrorReply("READONLY You can't write"),
    ]
    assert ErrorReply("READONLY You can't write").code == "READONLY"
    assert ErrorReply("ERR").code == "ERR"


def test_a_stream_read_parses_to_plain_lists() -> None:
    raw = (
        b"*1\r\n*2\r\n$3\r\nlog\r\n*2\r\n"
        b"*2\r\n$3\r\n1-0\r\n*4\r\n$1\r\nc\r\n$2\r\n/a\r\n$1\r\np\r\n$2\r\n{}\r\n"
        b"*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nk\r\n$5\r\nevict\r\n"
    )
    assert _parse_all(raw, []) == [
        [[b"log", [[b"1-0", [b"c", b"/a", b"p", b"{}"]], [b"1-1", [b"k", b"evict"]]]]]
    ]


def test_commands_encode_as_redis_reads_them() -> None:
    assert encode("PING") == b"*1\r\n$4\r\nPING\r\n"
    assert encode("SET", b"k\r\n", 12, "\u00e9") == (
        b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n$2\r\n\xc3\xa9\r\n"
    )
    assert encode_many([("PING",), ("ECHO", "")]) == (
        b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"
    )
    long = b"x" * 1000
    assert encode("ECHO", long) == b"*2\r\n$4\r\nECHO\r\n$1000\r\n" + long + b"\r\n"
    with pytest.raises(ValueError, match="at least its name"):
        encode()
    with pytest.raises(TypeError, match="bytes, str or int"):
        encode("SET", 1.5)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.binary(max_size=80) | st.integers(min_value=-(10**30), max_value=10**30) | _line_text,
        min_size=1,
        max_size=8,
    )
)
def test_a_command_is_an_array_of_bulk_strings(args: list[bytes | int | str]) -> None:
    """What Redis reads: a command is the array of its arguments as bulk strings."""
    parser = Parser()
    parser.feed(encode(*args))
    expected = [
        a if isinstance(a, bytes) else str(a).encode() if isinstance(a, int) else a.encode()
        for a in args
    ]
    assert parser.next_reply() == expected
    assert parser.next_reply() is NEED_DATA


def test_encode_reply_refuses_what_resp2_cannot_say() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        encode_reply("a\r\nb")
    with pytest.raises(ValueError, match="CR or LF"):
        encode_reply(ErrorReply("a\nb"))
    with pytest.raises(TypeError, match="not a RESP2 reply"):
        encode_reply(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"!3\r\nabc\r\n", "unknown reply type"),
        (b"%1\r\n", "unknown reply type"),  # a RESP3 map: we never ask for RESP3
        (b"$abc\r\n", "bad number"),
        (b"$\r\n", "bad number"),
        (b":12x\r\n", "bad number"),
        (b"*1\r\n:x\r\n", "bad number"),
        (b"$-2\r\n", "bad bulk length"),
        (b"*-2\r\n", "bad array length"),
        (b"$3\r\nabcd\r\n", "does not end with CRLF"),
        (b"*2\r\n$1\r\nab\r\n", "does not end with CRLF"),
        (b"$%d\r\n" % (MAX_BULK + 1), "too long"),
        (b"*%d\r\n" % (1 << 40), "too long"),
        (b"+" + b"x" * (MAX_LINE + 2), "longer than"),
    ],
)
def test_garbage_is_a_protocol_error(raw: bytes, match: str) -> None:
    parser = Parser()
    parser.feed(raw)
    with pytest.raises(ProtocolError, match=match):
        parser.next_reply()
    # broken for good: the connection must go
    parser.feed(b"+OK\r\n")
    with pytest.raises(ProtocolError, match=match):
        parser.next_reply()


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(
        st.binary(max_size=12)
        | st.sampled_from(
            [b"\r\n", b"$", b"*", b"+", b"-", b":", b"$-1", b"*-1", b"$3", b"*2", b"-1", b"0"]
        ),
        max_size=20,
    ).map(b"".join),
    st.lists(st.integers(min_value=0, max_value=200), max_size=4),
)
@pytest.mark.parametrize("make", [Parser, HiredisParser])
def test_any_bytes_give_replies_need_data_or_a_protocol_error(
    make: type[Parser | HiredisParser], raw: bytes, cuts: list[int]
) -> None:
    """Fuzz-ish: whatever arrives, the parser (ours, or hiredis behind the
    same interface) answers: it never raises anything else, and each call
    ends."""
    parser = make()
    last = 0
    for cut in [*sorted(c for c in cuts if c <= len(raw)), len(raw)]:
        parser.feed(raw[last:cut])
        last = cut
        try:
            for _ in range(len(raw) + 2):
                if parser.next_reply() is NEED_DATA:
                    break
            else:
                pytest.fail("more replies than bytes")
        except ProtocolError:
            return


def test_a_long_bulk_string_in_small_pieces_is_joined_once() -> None:
    payload = bytes(range(256)) * 400  # 100 kB, CRLFs inside
    raw = encode_reply([payload, b"tail"])
    parser = Parser()
    pieces = [raw[i : i + 100] for i in range(0, len(raw), 100)]
    for piece in pieces[:-1]:
        parser.feed(piece)
        assert parser.next_reply() is NEED_DATA
        assert parser.pending
    # Once the length is known, what arrives is kept aside, not joined per piece.
    assert len(parser._chunks) > 900
    parser.feed(pieces[-1])
    assert parser.next_reply() == [payload, b"tail"]
    assert parser.next_reply() is NEED_DATA
    assert not parser.pending


def test_replies_in_one_read_come_out_one_at_a_time() -> None:
    parser = Parser()
    parser.feed(b":1\r\n:2\r\n:3")
    assert parser.next_reply() == 1
    assert _pending(parser)
    assert parser.next_reply() == 2
    assert parser.next_reply() is NEED_DATA
    parser.feed(b"\r\n")
    assert parser.next_reply() == 3
    assert not _pending(parser)
    parser.feed(b"")
    assert parser.next_reply() is NEED_DATA
