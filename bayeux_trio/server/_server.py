"""The Bayeux server: listeners, connections, and the application API.

Embed it in a trio program::

    server = BayeuxServer(ServerConfig(port=9292))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        server.publish("/notifications", {"text": "hello"})

or run it from the command line with ``bayeux serve``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio

from bayeux_core import (
    Engine,
    Event,
    Extension,
    ExtensionFailed,
    Message,
    MessageKind,
    Published,
    message_kind,
    presence_probe,
    probe_refusal,
    refused_copy,
)
from bayeux_core.wire import HttpRequest, HttpResponse, WireConfig
from bayeux_trio.ops import (
    PEER,
    TICKET_FIELD,
    Operations,
    client_info,
    health_response,
    is_console,
)

from ._config import ServerConfig
from ._connection import serve_connection
from ._context import Stream
from ._extensions import AsyncExtension
from ._hub import Hub, Kind
from ._local import LocalClient
from ._reclaim import ReclaimPolicy, reclaim
from ._services import ServiceHandler, Services
from ._static import StaticFiles

__all__ = ["BayeuxServer"]

log = logging.getLogger("bayeux.server")

E = TypeVar("E", bound=Event)

_CLIENT_DIR = Path(__file__).parent.parent / "static"
#: EventSource streams get a comment this often when no ping period is set.
_EVENTSOURCE_PING = 10.0
#: seconds a WebSocket may be silent beyond a connect's longest hold
_IDLE_MARGIN = 10.0
#: seconds between samples of the connection count (see _reclaim)
_RECLAIM_PERIOD = 5.0
#: seconds between the console's samples of the rates (ops._stats.History)
_SAMPLE_PERIOD = 1.0
#: samples between two checks of the client log against the store
_PRUNE_EVERY = 60


#: what a message an async extension raised on is refused with (as the engine does)
_EXTENSION_FAILED = "500::Internal server error"


def _log_extension_failure(extension: object, hook: str, channel: object, error: Exception) -> None:
    log.error(
        "extension %s raised in %s on %r; that message was refused with 500",
        type(extension).__qualname__,
        hook,
        channel,
        exc_info=error,
    )


def _log_event(event: Event) -> None:
    """Session events at debug level; client ids cut to 6 characters."""
    if isinstance(event, ExtensionFailed):
        _log_extension_failure(event.extension, event.hook, event.channel, event.error)
        return
    if not log.isEnabledFor(logging.DEBUG) or isinstance(event, Published):
        return
    client_id = getattr(event, "client_id", None)
    fields = ", ".join(
        f"{name}={value}"
        for name, value in (
            ("channel", getattr(event, "channel", None)),
            ("reason", getattr(event, "reason", None)),
            ("dropped", getattr(event, "dropped", None)),
        )
        if value is not None
    )
    short = f"{client_id[:6]}..." if isinstance(client_id, str) else "-"
    # The whole id rides along for structured (JSON) logs.
    extra = {"event": type(event).__name__, "client_id": client_id}
    log.debug("%s %s %s", type(event).__name__, short, fields, extra=extra)


def _peer(stream: trio.abc.Stream) -> tuple[str, int] | None:
    """The remote (IP address, port) of an accepted connection, or None if it
    is already gone or has no socket. Read from the socket under the stream
    (under TLS too)."""
    while isinstance(stream, trio.SSLStream):
        stream = stream.transport_stream
    if not isinstance(stream, trio.SocketStream):
        return None
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return None
    return (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None


def _peer_host(stream: trio.abc.Stream) -> str | None:
    """The remote IP address of an accepted connection (None if it is already gone)."""
    peer = _peer(stream)
    return peer[0] if peer is not None else None


def _peer_address(stream: trio.abc.Stream) -> str | None:
    """``ip:port`` (``[ip]:port`` for IPv6) of an accepted connection's peer, or None."""
    peer = _peer(stream)
    if peer is None:
        return None
    host, port = peer
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Bus(Protocol):
    """What a cluster bus offers the server: :class:`bayeux_trio.redis.RedisBus`."""

    def attach(self, hub: Hub) -> None: ...

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...

    async def prepare(self, messages: Sequence[Message]) -> None: ...

    def ready_now(self, messages: Sequence[Message]) -> bool:
        """True when :meth:`prepare` would have nothing to await."""
        ...

    async def claim(self, client_id: str, *, connect: bool = False) -> None: ...

    @property
    def stats(self) -> dict[str, Any]:
        """Health and counters (``healthy`` is False while the bus is down)."""


