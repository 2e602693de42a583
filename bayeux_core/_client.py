"""The client side of Bayeux, without I/O.

:class:`ClientSession` decides what to send and when; a driver moves the
messages. The cycle is the same as the engine's: call an input method
(:meth:`~ClientSession.handshake`, :meth:`~ClientSession.subscribe`,
:meth:`~ClientSession.publish`, :meth:`~ClientSession.receive`,
:meth:`~ClientSession.transport_failed`, :meth:`~ClientSession.handle_timer`),
then send what :meth:`~ClientSession.messages_to_send` returns, act on what
:meth:`~ClientSession.events` returns, and sleep until
:meth:`~ClientSession.get_timer`.

Rules, following the Faye client:

* After the handshake one ``/meta/connect`` is kept going: the next one is sent
  ``advice.interval`` after the previous reply (at once when it is 0), or
  ``max(interval, retry)`` after a failed one.
* Advice is read from every reply. ``reconnect: handshake``, or a
  ``401:<our clientId>:...`` error, means the server lost the session: the
  client handshakes again (after ``advice.interval``) and then subscribes again
  to every channel it holds. ``reconnect: none`` ends the session for good.
* A refused handshake is retried after ``max(retry, advice.interval)``, unless
  the reply says ``reconnect: none``: then :class:`HandshakeFailed` is ``final``.
* Every sent message waits for a reply (one carrying ``successful``) for
  ``1.2 * advice.timeout`` seconds (``1.2 * retry`` when the timeout is 0). A
  late reply, or :meth:`~ClientSession.transport_failed`, marks the transport
  down (:class:`TransportDown`); the lost messages are sent again ``retry``
  seconds later, with their ids unchanged, so the server may see a publish
  twice (as with Faye). The next input from the server fires
  :class:`TransportUp`.
* Resends back off: while nothing is heard from the server, each round of
  resends waits twice as long as the one before, from ``retry`` up to
  ``max_retry`` (equal to ``retry`` by default: Faye's fixed delay), and never
  less than ``advice.interval``. Hearing from the server starts again at
  ``retry``.
* Publishes made while the client cannot send (no session yet, or the
  transport down) are held and sent once it can, in order. They are bounded:
  while the client cannot send, :meth:`~ClientSession.publish` raises once
  ``max_pending`` publishes are waiting for their result.
* Each publish gets exactly one result, :class:`PublishSucceeded` or
  :class:`PublishFailed`. Each subscribe gets :class:`SubscribeSucceeded` once
  the server first acknowledges it, or :class:`SubscribeFailed` if the server
  refuses it (it is then dropped, never retried) or the session ends first.
  Subscriptions renewed after a new handshake fire no second success.
* A delivery reaches the application once, as :class:`MessageReceived`, if any
  subscription matches its channel (however many do).
* The session ends (:class:`SessionEnded`, state ``DISCONNECTED``) when the
  application disconnects or the server says ``reconnect: none``. Whatever has
  no result yet fails then, and nothing more is sent, received or timed.

Client extensions (:class:`~bayeux_core.Extension`) see every message: each
outgoing one, on a copy, just before it is sent (returning None drops it,
which counts as a refusal: a dropped publish fails, a dropped connect is
retried after ``retry``), and each incoming one before it is handled.

Acknowledged delivery (``ack=True``, CometD's ack extension; see
``bayeux_core._ack``): the handshake asks for it; if the server agrees, each
connect carries the number of the last batch of deliveries received, and a
connect reply numbered no higher than that is a copy of a batch already
handled, so the deliveries that follow it in the same body are dropped.

History (``docs/delivery.md``): the client remembers the latest position
(``ext.history.position``) seen on each channel it subscribed to by name, and
sends it as ``ext.history.since`` when it subscribes again after a new
handshake, so the server replays what the client missed; the outcome comes as
:class:`SubscriptionRecovered`.

Connect messages travel apart from the others (:func:`is_connect` tells them
apart), so a long-polling driver can keep them on their own request.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._channels import is_meta, is_service, is_valid_name, is_valid_pattern, matches
from ._errors import LocalProtocolError
from ._extensions import Extension, MessageContext
from ._messages import Message

__all__ = [
    "CallFailed",
    "CallSucceeded",
    "ClientEvent",
    "ClientSession",
    "ClientState",
    "HandshakeFailed",
    "HandshakeSucceeded",
    "MessageReceived",
    "PublishFailed",
    "PublishSucceeded",
    "SessionEnded",
    "SubscribeFailed",
    "SubscribeSucceeded",
    "SubscriptionRecovered",
    "TransportDown",
    "TransportUp",
    "is_connect",
]

_HANDSHAKE = "/meta/handshake"
_CONNECT = "/meta/connect"
_SUBSCRIBE = "/meta/subscribe"
_UNSUBSCRIBE = "/meta/unsubscribe"
_DISCONNECT = "/meta/disconnect"
_RECONNECT_VALUES = ("retry", "handshake", "none")
#: The error of a message that an outgoing client extension dropped.
_DROPPED = "Dropped by a client extension"


class ClientState(enum.Enum):
    #: Made, :meth:`ClientSession.handshake` not called yet.
    UNCONNECTED = "unconnected"
    #: Waiting for a handshake reply, or for the time to send the next one.
    HANDSHAKING = "handshaking"
    #: A session exists (``client_id`` is set).
    CONNECTED = "connected"
    #: Disconnected by the application or told ``reconnect: none``: final.
    DISCONNECTED = "disconnected"


class ClientEvent:
    """Base class of what :meth:`ClientSession.events` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class HandshakeSucceeded(ClientEvent):
    """A handshake succeeded (the first one, or after a session was lost)."""

    client_id: str


