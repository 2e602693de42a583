"""The Bayeux server state machine.

Theory of operation
-------------------

The engine is a pure object. The network layer feeds it inputs and executes
what it asks for; it never touches a socket, a clock, a thread or a task.

Connections
    The network layer numbers its connections with ints of its own choosing.
    A *request* connection is one HTTP request: :meth:`Engine.receive` is called
    once for it and exactly one :class:`Reply` answers it, now or later (a held
    ``/meta/connect``). A *stream* connection (WebSocket, EventSource) is
    announced with :meth:`Engine.open_stream`; it may carry many inputs, gets
    zero or more replies, and receives pushed :class:`Deliver` actions once a
    session is bound to it. :meth:`Engine.close` says a connection is gone.

Time
    Every input takes ``now``, in the caller's monotonic seconds. The engine
    keeps absolute deadlines and says when it next needs :meth:`handle_timer`
    through :meth:`get_timer`. It never reads a clock.

Output
    Inputs queue actions; :meth:`actions_to_send` drains them. Held connects
    that received messages during the batch are answered at drain time, so
    every message that arrived in one batch shares one reply: the network layer
    should feed everything it has, then drain once and write each connection
    once.

Peer errors become replies
    Nothing a peer sends makes the engine raise: a bad message gets a reply with
    ``successful: false`` and a Faye-style ``code:args:message`` error.
    :class:`LocalProtocolError` is raised only for misuse by the caller.

Fan-out
    A publish is encoded once. Recipients with a stream get one
    :class:`Deliver` that lists them all; the others get the same bytes
    appended to their queue. Only an installed extension that rewrites
    deliveries switches to a per-recipient copy.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import orjson

from ._ack import acknowledge, asks_for_ack, set_reply_ack, take_batch
from ._actions import (
    Action,
    Broadcast,
    Close,
    Deliver,
    Disconnected,
    DisconnectReason,
    ExtensionFailed,
    Handshaken,
    PresenceEntered,
    PresenceExited,
    PresenceJoined,
    PresenceLeft,
    Published,
    QueueOverflow,
    Reply,
    SessionExpired,
    Subscribed,
    Unsubscribed,
)
from ._channels import is_meta, is_pattern, is_service, is_valid_name, is_valid_pattern
from ._cluster import MAX_CLAIMED_ID_LENGTH
from ._config import EngineConfig, OverflowPolicy
from ._errors import ErrorCode, LocalProtocolError, error_string
from ._extensions import Extension, MessageContext
from ._history import History, Recovery, requested_since
from ._ids import random_client_id
from ._kinds import SESSION_KINDS, channel_kind
from ._messages import Message
from ._presence import (
    PRESENCE_PREFIX,
    PresenceTracker,
    presence_channel,
    presence_delivery,
    presence_probe,
    presence_target,
    probe_refusal,
)
from ._replies import failure_reply
from ._state import TRANSITIONS, MessageKind, Outcome, SessionState
from ._store import Held, MemoryStore, Session, SessionStore
from ._timesync import timesync_answer

__all__ = ["Engine"]

_EVENTSOURCE = "eventsource"
#: publish ids remembered per session to drop resent duplicates
_RECENT_PUBLISHES = 64
#: a session's publish beyond EngineConfig.publish_rate (Bayeux has no 429)
_RATE_LIMITED = error_string(ErrorCode.PUBLISH_FAILED, (), "Publish rate limit exceeded")
_BATCH_TOO_LARGE = error_string(ErrorCode.BAD_REQUEST, (), "Too many messages in one batch")
#: what a message that an extension raised on is refused with
_EXTENSION_FAILED = error_string(ErrorCode.SERVER_ERROR)
_TOO_MANY_FROM_ADDRESS = "503::Too many clients from this address"
_CANNOT_ENCODE = error_string(ErrorCode.BAD_REQUEST, ("data",), "Cannot encode message")
#: channels whose plain-publish reply is kept; past it the set starts over
_PLAIN_REPLIES = 1024
_PRESENCE_SLASH = PRESENCE_PREFIX + "/"
#: longest user id an extension may give a session
_MAX_USER_LENGTH = 256


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _client_id_of(message: Message) -> str | None:
    client_id = message.get("clientId")
    return client_id if type(client_id) is str else None


def _refuse_all(messages: Sequence[object], error: str) -> bytes:
    """One error reply per message: a Faye client settles every callback it
    has waiting instead of resending the whole batch as if the transport had
    failed."""
    return orjson.dumps([failure_reply(message, error) for message in messages])


class _Batch:
    """The replies to one input batch, while it is being handled."""

    __slots__ = (
        "address",
        "client_id",
        "conn",
        "parts",
        "pending",
        "request",
        "snapshots",
        "streaming",
        "tail",
        "wall",
    )

    def __init__(
        self,
        conn: int,
        streaming: bool,
        request: object,
        address: str | None,
        wall: float | None = None,
    ) -> None:
        self.conn = conn
        #: the caller's wall-clock ms at arrival (for timesync), if given
        self.wall = wall
        self.streaming = streaming
        self.request = request
        self.address = address
        #: encoded replies, in message order
        self.parts: list[bytes] = []
        #: queued deliveries answered with a connect, sent after the replies
        self.tail: list[bytes] = []
        #: the client those deliveries were queued for
        self.client_id: str | None = None
        #: a connect that wants holding: (session, reply, seconds to hold)
        self.pending: tuple[Session, Message, float] | None = None
        #: new subscriptions to presence channels, whose members list
        #: follows the replies: (session, presence channel, channel)
        self.snapshots: list[tuple[Session, str, str]] | None = None

    def body(self) -> bytes:
        return b"[" + b",".join(self.parts + self.tail if self.tail else self.parts) + b"]"


class Engine:
    """The server side of Bayeux, without I/O.

    Args:
        config: timing and limits; :class:`EngineConfig` defaults if omitted.
        extensions: server extensions, run in this order.
        client_id_generator: makes client ids; 160 random bits by default.
        store: where sessions live; a fresh :class:`MemoryStore` by default.
        local_routing: False for a node of a cluster: publishes become
            :class:`Broadcast` actions for the shared bus instead of being
            routed here, and the bus feeds them back through :meth:`route`.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        extensions: Iterable[Extension] = (),
        client_id_generator: Callable[[], str] = random_client_id,
        store: SessionStore | None = None,
        local_routing: bool = True,
    ) -> None:
        self.config = config if config is not None else EngineConfig()
        self._local_routing = local_routing
        self._store: SessionStore = store if store is not None else MemoryStore()
        self._new_id = client_id_generator
        self._extensions: list[Extension] = []
        #: the extensions whose ``outgoing`` is their own: only they see replies
        self._reply_hooks: list[Extension] = []
        self._rewrites_deliveries = False
        for extension in extensions:
            self.add_extension(extension)
        self._actions: list[Action] = []
        #: (deadline, sequence, session token, session); stale when tokens differ
        self._timers: list[tuple[float, int, int, Session]] = []
        self._sequence = 0
        self._dirty: list[Session] = []
        self._overflowed: list[Session] = []
        #: open stream connections -> the session bound to each (or None)
        self._streams: dict[int, Session | None] = {}
        #: connections with a held connect -> its session
        self._held: dict[int, Session] = {}
        #: client ids ended by :meth:`disconnect` -> until when their next
        #: message is told ``reconnect: none`` (so that they stay away)
        self._kicked: dict[str, float] = {}
        #: error replies sent, by code (the part of the error before its first ':')
        self.error_counts: dict[str, int] = {}
        #: held connects answering timesync: conn -> (their ext.timesync,
        #: when they arrived), so the reply says how long it was held
        self._synced: dict[int, tuple[dict[str, int], float]] = {}
        self._now = -math.inf
        cfg = self.config
        #: with max_clients_per_address: live sessions per address, and the
        #: address each counted session came from
        self._per_address: dict[str, int] = {}
        self._address_of: dict[str, str] = {}
        #: orjson's 53-bit check on deliveries, if asked for
        self._dump_option = orjson.OPT_STRICT_INTEGER if cfg.js_safe_integers else 0
        self._bucket = cfg.bucket_size
        #: per-channel history; None (no cost per publish) when none is configured
        self._history = History(cfg.history, cfg.history_channels) if cfg.history else None
        self._retry_advice = {
            "reconnect": "retry",
            "interval": _ms(cfg.interval),
            "timeout": _ms(cfg.timeout),
        }
        self._eventsource_advice = {
            "reconnect": "retry",
            "interval": _ms(cfg.timeout),
            "timeout": 0,
        }
        self._handshake_advice = {"reconnect": "handshake", "interval": _ms(cfg.error_interval)}
        # Replies get copies of these: an outgoing extension may edit advice.
        self._connection_types = list(cfg.connection_types)
        #: who is in the channels with presence; None (no cost) without any
        self._presence = PresenceTracker(cfg.presence) if cfg.presence else None
        #: (user, info) an extension gave the handshake being handled
        self._identity: tuple[str | None, Any, Any] = (None, None, None)
        #: (client id, presence channel) whose members list this batch sends:
        #: joins and leaves in the same batch are in that list already
        self._awaiting: set[tuple[str, str]] = set()
        #: channels a plain publish may go to -> the body of its reply; what
        #: decides it is the name alone (see _plain_publish)
        self._plain_replies: dict[str, bytes] = {}

    # ------------------------------------------------------------------ setup

    def add_extension(self, extension: Extension) -> None:
        """Append a server extension; it runs after those already added."""
        if not isinstance(extension, Extension):
            raise LocalProtocolError(f"{extension!r} is not an Extension")
        self._extensions.append(extension)
        self._extensions_changed()

    def remove_extension(self, extension: Extension) -> None:
        """Remove an extension added earlier."""
        try:
            self._extensions.remove(extension)
        except ValueError:
            raise LocalProtocolError(f"{extension!r} was not added") from None
        self._extensions_changed()

    def _extensions_changed(self) -> None:
        extensions = self._extensions
        self._rewrites_deliveries = any(e.rewrites_outgoing for e in extensions)
        self._reply_hooks = [e for e in extensions if type(e).outgoing is not Extension.outgoing]

    @property
    def store(self) -> SessionStore:
        """The session store (read it for introspection; do not mutate it)."""
        return self._store

    # ----------------------------------------------------------------- inputs

    def open_stream(self, conn: int, *, now: float, client_id: str | None = None) -> bool:
        """Announce a stream connection (WebSocket or EventSource).

        A WebSocket is bound to a session by the first ``/meta/connect`` it
        carries. An EventSource names its client up front (``<mount>/<id>``):
        pass ``client_id`` and the stream is bound at once, after the id has
        been checked. Returns False for an unknown client: the connection is
        still announced but bound to nothing; answer with an error and
        :meth:`close` it as any other.
        """
        self._tick(now)
        self._run_due_timers(now)
        if conn in self._streams or conn in self._held:
            raise LocalProtocolError(f"connection {conn} is already open")
        self._streams[conn] = None
        if client_id is None:
            return True
        session = self._store.get(client_id) if type(client_id) is str else None
        if session is None:
            return False
        self._bind(session, conn)
        if session.queue and not session.ack:
            messages = tuple(session.queue)
            session.queue.clear()
            self._actions.append(
                Reply(conn, b"[" + b",".join(messages) + b"]", client_id, messages)
            )
        return True

    def receive(
        self,
        conn: int,
        messages: Sequence[Message],
        *,
        now: float,
        request: object = None,
        address: str | None = None,
        wall: float | None = None,
    ) -> None:
        """Handle one batch of messages that arrived on ``conn``.

        ``messages`` is what :func:`decode_body` returned (other values get
        error replies, never exceptions). ``request`` is passed to extensions
        as ``context.request``. ``address`` names the remote peer (an IP
        address, say): a handshake in the batch counts against
        ``EngineConfig.max_clients_per_address`` for it. None: not counted.
        ``wall`` is the caller's wall-clock time in ms since the epoch: given,
        meta messages carrying CometD's ``ext.timesync`` are answered with the
        server's time (see ``bayeux_core._timesync``); None, they are not.
        """
        self._tick(now)
        self._run_due_timers(now)
        streaming = conn in self._streams
        if not streaming and conn in self._held:
            raise LocalProtocolError(f"connection {conn} is still waiting for its reply")
        max_batch = self.config.max_batch
        if max_batch is not None and len(messages) > max_batch:
            self._actions.append(Reply(conn, _refuse_all(messages, _BATCH_TOO_LARGE)))
            return
        if len(messages) == 1 and not self._extensions:
            # A lone publish without a session (a backend's notification):
            # none of _handle's branches but the publish apply to it.
            body = self._plain_publish(messages[0])
            if body is not None:
                self._actions.append(Reply(conn, body))
                return
        batch = _Batch(conn, streaming, request, address, wall)
        for message in messages:
            reply: Message | None
            if type(message) is not dict:
                reply = {
                    "successful": False,
                    "error": error_string(ErrorCode.BAD_REQUEST, (), "Message must be an object"),
                }
            else:
                accepted = self._incoming(message, request)
                if accepted is None:
                    continue
                reply = self._handle(accepted, batch)
                if reply is None:
                    continue
            encoded = self._outgoing_reply(reply, request)
            if encoded is not None:
                batch.parts.append(encoded)
        if batch.snapshots is not None:
            self._send_members(batch)
        if batch.pending is not None and self._hold(batch):
            return
        # An empty batch gets `[]` on a stream too: pre-1.3 Faye pings WebSockets so.
        if batch.parts or batch.tail or not streaming or not messages:
            self._actions.append(Reply(conn, batch.body(), batch.client_id, tuple(batch.tail)))

    def publish(self, channel: str, data: Any, *, now: float, ext: Any = None) -> None:
        """Publish from the server (no client, no extensions).

        Raises :class:`LocalProtocolError` for a channel one cannot publish to
        (invalid, a pattern, ``/meta`` or ``/service``) or for data that cannot
        be encoded as JSON.
        """
        self._tick(now)
        if not is_valid_name(channel):
            raise LocalProtocolError(f"invalid channel {channel!r}", ErrorCode.CHANNEL_INVALID)
        if (
            is_meta(channel)
            or is_service(channel)
            or (self._presence is not None and presence_target(channel) is not None)
        ):
            raise LocalProtocolError(f"cannot publish to {channel!r}", ErrorCode.CHANNEL_FORBIDDEN)
        delivery: Message = {"channel": channel, "data": data}
        if ext is not None:
            delivery["ext"] = ext
        try:
            self._route(channel, delivery)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise LocalProtocolError(f"cannot encode data: {exc}") from None
        self._actions.append(Published(None, channel, data, ext))

    def close(self, conn: int, *, now: float) -> None:
        """Connection ``conn`` is gone (client went away, write failed).

        A connect held on it is dropped without a reply; the messages queued for
        its client stay queued for the next connect. Unknown ids are ignored,
        so the network layer can call this for every connection it closes.
        """
        self._tick(now)
        session = self._held.pop(conn, None)
        if self._synced:
            self._synced.pop(conn, None)
        if session is not None and session.held is not None and session.held.conn == conn:
            session.held = None
            self._start_expiry(session)
        bound = self._streams.pop(conn, None)
        if bound is not None and bound.stream == conn:
            bound.stream = None

    def reply_failed(self, reply: Reply, *, now: float) -> None:
        """The network layer could not send ``reply``: queue its deliveries again.

        They go back to the front of the client's queue, in order, if the
        session still exists.
        """
        self._tick(now)
        if reply.client_id is None or not reply.messages:
            return
        session = self._store.get(reply.client_id)
        if session is None or session.ack:
            # An acknowledging client's batch is kept until acknowledged: its
            # next connect gets it again.
            return
        session.queue.extendleft(reversed(reply.messages))
        excess = len(session.queue) - self.config.max_queue
        if excess > 0:
            # The cap holds for requeued messages too, under the same policy.
            if self.config.overflow is OverflowPolicy.DISCONNECT:
                self._overflow_disconnect(session)
                return
            for _ in range(excess):
                session.queue.popleft()
            if not session.dropped:
                self._overflowed.append(session)
            session.dropped += excess
        self._mark_dirty(session)

    def route(
        self, channel: str, payload: bytes, *, now: float, offset: int | None = None
    ) -> Collection[Session]:
        """Route a delivery that came from the shared bus to the local subscribers.

        ``payload`` is the JSON object a :class:`Broadcast` carried (encoded
        once, by whichever node accepted the publish). No event fires: the
        accepting node reported the publish. Returns the sessions it went to.
        A join or leave on a presence channel that changes nothing in the
        members view (a repeat) goes to no one: a watcher's members list and
        the events after it never disagree.
        ``offset``: the delivery's place in the bus's log, an int that grows
        along it; after :meth:`share_history` it is the history offset of a
        delivery on a channel with history.
        """
        self._tick(now)
        if self._presence is not None and presence_target(channel) is not None:
            change = self._presence.apply(channel, payload)
            if change is not None:
                kind, user, info, changed = change
                if not changed:
                    # A repeat (a node replaying its log over a fresh view):
                    # its watchers have it in their members list already.
                    return ()
                target = channel[len(PRESENCE_PREFIX) :]
                if kind == "join":
                    self._actions.append(PresenceJoined(target, user, info))
                else:
                    self._actions.append(PresenceLeft(target, user, info))
        if self._history is not None:
            policy = self._history.policy(channel)
            if policy is not None:
                payload = self._history.append(
                    channel,
                    policy,
                    orjson.loads(payload),
                    self._now,
                    option=self._dump_option,
                    offset=offset,
                )
        recipients = self._store.subscribers(channel)
        if recipients:
            if self._rewrites_deliveries:
                self._route_each(recipients, orjson.loads(payload))
            else:
                self._fan_out(recipients, payload)
        return recipients

    def share_history(self, epoch: str, start: int) -> bool:
        """Number history from the bus's log, as every node of the cluster does.

        Positions become ``<epoch>:<log offset>`` (``offset`` of :meth:`route`),
        the same on every node, so a client can recover through any node.
        ``start``: the offset this node reads the log after. Before this call,
        each node numbers what it routes on its own (positions good on that
        node only). False if no history is configured.
        """
        if self._history is None:
            return False
        self._history.share(epoch, start)
        return True

    def numbered(self, channel: str, payload: bytes, offset: int) -> bytes:
        """``payload`` as :meth:`route` would number it, without keeping it.

        For deliveries a node hands to a session it adopts (its backlog), so
        that they carry the same position as everywhere else. Unchanged
        unless history is shared and ``channel`` has history.
        """
        history = self._history
        if history is None or not history.shared or history.policy(channel) is None:
            return payload
        return history.number(orjson.loads(payload), offset, option=self._dump_option)

    def adopt(
        self,
        client_id: str,
        *,
        now: float,
        subscriptions: Iterable[str] = (),
        backlog: Iterable[bytes] = (),
        connected: bool = True,
        user: str | None = None,
        info: Any = None,
        access: Any = None,
        acked: tuple[int, Iterable[bytes]] | None = None,
    ) -> Session:
        """Take over a session that lived on another node of a cluster.

        It gets ``subscriptions`` and, as its queue, ``backlog``: the encoded
        deliveries it has not received yet, in order (the queue cap applies).
        No :class:`Handshaken` or :class:`Subscribed` event fires: the session
        is not new. ``connected`` False means no connect has been seen yet, so
        the first one is answered at once. ``user``, ``info`` and ``access``: as
        an extension set them on its handshake (the bus keeps them); the session
        is in its presence channels already, so no presence action fires.

        ``acked``: for a session with acknowledged delivery (``bayeux_core._ack``),
        the number of the last batch sent to it and that batch's deliveries,
        which it may not have received: its next connect gets them again under
        that number unless it acknowledges them, as on the node it left (empty:
        nothing to send again). ``backlog`` is what came after that batch.
        """
        self._tick(now)
        if type(client_id) is not str or not client_id or self._store.get(client_id) is not None:
            raise LocalProtocolError(f"cannot adopt client {client_id!r}")
        session = Session(client_id)
        session.state = SessionState.CONNECTED if connected else SessionState.HANDSHAKEN
        session.interval = self.config.interval
        session.user = user
        session.info = info
        session.access = access
        if acked is not None:
            session.ack = True
            session.batch = acked[0]
            session.unacked = tuple(acked[1])
        self._store.add(session)
        presence = self._presence
        for pattern in subscriptions:
            if self._store.subscribe(session, pattern) and presence is not None:
                self._presence_added(session, pattern, silent=True)
        self._start_expiry(session)
        for payload in backlog:
            if self._rewrites_deliveries:
                self._route_each((session,), orjson.loads(payload))
            else:
                self._fan_out((session,), payload)
        return session

    def answer_call(
        self,
        client_id: str,
        channel: str,
        message_id: Any,
        *,
        now: float,
        data: Any = None,
        error: str | None = None,
    ) -> bool:
        """Send a service call's result to the client that made it.

        A call is a message to a ``/service`` channel with an ``id`` (reported
        as :class:`Published` with ``message_id``). Its result goes to that
        client alone, as ``{channel, id, successful, data}`` (and ``error``
        when ``error`` is given), the shape CometD's ``remoteCall`` expects.
        It is queued or streamed as a delivery, after the publish's own reply.
        Returns False if the session is gone. Raises
        :class:`LocalProtocolError` if ``data`` cannot be encoded as JSON or
        ``channel`` is not a service channel.
        """
        self._tick(now)
        if not is_service(channel) or not is_valid_name(channel):
            raise LocalProtocolError(f"{channel!r} is not a service channel")
        session = self._store.get(client_id) if type(client_id) is str else None
        if session is None:
            return False
        result: Message = {
            "channel": channel,
            "id": message_id,
            "successful": error is None,
            "data": data,
        }
        if error is not None:
            result["error"] = error
        try:
            payload = orjson.dumps(result, option=self._dump_option)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise LocalProtocolError(f"cannot encode data: {exc}") from None
        if self._rewrites_deliveries:
            self._route_each((session,), result)
        else:
            self._fan_out((session,), payload)
        return True

    def evict(self, client_id: str, *, now: float) -> bool:
        """Drop a session that another node of a cluster has taken over.

        Its held connect is answered at once without messages (it keeps its
        ``reconnect: retry`` advice), its stream is closed, its queue is
        dropped (the new owner has those messages), and no event fires: the
        session goes on elsewhere. False if there is no such session here.
        """
        self._tick(now)
        session = self._store.get(client_id) if type(client_id) is str else None
        if session is None:
            return False
        if session.held is not None:
            self._release(session, with_messages=False)
        stream = session.stream
        if stream is not None:
            session.stream = None
            self._streams[stream] = None
            self._actions.append(Close(stream))
        if self._address_of:
            self._forget_address(client_id)
        if self._presence is not None:
            # The session goes on elsewhere: it is still in its channels.
            for pattern in session.subscriptions:
                self._presence_removed(session, pattern, silent=True)
        self._store.remove(session)
        session.state = SessionState.NONE
        session.queue.clear()
        session.token += 1
        return True

    def disconnect(self, client_id: str, *, now: float, rehandshake: bool = False) -> bool:
        """End a session from the server (an administrator's kick).

        A held connect is answered at once with ``reconnect: none`` (unlike a
        ``/meta/disconnect``, which anyone who knows the clientId can send,
        and which leaves it ``retry``), a stream is closed and the queue dropped;
        then :class:`Disconnected` fires with ``DisconnectReason.SERVER``. A
        client that was between connects learns it from its next message,
        which is refused (402) with ``reconnect: none`` rather than the usual
        ``handshake``, for up to ``session_timeout`` seconds: Bayeux clients
        then stop instead of handshaking again. False if there is no such
        session here.

        ``rehandshake``: the client should come back with fresh credentials
        (its token expired), not stop: a held connect is answered with
        ``reconnect: handshake``, and its next message gets the usual 401
        ``Unknown client`` with ``reconnect: handshake``. Bayeux clients then
        handshake again at once.
        """
        self._tick(now)
        session = self._store.get(client_id) if type(client_id) is str else None
        if session is None:
            return False
        self._end(session, final=not rehandshake, rehandshake=rehandshake)
        if rehandshake:
            self._actions.append(Disconnected(client_id, DisconnectReason.SERVER))
            return True
        kicked = self._kicked
        for stale in [k for k, until in kicked.items() if until <= self._now]:
            del kicked[stale]
        kicked[client_id] = self._now + self.config.session_expiry
        self._actions.append(Disconnected(client_id, DisconnectReason.SERVER))
        return True

    def unsubscribe(self, client_id: str, pattern: str, *, now: float) -> bool:
        """Drop one subscription of a client from the server.

        The client is not told (Bayeux has no message for it): it just stops
        receiving that channel. :class:`Unsubscribed` fires. False if there is
        no such session or subscription.
        """
        self._tick(now)
        session = self._store.get(client_id) if type(client_id) is str else None
        if session is None or not self._store.unsubscribe(session, pattern):
            return False
        self._actions.append(Unsubscribed(client_id, pattern))
        if self._presence is not None:
            self._presence_removed(session, pattern)
        return True

    def handle_timer(self, now: float) -> None:
        """Act on every deadline at or before ``now``."""
        self._tick(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, token, session = heapq.heappop(timers)
            if token != session.token:
                continue
            if session.held is not None:
                self._release(session)
            else:
                # An ended session's timers are all stale (_end bumps token).
                outcome, _ = TRANSITIONS[(session.state, MessageKind.EXPIRE)]
                assert outcome is Outcome.EXPIRE
                self._end(session)
                self._actions.append(SessionExpired(session.client_id))

    def release_held(self, *, now: float) -> None:
        """Answer every held connect now (for a graceful shutdown).

        Clients are told ``reconnect: retry``, so they come back after the
        restart; their sessions and queues are untouched.
        """
        self._tick(now)
        for session in list(self._held.values()):
            self._release(session)

    # ---------------------------------------------------------------- outputs

    def actions_to_send(self) -> list[Action]:
        """Drain the queued actions, answering held connects that got messages."""
        if self._dirty:
            for session in self._dirty:
                session.dirty = False
                if session.held is not None:
                    self._release(session)
            self._dirty.clear()
        if self._overflowed:
            for session in self._overflowed:
                self._actions.append(QueueOverflow(session.client_id, session.dropped))
                session.dropped = 0
            self._overflowed.clear()
        actions = self._actions
        self._actions = []
        return actions

    def get_timer(self) -> float | None:
        """The next deadline, or None when nothing is pending."""
        timers = self._timers
        while timers and timers[0][2] != timers[0][3].token:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    # ------------------------------------------------------------- internals

    def _run_due_timers(self, now: float) -> None:
        # A deadline already passed is acted on before an input that names a
        # session, even if the caller has not called handle_timer yet: an
        # expired session must not come back to life.
        if self._timers and self._timers[0][0] <= now:
            self.handle_timer(now)

    def _tick(self, now: float) -> None:
        # Deadlines are computed from the latest time seen, so a caller whose
        # clock stands still (or a stray earlier value) cannot move them back.
        self._now = max(self._now, now)

    def _incoming(self, message: Message, request: object) -> Message | None:
        if not self._extensions:
            return message
        client_id = _client_id_of(message)
        channel = message.get("channel")
        handshake = channel == "/meta/handshake"
        if handshake:
            self._identity = (None, None, None)
        sender = self._store.get(client_id) if client_id is not None and not handshake else None
        context = MessageContext(
            self._now,
            client_id,
            request,
            user=sender.user if sender is not None else None,
            info=sender.info if sender is not None else None,
            access=sender.access if sender is not None else None,
        )
        accepted = self._run_incoming(message, context)
        if accepted is None or "error" in accepted:
            return accepted
        if handshake:
            return self._take_identity(accepted, context)
        if self._presence is not None and channel == "/meta/subscribe":
            probe = presence_probe(accepted)
            if probe is not None:
                # Whoever may not subscribe to the channel may not watch it.
                refusal = probe_refusal(probe, self._run_incoming(probe, context))
                if refusal is not None:
                    accepted["error"] = refusal
        return accepted

    def _run_incoming(self, message: Message, context: MessageContext) -> Message | None:
        for extension in list(self._extensions):
            try:
                result = extension.incoming(message, context)
                if result is not None and type(result) is not dict:
                    raise TypeError(f"incoming() returned {type(result).__name__}, not a dict")
            except Exception as exc:
                # A bug in the application's hook refuses this message only.
                self._extension_failed(extension, "incoming", message, exc)
                return failure_reply(message, _EXTENSION_FAILED)
            if result is None:
                return None
            message = result
        return message

    def _take_identity(self, message: Message, context: MessageContext) -> Message:
        """Keep the user and info the extensions gave a handshake, for the
        session it makes; refuse it (a bug of the extension) if they are bad."""
        user, info, access = context.user, context.info, context.access
        try:
            if user is not None and (
                type(user) is not str or not user or len(user) > _MAX_USER_LENGTH
            ):
                raise TypeError(f"context.user must be a string of 1 to 256 characters: {user!r}")
            if info is not None:
                orjson.dumps(info)
            if access is not None:
                orjson.dumps(access)
        except (TypeError, orjson.JSONEncodeError) as exc:
            self._actions.append(ExtensionFailed(None, "incoming", "/meta/handshake", exc))
            return failure_reply(message, _EXTENSION_FAILED)
        self._identity = (user, info, access)
        return message

    def _outgoing_reply(self, reply: Message, request: object) -> bytes | None:
        hooks = self._reply_hooks
        if not hooks:
            return orjson.dumps(reply)
        context = MessageContext(self._now, _client_id_of(reply), request)
        original = reply
        blame = hooks[0]
        try:
            for blame in list(hooks):
                result = blame.outgoing(reply, context)
                if result is None:
                    return None
                reply = result
            return orjson.dumps(reply)  # a hook may have made it unencodable
        except Exception as exc:
            # What the hook meant to change is unknown: send no part of it.
            self._extension_failed(blame, "outgoing", original, exc)
            return orjson.dumps(failure_reply(original, _EXTENSION_FAILED))

    def _extension_failed(
        self, extension: Extension, hook: str, message: Message, error: Exception
    ) -> None:
        self._actions.append(ExtensionFailed(extension, hook, message.get("channel"), error))

    def _plain_publish(self, message: object) -> bytes | None:
        """The reply body (a JSON array) to a publish with no message id,
        client id or error, to a channel that is neither meta nor service,
        handled as :meth:`_handle` would; None if ``message`` is not such a
        publish."""
        if (
            type(message) is not dict
            or "id" in message
            or "clientId" in message
            or "error" in message
            or "data" not in message
        ):
            return None
        channel = message.get("channel")
        if type(channel) is not str:
            return None
        body = self._plain_replies.get(channel)
        if body is None:
            # Valid, neither meta, service nor presence: each a matter of the
            # name, so a channel is checked once, and its reply made once.
            if (
                not is_valid_name(channel)
                or is_meta(channel)
                or is_service(channel)
                or (self._presence is not None and presence_target(channel) is not None)
            ):
                return None
            body = b"[" + orjson.dumps({"channel": channel, "successful": True}) + b"]"
            replies = self._plain_replies
            if len(replies) >= _PLAIN_REPLIES:
                replies.clear()  # many channels: start over rather than grow
            replies[channel] = body
        if self._publish_message(channel, message, None):
            return body
        reply = self._fail({"channel": channel}, MessageKind.PUBLISH, _CANNOT_ENCODE)
        return b"[" + orjson.dumps(reply) + b"]"

    def _handle(self, message: Message, batch: _Batch) -> Message | None:
        """One message in; its reply out (None: a connect waits to be held)."""
        channel = message.get("channel")
        reply: Message = {}
        if "id" in message:
            message_id = message["id"]
            if type(message_id) not in (str, int, float):
                return {
                    "successful": False,
                    "error": error_string(ErrorCode.BAD_REQUEST, ("id",), "Invalid message id"),
                }
            reply["id"] = message_id
        if type(channel) is not str:
            reply["successful"] = False
            reply["error"] = error_string(ErrorCode.PARAMETER_MISSING, ("channel",))
            return reply
        kind = channel_kind(channel)
        client_id = message.get("clientId")
        if type(client_id) is str and kind is not MessageKind.HANDSHAKE:
            reply["clientId"] = client_id
        reply["channel"] = channel
        if batch.wall is not None and "ext" in message and is_meta(channel):
            timesync = timesync_answer(message["ext"], batch.wall)
            if timesync is not None:
                reply["ext"] = {"timesync": timesync}

        error = message.get("error")
        if error is not None:
            # Set by an extension (or sent by the client, which refuses itself).
            reply = self._fail(reply, kind, error if type(error) is str else "400::Bad request")
            advice = message.get("advice")
            if "advice" in reply and type(advice) is dict and advice.get("reconnect") == "none":
                # A refusal for good (see refuse()): the client must stop retrying.
                interval = advice.get("interval")
                if type(interval) is not int or interval < 0:
                    interval = 0
                reply["advice"] = {"reconnect": "none", "interval": interval}
            return reply
        error = self._validate(kind, channel, message, client_id)
        if error is not None:
            return self._fail(reply, kind, error)

        session = self._store.get(client_id) if type(client_id) is str else None
        state = session.state if session is not None else SessionState.NONE
        outcome, next_state = TRANSITIONS[(state, kind)]
        # Events name a publisher only if it is a live session: anyone can
        # write any clientId into a publish, and the application must not trust it.
        publisher = session.client_id if session is not None else None
        if outcome is Outcome.PUBLISH:
            if session is not None and "id" in message:
                # A client resends a publish whose reply it lost: acknowledge
                # the copy, do not deliver it twice.
                recent = session.recent
                if message["id"] in recent:
                    reply["successful"] = True
                    return reply
                if self._over_rate(session):
                    return self._fail(reply, kind, _RATE_LIMITED)
                answer = self._on_publish(reply, channel, message, publisher)
                if answer.get("successful") is True:
                    recent[message["id"]] = None
                    if len(recent) > _RECENT_PUBLISHES:
                        del recent[next(iter(recent))]
                return answer
            if session is not None and self._over_rate(session):
                return self._fail(reply, kind, _RATE_LIMITED)
            return self._on_publish(reply, channel, message, publisher)
        if outcome is Outcome.HANDSHAKE:
            return self._on_handshake(reply, batch.address, message)
        if outcome is Outcome.UNKNOWN_CLIENT:
            failed = self._fail(
                reply, kind, error_string(ErrorCode.CLIENT_UNKNOWN, (str(client_id),))
            )
            if self._kicked and self._kicked.get(str(client_id), -math.inf) > self._now:
                failed["advice"] = {"reconnect": "none", "interval": 0}
            return failed
        if outcome is Outcome.FORBIDDEN:
            return self._fail(reply, kind, error_string(ErrorCode.CHANNEL_FORBIDDEN, (channel,)))
        if outcome is Outcome.SERVICE:
            reply["successful"] = True
            self._actions.append(
                Published(
                    publisher, channel, message.get("data"), message.get("ext"), message.get("id")
                )
            )
            return reply
        assert session is not None
        session.state = next_state
        if outcome is Outcome.SUBSCRIBE and self._history is not None:
            return self._subscribe_with_history(reply, session, message, batch)
        if outcome is Outcome.SUBSCRIBE or outcome is Outcome.UNSUBSCRIBE:
            return self._on_subscription(
                reply, session, message, outcome is Outcome.SUBSCRIBE, batch
            )
        if outcome is Outcome.DISCONNECT:
            # Anyone who knows a clientId can send this, so a connect held for
            # it keeps `reconnect: retry`, as with Faye: the real client's
            # next connect gets 401 and it handshakes again (a client that
            # disconnected itself ignores the advice).
            self._end(session, batch.conn)
            self._actions.append(Disconnected(session.client_id, DisconnectReason.CLIENT))
            reply["successful"] = True
            return reply
        return self._on_connect(
            reply, session, message, batch, first=outcome is Outcome.CONNECT_FIRST
        )

    def _over_rate(self, session: Session) -> bool:
        """Take a token from the session's publish bucket; True if it is empty."""
        rate = self.config.publish_rate
        if rate is None:
            return False
        # A new session's bucket starts full: inf + inf, capped at the size.
        elapsed = self._now - session.refilled
        session.tokens = min(self._bucket, session.tokens + elapsed * rate)
        session.refilled = self._now
        if session.tokens < 1:
            return True
        session.tokens -= 1
        return False

    def _validate(
        self, kind: MessageKind, channel: str, message: Message, client_id: object
    ) -> str | None:
        """The field checks of each kind; an error string or None."""
        if kind is MessageKind.PUBLISH or kind is MessageKind.SERVICE:
            if not is_valid_name(channel):
                return error_string(ErrorCode.CHANNEL_INVALID, (channel,))
            if "data" not in message:
                return error_string(ErrorCode.PARAMETER_MISSING, ("data",))
            if client_id is not None and type(client_id) is not str:
                return error_string(ErrorCode.PARAMETER_MISSING, ("clientId",))
            if self._presence is not None and presence_target(channel) is not None:
                # Only the server says who joins and leaves.
                return error_string(ErrorCode.CHANNEL_FORBIDDEN, (channel,))
            return None
        if kind is MessageKind.HANDSHAKE:
            version = message.get("version")
            if type(version) is not str or not version:
                return error_string(ErrorCode.PARAMETER_MISSING, ("version",))
            types = message.get("supportedConnectionTypes")
            if type(types) is not list or not types:
                return error_string(ErrorCode.PARAMETER_MISSING, ("supportedConnectionTypes",))
            offered = self.config.connection_types
            if not any(type(t) is str and t in offered for t in types):
                named = [t for t in types if type(t) is str][:8]
                return error_string(ErrorCode.CONNTYPE_MISMATCH, named)
            if len(self._store) >= self.config.max_clients:
                return "503::Too many clients"
            return None
        if kind in SESSION_KINDS and (type(client_id) is not str or not client_id):
            return error_string(ErrorCode.PARAMETER_MISSING, ("clientId",))
        if kind is MessageKind.CONNECT:
            connection_type = message.get("connectionType")
            if type(connection_type) is not str or not connection_type:
                return error_string(ErrorCode.PARAMETER_MISSING, ("connectionType",))
            if connection_type not in self.config.connection_types:
                return error_string(ErrorCode.CONNTYPE_MISMATCH, (connection_type,))
        elif kind is MessageKind.SUBSCRIBE or kind is MessageKind.UNSUBSCRIBE:
            subscription = message.get("subscription")
            patterns = [subscription] if type(subscription) is str else subscription
            if type(patterns) is not list or not patterns:
                return error_string(ErrorCode.PARAMETER_MISSING, ("subscription",))
            for pattern in patterns:
                if not is_valid_pattern(pattern):
                    shown = pattern if type(pattern) is str else repr(pattern)
                    return error_string(ErrorCode.CHANNEL_INVALID, (shown,))
                if is_meta(pattern):
                    return error_string(ErrorCode.CHANNEL_FORBIDDEN, (pattern,))
                if self._presence is not None and kind is MessageKind.SUBSCRIBE:
                    target = presence_target(pattern)
                    if target is not None and not self._presence.enabled(target):
                        return error_string(
                            ErrorCode.CHANNEL_FORBIDDEN,
                            (pattern,),
                            "No presence on this channel",
                        )
        return None

    def _fail(self, reply: Message, kind: MessageKind, error: str) -> Message:
        reply["successful"] = False
        reply["error"] = error
        code = error.split(":", 1)[0]
        if len(code) != 3 or not code.isdigit():
            # A client may set its own "error": keep the keys (and metric
            # labels) to Bayeux's three-digit codes, a bounded set.
            code = "other"
        self.error_counts[code] = self.error_counts.get(code, 0) + 1
        reply.pop("clientId", None)
        if kind is MessageKind.HANDSHAKE:
            reply["version"] = "1.0"
            reply["supportedConnectionTypes"] = list(self._connection_types)
            reply["advice"] = dict(self._handshake_advice)
        elif kind is MessageKind.CONNECT:
            reply["advice"] = dict(self._handshake_advice)
        return reply

    def _on_handshake(self, reply: Message, address: str | None, message: Message) -> Message:
        limit = self.config.max_clients_per_address
        if limit is None:
            address = None  # nothing is counted
        elif address is not None and self._per_address.get(address, 0) >= limit:
            return self._fail(reply, MessageKind.HANDSHAKE, _TOO_MANY_FROM_ADDRESS)
        for _ in range(8):
            client_id = self._new_id()
            if self._store.get(client_id) is None:
                break
        else:
            raise LocalProtocolError("client_id_generator keeps returning ids in use")
        session = Session(client_id)
        if self._extensions:
            # Set by _incoming for this very handshake (and reset by it for
            # each one, so a refused handshake's cannot linger).
            session.user, session.info, session.access = self._identity
            self._identity = (None, None, None)
        self._store.add(session)
        if address is not None:
            self._per_address[address] = self._per_address.get(address, 0) + 1
            self._address_of[client_id] = address
        session.interval = self.config.interval
        self._start_expiry(session)
        reply["successful"] = True
        reply["version"] = "1.0"
        reply["supportedConnectionTypes"] = list(self._connection_types)
        reply["clientId"] = client_id
        reply["advice"] = dict(self._retry_advice)
        if asks_for_ack(message):
            # On a cluster, the bus keeps the batch's place in its log, so
            # the node that takes the session over can send it again (adopt).
            session.ack = self.config.ack_extension
            set_reply_ack(reply, session.ack)
        self._actions.append(Handshaken(client_id))
        return reply

    def _on_connect(
        self, reply: Message, session: Session, message: Message, batch: _Batch, *, first: bool
    ) -> Message | None:
        eventsource = message["connectionType"] == _EVENTSOURCE
        if session.ack:
            acknowledge(session, message)
        reply["successful"] = True
        reply["advice"] = dict(self._eventsource_advice if eventsource else self._retry_advice)
        session.interval = self.config.timeout if eventsource else self.config.interval
        if session.held is not None:
            # One outstanding connect per client: the newer one wins. The old
            # one is answered without messages (its socket may be dead).
            self._release(session, with_messages=False)
        if batch.streaming:
            self._bind(session, batch.conn)
        hold = self.config.timeout
        advice = message.get("advice")
        if type(advice) is dict:
            wanted = advice.get("timeout")
            if isinstance(wanted, (int, float)) and not isinstance(wanted, bool) and wanted >= 0:
                hold = min(hold, wanted / 1000)
        if (
            first
            or eventsource
            or hold <= 0
            or session.queue
            or session.unacked
            or batch.pending is not None
        ):
            self._answer_now(session, batch, reply)
            return reply
        batch.pending = (session, reply, hold)
        return None

    def _answer_now(self, session: Session, batch: _Batch, reply: Message) -> None:
        """A connect answered in this batch: its client's queue rides along."""
        self._start_expiry(session)
        if session.ack:
            # The batch must share a body with the reply that numbers it,
            # streams included; publishes never overtake it (they queue).
            if batch.client_id is None:
                messages = take_batch(session, reply)
                if messages:
                    batch.client_id = session.client_id
                    batch.tail.extend(messages)
            return
        if session.queue and batch.streaming:
            # Out at once: later publishes of this batch go straight down the
            # stream now, and must not overtake what was queued before them.
            messages = tuple(session.queue)
            session.queue.clear()
            body = b"[" + b",".join(messages) + b"]"
            self._actions.append(Reply(batch.conn, body, session.client_id, messages))
        elif session.queue and batch.client_id is None:
            batch.client_id = session.client_id
            batch.tail.extend(session.queue)
            session.queue.clear()

    def _hold(self, batch: _Batch) -> bool:
        """Hold the batch's pending connect; False if it must be answered now.

        Holding is decided once the whole batch is handled: a later message of
        the same batch may have ended the session or queued a message for it.
        """
        assert batch.pending is not None
        session, reply, hold = batch.pending
        conn = batch.conn
        # batch.tail: another connect of this batch took deliveries, and they
        # must go out now (a held request would lose them).
        if (
            session.state is SessionState.NONE
            or session.queue
            or session.unacked
            or batch.tail
            or conn in self._held
        ):
            if session.state is not SessionState.NONE:
                self._answer_now(session, batch, reply)
            encoded = self._outgoing_reply(reply, batch.request)
            if encoded is not None:
                batch.parts.append(encoded)
            return False
        if batch.streaming:
            # The other replies go out now; the connect reply follows later.
            if batch.parts:
                self._actions.append(Reply(conn, batch.body()))
            parts: list[bytes] = []
        else:
            parts = batch.parts
        session.held = Held(conn, parts, reply, batch.request)
        self._held[conn] = session
        ext = reply.get("ext")
        if type(ext) is dict and "timesync" in ext:
            self._synced[conn] = (ext["timesync"], self._now)
        self._set_deadline(session, self._now + hold)
        return True

    def _on_subscription(
        self, reply: Message, session: Session, message: Message, subscribe: bool, batch: _Batch
    ) -> Message:
        subscription = message["subscription"]
        patterns: list[str] = [subscription] if type(subscription) is str else subscription
        store = self._store
        client_id = session.client_id
        if subscribe:
            fresh = [p for p in patterns if p not in session.subscriptions and not is_service(p)]
            if len(session.subscriptions) + len(set(fresh)) > self.config.max_subscriptions:
                return self._fail(
                    reply,
                    MessageKind.SUBSCRIBE,
                    error_string(
                        ErrorCode.CHANNEL_FORBIDDEN, (patterns[0],), "Too many subscriptions"
                    ),
                )
            presence = self._presence
            if presence is not None:
                # Every watch gets the members list, a repeated one too: a
                # client resends a subscribe whose reply it lost. (Before the
                # joins below, which the list then includes.)
                for pattern in patterns:
                    target = presence_target(pattern)
                    if target is not None and (client_id, pattern) not in self._awaiting:
                        self._await_members(session, pattern, target, batch)
            for pattern in fresh:
                # /service channels are answered, never broadcast: accept the
                # subscribe (CometD clients expect that) without recording it.
                if store.subscribe(session, pattern):
                    self._actions.append(Subscribed(client_id, pattern))
                    if presence is not None:
                        self._presence_added(session, pattern)
        else:
            for pattern in patterns:
                if store.unsubscribe(session, pattern):
                    self._actions.append(Unsubscribed(client_id, pattern))
                    if self._presence is not None:
                        self._presence_removed(session, pattern)
        reply["successful"] = True
        reply["subscription"] = subscription
        return reply

    def _subscribe_with_history(
        self, reply: Message, session: Session, message: Message, batch: _Batch
    ) -> Message:
        """Subscribe; say where the channel's stream is, and recover if asked.

        The reply's ``ext.history`` holds the stream's latest ``position``;
        with ``ext.history.since`` in the subscribe, also ``recovered`` (and
        a ``reason`` when false), and the messages after ``since`` follow the
        reply in the same response.
        """
        history = self._history
        assert history is not None
        subscription = message["subscription"]
        since = requested_since(message)
        live = type(subscription) is str and subscription in session.subscriptions
        reply = self._on_subscription(reply, session, message, True, batch)
        if reply["successful"] is not True:
            return reply
        reason = "several channels"
        policy = None
        if type(subscription) is str:
            reason = "wildcard" if is_pattern(subscription) else "no history"
            if reason == "no history" and not is_service(subscription):
                policy = history.policy(subscription)
        if policy is None:
            if since is not None:
                reply["ext"] = {"history": {"recovered": False, "reason": reason}}
            return reply
        if since is None:
            reply["ext"] = {"history": {"position": history.position(subscription, policy)}}
            return reply
        if live:
            # Subscribed all along: the session already has every message.
            recovery = Recovery(True, history.position(subscription, policy))
        else:
            recovery = history.recover(subscription, policy, since, self._now)
        reply["ext"] = {"history": recovery.ext()}
        if not recovery.messages:
            return reply
        if self._rewrites_deliveries:
            for payload in recovery.messages:
                self._route_each((session,), orjson.loads(payload))
        elif not session.ack and batch.client_id in (None, session.client_id):
            # After the replies of this batch, ahead of anything queued later.
            # (An acknowledged session takes them from its queue instead, in
            # a numbered batch.)
            batch.client_id = session.client_id
            batch.tail.extend(recovery.messages)
        else:
            for payload in recovery.messages:
                self._fan_out((session,), payload)
        return reply

    # --------------------------------------------------------------- presence

    def _presence_added(self, session: Session, pattern: str, *, silent: bool = False) -> None:
        """``session`` has a new subscription (presence is on): count a watch,
        or enter a channel with presence (``silent``: with no join or action,
        for a session adopted from another node)."""
        presence = self._presence
        assert presence is not None
        if pattern == "/**" or pattern.startswith(_PRESENCE_SLASH):
            presence.count_watch(pattern, 1)
        elif presence.enabled(pattern):
            client_id = session.client_id
            user = session.user or client_id
            first = presence.enter(pattern, user, client_id)
            if silent:
                return
            if not self._local_routing:
                self._actions.append(PresenceEntered(client_id, pattern, user, session.info))
            elif first and presence.join(pattern, user, session.info):
                self._presence_event(pattern, "join", user, session.info)

    def _presence_removed(self, session: Session, pattern: str, *, silent: bool = False) -> None:
        """The reverse of :meth:`_presence_added` (``silent``: evicted)."""
        presence = self._presence
        assert presence is not None
        if pattern == "/**" or pattern.startswith(_PRESENCE_SLASH):
            presence.count_watch(pattern, -1)
        elif presence.enabled(pattern):
            client_id = session.client_id
            user = session.user or client_id
            last = presence.exit(pattern, user, client_id)
            if silent:
                return
            if not self._local_routing:
                self._actions.append(PresenceExited(client_id, pattern, user))
            elif last:
                left, info = presence.leave(pattern, user)
                if left:
                    self._presence_event(pattern, "leave", user, info)

    def _presence_event(self, channel: str, kind: str, user: str, info: Any) -> None:
        """Tell ``/presence<channel>`` that ``user`` joined or left; encoded once."""
        presence = self._presence
        assert presence is not None
        # Nobody watching (the common case of a room nobody lists): no
        # look-up of subscribers, no encoding.
        recipients: Collection[Session] = ()
        if presence.watching:
            target = presence_channel(channel)
            if presence.watched(target):
                recipients = self._store.subscribers(target)
        if self._awaiting and recipients:
            # Those about to get the members list get this change in it.
            awaiting = self._awaiting
            recipients = [s for s in recipients if (s.client_id, target) not in awaiting]
        if recipients:
            delivery = presence_delivery(channel, kind, user, info)
            if self._rewrites_deliveries:
                self._route_each(recipients, delivery)
            else:
                self._fan_out(recipients, orjson.dumps(delivery, option=self._dump_option))
        if kind == "join":
            self._actions.append(PresenceJoined(channel, user, info))
        else:
            self._actions.append(PresenceLeft(channel, user, info))

    def _await_members(self, session: Session, pattern: str, target: str, batch: _Batch) -> None:
        """A new subscription to presence channel ``pattern``: its members list
        follows the batch's replies (:meth:`_send_members`)."""
        if batch.snapshots is None:
            batch.snapshots = []
        batch.snapshots.append((session, pattern, target))
        self._awaiting.add((session.client_id, pattern))

    def _send_members(self, batch: _Batch) -> None:
        """Each members list the batch owes, after its replies.

        Made now, once every message of the batch has acted, so that it
        includes the joins and leaves the batch made (which the subscriber
        was not sent on their own).
        """
        presence = self._presence
        snapshots = batch.snapshots
        assert presence is not None
        assert snapshots is not None
        batch.snapshots = None
        self._awaiting.clear()
        for session, pattern, target in snapshots:
            if session.state is SessionState.NONE or pattern not in session.subscriptions:
                continue  # ended, or unsubscribed again, later in the batch
            if session.queue and not session.ack:
                # Changes queued before this list are in it: drop them, or
                # they would repeat a join or leave after it.
                stale = b'{"channel":' + orjson.dumps(pattern) + b","
                kept = [p for p in session.queue if not p.startswith(stale)]
                if len(kept) != len(session.queue):
                    session.queue.clear()
                    session.queue.extend(kept)
            members: Message = {"channel": pattern, "data": {"members": presence.members(target)}}
            payload: bytes | None
            if self._rewrites_deliveries:
                payload = self._rewrite_for(session, members)
                if payload is None:
                    continue
            else:
                payload = orjson.dumps(members, option=self._dump_option)
            if not session.ack and batch.client_id in (None, session.client_id):
                batch.client_id = session.client_id
                batch.tail.append(payload)
            else:
                self._fan_out((session,), payload)

    def presence(self, channel: str) -> list[dict[str, Any]]:
        """Who is in ``channel`` now: ``[{"user": ..., "info": ...}]``, in join order.

        On a node of a cluster this is the cluster's members as of the last
        join or leave the node read from the shared log. Raises
        :class:`LocalProtocolError` if ``channel`` has no presence.
        """
        if self._presence is None or not self._presence.enabled(channel):
            raise LocalProtocolError(f"no presence on {channel!r}", ErrorCode.CHANNEL_FORBIDDEN)
        return self._presence.members(channel)

    def presence_counts(self) -> dict[str, int]:
        """Channel -> number of users in it, for each channel with anyone
        (empty without presence)."""
        return self._presence.counts() if self._presence is not None else {}

    def reset_presence(self, members: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the members of every channel (channel -> user -> info).

        For a node of a cluster that loads the shared backend's state before
        it reads the log on from there: no event fires, no delivery is made.
        Raises :class:`LocalProtocolError` without presence.
        """
        if self._presence is None:
            raise LocalProtocolError("presence is off (EngineConfig.presence is empty)")
        self._presence.reset(members)

    def _on_publish(
        self, reply: Message, channel: str, message: Message, client_id: str | None
    ) -> Message:
        if not self._publish_message(channel, message, client_id):
            return self._fail(reply, MessageKind.PUBLISH, _CANNOT_ENCODE)
        reply["successful"] = True
        return reply

    def _publish_message(self, channel: str, message: Message, client_id: str | None) -> bool:
        """Route a client's publish and report it; False if it cannot be encoded."""
        delivery: Message = {"channel": channel, "data": message["data"]}
        ext = message.get("ext")
        if ext is not None:
            delivery["ext"] = ext
        try:
            self._route(channel, delivery, message)
        except (TypeError, orjson.JSONEncodeError):
            return False
        self._actions.append(Published(client_id, channel, delivery["data"], ext))
        return True

    def _route(self, channel: str, delivery: Message, message: Message | None = None) -> None:
        """Fan a delivery out; raises TypeError/JSONEncodeError before any effect.

        ``message``: the client's publish it comes from, if any.
        """
        option = self._dump_option
        if not self._local_routing:
            encoded = orjson.dumps(delivery, option=option)
            sender = message.get("clientId") if message is not None else None
            if (
                message is not None
                and type(sender) is str
                and 0 < len(sender) <= MAX_CLAIMED_ID_LENGTH
                and "id" in message
            ):
                # The pair a resent copy will carry too (see Broadcast).
                broadcast = Broadcast(channel, encoded, sender, message["id"])
            else:
                broadcast = Broadcast(channel, encoded)
            self._actions.append(broadcast)
            return
        payload = None
        if self._history is not None:
            policy = self._history.policy(channel)
            if policy is not None:
                payload = self._history.append(channel, policy, delivery, self._now, option=option)
        recipients = self._store.subscribers(channel)
        if not recipients:
            if payload is None:
                orjson.dumps(delivery, option=option)  # still refuse what cannot be encoded
            return
        if self._rewrites_deliveries:
            self._route_each(recipients, delivery)
            return
        if payload is None:
            payload = orjson.dumps(delivery, option=option)
        self._fan_out(recipients, payload)

    def _fan_out(self, recipients: Iterable[Session], payload: bytes) -> None:
        """Push ``payload`` down streams, or queue it, for each recipient."""
        streams: list[int] = []
        cap = self.config.max_queue
        casualties: list[Session] | None = None
        for session in recipients:
            stream = session.stream
            if stream is not None and not session.ack:
                streams.append(stream)
                continue
            queue = session.queue
            if len(queue) >= cap and not self._make_room(session):
                if casualties is None:
                    casualties = []
                casualties.append(session)
                continue
            queue.append(payload)
            if session.held is not None and not session.dirty:
                session.dirty = True
                self._dirty.append(session)
        if streams:
            self._actions.append(Deliver(payload, streams))
        if casualties:
            for session in casualties:
                self._overflow_disconnect(session)

    def _route_each(self, recipients: Iterable[Session], delivery: Message) -> None:
        """The slow path: outgoing extensions see each delivery per recipient."""
        template = orjson.dumps(delivery, option=self._dump_option)
        casualties: list[Session] = []
        for session in list(recipients):
            payload = self._rewrite_for(session, orjson.loads(template))
            if payload is None:
                continue
            if session.stream is not None and not session.ack:
                self._actions.append(Deliver(payload, (session.stream,)))
            elif len(session.queue) >= self.config.max_queue and not self._make_room(session):
                casualties.append(session)
            else:
                session.queue.append(payload)
                self._mark_dirty(session)
        for session in casualties:
            self._overflow_disconnect(session)

    def _rewrite_for(self, session: Session, message: Message) -> bytes | None:
        """``message`` (a copy of its own) as the outgoing extensions make it
        for ``session``, encoded; None if one dropped it."""
        context = MessageContext(self._now, session.client_id, None, is_delivery=True)
        result: Message | None = message
        for extension in [e for e in self._extensions if e.outgoing_deliveries]:
            assert result is not None
            seen = result
            try:
                result = extension.outgoing(seen, context)
            except Exception as exc:
                # Dropped for this recipient, as an unencodable result is.
                self._extension_failed(extension, "outgoing", seen, exc)
                return None
            if result is None:
                return None
        try:
            return orjson.dumps(result, option=self._dump_option)
        except (TypeError, orjson.JSONEncodeError):
            # An extension made it unencodable: dropping it for this
            # recipient beats sending what the extension meant to change.
            return None

    def _make_room(self, session: Session) -> bool:
        """Apply the overflow policy to a full queue; False: end the session."""
        if self.config.overflow is OverflowPolicy.DISCONNECT:
            return False
        session.queue.popleft()
        if not session.dropped:
            self._overflowed.append(session)
        session.dropped += 1
        return True

    def _overflow_disconnect(self, session: Session) -> None:
        if session.held is not None:
            # Not `reconnect: none` as for a client's own disconnect: the
            # client must learn that it lost messages and start over.
            session.held.reply["advice"] = dict(self._handshake_advice)
            self._release(session, with_messages=False)
        self._end(session)
        self._actions.append(Disconnected(session.client_id, DisconnectReason.OVERFLOW))

    @property
    def answers_due(self) -> bool:
        """True when a held connect got messages: the next :meth:`actions_to_send`
        answers it (a driver's metrics tell a publish that goes out now from
        one that waits in a queue)."""
        return bool(self._dirty)

    def _mark_dirty(self, session: Session) -> None:
        if session.held is not None and not session.dirty:
            session.dirty = True
            self._dirty.append(session)

    def _bind(self, session: Session, conn: int) -> None:
        """Push this session's deliveries down stream ``conn`` from now on."""
        previous = self._streams.get(conn)
        if previous is not None and previous is not session:
            if previous.stream == conn:
                previous.stream = None
            if previous.held is not None and previous.held.conn == conn:
                # Faye flushes the old client's connect when a socket changes
                # client; else the new client's connects could not be held.
                self._release(previous)
        self._streams[conn] = session
        session.stream = conn

    def _release(self, session: Session, *, with_messages: bool = True) -> None:
        """Answer the held connect of ``session`` (with its queue)."""
        held = session.held
        assert held is not None
        session.held = None
        del self._held[held.conn]
        synced = self._synced.pop(held.conn, None) if self._synced else None
        if synced is not None:
            synced[0]["p"] = _ms(self._now - synced[1])
        messages: tuple[bytes, ...] = ()
        if not with_messages:
            pass
        elif session.ack:
            messages = take_batch(session, held.reply)  # numbers the reply
        elif session.queue:
            messages = tuple(session.queue)
            session.queue.clear()
        encoded = self._outgoing_reply(held.reply, held.request)
        body = held.parts
        if encoded is not None:
            body.append(encoded)
        body.extend(messages)
        self._actions.append(
            Reply(held.conn, b"[" + b",".join(body) + b"]", session.client_id, messages)
        )
        self._start_expiry(session)

    def _end(
        self,
        session: Session,
        conn: int | None = None,
        *,
        final: bool = False,
        rehandshake: bool = False,
    ) -> None:
        """Remove a session: release its connect, close its stream, forget it.

        ``final``: the server ended it on purpose, and a held connect is told
        ``reconnect: none``; ``rehandshake``: told ``reconnect: handshake``;
        otherwise it keeps its ``retry`` advice.
        """
        if session.held is not None:
            if final:
                session.held.reply["advice"] = {"reconnect": "none", "interval": 0}
            elif rehandshake:
                session.held.reply["advice"] = {"reconnect": "handshake", "interval": 0}
            self._release(session, with_messages=False)
        stream = session.stream
        if stream is not None:
            session.stream = None
            # session.stream == stream only while the stream is bound to it.
            self._streams[stream] = None
            if stream != conn:
                self._actions.append(Close(stream))
        presence = self._presence
        for pattern in sorted(session.subscriptions):
            self._actions.append(Unsubscribed(session.client_id, pattern))
            if presence is not None:
                self._presence_removed(session, pattern)
        if self._address_of:
            self._forget_address(session.client_id)
        self._store.remove(session)
        session.state = SessionState.NONE
        session.queue.clear()
        session.token += 1

    def _forget_address(self, client_id: str) -> None:
        """A session ended: its address may handshake one more client."""
        address = self._address_of.pop(client_id, None)
        if address is None:
            return
        left = self._per_address[address] - 1
        if left:
            self._per_address[address] = left
        else:
            del self._per_address[address]

    def _start_expiry(self, session: Session) -> None:
        self._set_deadline(session, self._now + session.interval + self.config.session_expiry)

    def _set_deadline(self, session: Session, when: float) -> None:
        session.deadline = when
        session.token += 1
        self._sequence += 1
        heapq.heappush(self._timers, (when, self._sequence, session.token, session))
