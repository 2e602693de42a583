"""Hostile and broken input: the server answers, limits hold, and it keeps serving.

Every test ends by checking that a fresh client can still handshake.
"""

from __future__ import annotations

import contextlib
from urllib.parse import quote, urlencode

import orjson
import pytest
import trio

from bayeux_trio import BayeuxServer

from .helpers import (
    HANDSHAKE,
    HOST,
    HttpClient,
    LongPoller,
    deliveries,
    fail_after,
    handshake,
    jsonp_target,
    make_config,
    parse_response,
    raw_exchange,
    request,
    start_server,
    wait_for,
)


async def _still_serving(server: BayeuxServer) -> None:
    assert server.port is not None
    client_id = await handshake(server.port)
    assert server.engine.store.get(client_id) is not None


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /faye HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"GET /faye HTTP/1.1\r\n\r\n",  # HTTP/1.1 requires Host
        b"GET /faye HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nxxxxx",
        b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"POST /faye HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /fa ye HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",  # TLS hello
    ],
)
@fail_after(10)
async def test_malformed_http_gets_400_and_close(nursery: trio.Nursery, data: bytes) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    reply = await raw_exchange(server.port, data)  # returns at EOF: the server closed
    response = parse_response(reply)
    assert response.status == 400
    assert response.header("connection") == "close"
    assert response.body == b"Bad request"
    await _still_serving(server)


@fail_after(10)
async def test_body_over_max_body_gets_413(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(max_body=1000))
    assert server.port is not None
    message = orjson.dumps([{**HANDSHAKE, "ext": {"pad": ""}}])
    padded = message.replace(b'"pad":""', b'"pad":"' + b"x" * (1001 - len(message)) + b'"')
    assert len(padded) == 1001
    head = b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    reply = await raw_exchange(server.port, head + b"Content-Length: 1001\r\n\r\n" + padded)
    response = parse_response(reply)
    assert response.status == 413
    assert response.header("connection") == "close"
    # chunked: no declared length, the limit still holds
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n"
    chunked += b"%x\r\n%b\r\n0\r\n\r\n" % (len(padded), padded)
    assert parse_response(await raw_exchange(server.port, chunked)).status == 413
    assert len(server.engine.store) == 0
    # at the limit it is accepted
    exact = padded.replace(b"x", b"", 1)
    response = await request(
        server.port, "POST", "/faye", headers=[("content-type", "application/json")], body=exact
    )
    assert response.status == 200
    await _still_serving(server)


@fail_after(10)
async def test_declared_length_over_max_body_gets_413_without_reading(
    nursery: trio.Nursery,
) -> None:
    """A Content-Length over the limit is refused at once, the body never sent."""
    server = await start_server(nursery, make_config(max_body=1000, body_timeout=30))
    assert server.port is not None
    head = b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n"
    with trio.fail_after(5):  # far below body_timeout: nobody waited for the body
        reply = await raw_exchange(server.port, head)
    assert parse_response(reply).status == 413
    await _still_serving(server)


@fail_after(10)
async def test_expect_100_continue_is_answered(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(body_timeout=30))
    assert server.port is not None
    body = b"message=" + quote(orjson.dumps(HANDSHAKE)).encode()
    head = b"POST /faye HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
    head += b"Content-Length: %d\r\n\r\n" % len(body)
    async with await trio.open_tcp_stream(HOST, server.port) as stream:
        await stream.send_all(head)
        with trio.fail_after(5):
            interim = await stream.receive_some(1024)
        assert interim.startswith(b"HTTP/1.1 100 ")
        await stream.send_all(body)
        received = b""
        with trio.fail_after(5):
            while b'"successful":true' not in received:
                chunk = await stream.receive_some(65536)
                assert chunk
                received += chunk
    assert parse_response(received).status == 200


@fail_after(10)
async def test_jsonp_message_over_max_body_gets_413(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(max_body=200))
    assert server.port is not None
    big = [{**HANDSHAKE, "ext": {"pad": "x" * 300}}]
    response = await request(server.port, "GET", jsonp_target(big, "cb"))
    assert response.status == 413
    await _still_serving(server)


@pytest.mark.parametrize("size", [1100, 4000, 100_000])
@fail_after(10)
async def test_header_over_max_header_gets_431(nursery: trio.Nursery, size: int) -> None:
    server = await start_server(nursery, make_config(max_header=1024))
    assert server.port is not None
    data = b"GET /faye HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n"
    response = parse_response(await raw_exchange(server.port, data))
    assert response.status == 431
    assert response.header("connection") == "close"
    await _still_serving(server)