@dataclass(frozen=True, slots=True)
class HandshakeFailed(ClientEvent):
    """The server refused the handshake; ``final`` means no retry follows."""

    error: str
    final: bool


@dataclass(frozen=True, slots=True)
class MessageReceived(ClientEvent):
    """A delivery on ``channel`` that a subscription matches."""

    channel: str
    data: Any
    ext: Any = None


@dataclass(frozen=True, slots=True)
class SubscribeSucceeded(ClientEvent):
    channel: str


@dataclass(frozen=True, slots=True)
class SubscribeFailed(ClientEvent):
    """The subscription is gone: refused, or the session ended first."""

    channel: str
    error: str


@dataclass(frozen=True, slots=True)
class PublishSucceeded(ClientEvent):
    """The server accepted the publish that :meth:`ClientSession.publish` numbered ``id``."""

    id: str


@dataclass(frozen=True, slots=True)
class PublishFailed(ClientEvent):
    id: str
    error: str


@dataclass(frozen=True, slots=True)
class CallSucceeded(ClientEvent):
    """The service call that :meth:`ClientSession.call` numbered ``id`` returned ``data``."""

    id: str
    data: Any


@dataclass(frozen=True, slots=True)
class CallFailed(ClientEvent):
    """The service call ``id`` failed: refused, raised on the server, or the session ended."""

    id: str
    error: str


@dataclass(frozen=True, slots=True)
class SubscriptionRecovered(ClientEvent):
    """The answer to a subscribe that named a last-seen position.

    ``recovered`` True: the messages missed since that position follow (as
    :class:`MessageReceived`, in order). False: they cannot be had, and
    ``reason`` says why (``"too old"``, ``"epoch changed"``, ...).
    """

    channel: str
    recovered: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class TransportDown(ClientEvent):
    """Messages were lost; they are sent again after ``retry`` seconds."""


@dataclass(frozen=True, slots=True)
class TransportUp(ClientEvent):
    """The server was heard from again after :class:`TransportDown`."""


@dataclass(frozen=True, slots=True)
class SessionEnded(ClientEvent):
    """The session is over for good; ``error`` is None if the application ended it."""

    error: str | None


def is_connect(message: Message) -> bool:
    """True for a ``/meta/connect``, which a polling driver sends on its own."""
    return message.get("channel") == _CONNECT


def _unknown_client(error: object, client_id: object) -> bool:
    """True for ``401:<client_id>:...``: the server does not know ``client_id``.

    A 401 naming no client (``401::Access denied`` from an extension) is a
    refusal like any other, so a refused subscribe is not retried forever.
    """
    return (
        type(error) is str
        and type(client_id) is str
        and error.split(":", 2)[:2] == ["401", client_id]
    )


