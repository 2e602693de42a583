"""What the engine asks of the network layer, and tells the application.

Drained with :meth:`Engine.actions_to_send`, in order. Transport actions carry
bytes that are ready to frame: a JSON array for :class:`Reply`, a single JSON
object for :class:`Deliver` (one encoding shared by every recipient). The rest
are application events: handshake, subscribe, unsubscribe, publish,
disconnect, session expiry, queue overflow.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Action",
    "Broadcast",
    "Close",
    "Deliver",
    "DisconnectReason",
    "Disconnected",
    "Event",
    "ExtensionFailed",
    "Handshaken",
    "PresenceEntered",
    "PresenceExited",
    "PresenceJoined",
    "PresenceLeft",
    "Published",
    "QueueOverflow",
    "Reply",
    "SessionExpired",
    "Subscribed",
    "Unsubscribed",
]


class Action:
    """Base class of everything :meth:`Engine.actions_to_send` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Reply(Action):
    """Send ``body`` on connection ``conn``.

    For a request connection this is *the* HTTP response body, and the request
    is finished. For a stream connection it is one WebSocket message or one
    EventSource event. ``body`` is a JSON array.

    ``client_id`` and ``messages`` name the queued deliveries this reply
    carries: if the network layer fails to send it, it passes the reply to
    :meth:`Engine.reply_failed` and they are queued again.
    """

    conn: int
    body: bytes
    client_id: str | None = None
    messages: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Deliver(Action):
    """Push one message to every stream in ``conns``.

    ``payload`` is one JSON object; wrap it as ``[payload]`` to frame it. It is
    the same bytes for every recipient, so frame it once.
    """

    payload: bytes
    conns: Sequence[int]


@dataclass(frozen=True, slots=True)
class Broadcast(Action):
    """Put a publish on the shared bus (only with ``local_routing=False``).

    ``payload`` is the delivery encoded once, as :class:`Deliver` would carry
    it. The engine has not routed it: the bus hands it back to every node,
    this one included, through :meth:`Engine.route`.

    ``client_id`` and ``message_id``: the ``clientId`` and ``id`` the publish
    carried, when it had both (None otherwise, for a ``clientId`` longer
    than :data:`~bayeux_core.MAX_CLAIMED_ID_LENGTH`, and for the server's own
    publishes). A client sends a publish whose reply it lost again under the
    same pair, perhaps to another node, which knows nothing of the first
    copy: the bus, which sees every node's publishes, can recognise it
    (docs/redis.md). The session need not be on this node, nor exist.
    """

    channel: str
    payload: bytes
    client_id: str | None = None
    message_id: str | int | float | None = None


@dataclass(frozen=True, slots=True)
class Close(Action):
    """Close stream connection ``conn``: its session has ended."""

    conn: int


class Event(Action):
    """Base class of the application events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Handshaken(Event):
    client_id: str


@dataclass(frozen=True, slots=True)
class Subscribed(Event):
    """A *new* subscription (a repeated subscribe does not fire)."""

    client_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class Unsubscribed(Event):
    """An explicit unsubscribe, or each subscription of a session that ended."""

    client_id: str
    channel: str


@dataclass(frozen=True, slots=True)
class Published(Event):
    """A publish accepted, before routing; ``client_id`` is None for the server.

    Publishes to ``/service/...`` are reported here and never routed: this is
    how the application receives them. ``message_id`` is the id the client
    gave such a message (None otherwise): a service call is answered with it
    (see :meth:`Engine.answer_call`).
    """

    client_id: str | None
    channel: str
    data: Any
    ext: Any = None
    message_id: Any = None


class DisconnectReason(enum.Enum):
    CLIENT = "client"
    OVERFLOW = "overflow"
    SERVER = "server"


@dataclass(frozen=True, slots=True)
class Disconnected(Event):
    client_id: str
    reason: DisconnectReason


@dataclass(frozen=True, slots=True)
class SessionExpired(Event):
    """No connect for longer than the session timeout: the session is gone."""

    client_id: str


@dataclass(frozen=True, slots=True)
class QueueOverflow(Event):
    """``dropped`` messages for ``client_id`` were dropped (drop-oldest policy)."""

    client_id: str
    dropped: int


@dataclass(frozen=True, slots=True)
class ExtensionFailed(Event):
    """A server extension raised; the engine carried on without harm.

    An ``incoming`` hook that raises gets its message refused with
    ``500::Internal server error``; an ``outgoing`` hook that raises on a
    reply turns that reply into the same error, and on a delivery drops it
    for that recipient. The rest of the batch goes on. Log ``error`` (its
    traceback is attached): it is a bug in the extension.
    """

    extension: object
    hook: str
    channel: Any
    error: Exception


@dataclass(frozen=True, slots=True)
class PresenceJoined(Event):
    """``user`` is now in ``channel`` (a channel with presence): their first
    session subscribed to it. A node of a cluster reports it when the join
    reaches it through the shared log, so every node reports each join."""

    channel: str
    user: str
    info: Any = None


@dataclass(frozen=True, slots=True)
class PresenceLeft(Event):
    """``user`` left ``channel``: their last session unsubscribed, disconnected
    or expired."""

    channel: str
    user: str
    info: Any = None


@dataclass(frozen=True, slots=True)
class PresenceEntered(Action):
    """For a cluster's bus (``local_routing=False`` only): session
    ``client_id`` of ``user`` is now in ``channel``.

    The bus decides, for the whole cluster, whether that is the user's join,
    and if so puts one ``{"join": ...}`` delivery on ``/presence<channel>`` on
    its log; the engines learn of it through :meth:`Engine.route`."""

    client_id: str
    channel: str
    user: str
    info: Any = None


@dataclass(frozen=True, slots=True)
class PresenceExited(Action):
    """For a cluster's bus: session ``client_id`` of ``user`` is no longer in
    ``channel`` (unsubscribed, disconnected, expired). The bus logs the
    user's leave if it was their last session in the cluster."""

    client_id: str
    channel: str
    user: str
