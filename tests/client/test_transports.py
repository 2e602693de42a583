"""The transports' parts on their own: URLs, cookies, batching, and HTTP
keep-alive against a scripted HTTP server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Pong, Request, TextMessage

from bayeux_core import Message
from bayeux_trio.client._transports import (
    Endpoint,
    HttpSettings,
    LongPollingTransport,
    Transport,
    WebSocketTransport,
    encode_batches,
    parse_set_cookie,
)
from tests.trio.helpers import fail_after

from .support import HOST, eventually


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h/faye", Endpoint(False, "h", 80, "/faye", "h")),
        ("https://h/faye?x=1", Endpoint(True, "h", 443, "/faye?x=1", "h")),
        ("ws://h:8080", Endpoint(False, "h", 8080, "/", "h:8080")),
        ("WSS://h:443/b", Endpoint(True, "h", 443, "/b", "h")),
        ("http://[::1]:9292/faye", Endpoint(False, "::1", 9292, "/faye", "[::1]:9292")),
        (
            "http://me:s%3Acret@h/faye",
            Endpoint(False, "h", 80, "/faye", "h", "Basic bWU6czpjcmV0"),
        ),
    ],
)
def test_endpoints(url: str, expected: Endpoint) -> None:
    assert Endpoint.parse(url) == expected


@pytest.mark.parametrize("url", ["ftp://h/", "h/faye", "http:///faye", "http://h:70000/"])
def test_bad_endpoints(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        Endpoint.parse(url)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("sid=abc; Path=/; HttpOnly", ("sid", "abc")),
        ("sid=; Max-Age=0", ("sid", None)),
        ("sid=x; max-age=-1", ("sid", None)),
        ("sid=x; Max-Age=oops", ("sid", "x")),
        ("sid=x; Max-Age=60", ("sid", "x")),
        ("novalue", None),
        ("=x", None),
    ],
)
def test_set_cookie(header: str, expected: tuple[str, str | None] | None) -> None:
    assert parse_set_cookie(header) == expected


def test_the_cookie_jar() -> None:
    settings = HttpSettings(Endpoint.parse("http://h/"), [("X-A", "1")], {"a": "1"}, None, 1, 4096)
    settings.store_cookies(
        [(b"set-cookie", b"b=2; Path=/"), (b"Set-Cookie", b"a=; Max-Age=0"), (b"x-other", b"c=3")]
    )
    assert settings.cookies == {"b": "2"}
    assert settings.request_headers() == [("X-A", "1"), ("Cookie", "b=2")]


def test_batches_are_cut_by_count_and_size() -> None:
    messages: list[Message] = [{"channel": "/a", "data": "x" * 10, "id": str(n)} for n in range(5)]
    size = len(orjson.dumps(messages[0]))
    cut = encode_batches(messages, max_bytes=2 * size + 3, max_count=10)
    assert [count for count, _ in cut] == [2, 2, 1]
    assert [m for _, body in cut for m in orjson.loads(body)] == messages
    assert [count for count, _ in encode_batches(messages, max_bytes=10**6, max_count=2)] == [
        2,
        2,
        1,
    ]
    # Too large on its own: it still goes, alone.
    assert [count for count, _ in encode_batches(messages, max_bytes=5)] == [1] * 5
    assert encode_batches([], max_bytes=100) == []


# ------------------------------------------------------------- long-polling


@dataclass
class Hooks:
    received: list[list[Message]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def transport_received(self, transport: Transport, messages: list[Message]) -> None:
        self.received.append(messages)

    def transport_failed(self, transport: Transport, reason: str) -> None:
        self.failed.append(reason)
        transport.abort()

    def transport_refused(self, transport: Transport, reason: str) -> None:
        raise AssertionError("long-polling is never refused")  # pragma: no cover


class ScriptedServer:
    """Answers each request with the next scripted response, then maybe closes."""

    def __init__(self, script: list[tuple[bytes, bool]]) -> None:
        #: (raw response, close the connection after it)
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0
        self.port = 0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        (listener,) = await trio.open_tcp_listeners(0, host=HOST)
        self.port = listener.socket.getsockname()[1]
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                nursery.start_soon(self._connection, await listener.accept())

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        async with stream:
            buffer = b""
            while self.script:
                while b"\r\n\r\n" not in buffer:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(buffer) < length:
                    buffer += await stream.receive_some(65536)
                self.requests.append(head + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
                response, close = self.script.pop(0)
                await stream.send_all(response)
                if close:
                    return


def ok(body: bytes, *extra: bytes) -> bytes:
    headers = b"".join(h + b"\r\n" for h in extra)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), headers, body)


@fail_after(20)
async def test_a_kept_alive_connection_the_server_closed_is_retried_once(
    nursery: trio.Nursery,
) -> None:
    server = ScriptedServer(
        [
            # Keep-alive, as far as the client knows, but closed: a server's
            # idle timeout firing just before the next request.
            (ok(b'[{"id":"1","successful":true}]', b"Set-Cookie: sid=s1"), True),
            (ok(b'[{"id":"2","successful":true}]'), False),
            (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", False),
        ]
    )
    await nursery.start(server.serve)
    hooks = Hooks()
    settings = HttpSettings(
        Endpoint.parse(f"http://{HOST}:{server.port}/faye"), [], {}, None, 5, 1 << 20
    )
    transport = LongPollingTransport(settings, hooks)
    nursery.start_soon(transport.run)
    transport.send([{"channel": "/a", "data": 1, "id": "1"}])
    await eventually(lambda: len(hooks.received) == 1)
    transport.send([{"channel": "/a", "data": 2, "id": "2"}])
    await eventually(lambda: len(hooks.received) == 2)
    assert hooks.failed == []  # the closed connection was not a failure
    assert server.connections == 2
    assert b"cookie: sid=s1" in server.requests[1].lower()  # the jar at work
    transport.send([{"channel": "/a", "data": 3, "id": "3"}])
    await eventually(lambda: len(hooks.failed) == 1)
    assert hooks.failed == ["HTTP 503 from the server"]


@fail_after(20)
async def test_connection_close_bad_bodies_and_oversized_responses(
    nursery: trio.Nursery,
) -> None:
    server = ScriptedServer(
        [
            (ok(b'[{"id":"1","successful":true}]', b"Connection: close"), True),
            (ok(b"not json"), False),
            (ok(b"[" + b" " * 5000 + b"]"), False),
        ]
    )
    await nursery.start(server.serve)
    hooks = Hooks()
    settings = HttpSettings(
        Endpoint.parse(f"http://{HOST}:{server.port}/faye"), [], {}, None, 5, 4096
    )
    transport = LongPollingTransport(settings, hooks)
    nursery.start_soon(transport.run)
    for n, expected in enumerate(["bad response body", "larger than 4096 bytes"], start=1):
        transport.send([{"channel": "/a", "data": n, "id": str(n)}])
        await eventually(lambda n=n: len(hooks.received) + len(hooks.failed) == n)  # type: ignore[misc]
        assert hooks.received == [[{"id": "1", "successful": True}]]
        transport.send([{"channel": "/a", "data": n, "id": f"{n}b"}])
        await eventually(lambda n=n: len(hooks.failed) == n)  # type: ignore[misc]
        assert expected in hooks.failed[-1]
    assert server.connections == 3  # a new one after Connection: close, and after each failure


# ----------------------------------------------------------------- WebSocket


class ScriptedWebSocket:
    """Accepts one WebSocket upgrade, then runs ``script(stream, ws)``."""

    def __init__(self) -> None:
        self.port = 0
        self.received: list[object] = []

    async def serve(
        self, script: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        (listener,) = await trio.open_tcp_listeners(0, host=HOST)
        self.port = listener.socket.getsockname()[1]
        async with listener:
            task_status.started()
            async with await listener.accept() as stream:
                ws = WSConnection(ConnectionType.SERVER)
                for _ in range(100):
                    if any(isinstance(e, Request) for e in self._events(ws)):
                        break
                    data = await stream.receive_some(65536)
                    assert data, "the client went away before its upgrade request"
                    ws.receive_data(data)
                await stream.send_all(ws.send(AcceptConnection()))
                await script(stream, ws)
                with trio.move_on_after(5):
                    while True:
                        data = await stream.receive_some(65536)
                        if not data:
                            break
                        ws.receive_data(data)
                        self._events(ws)

    def _events(self, ws: WSConnection) -> list[object]:
        events: list[object] = list(ws.events())
        self.received.extend(events)
        return events


@fail_after(20)
async def test_websocket_pings_bad_frames_and_oversized_messages(nursery: trio.Nursery) -> None:
    async def script(stream: trio.SocketStream, ws: WSConnection) -> None:
        # The client's handshake first: once the oversized message closes the
        # socket, a message still queued in the client is never written.
        while not any(isinstance(e, TextMessage) for e in server.received):
            data = await stream.receive_some(65536)
            assert data, "the client went away before its handshake"
            ws.receive_data(data)
            server._events(ws)
        await stream.send_all(ws.send(Ping(b"hi")))
        await stream.send_all(ws.send(TextMessage(data="not json")))
        await stream.send_all(ws.send(TextMessage(data='[{"channel":"/a","data":1}]')))
        await stream.send_all(ws.send(TextMessage(data="[" + " " * 5000 + "]")))

    server = ScriptedWebSocket()
    await nursery.start(server.serve, script)
    hooks = Hooks()
    settings = HttpSettings(Endpoint.parse(f"ws://{HOST}:{server.port}/"), [], {}, None, 5, 4096)
    transport = WebSocketTransport(settings, hooks)
    nursery.start_soon(transport.run)
    transport.send([{"channel": "/meta/handshake", "id": "1"}])
    await eventually(lambda: len(hooks.failed) == 1)
    assert hooks.received == [[{"channel": "/a", "data": 1}]]  # "not json" was ignored
    assert hooks.failed == ["a message from the server is larger than 4096 bytes"]
    await eventually(lambda: any(isinstance(e, CloseConnection) for e in server.received))
    assert Pong(b"hi") in server.received
    closes = [e for e in server.received if isinstance(e, CloseConnection)]
    assert closes[0].code == 1009
    texts = [e.data for e in server.received if isinstance(e, TextMessage)]
    assert texts == ['[{"channel":"/meta/handshake","id":"1"}]']


@fail_after(20)
async def test_websocket_closed_by_the_server(nursery: trio.Nursery) -> None:
    async def script(stream: trio.SocketStream, ws: WSConnection) -> None:
        await stream.send_all(ws.send(CloseConnection(code=1001, reason="going away")))

    server = ScriptedWebSocket()
    await nursery.start(server.serve, script)
    hooks = Hooks()
    settings = HttpSettings(Endpoint.parse(f"ws://{HOST}:{server.port}/"), [], {}, None, 5, 4096)
    transport = WebSocketTransport(settings, hooks)
    nursery.start_soon(transport.run)
    transport.send([{"channel": "/meta/handshake", "id": "1"}])
    await eventually(lambda: len(hooks.failed) == 1)
    assert hooks.failed == ["closed by the server (1001 going away)"]
    await eventually(lambda: any(isinstance(e, CloseConnection) for e in server.received))
