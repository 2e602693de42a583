"""Test plumbing for the client: a faulty TCP proxy, a restartable server, waits.

Everything listens on 127.0.0.1, port 0; every wait is bounded (the tests also
run under ``fail_after``). ``HOST`` and ``eventually`` come from
:mod:`tests._support` and are re-exported for the client tests.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from bayeux_core import ClientEvent, EngineConfig, Event, Extension, Message, MessageContext
from bayeux_trio import BayeuxClient, BayeuxServer, ServerConfig, open_client
from tests._support.ports import HOST
from tests._support.waiting import eventually

__all__ = [
    "HOST",
    "Probe",
    "Proxy",
    "Recorder",
    "RestartableServer",
    "client",
    "eventually",
]

_READ = 65536
#: fast reconnection for tests (the defaults are 1 s doubling up to 30 s)
FAST = {"retry": 0.05, "max_retry": 0.2, "connect_timeout": 2.0}


@contextlib.asynccontextmanager
async def client(url: str, transport: str, **options: Any) -> AsyncIterator[BayeuxClient]:
    """open_client with one transport and fast retries."""
    settings: dict[str, Any] = {**FAST, "transports": [transport], **options}
    async with open_client(url, **settings) as opened:
        yield opened


class Recorder:
    """Collects a client's events."""

    def __init__(self, target: BayeuxClient) -> None:
        self.events: list[ClientEvent] = []
        target.add_listener(self.events.append)

    def of(self, kind: type[ClientEvent]) -> list[ClientEvent]:
        return [e for e in self.events if isinstance(e, kind)]

    def count(self, kind: type[ClientEvent]) -> int:
        return len(self.of(kind))


class Probe(Extension):
    """A server extension recording how each message arrived.

    ``seen`` holds (clientId, channel, "websocket" or "http") for every
    incoming message: the trio server passes the HTTP request as
    ``context.request`` and None for WebSocket frames.
    """

    outgoing_deliveries = False

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, str, str]] = []

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        kind = "websocket" if context.request is None else "http"
        client_id = message.get("clientId")
        self.seen.append(
            (client_id if isinstance(client_id, str) else None, str(message.get("channel")), kind)
        )
        return message

    def kinds(self, client_id: str | None) -> set[str]:
        return {kind for cid, _, kind in self.seen if cid == client_id}


# ----------------------------------------------------------------- the server


class RestartableServer:
    """A BayeuxServer that can be stopped (abruptly or gracefully) and started
    again on the same port: a new server, with no memory of the old sessions."""

    def __init__(
        self,
        nursery: trio.Nursery,
        *,
        timeout: float = 1.0,
        extensions: Callable[[], Sequence[Extension]] = list,
    ) -> None:
        self._nursery = nursery
        self._timeout = timeout
        self._extensions = extensions
        self.port = 0
        self.server: BayeuxServer | None = None
        self.events: list[Event] = []
        self._scope: trio.CancelScope | None = None
        self._stopped = trio.Event()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/faye"

    async def start(self) -> BayeuxServer:
        # A short error interval: clients told to handshake again wait that long.
        engine = EngineConfig(timeout=self._timeout, error_interval=0.2)
        config = ServerConfig(host=HOST, port=self.port, engine=engine)
        server = BayeuxServer(config, extensions=self._extensions())
        server.add_listener(self.events.append)
        self._stopped = trio.Event()
        await self._nursery.start(self._run, server)
        assert server.port is not None
        self.port = server.port
        self.server = server
        return server

    async def _run(
        self, server: BayeuxServer, *, task_status: trio.TaskStatus[BayeuxServer]
    ) -> None:
        with trio.CancelScope() as scope:
            self._scope = scope
            await server.serve(task_status=task_status)
        self._stopped.set()

    async def stop(self, *, graceful: bool = False) -> None:
        assert self.server is not None
        assert self._scope is not None
        if graceful:
            await self.server.close(grace=0.5)
        else:
            self._scope.cancel()
        with trio.fail_after(5):
            await self._stopped.wait()
        self.server = None


# ------------------------------------------------------------------ the proxy