@dataclass(slots=True)
class _Flight:
    message: Message
    #: when the reply is overdue and the message counts as lost
    deadline: float


@dataclass(slots=True)
class _Advice:
    """The server's latest timing advice, in seconds."""

    interval: float = 0.0
    timeout: float = 60.0


class ClientSession:
    """A Bayeux client's protocol state.

    Args:
        connection_types: offered in the handshake, preferred first; after the
            handshake ``connection_type`` is the first the server also offers.
        retry: seconds to wait before sending lost messages again, and between
            handshake attempts.
        timeout: the server's hold time of a connect until advice says
            otherwise (replies are overdue after 1.2 times this).
        max_pending: publishes that may wait for their result while the client
            cannot send; beyond it :meth:`publish` raises.
        extensions: client extensions, run in this order both ways.
        max_retry: the longest wait between rounds of resends (the wait doubles
            from ``retry`` while the server stays silent); None for ``retry``.
        ack: ask for acknowledged delivery (``ext: {ack: true}``); ``acking``
            says whether the current session has it.
    """

    def __init__(
        self,
        *,
        connection_types: Iterable[str] = ("websocket", "long-polling"),
        retry: float = 5.0,
        timeout: float = 60.0,
        max_pending: int = 1000,
        extensions: Iterable[Extension] = (),
        max_retry: float | None = None,
        ack: bool = False,
    ) -> None:
        self.connection_types = list(connection_types)
        if not self.connection_types:
            raise ValueError("connection_types must not be empty")
        if not (math.isfinite(retry) and retry > 0):
            raise ValueError(f"retry must be a finite number > 0, not {retry!r}")
        if not (math.isfinite(timeout) and timeout >= 0):
            raise ValueError(f"timeout must be a finite number >= 0, not {timeout!r}")
        if max_pending < 0:
            raise ValueError(f"max_pending must be >= 0, not {max_pending!r}")
        if max_retry is None:
            max_retry = retry
        if not (math.isfinite(max_retry) and max_retry >= retry):
            raise ValueError(f"max_retry must be a finite number >= retry, not {max_retry!r}")
        self.connection_type = self.connection_types[0]
        self.retry = retry
        self.max_retry = max_retry
        self.max_pending = max_pending
        self.extensions = list(extensions)
        self.state = ClientState.UNCONNECTED
        self.client_id: str | None = None
        self.advice = _Advice(timeout=timeout)
        #: channels and patterns the application holds -> acknowledged yet
        self.subscriptions: dict[str, bool] = {}
        #: channel -> the latest history position seen on it ("<epoch>:<offset>")
        self.positions: dict[str, str] = {}
        self._outbox: list[Message] = []
        self._events: list[ClientEvent] = []
        #: publishes waiting until the client can send
        self._pending: list[Message] = []
        #: sent messages waiting for their reply, by id
        self._in_flight: dict[str, _Flight] = {}
        #: lost messages, sent again at ``_resend_at``
        self._resend: list[Message] = []
        self._handshake_at: float | None = None
        self._connect_at: float | None = None
        self._resend_at: float | None = None
        #: publishes without a result yet
        self._unanswered = 0
        #: service calls waiting for their result, by id
        self._calls: set[str] = set()
        self._next_id = 0
        self._now = 0.0
        self._transport_up = True
        #: rounds of resends sent since the server was last heard from
        self._resends = 0
        self.ack = ack
        #: the server agreed to acknowledged delivery for this session
        self.acking = False
        #: the number of the last batch of deliveries handled
        self._batch = 0

    # ---------------------------------------------------------- application

    def handshake(self, *, now: float) -> None:
        """Start the session; does nothing once started."""
        self._now = now
        if self.state is ClientState.DISCONNECTED:
            raise LocalProtocolError("the session is disconnected; make a new one")
        if self.state is ClientState.UNCONNECTED:
            self._begin_handshake(0.0)

    def subscribe(self, channel: str, *, now: float, since: str | None = None) -> None:
        """Subscribe to a channel or pattern; the result comes as an event.

        Subscribing again to a channel already acknowledged succeeds at once.
        ``since``: a history position last seen on ``channel`` (kept from an
        earlier run, say); the server replays what followed it, and
        :class:`SubscriptionRecovered` tells whether it could.
        """
        self._now = now
        if not is_valid_pattern(channel) or is_meta(channel):
            raise LocalProtocolError(f"cannot subscribe to {channel!r}")
        if self.state is ClientState.DISCONNECTED:
            raise LocalProtocolError("the session is disconnected")
        acknowledged = self.subscriptions.get(channel)
        if acknowledged is not None:
            if acknowledged:
                self._events.append(SubscribeSucceeded(channel))
            return
        self.subscriptions[channel] = False
        if since is not None:
            self.positions[channel] = since
        if self.state is ClientState.CONNECTED:
            self._send(self._subscribe_message(channel))
        # else: sent with the others once the handshake succeeds

    def unsubscribe(self, channel: str, *, now: float) -> None:
        """Drop a subscription (no event follows; the server's answer is ignored)."""
        self._now = now
        self.positions.pop(channel, None)
        if self.subscriptions.pop(channel, None) is not None and (
            self.state is ClientState.CONNECTED
        ):
            self._send({"channel": _UNSUBSCRIBE, "subscription": channel})

    def publish(self, channel: str, data: Any, *, now: float, ext: Any = None) -> str:
        """Publish; returns the id that the result event will carry."""
        self._now = now
        if not is_valid_name(channel) or is_meta(channel):
            raise LocalProtocolError(f"cannot publish to {channel!r}")
        if self.state is ClientState.DISCONNECTED:
            raise LocalProtocolError("the session is disconnected")
        message: Message = {"channel": channel, "data": data, "id": self._new_id()}
        if ext is not None:
            message["ext"] = ext
        if self.state is ClientState.CONNECTED and self._transport_up:
            self._send(message)
        elif self._unanswered >= self.max_pending:
            raise LocalProtocolError(
                f"{self._unanswered} publishes are already waiting for a connection"
            )
        else:
            self._pending.append(message)
        self._unanswered += 1
        return str(message["id"])

    def call(self, channel: str, data: Any, *, now: float, ext: Any = None) -> str:
        """Call the service at ``channel`` (``/service/...``); returns the call's id.

        The call is a publish (held, resent and bounded as publishes are);
        its result comes as :class:`CallSucceeded` or :class:`CallFailed`
        carrying that id, once: the server sends it to this client alone, as
        ``{channel, id, successful, data}`` (CometD's remote call). A call
        whose result never comes waits until :meth:`cancel_call` or the end of
        the session.
        """
        if not is_service(channel):
            raise LocalProtocolError(f"{channel!r} is not a /service channel")
        message_id = self.publish(channel, data, now=now, ext=ext)
        self._calls.add(message_id)
        return message_id

    def cancel_call(self, message_id: str) -> None:
        """Stop waiting for call ``message_id`` (a timeout, say): no event follows."""
        self._calls.discard(message_id)

    def disconnect(self, *, now: float) -> None:
        """End the session for good (a ``/meta/disconnect`` goes out if connected)."""
        self._now = now
        if self.state is ClientState.DISCONNECTED:
            return
        if self.state is ClientState.CONNECTED:
            self._send({"channel": _DISCONNECT}, track=False)
        self._end(None)

    # --------------------------------------------------------------- driver

    def messages_to_send(self) -> list[Message]:
        """Drain the messages to send now (connects included; see :func:`is_connect`)."""
        out = self._outbox
        self._outbox = []
        return out

    def events(self) -> list[ClientEvent]:
        """Drain what happened since the last call."""
        out = self._events
        self._events = []
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next be called, or None."""
        times = [f.deadline for f in self._in_flight.values()]
        times.extend(
            t for t in (self._handshake_at, self._connect_at, self._resend_at) if t is not None
        )
        return min(times, default=None)

    def handle_timer(self, now: float) -> None:
        """Act on whatever is due: handshake retries, connects, overdue replies, resends."""
        self._now = now
        if self._handshake_at is not None and self._handshake_at <= now:
            self._send_handshake()
        if self._connect_at is not None and self._connect_at <= now:
            self._connect()
        overdue = [i for i, f in self._in_flight.items() if f.deadline <= now]
        if overdue:
            self._lose([self._in_flight.pop(i).message for i in overdue])
        if self._resend_at is not None and self._resend_at <= now:
            self._send_again()

    def transport_failed(self, *, now: float) -> None:
        """Every message in flight was lost; they are sent again after ``retry``.

        Messages not yet drained by :meth:`messages_to_send` count as lost too,
        and are no longer returned by it (they would otherwise go twice).
        """
        self._now = now
        if self.state is ClientState.DISCONNECTED:
            return
        lost = [f.message for f in self._in_flight.values()]
        self._in_flight = {}
        self._outbox = []  # in flight, so among ``lost``: sent again after the delay
        self._lose(lost)

    def receive(self, messages: Iterable[object], *, now: float) -> None:
        """Handle messages from the server: replies and deliveries."""
        self._now = now
        if self.state is ClientState.DISCONNECTED:
            return
        self._resends = 0
        if not self._transport_up:
            self._transport_up = True
            self._events.append(TransportUp())
        replayed = False
        for message in messages:
            if type(message) is not dict:
                continue
            accepted = self._incoming(message)
            if accepted is None:
                continue
            if self._calls and "data" in accepted and str(accepted.get("id")) in self._calls:
                self._call_result(accepted)
            elif "successful" in accepted:
                if self.acking and accepted.get("channel") == _CONNECT:
                    replayed = self._replayed(accepted)
                sent = self._answered(str(accepted.get("id")))
                if sent is not None:  # else not ours, or already answered
                    self._settle(sent, accepted)
            elif not replayed:
                self._deliver(accepted)
        self._flush_pending()

    # ------------------------------------------------------------- internals

    def _replayed(self, reply: Message) -> bool:
        """Take a connect reply's batch number; True if that batch was handled."""
        ext = reply.get("ext")
        batch = ext.get("ack") if type(ext) is dict else None
        if type(batch) is not int:
            return False
        if batch <= self._batch:
            return True
        self._batch = batch
        return False

    def _answered(self, message_id: str) -> Message | None:
        """The sent message a reply answers: in flight, or lost but answered late."""
        flight = self._in_flight.pop(message_id, None)
        if flight is not None:
            return flight.message
        for index, message in enumerate(self._resend):
            if message["id"] == message_id:
                return self._resend.pop(index)
        return None

    def _new_id(self) -> str:
        self._next_id += 1
        return format(self._next_id, "x")

    def _incoming(self, message: Message) -> Message | None:
        context = MessageContext(self._now, self.client_id)
        for extension in self.extensions:
            result = extension.incoming(message, context)
            if result is None:
                return None
            message = result
        return message

    def _outgoing(self, message: Message) -> Message | None:
        out = dict(message)  # extensions may edit it; resends start afresh
        if type(out.get("ext")) is dict:
            out["ext"] = dict(out["ext"])
        if self.acking and out["channel"] == _CONNECT:
            # Set when sent, so that a resent connect acknowledges what
            # arrived since it was first sent.
            out["ext"] = {**out.get("ext", {}), "ack": self._batch}
        context = MessageContext(self._now, self.client_id)
        for extension in self.extensions:
            result = extension.outgoing(out, context)
            if result is None:
                return None
            out = result
        return out

    def _send(self, message: Message, *, track: bool = True) -> None:
        if "id" not in message:
            message["id"] = self._new_id()
        if message["channel"] != _HANDSHAKE:
            message["clientId"] = self.client_id
        message_id = str(message["id"])
        if track:
            timeout = self.advice.timeout if self.advice.timeout > 0 else self.retry
            self._in_flight[message_id] = _Flight(message, self._now + 1.2 * timeout)
        out = self._outgoing(message)
        if out is not None:
            self._outbox.append(out)
        elif track:
            del self._in_flight[message_id]
            self._settle(message, {"successful": False, "error": _DROPPED})

    def _settle(self, sent: Message, reply: Message) -> None:
        """Act on the reply to ``sent`` (or on its refusal by an extension)."""
        ok = reply.get("successful") is True
        error = reply.get("error")
        reason = error if type(error) is str else "Unknown error"
        reconnect = None
        advice = reply.get("advice")
        if type(advice) is dict:
            reconnect = self._take_advice(advice)
        channel = sent["channel"]
        if channel == _HANDSHAKE:
            self._handshake_reply(reply, ok, reason, reconnect)
            return
        sent_as = sent.get("clientId")
        lost = reconnect == "handshake" or (not ok and _unknown_client(error, sent_as))
        # Only a publish can be answered for a session other than the current
        # one: other messages in flight are forgotten when a session is lost.
        current = self.state is ClientState.CONNECTED and sent_as == self.client_id
        if channel == _SUBSCRIBE:
            self._subscribe_reply(sent["subscription"], ok, reason, lost)
            if ok:
                self._history_reply(sent["subscription"], reply)
        elif not is_meta(channel):
            self._publish_reply(sent, ok, reason, lost, current)
        if not current:
            return
        if reconnect == "none":
            self._end(error if type(error) is str else "The server advised reconnect: none")
        elif lost:
            self._begin_handshake(self.advice.interval)
        elif channel == _CONNECT:
            interval = self.advice.interval
            self._after_connect(interval if ok else max(interval, self.retry))

    def _take_advice(self, advice: dict[str, Any]) -> str | None:
        for name in ("interval", "timeout"):
            value = advice.get(name)
            if (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
                and value >= 0
            ):
                setattr(self.advice, name, value / 1000)
        reconnect = advice.get("reconnect")
        return reconnect if reconnect in _RECONNECT_VALUES else None

    def _handshake_reply(
        self, reply: Message, ok: bool, reason: str, reconnect: str | None
    ) -> None:
        client_id = reply.get("clientId")
        if ok and type(client_id) is str and client_id:
            self._connected(reply, client_id)
            return
        if ok:
            reason = "The handshake reply has no clientId"
        final = reconnect == "none"
        self._events.append(HandshakeFailed(reason, final))
        if final:
            self._end(reason)
        else:
            self._handshake_at = self._now + max(self.retry, self.advice.interval)

    def _connected(self, reply: Message, client_id: str) -> None:
        offered = reply.get("supportedConnectionTypes")
        if type(offered) is list:
            self.connection_type = next(
                (t for t in self.connection_types if t in offered), self.connection_types[0]
            )
        self.state = ClientState.CONNECTED
        self.client_id = client_id
        ext = reply.get("ext")
        self.acking = self.ack and type(ext) is dict and ext.get("ack") is True
        self._events.append(HandshakeSucceeded(client_id))
        for channel in list(self.subscriptions):
            self._send(self._subscribe_message(channel))
        self._flush_pending()
        self._connect()

    def _subscribe_reply(self, channel: str, ok: bool, reason: str, lost: bool) -> None:
        if ok:
            if self.subscriptions.get(channel) is False:
                self.subscriptions[channel] = True
                self._events.append(SubscribeSucceeded(channel))
        elif not lost and self.subscriptions.pop(channel, None) is not None:
            self._events.append(SubscribeFailed(channel, reason))
        # lost: the channel is subscribed again after the new handshake

    def _subscribe_message(self, channel: str) -> Message:
        message: Message = {"channel": _SUBSCRIBE, "subscription": channel}
        since = self.positions.get(channel)
        if since is not None:
            message["ext"] = {"history": {"since": since}}
        return message

    def _history_reply(self, channel: str, reply: Message) -> None:
        """Take the stream position a subscribe reply carries, and its recovery."""
        ext = reply.get("ext")
        history = ext.get("history") if type(ext) is dict else None
        if type(history) is not dict:
            return
        recovered = history.get("recovered")
        position = history.get("position")
        # After a recovery the replayed messages move the position on.
        if type(position) is str and recovered is not True:
            self.positions[channel] = position
        if type(recovered) is bool:
            reason = history.get("reason")
            self._events.append(
                SubscriptionRecovered(channel, recovered, reason if type(reason) is str else None)
            )

    def _publish_reply(
        self, sent: Message, ok: bool, reason: str, lost: bool, current: bool
    ) -> None:
        if not lost:
            self._result(str(sent["id"]), None if ok else reason)
        elif not current and self.state is ClientState.CONNECTED and self._transport_up:
            self._send(sent)  # sent for an older session: publish it again now
        else:
            self._pending.append(sent)  # sent again once there is a session

    def _call_result(self, message: Message) -> None:
        message_id = str(message.get("id"))
        self._calls.discard(message_id)
        if self._answered(message_id) is not None:
            # The result overtook the publish's own reply: it answers both.
            self._unanswered -= 1
        if message.get("successful") is True:
            self._events.append(CallSucceeded(message_id, message.get("data")))
        else:
            error = message.get("error")
            self._events.append(CallFailed(message_id, error if type(error) is str else "Failed"))

    def _result(self, message_id: str, error: str | None) -> None:
        if message_id in self._calls:
            self._unanswered -= 1
            if error is not None:  # else the result follows as its own message
                self._calls.discard(message_id)
                self._events.append(CallFailed(message_id, error))
            return
        self._unanswered -= 1
        if error is None:
            self._events.append(PublishSucceeded(message_id))
        else:
            self._events.append(PublishFailed(message_id, error))

    def _deliver(self, message: Message) -> None:
        channel = message.get("channel")
        if (
            type(channel) is str
            and "data" in message
            and not is_meta(channel)
            and any(matches(pattern, channel) for pattern in self.subscriptions)
        ):
            ext = message.get("ext")
            if channel in self.subscriptions and type(ext) is dict:
                history = ext.get("history")
                position = history.get("position") if type(history) is dict else None
                if type(position) is str:
                    self.positions[channel] = position
            self._events.append(MessageReceived(channel, message["data"], ext))

    def _begin_handshake(self, delay: float) -> None:
        """Forget the session (if any) and handshake after ``delay`` seconds."""
        self.state = ClientState.HANDSHAKING
        self.client_id = None
        self._connect_at = None
        # Meta messages belong to the old session; publishes are kept.
        self._in_flight = {
            i: f for i, f in self._in_flight.items() if not is_meta(f.message["channel"])
        }
        self._resend = [m for m in self._resend if not is_meta(m["channel"])]
        if delay > 0:
            self._handshake_at = self._now + delay
        else:
            self._send_handshake()

    def _send_handshake(self) -> None:
        self._handshake_at = None
        self.acking = False
        self._batch = 0  # a new session numbers its batches afresh
        message: Message = {
            "channel": _HANDSHAKE,
            "version": "1.0",
            "supportedConnectionTypes": list(self.connection_types),
        }
        if self.ack:
            message["ext"] = {"ack": True}
        self._send(message)

    def _after_connect(self, delay: float) -> None:
        if delay > 0:
            self._connect_at = self._now + delay
        else:
            self._connect()

    def _connect(self) -> None:
        self._connect_at = None
        self._send({"channel": _CONNECT, "connectionType": self.connection_type})

    def _flush_pending(self) -> None:
        if self.state is ClientState.CONNECTED:
            pending, self._pending = self._pending, []
            for message in pending:
                self._send(message)

    def _lose(self, messages: list[Message]) -> None:
        if self._transport_up:
            self._transport_up = False
            self._events.append(TransportDown())
        self._resend.extend(messages)
        backoff = min(self.retry * 2.0 ** min(self._resends, 64), self.max_retry)
        self._resend_at = self._now + max(backoff, self.advice.interval)

    def _send_again(self) -> None:
        self._resend_at = None
        self._resends += 1
        lost, self._resend = self._resend, []
        held: list[Message] = []
        for message in lost:
            # Meta messages here belong to the current state (see _begin_handshake).
            if self.state is ClientState.CONNECTED or is_meta(message["channel"]):
                self._send(message)
            else:
                held.append(message)
        self._pending[:0] = held
        self._flush_pending()

    def _end(self, error: str | None) -> None:
        """The session is over: fail whatever has no result, stop everything."""
        self.state = ClientState.DISCONNECTED
        self._handshake_at = self._connect_at = self._resend_at = None
        reason = error if error is not None else "Disconnected"
        waiting = [f.message for f in self._in_flight.values()] + self._resend + self._pending
        self._in_flight = {}
        self._resend = []
        self._pending = []
        for message in waiting:
            if not is_meta(message["channel"]):
                self._result(str(message["id"]), reason)
        for message_id in sorted(self._calls):  # accepted, result not come yet
            self._events.append(CallFailed(message_id, reason))
        self._calls.clear()
        for channel, acknowledged in self.subscriptions.items():
            if not acknowledged:
                self._events.append(SubscribeFailed(channel, reason))
        self.subscriptions = {}
        self.positions = {}
        self._events.append(SessionEnded(error))
