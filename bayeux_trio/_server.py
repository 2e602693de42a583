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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio

from bayeux_core import Engine, Event, Extension, Message, Published

from ._config import ServerConfig
from ._extensions import AsyncExtension
from ._http import HttpConnection
from ._hub import Hub
from ._local import LocalClient
from ._static import StaticFiles

__all__ = ["BayeuxServer"]

log = logging.getLogger("bayeux.server")

E = TypeVar("E", bound=Event)

_CLIENT_DIR = Path(__file__).parent / "static"
#: EventSource streams get a comment this often when no ping period is set.
_EVENTSOURCE_PING = 10.0


def _log_event(event: Event) -> None:
    """Session events at debug level; client ids cut to 6 characters."""
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
    log.debug("%s %s %s", type(event).__name__, short, fields)


class _Pingable(Protocol):
    def ping(self) -> None: ...


class Bus(Protocol):
    """What a cluster bus offers the server: :class:`bayeux_trio.redis.RedisBus`."""

    def attach(self, hub: Hub) -> None: ...

    async def run(self, *, task_status: trio.TaskStatus[None] = ...) -> None: ...

    async def prepare(self, messages: Sequence[Message]) -> None: ...

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
        self.hub = Hub(self.engine)
        if bus is not None:
            bus.attach(self.hub)
        self._async_extensions: list[AsyncExtension] = []
        for extension in extensions:
            self.add_extension(extension)
        self.client_files = StaticFiles(_CLIENT_DIR, index=None)
        static_dir = self.config.static_dir
        self.static_files = StaticFiles(static_dir) if static_dir is not None else None
        self._streams: set[_Pingable] = set()
        self._connections = 0
        self._cancel = trio.CancelScope()
        self._listeners: list[trio.SocketListener] = []
        #: the port actually bound (useful with port 0)
        self.port: int | None = None
        self._local: LocalClient | None = None
        self.hub.add_listener(_log_event)

    # ------------------------------------------------------------------ API

    def add_extension(self, extension: Extension | AsyncExtension) -> None:
        """Add a server extension; it runs after those already added."""
        if isinstance(extension, AsyncExtension):
            self._async_extensions.append(extension)
        elif isinstance(extension, Extension):
            self.engine.add_extension(extension)
        else:
            raise TypeError(f"{extension!r} is not an Extension or AsyncExtension")

    def remove_extension(self, extension: Extension | AsyncExtension) -> None:
        if isinstance(extension, AsyncExtension):
            self._async_extensions.remove(extension)
        else:
            self.engine.remove_extension(extension)

    def publish(self, channel: str, data: Any, *, ext: Any = None) -> None:
        """Publish from the server to every subscriber of ``channel``.

        Raises :class:`bayeux_core.LocalProtocolError` for a channel one cannot
        publish to or data that is not JSON.
        """
        self.hub.publish(channel, data, ext)

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

    def get_client(self) -> LocalClient:
        """The server's in-process client (one per server, made on first use).

        Its messages pass through the server's extensions with ``request``
        None, as with Faye's ``getClient()``. The server must be serving.
        """
        if self._local is None:
            self._local = LocalClient(self)
        return self._local

    @property
    def url(self) -> str:
        """The endpoint's URL (after :meth:`serve` has started)."""
        host = self.config.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{self.config.mount}"

    # ------------------------------------------------------------- serving

    async def serve(
        self, *, task_status: trio.TaskStatus[BayeuxServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen and serve until cancelled (or :meth:`close`).

        With ``await nursery.start(server.serve)`` the call returns once the
        server is listening, and :attr:`port` holds the bound port.
        """
        config = self.config
        if config.reuse_port:
            from ._workers import open_shared_listeners

            self._listeners = await open_shared_listeners(config.host, config.port)
        else:
            self._listeners = await trio.open_tcp_listeners(config.port, host=config.host)
        self.port = self._listeners[0].socket.getsockname()[1]
        log.info("serving Bayeux at %s", self.url)
        with self._cancel:
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.hub.run)
                    if self.bus is not None:
                        await nursery.start(self.bus.run)
                    nursery.start_soon(self._pinger)
                    for listener in self._listeners:
                        nursery.start_soon(self._accept, listener, nursery)
                    task_status.started(self)
            finally:
                for listener in self._listeners:
                    await trio.aclose_forcefully(listener)

    async def close(self, *, grace: float = 2.0) -> None:
        """Stop gracefully: held connects are answered (``reconnect: retry``),
        output is given ``grace`` seconds to drain, then everything stops."""
        for listener in self._listeners:
            await trio.aclose_forcefully(listener)
        self.hub.release_held()
        self.hub.flush()
        with trio.move_on_after(grace):
            # Drain tasks finish on their own; poll rather than wire an event
            # through every output for this once-per-process wait.
            while self.hub.has_pending_output():  # noqa: ASYNC110
                await trio.sleep(0.05)
        self._cancel.cancel()

    async def receive(self, conn: int, messages: Sequence[Message], request: object) -> None:
        """Run async extensions over a batch, then hand it to the engine."""
        if self._async_extensions:
            kept: list[Message] = []
            for message in messages:
                result: Message | None = message
                for extension in list(self._async_extensions):
                    assert result is not None
                    result = await extension.incoming(result, request)
                    if result is None:
                        break
                if result is not None:
                    kept.append(result)
            messages = kept
        if self.bus is not None:
            await self.bus.prepare(messages)
        self.hub.receive(conn, messages, request)

    # ------------------------------------------------------------ internals

    def track_stream(self, endpoint: _Pingable) -> None:
        self._streams.add(endpoint)

    def untrack_stream(self, endpoint: _Pingable) -> None:
        self._streams.discard(endpoint)

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        limit = self.config.max_connections
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
            nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self._connections += 1
        try:
            await HttpConnection(self, stream).serve()
        except Exception:
            log.exception("connection handler failed")
        finally:
            self._connections -= 1
            await trio.aclose_forcefully(stream)

    async def _pinger(self) -> None:
        period = self.config.ping
        websockets = period is not None
        period = period if period is not None else _EVENTSOURCE_PING
        from ._websocket import WebSocketEndpoint

        while True:
            await trio.sleep(period if math.isfinite(period) else _EVENTSOURCE_PING)
            for endpoint in list(self._streams):
                if websockets or not isinstance(endpoint, WebSocketEndpoint):
                    endpoint.ping()
            self.hub.flush()