@fail_after(10)
async def test_header_within_max_header_is_accepted(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(max_header=1024))
    assert server.port is not None
    response = await request(
        server.port, "GET", jsonp_target([], "cb"), headers=[("x-pad", "a" * 700)]
    )
    assert response.status == 200
    assert response.body == b"/**/cb([]);"


@fail_after(10)
async def test_slow_header_times_out_while_others_are_served(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(header_timeout=0.3))
    assert server.port is not None
    async with await trio.open_tcp_stream(HOST, server.port) as slow:
        await slow.send_all(b"POST /faye HTTP/1.1\r\nHost: x\r\n")
        await _still_serving(server)  # served while the slow head is pending
        received = b""
        for _ in range(100):
            chunk = await slow.receive_some(65536)
            if not chunk:
                break
            received += chunk
        response = parse_response(received)
        assert response.status == 408
        assert response.header("connection") == "close"
    await _still_serving(server)


@fail_after(10)
async def test_trickled_header_does_not_extend_the_deadline(nursery: trio.Nursery) -> None:
    """A byte at a time (slowloris) still has header_timeout for the whole head."""
    server = await start_server(nursery, make_config(header_timeout=0.3))
    assert server.port is not None
    async with await trio.open_tcp_stream(HOST, server.port) as slow:

        async def trickle() -> None:
            try:
                for byte in b"GET /faye HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000:
                    await slow.send_all(bytes([byte]))
                    await trio.sleep(0.05)  # 50 s in all: the hang guard fails first
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

        async with trio.open_nursery() as inner:
            inner.start_soon(trickle)
            received = b""
            for _ in range(100):
                chunk = await slow.receive_some(65536)
                if not chunk:
                    break
                received += chunk
            inner.cancel_scope.cancel()
        assert parse_response(received).status == 408
    await _still_serving(server)


@fail_after(10)
async def test_idle_connection_is_closed_silently(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(idle_timeout=0.2))
    assert server.port is not None
    async with await HttpClient.connect(server.port) as client:
        response = await client.request("GET", jsonp_target([], "cb"))
        assert response.status == 200
        assert await client.at_eof()  # no 408 for a connection between requests


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "TRACE", "BREW", "HEAD"])
@fail_after(10)
async def test_other_methods_get_400(nursery: trio.Nursery, method: str) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    async with await HttpClient.connect(server.port) as client:
        response = await client.request(
            method,
            "/faye",
            headers=[("content-type", "application/json")],
            body=orjson.dumps([HANDSHAKE]) if method in ("PUT", "PATCH") else b"",
        )
        assert response.status == 400
        assert response.body == (b"" if method == "HEAD" else b"Bad request")
        assert len(server.engine.store) == 0
        # keep-alive survives the 400
        response = await client.request("GET", jsonp_target([], "cb"))
        assert response.body == b"/**/cb([]);"
    await _still_serving(server)


BAD_MESSAGES = ["1", "[1]", "[null]", '"str"', "null", "true", "{", "[{}, 2]", "", "[[]]"]


@pytest.mark.parametrize("message", BAD_MESSAGES)
@fail_after(10)
async def test_bad_message_values_get_400(nursery: trio.Nursery, message: str) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    port = server.port
    responses = [
        await request(port, "GET", f"/faye?message={quote(message)}&jsonp=cb"),
        await request(port, "POST", "/faye", body=urlencode({"message": message}).encode()),
        await request(
            port,
            "POST",
            "/faye",
            headers=[("content-type", "application/json")],
            body=message.encode(),
        ),
    ]
    for response in responses:
        assert response.status == 400, (message, response)
        assert response.header("content-type") == "text/plain; charset=utf-8"
        assert response.body == b"Bad request"
    await _still_serving(server)


