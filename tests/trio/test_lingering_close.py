"""A refused request's answer reaches a client that is still sending (issue 14).

Closing a socket with unread input makes the kernel send a reset, which
destroys the 413 before the client reads it: the client sees a broken pipe.
The server reads and discards for a bounded time and byte count first, as
nginx's lingering close does.
"""

from __future__ import annotations

import trio

from .helpers import HOST, fail_after, make_config, parse_response, start_server

BODY = 20 * 1024 * 1024


async def send_then_read(port: int, data: bytes) -> bytes:
    """What a simple client does: send the whole request, then read the answer."""
    async with await trio.open_tcp_stream(HOST, port) as stream:
        await stream.send_all(data)  # raises BrokenResourceError on a reset
        received = bytearray()
        while chunk := await stream.receive_some(65536):
            received += chunk
        return bytes(received)


@fail_after(60)
async def test_a_20_mib_post_reads_its_413(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config())
    assert server.port is not None
    head = b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    for framing in (b"Content-Length: %d\r\n\r\n" % BODY, b"Transfer-Encoding: chunked\r\n\r\n"):
        body = b"x" * BODY
        if framing.startswith(b"Transfer"):
            body = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
        response = parse_response(await send_then_read(server.port, head + framing + body))
        assert response.status == 413
        assert response.header("connection") == "close"


@fail_after(60)
async def test_a_huge_head_reads_its_431(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(max_header=16 * 1024))
    assert server.port is not None
    head = b"GET /faye HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"y" * BODY
    response = parse_response(await send_then_read(server.port, head + b"\r\n\r\n"))
    assert response.status == 431
    assert response.header("connection") == "close"