class BayeuxServer:
    """A Bayeux server on trio.

    Args:
        config: listening address, mount path, limits; defaults if omitted.
        extensions: server extensions (:class:`bayeux_core.Extension` or
            :class:`AsyncExtension`), run in order.
        bus: share sessions and messages with other servers, e.g.
            ``RedisBus("redis://127.0.0.1:6379/0")`` (docs/redis.md).
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        extensions: Sequence[Extension | AsyncExtension] = (),
        bus: Bus | None = None,
    ) -> None:
        self.config = config if config is not None else ServerConfig()
        self.bus = bus
        self.engine = Engine(self.config.engine, local_routing=bus is None)
        #: Faye's wire rules for this server's mount and limits (bayeux_core.wire)
        self.wire = WireConfig(
            mount=self.config.mount,
            allowed_origins=self.config.allowed_origins,
            max_body=self.config.max_body,
            max_json_depth=self.config.engine.max_json_depth,
            max_ws_message=self.config.max_ws_message,
        )
        self.hub = Hub(self.engine)
        if bus is not None:
            bus.attach(self.hub)
        self._async_extensions: list[AsyncExtension] = []
        #: peers' addresses are needed (by the engine's limit or an extension)
        self._want_address = self.config.engine.max_clients_per_address is not None
        #: tasks to run while serving (add_task), and the nursery once serving
        self._tasks: list[Callable[[], Awaitable[None]]] = []
        self._nursery: trio.Nursery | None = None
        self.client_files = StaticFiles(_CLIENT_DIR, index=None)
        static_dir = self.config.static_dir
        self.static_files = StaticFiles(static_dir) if static_dir is not None else None
        self._streams: set[Stream] = set()
        self._connections = 0
        #: open connections per remote address, when a per-address limit is set
        self._per_address: dict[str, int] = {}
        self._cancel = trio.CancelScope()
        #: set by :meth:`close`: HTTP connections end after their current response
        self.closing = False
        self._listeners: list[trio.SocketListener] = []
        #: the port actually bound (useful with port 0)
        self.port: int | None = None
        self._local: LocalClient | None = None
        #: client extensions of the in-process client (its credentials, say)
        self.local_extensions: list[Extension] = []
        self._services: Services | None = None
        self.hub.add_listener(_log_event)
        #: the admin API, metrics endpoint and console, when configured (bayeux_trio.ops)
        self.ops: Operations | None = None
        if (
            self.config.admin_path is not None
            or self.config.metrics_path is not None
            or self.config.console_path is not None
        ):
            self.ops = Operations(
                self,
                admin_path=self.config.admin_path,
                admin_token=self.config.admin_token,
                metrics_path=self.config.metrics_path,
                console_path=self.config.console_path,
            )
        self._metrics = self.ops.metrics if self.ops is not None else None
        #: where sessions come from (admin API): each batch notes its client's address
        self._seen = self.ops.seen if self.ops is not None else None
        #: the console's tail (ops._console): its gate runs before and after
        #: every other extension, once the first tail ticket is issued (until
        #: then no message pays for it)
        self._gate = self.ops.gate if self.ops is not None else None
        self._gate_open = False
        #: the synchronous extensions added, in order (the gate goes around them)
        self._sync_extensions: list[Extension] = []
        if self.ops is not None and self._gate is not None:
            self.ops.on_ticket = self._open_gate
        for extension in extensions:
            self.add_extension(extension)

    # ------------------------------------------------------------------ API

    def add_extension(self, extension: Extension | AsyncExtension) -> None:
        """Add a server extension; it runs after those already added."""
        if isinstance(extension, AsyncExtension):
            self._async_extensions.append(extension)
            self._want_address = self._want_address or extension.wants_address
        elif isinstance(extension, Extension):
            self.hub.add_extension(extension)
            self._sync_extensions.append(extension)
            if self._gate_open and self._gate is not None:
                # The console's gate undoes what the others did to its session.
                self.hub.remove_extension(self._gate.last)
                self.hub.add_extension(self._gate.last)
        else:
            raise TypeError(f"{extension!r} is not an Extension or AsyncExtension")

    def remove_extension(self, extension: Extension | AsyncExtension) -> None:
        if isinstance(extension, AsyncExtension):
            self._async_extensions.remove(extension)
        else:
            self.hub.remove_extension(extension)
            self._sync_extensions.remove(extension)

    def _open_gate(self) -> None:
        """Put the console's gate around the extensions (on the first tail ticket)."""
        gate = self._gate
        if gate is None or self._gate_open:
            return
        for extension in self._sync_extensions:
            self.hub.remove_extension(extension)
        self.hub.add_extension(gate.first)
        for extension in self._sync_extensions:
            self.hub.add_extension(extension)
        self.hub.add_extension(gate.last)
        self._gate_open = True

    def presence(self, channel: str) -> list[dict[str, Any]]:
        """Who is in ``channel`` now: ``[{"user": ..., "info": ...}]``, in join order.

        With a Redis bus, the cluster's members as this node last read them.
        Raises :class:`bayeux_core.LocalProtocolError` if ``channel`` has no
        presence (``EngineConfig.presence``; docs/presence.md).
        """
        return self.hub.engine.presence(channel)

    def publish(self, channel: str, data: Any, *, ext: Any = None) -> None:
        """Publish from the server to every subscriber of ``channel``.

        Raises :class:`bayeux_core.LocalProtocolError` for a channel one cannot
        publish to or data that is not JSON. Called from a listener, it runs
        once the pass that fired the event has run (after the reply that
        caused it); data that is not JSON is then logged, not raised.
        """
        self.hub.publish(channel, data, ext)

    def add_task(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run ``task()`` while the server serves (started by :meth:`serve`,
        or at once if it is serving), cancelled when it stops. An exception
        it raises stops the server, as any failure of the server's own tasks."""
        self._tasks.append(task)
        if self._nursery is not None:
            self._nursery.start_soon(task)

    def add_service(self, channel: str, handler: ServiceHandler) -> None:
        """Answer calls to ``channel`` (``/service/...``) with ``handler``.

        ``handler(data, context)`` (plain or async) gets the call's data and a
        :class:`~bayeux_trio.ServiceContext` (``client_id``, ``ext``...) and
        returns the reply data, which goes back to the caller alone; raising
        :class:`~bayeux_trio.ServiceError` fails the call with its error.
        See docs/protocol.md, "Service calls".
        """
        if self._services is None:
            self._services = Services(self.hub, max_calls=self.config.max_service_calls)
        self._services.add(channel, handler)

    def remove_service(self, channel: str) -> None:
        """Stop answering ``channel`` (ValueError if it had no handler)."""
        if self._services is None:
            raise ValueError(f"{channel} has no handler")
        self._services.remove(channel)

    def add_listener(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` with every application event (see bayeux_core)."""
        self.hub.add_listener(listener)

    def remove_listener(self, listener: Callable[[Event], None]) -> None:
        self.hub.remove_listener(listener)

    def on(self, event_type: type[E], callback: Callable[[E], None]) -> Callable[[Event], None]:
        """Call ``callback`` with each event of ``event_type``; returns the listener."""

        def listener(event: Event) -> None:
            if isinstance(event, event_type):
                callback(event)

        self.hub.add_listener(listener)
        return listener

    # ------------------------------------------------------ server-side control

    def clients(self) -> list[dict[str, Any]]:
        """Every session on this node: id, state, connection, subscriptions, queue.

        With a Redis bus, only the sessions this node holds (docs/operations.md).
        """
        return [client_info(self, session, self._seen) for session in self.engine.store]

    def client(self, client_id: str) -> dict[str, Any] | None:
        """What :meth:`clients` says about one session, or None."""
        session = self.engine.store.get(client_id)
        return client_info(self, session, self._seen) if session is not None else None

    def subscriptions(self) -> dict[str, list[str]]:
        """Each subscribed pattern on this node -> the ids of its subscribers."""
        found: dict[str, list[str]] = {}
        for session in self.engine.store:
            for pattern in session.subscriptions:
                found.setdefault(pattern, []).append(session.client_id)
        return {pattern: sorted(ids) for pattern, ids in sorted(found.items())}

    def disconnect(self, client_id: str) -> bool:
        """Kick a client: end its session, telling it ``reconnect: none``.

        See :meth:`bayeux_core.Engine.disconnect`. False if this node has no
        such session. The server must be serving.
        """
        return self.hub.disconnect(client_id)

    def unsubscribe(self, client_id: str, channel: str) -> bool:
        """Drop one subscription of a client; it is not told, only stops receiving.

        False if this node has no such session or subscription.
        """
        return self.hub.unsubscribe(client_id, channel)

    def get_client(self) -> LocalClient:
        """The server's in-process client (one per server, made on first use).

        Its messages pass through the server's extensions with ``request``
        None, as with Faye's ``getClient()``; the client extensions in
        :attr:`local_extensions` (when it was made) see them first. The server
        must be serving.
        """
        if self._local is None:
            self._local = LocalClient(self)
        return self._local

    @property
    def url(self) -> str:
        """The endpoint's URL (after :meth:`serve` has started): https with TLS."""
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        scheme = "http" if self.config.certfile is None else "https"
        return f"{scheme}://{host}:{self.port}{self.config.mount}"

    # ------------------------------------------------------------- serving

    async def serve(
        self, *, task_status: trio.TaskStatus[BayeuxServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and serve until cancelled (or :meth:`close`).

        With ``await nursery.start(server.serve)`` the call returns once the
        server is listening, and :attr:`port` holds the bound port. With
        ``certfile`` and ``keyfile`` it serves HTTPS and WSS (read now: a bad
        file raises OSError or ``ssl.SSLError`` before anything listens).
        """
        config = self.config
        #: TLS for every accepted connection, or None (plain HTTP)
        self._ssl_context = config.ssl_context()
        if config.reuse_port:
            from ._workers import open_shared_listeners

            self._listeners = await open_shared_listeners(config.host, config.port)
        else:
            self._listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        self.port = self._listeners[0].socket.getsockname()[1]
        if config.static_dir is None:
            log.info("serving Bayeux at %s", self.url)
        else:
            page = self.url.removesuffix(config.mount) + "/"
            log.info(
                "serving Bayeux at %s, and the pages of %s at %s", self.url, config.static_dir, page
            )
        with self._cancel:
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.hub.run)
                    if self.bus is not None:
                        await nursery.start(self.bus.run)
                        # The node's report (redis._nodes) counts its connections.
                        reporter = getattr(self.bus, "nodes", None)
                        if reporter is not None:
                            reporter.connections = self._open_count
                    nursery.start_soon(self._pinger)
                    nursery.start_soon(self._reap_idle_websockets)
                    if self.ops is not None:
                        self.ops.serving()
                        if self.ops.history is not None:
                            nursery.start_soon(self._sample_rates, self.ops)
                    if config.reclaim_after is not None:
                        nursery.start_soon(self._reclaim_memory, config.reclaim_after)
                    for task in self._tasks:
                        nursery.start_soon(task)
                    self._nursery = nursery
                    for listener in self._listeners:
                        nursery.start_soon(self._accept, listener, nursery)
                    task_status.started(self)
            finally:
                self._nursery = None
                for listener in self._listeners:
                    await trio.aclose_forcefully(listener)

    async def close(self, *, grace: float = 2.0) -> None:
        """Stop gracefully, within ``grace`` seconds, then stop serving.

        New connections are refused. Every held ``/meta/connect`` is answered
        at once with ``reconnect: retry``, and so is any connect that arrives
        on an open connection during the grace period. WebSockets are closed
        with 1001 (going away) and EventSource streams are ended; each HTTP
        connection closes after its current response. The sessions keep their
        queues: with a Redis bus, clients that come back to any node within
        the session timeout get them (docs/reliability.md). Returns once all
        that output is sent and the bus has written what it holds, or when
        ``grace`` runs out; then whatever is still open is cancelled.
        """
        from ._websocket import WebSocketEndpoint

        self.closing = True
        for listener in self._listeners:
            await trio.aclose_forcefully(listener)
        told: set[Stream] = set()
        with trio.move_on_after(grace):
            # Polled rather than evented: this runs once per process.
            while True:
                self.hub.release_held()
                for endpoint in self._streams - told:
                    told.add(endpoint)
                    if isinstance(endpoint, WebSocketEndpoint):
                        endpoint.going_away()
                    else:
                        endpoint.close_stream()
                self.hub.flush()
                if not (self._streams or self.hub.has_pending_output() or self._bus_busy()):
                    break
                await trio.sleep(0.05)
        self._cancel.cancel()

    def _bus_busy(self) -> bool:
        """True while the bus holds writes (and the replies that wait on them)."""
        return self.bus is not None and bool(self.bus.stats.get("pending_writes"))

    async def receive(
        self,
        conn: int,
        messages: Sequence[Message],
        request: object,
        address: str | None = None,
    ) -> None:
        """Run async extensions over a batch, then hand it to the engine.

        ``address`` is the peer's, for ``EngineConfig.max_clients_per_address``
        (endpoints have one only when that limit is set).
        """
        self._arrived(messages)
        if self._async_extensions:
            kept: list[Message] = []
            presence = bool(self.config.engine.presence)
            for message in messages:
                if self._gate_open and self._for_console(message):
                    # The console's ticket and its tail's subscribes skip them
                    # (ops._console): its gate checks them in the engine.
                    kept.append(message)
                    continue
                result = await self._run_async_extensions(message, request, address)
                if result is None:
                    continue
                probe = presence_probe(result) if presence and "error" not in result else None
                if probe is not None:
                    # Whoever may not subscribe to a channel may not watch who is in it.
                    checked = await self._run_async_extensions(probe, request, address)
                    refusal = probe_refusal(probe, checked)
                    if refusal is not None:
                        result = refused_copy(result, refusal)
                kept.append(result)
            messages = kept
        if self.bus is not None:
            await self.bus.prepare(messages)
        self.hub.receive(conn, messages, request, address)

    @property
    def receives_at_once(self) -> bool:
        """True when :meth:`receive` may not have to wait: no async extension
        (the bus may still need Redis first: :meth:`at_once` says)."""
        return not self._async_extensions

    def at_once(self, messages: Sequence[Message]) -> bool:
        """True when :meth:`receive` would not wait for ``messages``: no async
        extension, and the bus (if any) needs nothing from Redis first."""
        if self._async_extensions:
            return False
        bus = self.bus
        return bus is None or bus.ready_now(messages)

    def receive_at_once(
        self,
        conn: int,
        messages: Sequence[Message],
        request: object,
        address: str | None = None,
    ) -> None:
        """:meth:`receive` without a coroutine, when :meth:`at_once` is True."""
        self._arrived(messages)
        self.hub.receive(conn, messages, request, address)

    def _arrived(self, messages: Sequence[Message]) -> None:
        if self._metrics is not None:
            self._metrics.arrived(messages)
        if self._seen is not None and messages:
            # One look-up a batch: a client's batch names it in its first message.
            first = messages[0]
            if type(first) is dict:
                self._seen.note(first.get("clientId"))

    def _for_console(self, message: Message) -> bool:
        """A handshake with a console ticket, or a subscribe of the console's session."""
        kind = message_kind(message)
        if kind is MessageKind.HANDSHAKE:
            ext = message.get("ext")
            return type(ext) is dict and TICKET_FIELD in ext
        if kind is not MessageKind.SUBSCRIBE:
            return False
        client_id = message.get("clientId")
        session = self.engine.store.get(client_id) if type(client_id) is str else None
        return session is not None and is_console(session.access)

    async def _run_async_extensions(
        self, message: Message, request: object, address: str | None = None
    ) -> Message | None:
        result: Message | None = message
        for extension in list(self._async_extensions):
            assert result is not None
            try:
                if extension.wants_address:
                    result = await extension.incoming(  # type: ignore[call-arg]
                        result, request, address=address
                    )
                else:
                    result = await extension.incoming(result, request)
            except Exception as exc:
                # A bug in the hook refuses this message only.
                _log_extension_failure(extension, "incoming", message.get("channel"), exc)
                return refused_copy(message, _EXTENSION_FAILED)
            if result is None:
                return None
        return result

    # ------------------------------------- the connections' context (_context)

    @property
    def batches_messages(self) -> bool:
        return not self._async_extensions

    async def claim(self, client_id: str) -> None:
        if self.bus is not None:
            await self.bus.claim(client_id)

    def respond_outside(self, request: HttpRequest, body: bytes, path: str) -> HttpResponse | None:
        if path == self.config.health_path:
            return health_response(self, request)
        return self.ops.respond(request, body, path) if self.ops is not None else None

    def track_stream(self, stream: Stream) -> None:
        self._streams.add(stream)

    def untrack_stream(self, stream: Stream) -> None:
        self._streams.discard(stream)

    # ---------------------------------------------------- what ops reads (ops)

    @property
    def mount(self) -> str:
        return self.config.mount

    def _open_count(self) -> int:
        return self._connections

    def nodes(self) -> list[dict[str, Any]] | None:
        """The cluster's nodes, as the bus's reporter last read them (None: no cluster).

        A bus without a reporter (``nodes``, bayeux_trio.redis._nodes) lists none.
        """
        if self.bus is None:
            return None
        reporter = getattr(self.bus, "nodes", None)
        listing: Callable[[], list[dict[str, Any]]] | None = getattr(reporter, "listing", None)
        return listing() if listing is not None else []

    def open_connections(self) -> dict[str, int]:
        """Open TCP connections by transport: ``http``, ``websocket``, ``eventsource``."""
        counts = {"websocket": 0, "eventsource": 0}
        for stream in list(self._streams):
            kind = getattr(stream, "kind", None)
            if kind is Kind.WEBSOCKET:
                counts["websocket"] += 1
            elif kind is Kind.EVENTSOURCE:
                counts["eventsource"] += 1
        counts["http"] = max(0, self._connections - sum(counts.values()))
        return counts

    # ------------------------------------------------------------ internals

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        limit = self.config.max_connections
        per_address = self.config.max_connections_per_address
        # The peer's address costs a system call: only taken when a limit needs it.
        want_address = per_address is not None or self._want_address
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError as exc:
                # Out of file descriptors and the like: wait, then go on.
                log.warning("accept failed: %s", exc)
                await trio.sleep(0.1)
                continue
            if self._connections >= limit:
                log.info("refusing a connection: %d open (limit %d)", self._connections, limit)
                await trio.aclose_forcefully(stream)
                continue
            address = _peer_host(stream) if want_address else None
            if (
                per_address is not None
                and address is not None
                and self._per_address.get(address, 0) >= per_address
            ):
                log.debug("refusing a connection: %d open from one address", per_address)
                await trio.aclose_forcefully(stream)
                continue
            nursery.start_soon(self._connection, stream, address)
            # Not kept until the next accept: an idle server would hold the
            # last connection's objects (and its memory) for as long.
            del stream

    async def _connection(self, stream: trio.SocketStream, address: str | None = None) -> None:
        if self._seen is not None:
            # This task's batches note their session's address (ops._stats).
            PEER.set(_peer_address(stream))
        self._connections += 1
        if address is not None:
            self._per_address[address] = self._per_address.get(address, 0) + 1
        try:
            # The address is passed on only when a per-address session limit
            # or an extension needs it.
            serving = serve_connection(
                self, stream, address if self._want_address else None, ssl_context=self._ssl_context
            )
            # serve_connection owns the stream and closes it; not kept here,
            # so that what it gives up (trio's wrappers of a plaintext
            # socket) is freed for the connection's life.
            del stream
            await serving
        except Exception:
            log.exception("connection handler failed")
        finally:
            self._connections -= 1
            if address is not None:
                left = self._per_address[address] - 1
                if left:
                    self._per_address[address] = left
                else:
                    del self._per_address[address]

    async def _reap_idle_websockets(self) -> None:
        """Close WebSockets that sent nothing for the idle limit.

        A peer that vanished without a FIN (power cut, dropped route) is
        otherwise never noticed by a reader. Live Bayeux clients send a
        connect at least every ``timeout + interval``, so the limit is never
        below that. One counter per connection, reset by each read, and a
        sweep every quarter of the limit: no timer per connection.
        """
        from ._websocket import WebSocketEndpoint

        engine = self.engine.config
        limit = max(self.config.idle_timeout, engine.timeout + engine.interval + _IDLE_MARGIN)
        sweeps = 4

        def sweep() -> None:  # a function, so that no endpoint outlives the sweep
            for endpoint in list(self._streams):
                if isinstance(endpoint, WebSocketEndpoint):
                    endpoint.idle += 1
                    if endpoint.idle > sweeps:
                        log.debug("closing WebSocket %d: idle for %g s", endpoint.conn, limit)
                        endpoint.wake()

        while True:
            await trio.sleep(limit / sweeps)
            sweep()

    async def _pinger(self) -> None:
        period = self.config.ping
        websockets = period is not None
        period = period if period is not None else _EVENTSOURCE_PING
        from ._websocket import WebSocketEndpoint

        def ping() -> None:  # a function, so that no endpoint outlives the round
            for endpoint in list(self._streams):
                if websockets or not isinstance(endpoint, WebSocketEndpoint):
                    endpoint.ping()

        while True:
            await trio.sleep(period if math.isfinite(period) else _EVENTSOURCE_PING)
            ping()
            self.hub.flush()

    async def _sample_rates(self, ops: Operations) -> None:
        """The console's rates, once a second (ops._stats.History); now and
        then, forget the client log's sessions that left without an event."""
        ticks = 0
        while True:
            await trio.sleep(_SAMPLE_PERIOD)
            ops.sample()
            ticks += 1
            if ticks % _PRUNE_EVERY == 0 and ops.seen is not None:
                ops.seen.prune()

    async def _reclaim_memory(self, after: int) -> None:
        """Hand memory back once a burst of connections has gone (_reclaim)."""
        policy = ReclaimPolicy(after)
        while True:
            await trio.sleep(_RECLAIM_PERIOD)
            if policy.sample(self._connections):
                started = time.perf_counter()
                collected = reclaim()
                log.info(
                    "connections fell to %d: collected %d objects and trimmed the heap in %.0f ms",
                    self._connections,
                    collected,
                    (time.perf_counter() - started) * 1000,
                )
