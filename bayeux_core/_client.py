"""The client side of Bayeux, without I/O.

:class:`ClientSession` decides what to send and when; a driver moves the
messages. The cycle is the same as the engine's: call an input method
(:meth:`~ClientSession.handshake`, :meth:`~ClientSession.subscribe`,
:meth:`~ClientSession.publish`, :meth:`~ClientSession.receive`,
:meth:`~ClientSession.transport_failed`, :meth:`~ClientSession.handle_timer`),
then send what :meth:`~ClientSession.messages_to_send` returns and act on what
:meth:`~ClientSession.events` returns, and sleep until
:meth:`~ClientSession.get_timer`.

What it does for the driver:

* handshake, then keep one ``/meta/connect`` in flight, pausing
  ``advice.interval`` between connects;
* on ``reconnect: handshake`` (or any ``401``) handshake again and subscribe
  again to every channel it was subscribed to; on ``reconnect: none`` stop;
* hold publishes and subscribes made before the handshake, and resend in-flight
  messages after a transport failure, ``retry`` seconds later (the server may
  then see a publish twice, as with Faye);
* hand each delivery to the application once, as a :class:`MessageReceived`,
  if a subscription matches it;
* a refused subscribe ends with :class:`SubscribeFailed` and is not retried.

Connect messages travel apart from the others (``is_connect`` tells them
apart), so a long-polling driver can keep them on their own request.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ._channels import is_meta, is_valid_name, is_valid_pattern, matches
from ._errors import ErrorCode, LocalProtocolError
from ._extensions import Extension, MessageContext
from ._messages import Message

__all__ = [
    "ClientEvent",
    "ClientSession",
    "ClientState",
    "Handshake",
    "HandshakeFailed",
    "MessageReceived",
    "PublishFailed",
    "PublishSucceeded",
    "SubscribeFailed",
    "SubscribeSucceeded",
    "TransportDown",
    "TransportUp",
    "is_connect",
]


class ClientState(enum.Enum):
    UNCONNECTED = "unconnected"
    HANDSHAKING = "handshaking"
    CONNECTED = "connected"
    #: Disconnected by the application or told ``reconnect: none``: final.
    DISCONNECTED = "disconnected"


class ClientEvent:
    """Base class of what :meth:`ClientSession.events` returns."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Handshake(ClientEvent):
    """A handshake succeeded (the first one, or after a session was lost)."""

    client_id: str


@dataclass(frozen=True, slots=True)
class HandshakeFailed(ClientEvent):
    """The server refused the handshake; ``final`` means no retry follows."""

    error: str
    final: bool


@dataclass(frozen=True, slots=True)
class MessageReceived(ClientEvent):
    channel: str
    data: Any
    ext: Any = None


@dataclass(frozen=True, slots=True)
class SubscribeSucceeded(ClientEvent):
    channel: str


@dataclass(frozen=True, slots=True)
class SubscribeFailed(ClientEvent):
    channel: str
    error: str


@dataclass(frozen=True, slots=True)
class PublishSucceeded(ClientEvent):
    id: str


@dataclass(frozen=True, slots=True)
class PublishFailed(ClientEvent):
    id: str
    error: str


@dataclass(frozen=True, slots=True)
class TransportDown(ClientEvent):
    pass


@dataclass(frozen=True, slots=True)
class TransportUp(ClientEvent):
    pass


def is_connect(message: Message) -> bool:
    """True for a ``/meta/connect``, which a polling driver sends on its own."""
    return message.get("channel") == "/meta/connect"


def _error_code(error: object) -> int | None:
    if type(error) is str and len(error) >= 3 and error[:3].isdigit():
        return int(error[:3])
    return None


@dataclass(slots=True)
class _Flight:
    message: Message
    #: when the reply is overdue and the message is resent
    deadline: float


@dataclass(slots=True)
class _Advice:
    reconnect: str = "retry"
    interval: float = 0.0
    timeout: float = 60.0


