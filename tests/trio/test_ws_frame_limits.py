"""A WebSocket frame header over --max-ws-message is refused at once (issue 14).

The declared length is checked as soon as the header is read, for every
frame kind, so a header declaring 2**62 bytes gets close code 1009 instead of
a connection that waits for bytes that never come.
"""

from __future__ import annotations

import struct

import pytest
import trio
from wsproto.events import TextMessage

from bayeux_trio.server._websocket import TOO_BIG, FrameReader

from .helpers import WsClient, fail_after, handshake, make_config, start_server

LIMIT = 1000
MASK = b"\x01\x02\x03\x04"


def header(first: int, length: int, *, masked: bool = True) -> bytes:
    """A client frame header (``first``: FIN, RSV and opcode) declaring ``length``."""
    bit = 0x80 if masked else 0
    if length < 126:
        head = bytes((first, bit | length))
    elif length < 65536:
        head = bytes((first, bit | 126)) + struct.pack("!H", length)
    else:
        head = bytes((first, bit | 127)) + struct.pack("!Q", length)
    return head + (MASK if masked else b"")


def frame(first: int, payload: bytes) -> bytes:
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return header(first, len(payload)) + masked


@pytest.mark.parametrize(
    ("name", "first"),
    [("text", 0x81), ("text fragment", 0x01), ("binary", 0x82), ("close", 0x88),
     ("ping", 0x89), ("pong", 0x8A)],
)  # fmt: skip
@pytest.mark.parametrize("length", [2**62, LIMIT + 1])
@fail_after(10)
async def test_a_header_over_the_limit_is_refused_at_once(
    nursery: trio.Nursery, name: str, first: int, length: int
) -> None:
    server = await start_server(nursery, make_config(max_ws_message=LIMIT))
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        await ws.send_raw(header(first, length))  # and not one byte of payload
        with trio.fail_after(5):  # the server must not wait for the payload
            close = await ws.expect_close()
        assert close.code == 1009
    assert await handshake(server.port)  # still serving


@fail_after(10)
async def test_a_continuation_taking_the_message_past_the_limit_is_refused(
    nursery: trio.Nursery,
) -> None:
    server = await start_server(nursery, make_config(max_ws_message=LIMIT))
    assert server.port is not None
    async with await WsClient.connect(server.port) as ws:
        await ws.send_raw(frame(0x01, b"x" * 600))  # text, not final
        await ws.send_raw(frame(0x89, b"ping"))  # a control frame in between
        await ws.send_raw(header(0x80, 600))  # final continuation: 1,200 in all
        with trio.fail_after(5):
            close = await ws.expect_close()
        assert close.code == 1009


def test_the_reader_checks_declared_lengths_only_with_a_limit() -> None:
    assert FrameReader(LIMIT).feed(header(0x81, 2**62)) == []  # waits: no limit given
    assert FrameReader(LIMIT, LIMIT).feed(header(0x81, 2**62)) == [TOO_BIG]
    # What comes before the refused frame is still given.
    data = frame(0x81, b"[]") + header(0x82, LIMIT + 1)
    assert FrameReader(LIMIT, LIMIT).feed(data) == ["[]", TOO_BIG]


def test_the_reader_accepts_a_message_at_the_limit_in_fragments() -> None:
    reader = FrameReader(LIMIT, LIMIT)
    events = reader.feed(frame(0x01, b"a" * 500) + frame(0x8A, b"") + frame(0x80, b"b" * 500))
    texts = [e.data for e in events if isinstance(e, TextMessage)]
    assert "".join(texts) == "a" * 500 + "b" * 500
    assert TOO_BIG not in events
    # The count starts again with the next message.
    assert reader.feed(frame(0x81, b"c" * LIMIT)) == ["c" * LIMIT]
