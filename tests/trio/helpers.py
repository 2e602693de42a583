"""Helpers for the end-to-end tests: a real server on loopback, real clients.

Rules (from trio-websocket's test suite, see /work/shared/STYLE.md): localhost
only, port 0, and a ``fail_after`` on every test that does I/O so that a hang
fails instead of stalling the suite. Every loop here is bounded.

``HOST``, ``free_port`` and ``wait_for`` come from :mod:`tests._support`
(shared by every folder) and are re-exported here for the trio tests.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlencode

import h11
import orjson
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from bayeux_core import EngineConfig, Extension
from bayeux_trio import AsyncExtension, BayeuxServer, ServerConfig
from tests._support.ports import HOST, free_port
from tests._support.waiting import wait_for

__all__ = [
    "HOST",
    "EventSourceReader",
    "HttpClient",
    "LongPoller",
    "Response",
    "WsClient",
    "bayeux",
    "fail_after",
    "free_port",
    "handshake",
    "jsonp_target",
    "make_config",
    "parse_response",
    "raw_exchange",
    "raw_post",
    "request",
    "start_server",
    "wait_for",
]

_READ = 65536
#: what a long-polling client says it supports
CONNECTION_TYPES = ["long-polling", "callback-polling", "websocket", "eventsource"]
HANDSHAKE: dict[str, Any] = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "supportedConnectionTypes": CONNECTION_TYPES,
}

P = ParamSpec("P")
T = TypeVar("T")
Headers = Iterable[tuple[str, str] | tuple[bytes, bytes]]


# ---------------------------------------------------------------- the server


def fail_after(
    seconds: float,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Coroutine[Any, Any, T]]]:
    """Decorate an async test so that it fails (instead of hanging) after ``seconds``."""

    def decorator(fn: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            with trio.fail_after(seconds):
                return await fn(*args, **kwargs)

        return wrapper

    return decorator


def make_config(*, timeout: float = 30.0, **kwargs: Any) -> ServerConfig:
    """A loopback, port-0 config; ``timeout`` is the engine's connect hold.

    The hold is long by default: a test that needs a held connect answered
    publishes something, and one that waits for a hold never races its end.
    """
    kwargs.setdefault("host", HOST)
    kwargs.setdefault("port", 0)
    kwargs.setdefault("engine", EngineConfig(timeout=timeout))
    return ServerConfig(**kwargs)


async def start_server(
    nursery: trio.Nursery,
    config: ServerConfig | None = None,
    *,
    extensions: Sequence[Extension | AsyncExtension] = (),
) -> BayeuxServer:
    """Start a server in ``nursery`` (pytest-trio's fixture); returns it listening."""
    server = BayeuxServer(config if config is not None else make_config(), extensions=extensions)
    started: BayeuxServer = await nursery.start(server.serve)
    assert started is server
    assert server.port is not None
    assert server.port > 0
    return server


# ---------------------------------------------------------------------- HTTP


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a header (names compared case-insensitively)."""
        key = name.lower().encode()
        for k, v in self.headers:
            if k.lower() == key:
                return v.decode("latin-1")
        return None

    def header_names(self) -> set[str]:
        return {k.decode("latin-1").lower() for k, _ in self.headers}

    def json(self) -> Any:
        return orjson.loads(self.body)


def _encode_headers(headers: Headers) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        out.append(
            (
                name.encode("latin-1") if isinstance(name, str) else name,
                value.encode("latin-1") if isinstance(value, str) else value,
            )
        )
    return out


class HttpClient:
    """One keep-alive HTTP/1.1 connection, driven by h11's client side."""

    def __init__(self, stream: trio.SocketStream, port: int) -> None:
        self.stream = stream
        self.port = port
        self.h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> HttpClient:
        return cls(await trio.open_tcp_stream(HOST, port), port)

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send_request(
        self, method: str, target: str, *, headers: Headers = (), body: bytes = b""
    ) -> None:
        """Send one request (use :meth:`read_head` / :meth:`next_event` for the answer)."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        encoded = _encode_headers(headers)
        names = {k.lower() for k, _ in encoded}
        if b"host" not in names:
            encoded.insert(0, (b"host", f"{HOST}:{self.port}".encode()))
        if b"content-length" not in names and (body or method in ("POST", "PUT")):
            encoded.append((b"content-length", b"%d" % len(body)))
        data = self.h11.send(h11.Request(method=method, target=target, headers=encoded)) or b""
        if body:
            data += self.h11.send(h11.Data(data=body)) or b""
        data += self.h11.send(h11.EndOfMessage()) or b""
        await self.stream.send_all(data)

    async def next_event(self) -> Any:
        """The next h11 event from the server (reads the socket as needed)."""
        for _ in range(100_000):
            event = self.h11.next_event()
            if event is h11.NEED_DATA:
                self.h11.receive_data(await self.stream.receive_some(_READ))
                continue
            return event
        raise AssertionError("no event")  # pragma: no cover

    async def read_head(self) -> h11.Response:
        for _ in range(100):
            event = await self.next_event()
            if isinstance(event, h11.Response):
                return event
            assert isinstance(event, h11.InformationalResponse), event
        raise AssertionError("no response head")

    async def read_body(self) -> bytes:
        parts: list[bytes] = []
        for _ in range(100_000):
            event = await self.next_event()
            if isinstance(event, h11.Data):
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                raise AssertionError(f"unexpected {event!r}")
        raise AssertionError("body never ended")

    async def request(
        self, method: str, target: str, *, headers: Headers = (), body: bytes = b""
    ) -> Response:
        await self.send_request(method, target, headers=headers, body=body)
        head = await self.read_head()
        return Response(head.status_code, list(head.headers), await self.read_body())

    async def at_eof(self) -> bool:
        """True if the server closed the connection (after what it sent)."""
        try:
            event = await self.next_event()
        except h11.RemoteProtocolError:
            return False
        return isinstance(event, h11.ConnectionClosed)


async def request(
    port: int, method: str, target: str, *, headers: Headers = (), body: bytes = b""
) -> Response:
    """One request on a fresh connection."""
    async with await HttpClient.connect(port) as client:
        return await client.request(method, target, headers=headers, body=body)


async def post_json(port: int, messages: Any, *, headers: Headers = ()) -> Response:
    return await request(
        port,
        "POST",
        "/faye",
        headers=[("content-type", "application/json"), *headers],
        body=orjson.dumps(messages),
    )


async def bayeux(port: int, messages: Any, *, mount: str = "/faye") -> list[dict[str, Any]]:
    """POST a JSON batch, expect 200, return the decoded reply array."""
    response = await request(
        port,
        "POST",
        mount,
        headers=[("content-type", "application/json")],
        body=orjson.dumps(messages),
    )
    assert response.status == 200, (response.status, response.body)
    replies = response.json()
    assert isinstance(replies, list)
    return replies


async def handshake(port: int, *, mount: str = "/faye") -> str:
    """Handshake over HTTP; returns the client id."""
    (reply,) = await bayeux(port, [HANDSHAKE], mount=mount)
    assert reply["successful"] is True, reply
    client_id = reply["clientId"]
    assert isinstance(client_id, str)
    return client_id


def jsonp_target(messages: Any, callback: str | None = None, *, mount: str = "/faye") -> str:
    query = {"message": orjson.dumps(messages).decode()}
    if callback is not None:
        query["jsonp"] = callback
    return f"{mount}?{urlencode(query)}"


def raw_post(body: bytes, *extra: bytes) -> bytes:
    """The bytes of a JSON POST to /faye, with ``extra`` header lines."""
    return (
        b"POST /faye HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + b"".join(extra)
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


async def raw_exchange(port: int, data: bytes, *, limit: int = 1 << 20) -> bytes:
    """Send raw bytes, then read until the server closes the connection."""
    async with await trio.open_tcp_stream(HOST, port) as stream:
        # The server may answer and close before reading it all: read its answer.
        with contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(data)
        received = bytearray()
        while len(received) <= limit:
            try:
                chunk = await stream.receive_some(_READ)
            except trio.BrokenResourceError:
                break  # a reset after the reply: what came before still counts
            if not chunk:
                break
            received += chunk
        return bytes(received)


def parse_response(data: bytes) -> Response:
    """Parse the first response in ``data`` (Content-Length framing only)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {data!r}"
    status_line, *lines = head.split(b"\r\n")
    version, status, *_ = status_line.split(b" ", 2)
    assert version == b"HTTP/1.1", status_line
    headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    response = Response(int(status), headers, b"")
    length = response.header("content-length")
    response.body = rest[: int(length)] if length is not None else rest
    return response


# ---------------------------------------------------------------- long-polling


class LongPoller:
    """A Bayeux client over HTTP POSTs, one connection per request."""

    def __init__(self, port: int, *, connection_type: str = "long-polling") -> None:
        self.port = port
        self.connection_type = connection_type
        self.client_id = ""

    async def send(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return await bayeux(self.port, messages)

    async def handshake(self) -> str:
        self.client_id = await handshake(self.port)
        return self.client_id

    async def subscribe(self, *channels: str) -> None:
        replies = await self.send(
            [
                {"channel": "/meta/subscribe", "clientId": self.client_id, "subscription": c}
                for c in channels
            ]
        )
        assert [r["successful"] for r in replies] == [True] * len(channels), replies

    def connect_message(self, **extra: Any) -> dict[str, Any]:
        return {
            "channel": "/meta/connect",
            "clientId": self.client_id,
            "connectionType": self.connection_type,
            **extra,
        }

    async def connect(self, **extra: Any) -> list[dict[str, Any]]:
        """One /meta/connect; returns the whole reply array (reply, then deliveries)."""
        replies = await self.send([self.connect_message(**extra)])
        assert replies[0]["channel"] == "/meta/connect", replies
        assert replies[0]["successful"] is True, replies
        return replies

    async def start(self, *channels: str) -> None:
        """Handshake, subscribe, and make the first (never held) connect."""
        await self.handshake()
        if channels:
            await self.subscribe(*channels)
        await self.connect()

    async def publish(self, channel: str, data: Any) -> dict[str, Any]:
        (reply,) = await self.send([{"channel": channel, "clientId": self.client_id, "data": data}])
        return reply


def deliveries(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pushed messages in a reply array (not replies to meta messages)."""
    return [m for m in replies if not str(m.get("channel", "")).startswith("/meta/")]


# ----------------------------------------------------------------- WebSocket


class WsClient:
    """A minimal WebSocket client: wsproto over a trio socket stream."""

    def __init__(self, stream: trio.SocketStream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        self._events: list[Event] = []
        self._text: list[str] = []
        self.eof = False

    @classmethod
    async def connect(cls, port: int, target: str = "/faye", *, headers: Headers = ()) -> WsClient:
        stream = await trio.open_tcp_stream(HOST, port)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(
            ws.send(
                Request(
                    host=f"{HOST}:{port}",
                    target=target,
                    extra_headers=_encode_headers(headers),
                )
            )
        )
        client = cls(stream, ws)
        for _ in range(100):
            event = await client._next_raw()
            if isinstance(event, AcceptConnection):
                return client
            if isinstance(event, (RejectConnection, RejectData)):
                await stream.aclose()
                status = getattr(event, "status_code", None)
                raise ConnectionRefusedError(f"WebSocket upgrade refused: {status}")
        raise AssertionError("no upgrade response")

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def __aenter__(self) -> WsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _next_raw(self) -> Event | None:
        for _ in range(100_000):
            if self._events:
                return self._events.pop(0)
            if self.eof:
                return None
            try:
                data = await self.stream.receive_some(_READ)
            except trio.BrokenResourceError:
                data = b""
            if not data:
                self.eof = True
            self.ws.receive_data(data or None)
            self._events.extend(self.ws.events())
        raise AssertionError("no event")  # pragma: no cover

    async def receive(self) -> Event | None:
        """The next whole message or control event; None at EOF."""
        for _ in range(100_000):
            event = await self._next_raw()
            if isinstance(event, TextMessage):
                self._text.append(event.data)
                if not event.message_finished:
                    continue
                text = "".join(self._text)
                self._text.clear()
                return TextMessage(data=text)
            return event
        raise AssertionError("no message")  # pragma: no cover

    async def receive_json(self) -> Any:
        """The next text message, decoded; pings are answered and skipped."""
        for _ in range(1000):
            event = await self.receive()
            if isinstance(event, Ping):
                await self.send_raw(self.ws.send(event.response()))
                continue
            assert isinstance(event, TextMessage), event
            return orjson.loads(event.data)
        raise AssertionError("only pings")

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def send_text(self, text: str) -> None:
        await self.send_raw(self.ws.send(TextMessage(data=text)))

    async def send_json(self, value: Any) -> None:
        await self.send_text(orjson.dumps(value).decode())

    async def send_bytes(self, data: bytes) -> None:
        await self.send_raw(self.ws.send(BytesMessage(data=data)))

    async def close(self, code: int = 1000) -> None:
        await self.send_raw(self.ws.send(CloseConnection(code=code)))

    async def expect_close(self) -> CloseConnection:
        """Skip messages until the server's close frame; answer it."""
        for _ in range(1000):
            event = await self.receive()
            assert event is not None, "EOF before a close frame"
            if isinstance(event, CloseConnection):
                return event
        raise AssertionError("no close frame")

    async def expect_eof(self) -> None:
        for _ in range(1000):
            if await self._next_raw() is None:
                return
        raise AssertionError("the server kept the connection open")


# --------------------------------------------------------------- EventSource


class EventSourceReader:
    """Reads an EventSource stream: ``GET <mount>/<clientId>`` then events."""

    def __init__(self, client: HttpClient, head: h11.Response) -> None:
        self.client = client
        self.head = head
        self.status = head.status_code
        self.headers = list(head.headers)
        self._buffer = b""
        self.ended = False

    @classmethod
    async def open(cls, port: int, path: str, *, headers: Headers = ()) -> EventSourceReader:
        client = await HttpClient.connect(port)
        await client.send_request("GET", path, headers=[("accept", "text/event-stream"), *headers])
        return cls(client, await client.read_head())

    def header(self, name: str) -> str | None:
        return Response(self.status, self.headers, b"").header(name)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def body(self) -> bytes:
        """The whole body (for a refused stream)."""
        return await self.client.read_body()

    async def next_block(self) -> str | None:
        """The next event block (CRLF CRLF separated), or None when the stream ends."""
        for _ in range(100_000):
            block, sep, rest = self._buffer.partition(b"\r\n\r\n")
            if sep:
                self._buffer = rest
                return block.decode()
            if self.ended:
                return None
            event = await self.client.next_event()
            if isinstance(event, h11.Data):
                self._buffer += bytes(event.data)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                self.ended = True
            else:
                raise AssertionError(f"unexpected {event!r}")
        raise AssertionError("no event")  # pragma: no cover

    async def next_data(self) -> Any:
        """The next ``data:`` event, decoded (comments and ``retry:`` skipped)."""
        for _ in range(1000):
            block = await self.next_block()
            assert block is not None, "the stream ended"
            if block.startswith("data: "):
                return orjson.loads(block[len("data: ") :])
        raise AssertionError("no data event")
