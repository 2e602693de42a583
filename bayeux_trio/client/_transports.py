"""The client's transports: WebSocket (wsproto) and long-polling (h11), on trio.

A transport moves batches of Bayeux messages and nothing else: it never
decides what to send, when to retry or what a reply means. That is the
:class:`~bayeux_core.ClientSession`'s job, driven by
:class:`~bayeux_trio.client._client.BayeuxClient`, which the transport calls back
through :class:`TransportHooks`:

* ``transport_received(transport, messages)`` for every batch the server sent;
* ``transport_failed(transport, reason)`` when the connection broke (refused,
  reset, closed, timed out, an HTTP status other than 200): what was in flight
  is lost, and the session decides when to send it again;
* ``transport_refused(transport, reason)`` when a server answered a WebSocket
  upgrade with an HTTP error: the client may fall back to long-polling.

A transport opens its connection when it has something to send and keeps it
open; :meth:`abort` drops the connection and whatever was waiting to be
written. Each connection runs in a cancel scope of its own, so an abort from
any task ends it at its next checkpoint.

Long-polling keeps two HTTP/1.1 keep-alive connections: one carries
``/meta/connect`` requests (held by the server until it has something to say),
the other batches every other message, so a publish never waits behind a held
connect.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote, urlsplit

import h11
import orjson
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError as WsLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from bayeux_core import BodyError, Message, decode_body, is_connect

__all__ = [
    "Endpoint",
    "HttpSettings",
    "LongPollingTransport",
    "Transport",
    "TransportHooks",
    "WebSocketTransport",
    "encode_batches",
    "parse_set_cookie",
]

log = logging.getLogger("bayeux.client")

_READ_SIZE = 65536
#: The server is trusted with nesting: a server (Faye, say) may relay data
#: nested deeper than our server's default limit, and orjson caps it anyway.
_TRUSTED_DEPTH = 1024
#: most messages in one WebSocket frame or HTTP body (a server may set a max_batch)
MAX_BATCH = 100
#: a kept-alive HTTP connection idle longer than this is not reused: servers
#: close idle connections (Node.js after 5 s) and a request sent into one that
#: is closing is lost
KEEPALIVE_IDLE = 4.0
_NETWORK_ERRORS = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


# ------------------------------------------------------------------ settings


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the server is, parsed from an ``http(s)://`` or ``ws(s)://`` URL."""

    secure: bool
    host: str
    port: int
    #: path and query, as sent in the request line
    target: str
    #: the Host header
    authority: str
    #: ``Basic ...`` from the URL's user:password, if any
    authorization: str | None = None

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "ws", "wss"):
            raise ValueError(f"the URL must start with http://, https://, ws:// or wss://: {url!r}")
        host = parts.hostname
        if not host:
            raise ValueError(f"the URL has no host: {url!r}")
        secure = scheme in ("https", "wss")
        default_port = 443 if secure else 80
        port = parts.port or default_port  # .port raises ValueError when out of range
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        authority = f"[{host}]" if ":" in host else host
        if port != default_port:
            authority += f":{port}"
        authorization = None
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
        return cls(secure, host, port, target, authority, authorization)


def parse_set_cookie(value: str) -> tuple[str, str | None] | None:
    """``name=value; attrs`` -> (name, value), or (name, None) for a deletion.

    Only ``Max-Age`` is read (a value <= 0 deletes). Paths and domains are
    ignored: every cookie goes back to the one endpoint the client talks to.
    """
    pair, *attributes = value.split(";")
    name, sep, cookie = pair.partition("=")
    name = name.strip()
    if not sep or not name:
        return None
    for attribute in attributes:
        key, _, argument = attribute.partition("=")
        if key.strip().lower() == "max-age":
            try:
                if int(argument.strip()) <= 0:
                    return name, None
            except ValueError:
                pass
    return name, cookie.strip()