@dataclass(slots=True)
class _Timers:
    handshake_at: float | None = None
    connect_at: float | None = None
    resend_at: float | None = None
    resend: list[Message] = field(default_factory=list)


class ClientSession:
    """A Bayeux client's protocol state.

    Args:
        connection_types: offered in the handshake, preferred first.
        retry: seconds to wait before resending after a failure.
        timeout: seconds the server may hold a connect, until advice says.
        max_pending: publishes held while not connected; beyond it
            :meth:`publish` raises :class:`LocalProtocolError`.
        extensions: client extensions (outgoing before sending, incoming on
            every received message).
    """

    def __init__(
        self,
        *,
        connection_types: Iterable[str] = ("websocket", "long-polling"),
        retry: float = 5.0,
        timeout: float = 60.0,
        max_pending: int = 1000,
        extensions: Iterable[Extension] = (),
    ) -> None:
        self.connection_types = list(connection_types)
        if not self.connection_types:
            raise LocalProtocolError("connection_types must not be empty")
        self.connection_type = self.connection_types[0]
        self.retry = retry
        self.max_pending = max_pending
        self.extensions = list(extensions)
        self.state = ClientState.UNCONNECTED
        self.client_id: str | None = None
        self.advice = _Advice(timeout=timeout)
        #: channels the application wants, mapped to True once acknowledged
        self.subscriptions: dict[str, bool] = {}
        self._outbox: list[Message] = []
        #: publishes and subscribes waiting for a handshake
        self._waiting: list[Message] = []
        self._in_flight: dict[str, _Flight] = {}
        self._events: list[ClientEvent] = []
        self._timers = _Timers()
        self._next_id = 0
        self._now = 0.0
        self._transport_up = True
        self._connecting = False

    # ---------------------------------------------------------- application

    def handshake(self, *, now: float) -> None:
        """Start (or restart) the session."""
        self._now = now
        if self.state is ClientState.DISCONNECTED:
            raise LocalProtocolError("the session is disconnected; make a new one")
        self.state = ClientState.HANDSHAKING
        self.client_id = None
        self._connecting = False
        self._timers.handshake_at = None
        self._timers.connect_at = None
        self._send(
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": list(self.connection_types),
            }
        )

    def subscribe(self, channel: str, *, now: float) -> None:
        """Subscribe to a channel or pattern; acknowledged by an event."""
        self._now = now
        if not is_valid_pattern(channel) or is_meta(channel):
            raise LocalProtocolError(f"cannot subscribe to {channel!r}")
        if channel in self.subscriptions:
            return
        self.subscriptions[channel] = False
        self._send_or_wait({"channel": "/meta/subscribe", "subscription": channel})

    def unsubscribe(self, channel: str, *, now: float) -> None:
        """Drop a subscription (no event follows)."""
        self._now = now
        if self.subscriptions.pop(channel, None) is None:
            return
        if self.state is ClientState.CONNECTED:
            self._send({"channel": "/meta/unsubscribe", "subscription": channel})
        else:
            self._waiting = [m for m in self._waiting if m.get("subscription") != channel]

    def publish(self, channel: str, data: Any, *, now: float, ext: Any = None) -> str:
        """Publish; returns the message id that the result event will carry."""
        self._now = now
        if not is_valid_name(channel) or is_meta(channel):
            raise LocalProtocolError(f"cannot publish to {channel!r}")
        message: Message = {"channel": channel, "data": data}
        if ext is not None:
            message["ext"] = ext
        if self.state is not ClientState.CONNECTED and len(self._waiting) >= self.max_pending:
            raise LocalProtocolError("too many publishes waiting for a connection")
        return self._send_or_wait(message)

    def disconnect(self, *, now: float) -> None:
        """End the session; final."""
        self._now = now
        if self.state is ClientState.CONNECTED:
            self._send({"channel": "/meta/disconnect"})
        self.state = ClientState.DISCONNECTED
        self._waiting.clear()
        self._timers = _Timers()

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
        times = [self._timers.handshake_at, self._timers.connect_at, self._timers.resend_at]
        times.extend(f.deadline for f in self._in_flight.values())
        present = [t for t in times if t is not None]
        return min(present) if present else None

    def handle_timer(self, now: float) -> None:
        """Act on whatever is due: handshake retries, connects, resends."""
        self._now = now
        timers = self._timers
        if timers.handshake_at is not None and timers.handshake_at <= now:
            timers.handshake_at = None
            self.handshake(now=now)
        if timers.connect_at is not None and timers.connect_at <= now:
            timers.connect_at = None
            self._connect()
        overdue = [i for i, f in self._in_flight.items() if f.deadline <= now]
        if overdue:
            self._fail_in_flight(overdue)
        if timers.resend_at is not None and timers.resend_at <= now:
            timers.resend_at = None
            resend, timers.resend = timers.resend, []
            for message in resend:
                self._resend(message)

    def transport_failed(self, *, now: float) -> None:
        """Every message in flight was lost; resend them after ``retry``."""
        self._now = now
        self._fail_in_flight(list(self._in_flight))

    def receive(self, messages: Iterable[object], *, now: float) -> None:
        """Handle messages from the server: replies and deliveries."""
        self._now = now
        if not self._transport_up:
            self._transport_up = True
            self._events.append(TransportUp())
        for message in messages:
            if type(message) is not dict:
                continue
            result = self._incoming(message)
            if result is not None:
                self._handle(result)

    # ------------------------------------------------------------- internals

    def _incoming(self, message: Message) -> Message | None:
        context = MessageContext(self._now, self.client_id)
        result: Message | None = message
        for extension in self.extensions:
            result = extension.incoming(result, context)  # type: ignore[arg-type]
            if result is None:
                return None
        return result

    def _handle(self, message: Message) -> None:
        channel = message.get("channel")
        if "successful" not in message:
            self._deliver(message)
            return
        flight = self._in_flight.pop(str(message.get("id")), None)
        if flight is None:
            return  # not ours, or a reply to a message already resent
        sent = flight.message
        advice = message.get("advice")
        if type(advice) is dict:
            self._take_advice(advice)
        ok = message.get("successful") is True
        error = message.get("error")
        error_text = error if type(error) is str else "Unknown error"
        channel = sent["channel"]
        if channel == "/meta/handshake":
            self._on_handshake(message, ok, error_text)
        elif channel == "/meta/connect":
            self._on_connect(ok, error_text)
        elif channel == "/meta/subscribe":
            target = sent["subscription"]
            if ok:
                if target in self.subscriptions:
                    self.subscriptions[target] = True
                self._events.append(SubscribeSucceeded(target))
            elif _error_code(error) == ErrorCode.CLIENT_UNKNOWN:
                self._lost_session(sent)
            else:
                self.subscriptions.pop(target, None)
                self._events.append(SubscribeFailed(target, error_text))
        elif channel in {"/meta/unsubscribe", "/meta/disconnect"}:
            pass
        elif ok:
            self._events.append(PublishSucceeded(str(sent["id"])))
        elif _error_code(error) == ErrorCode.CLIENT_UNKNOWN:
            self._lost_session(sent)
        else:
            self._events.append(PublishFailed(str(sent["id"]), error_text))

    def _deliver(self, message: Message) -> None:
        channel = message.get("channel")
        if type(channel) is not str or "data" not in message or is_meta(channel):
            return
        if any(matches(pattern, channel) for pattern in self.subscriptions):
            self._events.append(MessageReceived(channel, message["data"], message.get("ext")))

    def _take_advice(self, advice: dict[str, Any]) -> None:
        reconnect = advice.get("reconnect")
        if reconnect in ("retry", "handshake", "none"):
            self.advice.reconnect = reconnect
        for name in ("interval", "timeout"):
            value = advice.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                setattr(self.advice, name, value / 1000)

    def _on_handshake(self, message: Message, ok: bool, error: str) -> None:
        if self.state is not ClientState.HANDSHAKING:
            return
        client_id = message.get("clientId")
        if not ok or type(client_id) is not str:
            final = self.advice.reconnect == "none"
            self._events.append(HandshakeFailed(error, final))
            if final:
                self.state = ClientState.DISCONNECTED
            else:
                self._timers.handshake_at = self._now + max(self.advice.interval, self.retry)
            return
        offered = message.get("supportedConnectionTypes")
        if type(offered) is list:
            usable = [t for t in self.connection_types if t in offered]
            if usable:
                self.connection_type = usable[0]
        self.state = ClientState.CONNECTED
        self.client_id = client_id
        self._events.append(Handshake(client_id))
        for channel in self.subscriptions:
            self.subscriptions[channel] = False
            self._send({"channel": "/meta/subscribe", "subscription": channel})
        waiting, self._waiting = self._waiting, []
        for pending in waiting:
            if pending["channel"] != "/meta/subscribe":
                self._send(pending)
        self._connect()

    def _on_connect(self, ok: bool, error: str) -> None:
        self._connecting = False
        if self.state is not ClientState.CONNECTED:
            return
        if self.advice.reconnect == "none":
            self.state = ClientState.DISCONNECTED
            self._events.append(HandshakeFailed(error if not ok else "reconnect: none", True))
        elif self.advice.reconnect == "handshake" or (_error_code(error) == 401 and not ok):
            self._rehandshake()
        else:
            self._timers.connect_at = self._now + self.advice.interval

    def _lost_session(self, message: Message) -> None:
        """The server forgot us: handshake again, then send ``message`` again."""
        for key in ("id", "clientId"):
            message.pop(key, None)
        if message["channel"] != "/meta/subscribe":
            self._waiting.append(message)
        if self.state is ClientState.CONNECTED:
            self._rehandshake()

    def _rehandshake(self) -> None:
        self.advice.reconnect = "retry"
        self._timers.handshake_at = self._now + self.advice.interval

    def _connect(self) -> None:
        if self._connecting or self.state is not ClientState.CONNECTED:
            return
        self._connecting = True
        self._send({"channel": "/meta/connect", "connectionType": self.connection_type})

    def _send_or_wait(self, message: Message) -> str:
        if self.state is ClientState.CONNECTED:
            return self._send(message)
        if self.state is ClientState.DISCONNECTED:
            raise LocalProtocolError("the session is disconnected")
        self._next_id += 1
        message["id"] = format(self._next_id, "x")
        self._waiting.append(message)
        return str(message["id"])

    def _send(self, message: Message) -> str:
        if "id" not in message:
            self._next_id += 1
            message["id"] = format(self._next_id, "x")
        message_id = str(message["id"])
        if self.client_id is not None and message["channel"] != "/meta/handshake":
            message["clientId"] = self.client_id
        wait = self.retry
        if message["channel"] == "/meta/connect":
            wait = self.advice.timeout * 1.2 + self.retry
        self._in_flight[message_id] = _Flight(message, self._now + wait)
        out: Message | None = message
        context = MessageContext(self._now, self.client_id)
        for extension in self.extensions:
            out = extension.outgoing(dict(out), context)  # type: ignore[arg-type]
            if out is None:
                return message_id
        assert out is not None
        self._outbox.append(out)
        return message_id

    def _resend(self, message: Message) -> None:
        if message["channel"] == "/meta/handshake":
            if self.state is ClientState.HANDSHAKING:
                self._send(message)
        elif message["channel"] == "/meta/connect":
            self._connecting = False
            self._connect()
        elif self.state is ClientState.CONNECTED:
            message.pop("clientId", None)
            self._send(message)
        elif self.state is not ClientState.DISCONNECTED:
            message.pop("clientId", None)
            self._waiting.append(message)

    def _fail_in_flight(self, ids: list[str]) -> None:
        if not ids:
            return
        if self._transport_up:
            self._transport_up = False
            self._events.append(TransportDown())
        for message_id in ids:
            flight = self._in_flight.pop(message_id)
            self._timers.resend.append(flight.message)
        self._timers.resend_at = self._now + self.retry