@fail_after(10)
async def test_body_that_is_not_utf8_gets_400(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    for content_type in ("application/json", "text/plain"):
        response = await request(
            server.port,
            "POST",
            "/faye",
            headers=[("content-type", content_type)],
            body=b'[{"channel":"\xff\xfe"}]',
        )
        assert response.status == 400
    await _still_serving(server)


@fail_after(10)
async def test_message_of_the_wrong_shape_gets_a_bayeux_error(nursery: trio.Nursery) -> None:
    """Objects that are not valid Bayeux get per-message errors, never a crash."""
    server = await start_server(nursery)
    assert server.port is not None
    client_id = await handshake(server.port)
    batch = [
        {"channel": 5},
        {"channel": None, "data": 1},
        {"channel": "/meta/process", "clientId": client_id},
        {"channel": "/meta/subscribe/x", "clientId": client_id, "subscription": "/a"},
        {"channel": "/a", "clientId": client_id},
        {"channel": "/meta/subscribe", "clientId": client_id, "subscription": 7},
        {"channel": "/meta/__proto__"},
    ]
    response = await request(
        server.port,
        "POST",
        "/faye",
        headers=[("content-type", "application/json")],
        body=orjson.dumps(batch),
    )
    assert response.status == 200
    replies = response.json()
    assert len(replies) == len(batch)
    assert all(reply["successful"] is False for reply in replies)
    session = server.engine.store.get(client_id)
    assert session is not None
    assert session.subscriptions == set()
    await _still_serving(server)


@fail_after(10)
async def test_pipelined_requests_are_answered_in_order(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    one = f"GET {jsonp_target([], 'one')} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    two = f"GET {jsonp_target([], 'two')} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    data = await raw_exchange(server.port, one + two.encode())
    first = parse_response(data)
    assert first.body == b"/**/one([]);"
    rest = data.split(b"/**/one([]);", 1)[1]
    assert parse_response(rest).body == b"/**/two([]);"


@fail_after(10)
async def test_vanished_long_poller_loses_nothing(nursery: trio.Nursery) -> None:
    """A client whose held connect's socket dies gets what was published meanwhile."""
    server = await start_server(nursery)
    assert server.port is not None
    poller = LongPoller(server.port)
    await poller.start("/news")
    session = server.engine.store.get(poller.client_id)
    assert session is not None
    client = await HttpClient.connect(server.port)
    await client.send_request(
        "POST",
        "/faye",
        headers=[("content-type", "application/json")],
        body=orjson.dumps([poller.connect_message()]),
    )
    await wait_for(lambda: session.held is not None)
    await client.aclose()  # gone, without an answer
    await wait_for(lambda: session.held is None)  # the server noticed
    server.publish("/news", 1)
    publisher = LongPoller(server.port)
    await publisher.handshake()
    await publisher.publish("/news", 2)
    replies = await poller.connect()  # answered at once: messages are waiting
    assert deliveries(replies) == [{"channel": "/news", "data": 1}, {"channel": "/news", "data": 2}]
    await _still_serving(server)


@fail_after(10)
async def test_connection_limit(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(max_connections=1))
    assert server.port is not None
    async with await HttpClient.connect(server.port) as first:
        response = await first.request("GET", jsonp_target([], "cb"))
        assert response.status == 200
        async with await trio.open_tcp_stream(HOST, server.port) as second:
            await second.send_all(
                f"GET {jsonp_target([], 'cb')} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            refused = b""
            # closed on accept (or reset): either way no answer
            with contextlib.suppress(trio.BrokenResourceError):
                refused = await second.receive_some(65536)
            assert refused == b""
        response = await first.request("GET", jsonp_target([], "cb"))
        assert response.status == 200
    await wait_for(lambda: server._connections == 0)
    await _still_serving(server)


@fail_after(10)
async def test_head_request_then_slow_head(nursery: trio.Nursery) -> None:
    """A HEAD's bodiless answer does not leak into the next response on the connection."""
    server = await start_server(nursery, make_config(header_timeout=0.3))
    assert server.port is not None
    data = await raw_exchange(
        server.port, b"HEAD /faye HTTP/1.1\r\nHost: x\r\n\r\nPOST /faye HTTP/1.1\r\n"
    )
    first = parse_response(data)
    assert first.status == 400
    assert first.header("content-length") == "11"
    head_end = data.index(b"\r\n\r\n") + 4
    assert data[head_end:].startswith(b"HTTP/1.1 408 ")  # no body after the HEAD answer
    second = parse_response(data[head_end:])
    assert second.body == b"Request timeout"
    await _still_serving(server)


@fail_after(10)
async def test_head_request_with_a_head_over_max_header(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(max_header=1024))
    assert server.port is not None
    data = await raw_exchange(
        server.port, b"HEAD /faye HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2000 + b"\r\n\r\n"
    )
    response = parse_response(data)
    assert response.status == 431
    assert data.endswith(b"\r\n\r\n")  # headers only
    await _still_serving(server)