@dataclass(slots=True)
class HttpSettings:
    """What every connection of one client shares: endpoint, headers, cookies, TLS."""

    endpoint: Endpoint
    headers: list[tuple[str, str]]
    #: the cookie jar: sent with every request, updated from every response
    cookies: dict[str, str]
    ssl_context: ssl.SSLContext | None
    connect_timeout: float
    max_message_size: int
    #: the last connection error, for error messages
    last_error: str | None = field(default=None)

    def request_headers(self) -> list[tuple[str, str]]:
        headers = list(self.headers)
        names = {name.lower() for name, _ in headers}
        if self.endpoint.authorization is not None and "authorization" not in names:
            headers.append(("Authorization", self.endpoint.authorization))
        if self.cookies:
            jar = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
            headers.append(("Cookie", jar))
        return headers

    def store_cookies(self, headers: Iterable[tuple[bytes, bytes]]) -> None:
        for name, value in headers:
            if name.lower() != b"set-cookie":
                continue
            parsed = parse_set_cookie(value.decode("latin-1"))
            if parsed is None:
                continue
            cookie_name, cookie_value = parsed
            if cookie_value is None:
                self.cookies.pop(cookie_name, None)
            else:
                self.cookies[cookie_name] = cookie_value

    async def open_stream(self) -> trio.abc.Stream:
        """A TCP connection to the endpoint, wrapped in TLS for https/wss.

        Raises OSError, trio.BrokenResourceError (a failed TLS handshake, with
        the ``ssl`` error as its cause) or trio.TooSlowError.
        """
        endpoint = self.endpoint
        with trio.fail_after(self.connect_timeout):
            tcp = await trio.open_tcp_stream(endpoint.host, endpoint.port)
            if not endpoint.secure:
                return tcp
            context = self.ssl_context
            if context is None:
                context = self.ssl_context = ssl.create_default_context()
            tls = trio.SSLStream(tcp, context, server_hostname=endpoint.host, https_compatible=True)
            try:
                await tls.do_handshake()
            except BaseException:
                await trio.aclose_forcefully(tcp)
                raise
            return tls


def describe(exc: BaseException) -> str:
    """A one-line reason for a network failure (the TLS cause when there is one)."""
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLError):
        return f"TLS: {cause}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def encode_batches(
    messages: Sequence[Message], *, max_bytes: int, max_count: int = MAX_BATCH
) -> list[tuple[int, bytes]]:
    """Cut ``messages`` into JSON arrays of at most ``max_count`` messages and
    ``max_bytes`` bytes; returns (number of messages, array) pairs, in order.

    A message larger than ``max_bytes`` on its own still goes, alone.
    """
    out: list[tuple[int, bytes]] = []
    current: list[bytes] = []
    size = 2
    for message in messages:
        encoded = orjson.dumps(message)
        # ``size`` is the array's length so far: brackets, items and commas.
        if current and (len(current) >= max_count or size + 1 + len(encoded) > max_bytes):
            out.append((len(current), b"[" + b",".join(current) + b"]"))
            current = []
            size = 2
        size += len(encoded) + (1 if current else 0)
        current.append(encoded)
    if current:
        out.append((len(current), b"[" + b",".join(current) + b"]"))
    return out


# ----------------------------------------------------------------- interface


class Transport(Protocol):
    #: the Bayeux connection type: "websocket" or "long-polling"
    name: str

    def send(self, messages: list[Message]) -> None:
        """Queue messages to send (connects included); never blocks."""

    def take_unsent(self) -> list[Message]:
        """Remove and return what is queued but not yet written."""

    def abort(self) -> None:
        """Drop the connection(s) and everything not yet written."""

    async def run(self) -> None:
        """Serve the transport until cancelled (a task of the client's nursery)."""

    async def flush(self) -> None:
        """Wait until everything queued has been written (or answered, for HTTP)."""


class TransportHooks(Protocol):
    def transport_received(self, transport: Transport, messages: list[Message]) -> None: ...

    def transport_failed(self, transport: Transport, reason: str) -> None: ...

    def transport_refused(self, transport: Transport, reason: str) -> None: ...


class _Outbox:
    """Messages waiting for a writer task, with a wake-up for it and for flushers."""

    def __init__(self) -> None:
        self.queue: list[Message] = []
        self.busy = False
        self._wakeup = trio.Event()
        self._progress = trio.Event()

    def put(self, messages: list[Message]) -> None:
        self.queue.extend(messages)
        self._wakeup.set()

    def take(self) -> list[Message]:
        out, self.queue = self.queue, []
        return out

    async def wait_for_output(self) -> None:
        while not self.queue:
            self._wakeup = trio.Event()
            await self._wakeup.wait()

    def progressed(self) -> None:
        self._progress.set()
        self._progress = trio.Event()

    async def flush(self) -> None:
        while self.queue or self.busy:
            await self._progress.wait()


# ------------------------------------------------------------------ WebSocket


