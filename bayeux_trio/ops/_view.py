"""What the operations endpoints read of a server, and nothing more.

The ops room declares the view it needs; :class:`bayeux_trio.BayeuxServer`
provides it and mounts the endpoints. So ops never imports the server, the
server's internals stay private, and a test can hand ops a small fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from bayeux_core import Engine, Event

__all__ = ["BusView", "HubView", "ServerView"]


class HubView(Protocol):
    """The engine driver's counters and hooks."""

    #: deliveries written to connections so far
    delivered: int
    #: response bodies written so far (one per reply or frame)
    responses: int
    #: called at the end of each write pass, when set
    after_flush: Callable[[], None] | None

    def add_listener(self, listener: Callable[[Event], None]) -> None: ...

    def transport_of(self, conn: int) -> str | None:
        """``long-polling``, ``websocket``, ``eventsource`` or ``in-process``."""


class BusView(Protocol):
    @property
    def stats(self) -> dict[str, Any]:
        """Health and counters (``healthy`` is False while the bus is down)."""


class ServerView(Protocol):
    """A serving Bayeux server, as admin, metrics and health see it."""

    @property
    def engine(self) -> Engine: ...

    @property
    def hub(self) -> HubView: ...

    @property
    def bus(self) -> BusView | None: ...

    @property
    def mount(self) -> str:
        """The Bayeux endpoint's path (``/faye``)."""

    def nodes(self) -> list[dict[str, Any]] | None:
        """The cluster's nodes as this one last read them; None without a cluster bus."""

    def open_connections(self) -> Mapping[str, int]:
        """Open TCP connections by transport: ``http``, ``websocket``, ``eventsource``."""

    def clients(self) -> list[dict[str, Any]]: ...

    def client(self, client_id: str) -> dict[str, Any] | None: ...

    def subscriptions(self) -> dict[str, list[str]]: ...

    def presence(self, channel: str) -> list[dict[str, Any]]:
        """Who is in ``channel``: ``[{"user": ..., "info": ...}]``, in join order.

        Raises :class:`bayeux_core.LocalProtocolError` if ``channel`` has no presence.
        """

    def publish(self, channel: str, data: Any, *, ext: Any = None) -> None: ...

    def disconnect(self, client_id: str) -> bool: ...

    def unsubscribe(self, client_id: str, channel: str) -> bool: ...
