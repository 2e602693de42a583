"""Connections served over trio's memory streams, on a clock that jumps.

``serve_connection`` takes any ``trio.abc.Stream``: here the server end of a
``trio.testing.memory_stream_pair`` (or a ``lockstep_stream_pair``, which has
no buffer at all, so a write waits for the reader: deadlocks show, and so does
back-pressure). The server is a real :class:`BayeuxServer` whose hub runs in
the test's nursery, without a listener. Every wait here is on trio's
``autojump_clock``: what would take the timeouts' real seconds takes none,
and the virtual time an answer took is exact, so the tests can say *when* the
server acted (a held connect at the engine's timeout, a 408 at the header
timeout) without a sleep or a wall-clock measurement.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import trio
import trio.testing
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from bayeux_trio import BayeuxServer, ServerConfig
from bayeux_trio.server._connection import serve_connection

from .helpers import HANDSHAKE, HttpClient, WsClient, make_config

Pair = Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]
PAIRS: dict[str, Pair] = {
    "memory": trio.testing.memory_stream_pair,
    "lockstep": trio.testing.lockstep_stream_pair,
}


class Served:
    """A server without a listener: connections come from stream pairs."""

    def __init__(self, server: BayeuxServer, nursery: trio.Nursery, pair: Pair) -> None:
        self.server = server
        self.nursery = nursery
        self.pair = pair
        #: one event per connection, set when the server is done with it
        self.ended: list[trio.Event] = []

    def connect(self) -> trio.abc.Stream:
        """A new connection; returns the client's end."""
        client, ours = self.pair()
        ended = trio.Event()
        self.ended.append(ended)
        server = self.server

        async def serve() -> None:
            try:
                await serve_connection(server, ours)
            finally:
                ended.set()

        self.nursery.start_soon(serve)
        return client


@contextlib.asynccontextmanager
async def serving(config: ServerConfig, pair: Pair) -> AsyncIterator[Served]:
    server = BayeuxServer(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.hub.run)
        yield Served(server, nursery, pair)
        nursery.cancel_scope.cancel()


async def read_to_eof(stream: trio.abc.Stream) -> bytes:
    received = bytearray()
    for _ in range(10_000):
        chunk = await stream.receive_some(65536)
        if not chunk:
            return bytes(received)
        received += chunk
    raise AssertionError("the server never closed")


async def post(client: HttpClient, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = await client.request(
        "POST",
        "/faye",
        headers=[("content-type", "application/json")],
        body=orjson.dumps(messages),
    )
    assert response.status == 200, response
    replies: list[dict[str, Any]] = response.json()
    return replies


def connect_message(client_id: str) -> dict[str, Any]:
    return {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}


@pytest.mark.parametrize("pair", list(PAIRS))
async def test_a_held_connect_is_answered_at_the_engine_timeout(
    autojump_clock: trio.testing.MockClock, pair: str
) -> None:
    async with serving(make_config(timeout=30.0), PAIRS[pair]) as served:
        client = HttpClient(served.connect(), 0)  # type: ignore[arg-type]
        (reply,) = await post(client, [HANDSHAKE])
        client_id = reply["clientId"]
        (first,) = await post(client, [connect_message(client_id)])  # never held
        assert first["successful"] is True
        start = trio.current_time()
        (held,) = await post(client, [connect_message(client_id)])
        assert held["successful"] is True
        assert trio.current_time() - start == pytest.approx(30.0)
        # The same connection serves the next request (keep-alive).
        (again,) = await post(client, [{"channel": "/meta/disconnect", "clientId": client_id}])
        assert again["successful"] is True


async def test_a_delivery_ends_a_held_connect(autojump_clock: trio.testing.MockClock) -> None:
    async with serving(make_config(timeout=30.0), trio.testing.memory_stream_pair) as served:
        client = HttpClient(served.connect(), 0)  # type: ignore[arg-type]
        (reply,) = await post(client, [HANDSHAKE])
        client_id = reply["clientId"]
        subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/a"}
        await post(client, [subscribe])
        await post(client, [connect_message(client_id)])
        start = trio.current_time()
        async with trio.open_nursery() as nursery:

            async def publish_later() -> None:
                await trio.sleep(5)
                served.server.publish("/a", {"n": 1})

            nursery.start_soon(publish_later)
            replies = await post(client, [connect_message(client_id)])
        assert trio.current_time() - start == pytest.approx(5.0)
        assert [m.get("data") for m in replies if m["channel"] == "/a"] == [{"n": 1}]


@pytest.mark.parametrize("pair", list(PAIRS))
async def test_a_slow_head_gets_408_at_the_header_timeout(
    autojump_clock: trio.testing.MockClock, pair: str
) -> None:
    config = make_config(header_timeout=7.0, idle_timeout=100.0)
    async with serving(config, PAIRS[pair]) as served:
        stream = served.connect()
        start = trio.current_time()
        await stream.send_all(b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Le")
        data = await read_to_eof(stream)
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert b"connection: close" in data.lower()
        # Half-closed after the answer (send_eof), then closed: the client
        # saw the end of the stream, at the header timeout.
        assert trio.current_time() - start == pytest.approx(7.0)
        with trio.fail_after(10):
            await served.ended[0].wait()


async def test_an_idle_connection_is_closed_at_the_idle_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = make_config(header_timeout=7.0, idle_timeout=50.0)
    async with serving(config, trio.testing.memory_stream_pair) as served:
        start = trio.current_time()
        silent = served.connect()
        assert await read_to_eof(silent) == b""  # closed without a word
        assert trio.current_time() - start == pytest.approx(50.0)
        # After a request, the next one may take as long again.
        client = HttpClient(served.connect(), 0)  # type: ignore[arg-type]
        await post(client, [HANDSHAKE])
        answered = trio.current_time()
        assert await client.at_eof()
        assert trio.current_time() - answered == pytest.approx(50.0)


async def open_websocket(stream: trio.abc.Stream) -> WsClient:
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host="memory", target="/faye")))
    client = WsClient(stream, ws)  # type: ignore[arg-type]
    event = await client.receive()
    assert isinstance(event, AcceptConnection), event
    return client