class WebSocketTransport:
    """One WebSocket at a time; every batch goes out as JSON text frames."""

    name = "websocket"

    def __init__(self, settings: HttpSettings, hooks: TransportHooks) -> None:
        self._settings = settings
        self._hooks = hooks
        self._outbox = _Outbox()
        self._scope: trio.CancelScope | None = None
        #: the open connection's stream, wsproto state and write lock
        self._open: tuple[trio.abc.Stream, WSConnection, trio.StrictFIFOLock] | None = None
        #: True once a server accepted an upgrade
        self.accepted = False

    @property
    def connected(self) -> bool:
        return self._open is not None

    def send(self, messages: list[Message]) -> None:
        self._outbox.put(messages)

    def take_unsent(self) -> list[Message]:
        return self._outbox.take()

    def abort(self) -> None:
        self._outbox.take()
        if self._scope is not None:
            self._scope.cancel()

    async def flush(self) -> None:
        await self._outbox.flush()

    async def close(self) -> None:
        """Send a close frame if a connection is open (best effort)."""
        if self._open is None:
            return
        stream, ws, lock = self._open
        try:
            data = ws.send(CloseConnection(code=1000))
        except WsLocalProtocolError:
            return
        try:
            async with lock:
                await stream.send_all(data)
        except _NETWORK_ERRORS:
            pass

    async def run(self) -> None:
        while True:
            await self._outbox.wait_for_output()
            with trio.CancelScope() as scope:
                self._scope = scope
                try:
                    await self._connection()
                finally:
                    self._scope = None
                    self._open = None
                    self._outbox.busy = False
                    self._outbox.progressed()

    def _fail(self, reason: str) -> None:
        if self._scope is not None and not self._scope.cancel_called:
            self._hooks.transport_failed(self, reason)

    async def _connection(self) -> None:
        settings = self._settings
        try:
            stream = await settings.open_stream()
        except (*_NETWORK_ERRORS, trio.TooSlowError) as exc:
            self._fail(f"cannot connect: {describe(exc)}")
            return
        try:
            await self._serve(stream)
        finally:
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        settings = self._settings
        endpoint = settings.endpoint
        ws = WSConnection(ConnectionType.CLIENT)
        request = Request(
            host=endpoint.authority,
            target=endpoint.target,
            extra_headers=[
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in settings.request_headers()
            ],
        )
        try:
            with trio.fail_after(settings.connect_timeout):
                await stream.send_all(ws.send(request))
                refusal = await self._upgrade(stream, ws)
        except (*_NETWORK_ERRORS, trio.TooSlowError, WsRemoteProtocolError) as exc:
            self._fail(f"WebSocket upgrade failed: {describe(exc)}")
            return
        if refusal is not None:
            if self._scope is not None and not self._scope.cancel_called:
                self._hooks.transport_refused(self, refusal)
            return
        self.accepted = True
        lock = trio.StrictFIFOLock()
        self._open = (stream, ws, lock)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer, stream, ws, lock)
            reason = await self._reader(stream, ws, lock)
            nursery.cancel_scope.cancel()
        self._fail(reason)

    async def _upgrade(self, stream: trio.abc.Stream, ws: WSConnection) -> str | None:
        """Read the upgrade response: None if accepted, else why it was refused."""
        for _ in range(10_000):
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    self._settings.store_cookies(event.extra_headers)
                    return None  # frames read with it stay in ws for the reader
                if isinstance(event, RejectConnection):
                    self._settings.store_cookies(event.headers)
                    return f"WebSocket upgrade refused with HTTP {event.status_code}"
            data = await stream.receive_some(_READ_SIZE)
            if not data:
                raise trio.BrokenResourceError("closed during the WebSocket upgrade")
            ws.receive_data(bytes(data))
        raise WsRemoteProtocolError("no upgrade response")

    async def _reader(
        self, stream: trio.abc.Stream, ws: WSConnection, lock: trio.StrictFIFOLock
    ) -> str:
        """Hand every message to the hooks; returns why the connection ended."""
        limit = self._settings.max_message_size
        parts: list[str] = []
        size = 0
        while True:
            try:
                for event in ws.events():
                    if isinstance(event, TextMessage):
                        size += len(event.data)
                        if size > limit:
                            await self._send_close(stream, ws, lock, 1009)
                            return f"a message from the server is larger than {limit} bytes"
                        parts.append(event.data)
                        if event.message_finished:
                            text = "".join(parts)
                            parts.clear()
                            size = 0
                            self._deliver(text)
                    elif isinstance(event, Ping):
                        with contextlib.suppress(WsLocalProtocolError):  # closing
                            pong = ws.send(event.response())
                            async with lock:
                                await stream.send_all(pong)
                    elif isinstance(event, CloseConnection):
                        await self._send_close(stream, ws, lock, event.code)
                        return f"closed by the server ({event.code} {event.reason or ''})".strip()
                data = await stream.receive_some(_READ_SIZE)
            except WsRemoteProtocolError as exc:
                return f"WebSocket protocol error: {exc}"
            except _NETWORK_ERRORS as exc:
                return f"connection lost: {describe(exc)}"
            if not data:
                return "connection closed by the server"
            ws.receive_data(bytes(data))

    async def _send_close(
        self, stream: trio.abc.Stream, ws: WSConnection, lock: trio.StrictFIFOLock, code: int
    ) -> None:
        try:
            data = ws.send(CloseConnection(code=code))
        except WsLocalProtocolError:
            return  # already closing
        try:
            async with lock:
                await stream.send_all(data)
        except _NETWORK_ERRORS:
            pass

    def _deliver(self, text: str) -> None:
        messages = decode_body(
            text,
            max_bytes=self._settings.max_message_size,
            max_messages=1_000_000,
            max_depth=_TRUSTED_DEPTH,
        )
        if isinstance(messages, BodyError):
            log.warning("ignored a WebSocket message from the server: %s", messages.detail)
            return
        self._hooks.transport_received(self, messages)

    async def _writer(
        self, stream: trio.abc.Stream, ws: WSConnection, lock: trio.StrictFIFOLock
    ) -> None:
        outbox = self._outbox
        limit = self._settings.max_message_size
        while True:
            await outbox.wait_for_output()
            batch = outbox.take()
            outbox.busy = True
            # A connect goes in a frame of its own: Faye answers a frame once
            # every message in it is done, and a connect is held.
            frames = encode_batches([m for m in batch if not is_connect(m)], max_bytes=limit)
            frames += encode_batches(
                [m for m in batch if is_connect(m)], max_bytes=limit, max_count=1
            )
            try:
                for _count, frame in frames:
                    async with lock:
                        await stream.send_all(ws.send(TextMessage(data=frame.decode())))
            except _NETWORK_ERRORS as exc:
                self._fail(f"connection lost while sending: {describe(exc)}")
                return
            except WsLocalProtocolError:
                # The connection is closing (the server sent a close frame): the
                # reader reports it, and the batch is lost with the rest.
                return
            outbox.busy = False
            outbox.progressed()