@dataclass(eq=False)
class _Link:
    client: trio.abc.Stream
    upstream: trio.SocketStream | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stalled: bool = False
    reset: bool = False
    #: every byte the client sent on this connection
    sent: bytearray = field(default_factory=bytearray)


def _linger_zero(stream: trio.abc.Stream | None) -> None:
    """Make closing ``stream`` send a RST instead of a FIN."""
    if isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if isinstance(stream, trio.SocketStream):
        with contextlib.suppress(OSError):
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Proxy:
    """A TCP proxy to ``127.0.0.1:target`` that breaks connections on demand.

    * :meth:`cut` closes every open connection, both ways (FIN);
    * :meth:`reset` aborts them with a RST;
    * :meth:`stall` freezes them: bytes are read and thrown away, nothing is
      forwarded and nothing is closed (a dead path; new connections work);
    * ``blocked = True`` resets every new connection at once (the server is
      "down"); :meth:`block` cuts the open ones too;
    * ``refuse_websocket = True`` answers WebSocket upgrades with a 400;
    * with ``ssl_context`` it terminates TLS (the upstream is plain).

    ``heads`` keeps the first bytes of each client connection (the request
    head), ``transcripts`` all the bytes each client connection sent,
    ``accepted`` counts connections.
    """

    def __init__(self, target_port: int, *, ssl_context: Any = None) -> None:
        self.target_port = target_port
        self.ssl_context = ssl_context
        self.port = 0
        self.links: set[_Link] = set()
        self.accepted = 0
        self.blocked = False
        self.refuse_websocket = False
        self.heads: list[bytes] = []
        self.transcripts: list[bytearray] = []

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{HOST}:{self.port}/faye"

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        (listener,) = await trio.open_tcp_listeners(0, host=HOST)
        self.port = listener.socket.getsockname()[1]
        async with listener, trio.open_nursery() as nursery:
            task_status.started()
            while True:
                stream = await listener.accept()
                nursery.start_soon(self._handle, stream)

    def cut(self) -> None:
        for link in list(self.links):
            link.scope.cancel()

    def reset(self) -> None:
        for link in list(self.links):
            link.reset = True
            link.scope.cancel()

    def stall(self) -> None:
        for link in list(self.links):
            link.stalled = True

    def block(self) -> None:
        self.blocked = True
        self.reset()

    async def _handle(self, raw: trio.SocketStream) -> None:
        self.accepted += 1
        stream: trio.abc.Stream = raw
        link = _Link(stream)
        if self.blocked:
            _linger_zero(raw)
            await trio.aclose_forcefully(raw)
            return
        self.links.add(link)
        self.transcripts.append(link.sent)
        try:
            with link.scope:
                if self.ssl_context is not None:
                    stream = link.client = trio.SSLStream(raw, self.ssl_context, server_side=True)
                    try:
                        await stream.do_handshake()
                    except trio.BrokenResourceError:
                        return
                try:
                    link.upstream = await trio.open_tcp_stream(HOST, self.target_port)
                except OSError:
                    link.reset = True
                    return
                first = await self._first(link)
                if first is None:
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, link, stream, link.upstream)
                    nursery.start_soon(self._pump, link, link.upstream, stream)
        finally:
            self.links.discard(link)
            if link.reset:
                _linger_zero(raw)
                _linger_zero(link.upstream)
            # Shielded: under an outer cancellation the first close would
            # re-raise Cancelled and skip the second.
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(stream)
                if link.upstream is not None:
                    await trio.aclose_forcefully(link.upstream)

    async def _first(self, link: _Link) -> bytes | None:
        """Read and forward the first chunk (refusing upgrades if asked)."""
        assert link.upstream is not None
        try:
            data = await link.client.receive_some(_READ)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        if not data:
            return None
        self.heads.append(bytes(data))
        link.sent += data
        if self.refuse_websocket and b"upgrade: websocket" in data.lower():
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await link.client.send_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
            return None
        try:
            await link.upstream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        return bytes(data)

    async def _pump(self, link: _Link, source: trio.abc.Stream, dest: trio.abc.Stream) -> None:
        try:
            while True:
                data = await source.receive_some(_READ)
                if not data:
                    break
                if source is link.client:
                    link.sent += data
                if not link.stalled:
                    await dest.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        link.scope.cancel()
