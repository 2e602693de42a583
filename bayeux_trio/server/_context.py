"""What a connection handler may use of its server: the narrow context.

The HTTP loop (``_http``) and the WebSocket (``_websocket``) take a
:class:`ServerContext`, not :class:`~bayeux_trio.BayeuxServer`: the engine
driver, the settings, the binding's config, and a few calls. So neither
imports the server, and a test can serve a connection with a small fake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bayeux_core import Extension, Message
from bayeux_core.wire import HttpRequest, HttpResponse, WireConfig

from ._config import ServerConfig
from ._hub import Hub
from ._output import Output
from ._static import StaticFiles

__all__ = ["ServerContext", "Stream", "Upgrade"]


class Stream(Protocol):
    """An open push stream (WebSocket or EventSource), for pings and shutdown."""

    def ping(self) -> None: ...

    def close_stream(self) -> None: ...


class ServerContext(Protocol):
    @property
    def hub(self) -> Hub: ...

    @property
    def config(self) -> ServerConfig: ...

    @property
    def wire(self) -> WireConfig: ...

    @property
    def local_extensions(self) -> list[Extension]:
        """Client extensions of the in-process client (:class:`LocalClient`)."""
        ...

    @property
    def closing(self) -> bool:
        """Shutting down: each HTTP connection ends after its current response."""

    @property
    def client_files(self) -> StaticFiles:
        """The browser client (``<mount>/client.js``)."""

    @property
    def static_files(self) -> StaticFiles | None:
        """``--static``: the pages served outside the mount."""

    @property
    def batches_messages(self) -> bool:
        """False when async extensions may wait: flush after every message."""

    async def receive(
        self, conn: int, messages: Sequence[Message], request: object, address: str | None = None
    ) -> None:
        """Run the incoming pipeline over a batch and feed it to the engine."""

    @property
    def receives_at_once(self) -> bool:
        """False when :meth:`receive` may always wait (async extensions): a
        check before a request is parsed."""

    def at_once(self, messages: Sequence[Message]) -> bool:
        """True when :meth:`receive` would not wait for ``messages``."""

    def receive_at_once(
        self, conn: int, messages: Sequence[Message], request: object, address: str | None = None
    ) -> None:
        """:meth:`receive` without a coroutine, only when :meth:`at_once` is True."""

    async def claim(self, client_id: str) -> None:
        """Make sure this node holds ``client_id``'s session (a cluster bus claims it)."""

    def respond_outside(self, request: HttpRequest, body: bytes, path: str) -> HttpResponse | None:
        """The answer of an endpoint outside the mount (health, admin, metrics), or None."""

    def track_stream(self, stream: Stream) -> None: ...

    def untrack_stream(self, stream: Stream) -> None: ...


@dataclass(slots=True)
class Upgrade:
    """An HTTP connection asked to become a WebSocket, handed back as a value.

    ``leftover`` is what the client sent after the upgrade request; the
    output buffer passes to the WebSocket with the socket.
    """

    request: HttpRequest
    leftover: bytes
    output: Output
