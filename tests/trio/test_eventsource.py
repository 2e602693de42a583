"""EventSource at <mount>/<clientId>: the stream, its events, and bad ids."""

from __future__ import annotations

import pytest
import trio

from .helpers import (
    EventSourceReader,
    LongPoller,
    fail_after,
    make_config,
    start_server,
    wait_for,
)


@fail_after(10)
async def test_stream_headers_retry_and_events(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    client = LongPoller(server.port, connection_type="eventsource")
    await client.handshake()
    await client.subscribe("/news/*")
    stream = await EventSourceReader.open(server.port, f"/faye/{client.client_id}")
    try:
        assert stream.status == 200
        assert stream.header("content-type") == "text/event-stream"
        assert stream.header("cache-control") == "no-cache, no-store"
        assert stream.header("connection") == "close"
        assert await stream.next_block() == "retry: 5000"
        session = server.engine.store.get(client.client_id)
        assert session is not None
        assert session.stream is not None
        # Messages to the server still go as POSTs; an eventsource connect is not held.
        (reply,) = await client.connect()
        assert reply["advice"] == {"reconnect": "retry", "interval": 30000, "timeout": 0}
        server.publish("/news/today", {"headline": "x"})
        assert await stream.next_data() == [{"channel": "/news/today", "data": {"headline": "x"}}]
        publisher = LongPoller(server.port)
        await publisher.handshake()
        await publisher.publish("/news/later", "y")
        assert await stream.next_data() == [{"channel": "/news/later", "data": "y"}]
    finally:
        await stream.aclose()
    await wait_for(lambda: session.stream is None)


@fail_after(10)
async def test_queued_messages_arrive_when_the_stream_opens(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    client = LongPoller(server.port)
    await client.start("/q")
    server.publish("/q", 1)
    server.publish("/q", 2)
    stream = await EventSourceReader.open(server.port, f"/faye/{client.client_id}")
    try:
        assert await stream.next_block() == "retry: 5000"
        assert await stream.next_data() == [
            {"channel": "/q", "data": 1},
            {"channel": "/q", "data": 2},
        ]
    finally:
        await stream.aclose()


@fail_after(10)
async def test_disconnect_ends_the_stream(nursery: trio.Nursery) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    client = LongPoller(server.port, connection_type="eventsource")
    await client.handshake()
    stream = await EventSourceReader.open(server.port, f"/faye/{client.client_id}")
    try:
        assert await stream.next_block() == "retry: 5000"
        await client.send([{"channel": "/meta/disconnect", "clientId": client.client_id}])
        assert await stream.next_block() is None  # the chunked body ended
        assert await stream.client.at_eof()
    finally:
        await stream.aclose()


@fail_after(10)
async def test_comment_pings(nursery: trio.Nursery) -> None:
    server = await start_server(nursery, make_config(ping=0.05))
    assert server.port is not None
    client = LongPoller(server.port)
    await client.handshake()
    stream = await EventSourceReader.open(server.port, f"/faye/{client.client_id}")
    try:
        assert await stream.next_block() == "retry: 5000"
        assert await stream.next_block() == ":"
        assert await stream.next_block() == ":"
    finally:
        await stream.aclose()


@pytest.mark.parametrize(
    "client_id",
    ["__proto__", "constructor", "hasOwnProperty", "0" * 31, "unknown", "%2e%2e"],
)
@fail_after(10)
async def test_unknown_client_is_refused_and_nothing_bound(
    nursery: trio.Nursery, client_id: str
) -> None:
    server = await start_server(nursery)
    assert server.port is not None
    victim = LongPoller(server.port)
    await victim.start("/secret")
    stream = await EventSourceReader.open(server.port, f"/faye/{client_id}")
    try:
        assert stream.status == 400
        assert await stream.body() == b"Bad request"
        # The connection is kept alive and serves the next request normally.
        response = await stream.client.request("GET", "/faye?message=%5B%5D&jsonp=cb")
        assert response.status == 200
        assert response.body == b"/**/cb([]);"
    finally:
        await stream.aclose()
    assert all(session.stream is None for session in server.engine.store)
    server.publish("/secret", "mine")
    replies = await victim.connect()
    assert replies[1:] == [{"channel": "/secret", "data": "mine"}]