# --------------------------------------------------------------- long-polling


class _Failed(Exception):
    """An HTTP exchange failed; ``stale`` if it failed on a reused connection
    before any byte of the response came (the server had closed it)."""

    def __init__(self, reason: str, *, stale: bool = False) -> None:
        super().__init__(reason)
        self.stale = stale


class _HttpConnection:
    """One kept-alive HTTP/1.1 connection (h11's client side)."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = trio.current_time()
        self.used = False

    @property
    def reusable(self) -> bool:
        return (
            self.h11.our_state is h11.IDLE
            and self.h11.their_state is h11.IDLE
            and trio.current_time() - self.idle_since < KEEPALIVE_IDLE
        )

    async def post(
        self, settings: HttpSettings, body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        endpoint = settings.endpoint
        reused = self.used
        self.used = True
        headers = [
            ("Host", endpoint.authority),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Accept", "application/json"),
            *settings.request_headers(),
        ]
        h = self.h11
        data = b"".join(
            (
                h.send(h11.Request(method="POST", target=endpoint.target, headers=headers)) or b"",
                h.send(h11.Data(data=body)) or b"",
                h.send(h11.EndOfMessage()) or b"",
            )
        )
        heard = False
        try:
            await self.stream.send_all(data)
            status = 0
            response_headers: list[tuple[bytes, bytes]] = []
            chunks: list[bytes] = []
            size = 0
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    received = await self.stream.receive_some(_READ_SIZE)
                    heard = heard or bool(received)
                    h.receive_data(bytes(received))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                    response_headers = list(event.headers)
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > settings.max_message_size:
                        raise _Failed(
                            f"a response is larger than {settings.max_message_size} bytes"
                        )
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    raise trio.BrokenResourceError("connection closed before the response")
                # InformationalResponse (100 Continue): read on
        except _NETWORK_ERRORS as exc:
            raise _Failed(f"connection lost: {describe(exc)}", stale=reused and not heard) from exc
        except h11.RemoteProtocolError as exc:
            raise _Failed(f"bad HTTP response: {exc}", stale=reused and not heard) from exc
        if h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()
            self.idle_since = trio.current_time()
        return status, response_headers, b"".join(chunks)


class _Lane:
    """Sends batches one request at a time on one kept-alive connection."""

    def __init__(
        self,
        transport: LongPollingTransport,
        settings: HttpSettings,
        hooks: TransportHooks,
        *,
        replace: bool,
    ) -> None:
        self._transport = transport
        self._settings = settings
        self._hooks = hooks
        #: a new batch cancels the request in progress (the connect lane: the
        #: session sends a new connect only once it has given up the old one)
        self._replace = replace
        self.outbox = _Outbox()
        self._scope: trio.CancelScope | None = None
        self._conn: _HttpConnection | None = None
        #: set by abort(): the kept-alive connection is not to be trusted again
        self._drop_connection = False

    def send(self, messages: list[Message]) -> None:
        if self._replace:
            self.outbox.take()
            if self._scope is not None:
                self._scope.cancel()
        self.outbox.put(messages)

    def abort(self) -> None:
        self.outbox.take()
        # An idle kept-alive connection may be as dead as the one that failed.
        self._drop_connection = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        outbox = self.outbox
        try:
            while True:
                await outbox.wait_for_output()
                count, body = encode_batches(
                    outbox.queue[:MAX_BATCH], max_bytes=self._settings.max_message_size
                )[0]
                del outbox.queue[:count]
                outbox.busy = True
                replies: list[Message] | None = None
                failure: str | None = None
                with trio.CancelScope() as scope:
                    self._scope = scope
                    try:
                        replies = await self._exchange(body)
                    except _Failed as exc:
                        failure = str(exc)
                    finally:
                        self._scope = None
                if failure is not None and not scope.cancel_called:
                    self._hooks.transport_failed(self._transport, failure)
                elif replies is not None:
                    self._hooks.transport_received(self._transport, replies)
                outbox.busy = False
                outbox.progressed()
        finally:
            await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await trio.aclose_forcefully(conn.stream)

    async def _exchange(self, body: bytes) -> list[Message]:
        settings = self._settings
        try:
            if self._drop_connection:
                self._drop_connection = False
                await self._close()
            for _ in range(2):
                if self._conn is not None and not self._conn.reusable:
                    await self._close()
                if self._conn is None:
                    try:
                        self._conn = _HttpConnection(await settings.open_stream())
                    except (*_NETWORK_ERRORS, trio.TooSlowError) as exc:
                        raise _Failed(f"cannot connect: {describe(exc)}") from exc
                try:
                    status, headers, data = await self._conn.post(settings, body)
                except _Failed as exc:
                    await self._close()
                    if exc.stale:
                        continue  # the server had closed it: once more on a new one
                    raise
                break
            else:
                raise _Failed("the server closed two connections in a row")
        except BaseException:
            await self._close()
            raise
        settings.store_cookies(headers)
        if self._conn is not None and self._conn.h11.our_state is not h11.IDLE:
            await self._close()  # the server said Connection: close
        if status != 200:
            raise _Failed(f"HTTP {status} from the server")
        messages = decode_body(
            data,
            max_bytes=settings.max_message_size,
            max_messages=1_000_000,
            max_depth=_TRUSTED_DEPTH,
        )
        if isinstance(messages, BodyError):
            raise _Failed(f"bad response body: {messages.detail}")
        return messages


class LongPollingTransport:
    """HTTP POSTs: connects on one kept-alive connection, the rest on another."""

    name = "long-polling"

    def __init__(self, settings: HttpSettings, hooks: TransportHooks) -> None:
        self._connects = _Lane(self, settings, hooks, replace=True)
        self._messages = _Lane(self, settings, hooks, replace=False)

    def send(self, messages: list[Message]) -> None:
        connects = [m for m in messages if is_connect(m)]
        others = [m for m in messages if not is_connect(m)]
        if others:
            self._messages.send(others)
        if connects:
            self._connects.send(connects[-1:])

    def take_unsent(self) -> list[Message]:
        return self._messages.outbox.take() + self._connects.outbox.take()

    def abort(self) -> None:
        self._messages.abort()
        self._connects.abort()

    async def flush(self) -> None:
        await self._messages.outbox.flush()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._connects.run)
            nursery.start_soon(self._messages.run)