async def ws_start(client: WsClient, *channels: str) -> str:
    await client.send_json([{**HANDSHAKE, "supportedConnectionTypes": ["websocket"]}])
    (reply,) = await client.receive_json()
    client_id: str = reply["clientId"]
    for channel in channels:
        await client.send_json(
            [{"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel}]
        )
        (subscribed,) = await client.receive_json()
        assert subscribed["successful"] is True, subscribed
    await client.send_json([{**connect_message(client_id), "connectionType": "websocket"}])
    (connected,) = await client.receive_json()
    assert connected["successful"] is True, connected
    return client_id


@pytest.mark.parametrize("pair", list(PAIRS))
async def test_a_websocket_over_memory_streams(
    autojump_clock: trio.testing.MockClock, pair: str
) -> None:
    async with serving(make_config(timeout=30.0), PAIRS[pair]) as served:
        client = await open_websocket(served.connect())
        client_id = await ws_start(client, "/chat/*")
        # Pushed without a request, and a publish from the client fanned out
        # to itself: one frame each.
        served.server.publish("/chat/a", {"from": "server"})
        (pushed,) = await client.receive_json()
        assert pushed["data"] == {"from": "server"}
        await client.send_json([{"channel": "/chat/b", "clientId": client_id, "data": 2}])
        got = await client.receive_json()
        got += [] if len(got) == 2 else await client.receive_json()
        assert sorted(m["channel"] for m in got) == ["/chat/b", "/chat/b"]
        # The next connect is held for the engine's timeout, then answered.
        start = trio.current_time()
        await client.send_json([{**connect_message(client_id), "connectionType": "websocket"}])
        (held,) = await client.receive_json()
        assert held["channel"] == "/meta/connect"
        assert trio.current_time() - start == pytest.approx(30.0)
        await client.close()
        await client.expect_eof()
        with trio.fail_after(10):
            await served.ended[0].wait()
        assert not served.server._streams


async def test_a_websocket_too_far_behind_is_cut_off(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Back-pressure through a stream: the writer waits, the buffer fills, the cut."""
    caplog.set_level("INFO", "bayeux.server")
    config = make_config(timeout=30.0, max_buffer=20_000)
    async with serving(config, trio.testing.lockstep_stream_pair) as served:
        slow = await open_websocket(served.connect())
        await ws_start(slow, "/feed")
        hub = served.server.hub
        # The client reads nothing more: a lockstep stream's writer waits at
        # once, and what is published meanwhile piles up in the output.
        for n in range(200):
            served.server.publish("/feed", {"n": n, "pad": "x" * 500})
            await trio.testing.wait_all_tasks_blocked()
            if served.ended[0].is_set():
                break
        assert served.ended[0].is_set()
        assert n < 100  # about 20,000 bytes behind
        assert "cutting off a connection" in caplog.text
        assert not served.server._streams
        assert not hub.has_pending_output()
        # What the client gets is some of the messages, then the end.
        await slow.expect_eof()
