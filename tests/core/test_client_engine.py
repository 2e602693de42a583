"""ClientSession against a real Engine, wired together in memory.

:class:`Pair` plays the network and the clock: each batch a client sends goes
to the engine on a fresh request connection (each connect on its own request,
the other messages together), as JSON both ways, and the Reply that answers a
request goes back to the client that made it. Time moves only in
:meth:`Pair.advance`, which calls ``handle_timer`` on the engine and on each
client at their ``get_timer`` deadlines, in order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from bayeux_core import (
    Action,
    ClientEvent,
    ClientSession,
    ClientState,
    Disconnected,
    DisconnectReason,
    Engine,
    EngineConfig,
    Event,
    Extension,
    HandshakeFailed,
    Handshaken,
    HandshakeSucceeded,
    LocalProtocolError,
    Message,
    MessageContext,
    MessageReceived,
    OverflowPolicy,
    Published,
    PublishSucceeded,
    Reply,
    SessionEnded,
    SessionExpired,
    Subscribed,
    SubscribeFailed,
    SubscribeSucceeded,
    TransportDown,
    TransportUp,
    Unsubscribed,
    decode_body,
    encode,
)
from bayeux_core._client import is_connect

from .helpers import counter_ids


def cid(n: int) -> str:
    """The n-th client id the pair's engines hand out."""
    return f"c{n:030d}"


class Pair:
    """Clients and an engine, wired in memory, on a hand-driven clock."""

    def __init__(
        self, config: EngineConfig | None = None, *, extensions: Iterable[Extension] = ()
    ) -> None:
        self.config = config
        self.extensions = tuple(extensions)
        # Shared by every engine made here: a restarted server hands out
        # fresh ids, as random ids would be.
        self._ids = counter_ids()
        self.engine = self._new_engine()
        self.now = 0.0
        self.clients: list[ClientSession] = []
        #: everything each client sent (lost or not), in order
        self.sent: dict[ClientSession, list[Message]] = {}
        self.server_events: list[Event] = []
        #: clients whose network is down: what they send is lost
        self.down: set[ClientSession] = set()
        self._events: dict[ClientSession, list[ClientEvent]] = {}
        self._owner: dict[int, ClientSession] = {}
        self._conns = itertools.count(1)

    def _new_engine(self) -> Engine:
        return Engine(
            self.config, extensions=self.extensions, client_id_generator=self._ids.__next__
        )

    def client(self, **options: Any) -> ClientSession:
        options.setdefault("connection_types", ("long-polling",))
        client = ClientSession(**options)
        self.clients.append(client)
        self.sent[client] = []
        self._events[client] = []
        return client

    def start(self, *channels: str, **options: Any) -> ClientSession:
        """A client that handshook and whose subscriptions are acknowledged."""
        client = self.client(**options)
        for channel in channels:
            client.subscribe(channel, now=self.now)
        client.handshake(now=self.now)
        self.pump()
        events = self.take(client)
        assert events[0] == HandshakeSucceeded(client.client_id or "")
        assert events[1:] == [SubscribeSucceeded(c) for c in channels]
        return client

    def take(self, client: ClientSession) -> list[ClientEvent]:
        """The client's events since the last take."""
        self._events[client].extend(client.events())
        out = self._events[client]
        self._events[client] = []
        return out

    def take_server(self) -> list[Event]:
        out = self.server_events
        self.server_events = []
        return out

    def pump(self) -> None:
        """Move messages both ways until nothing moves."""
        for _ in range(1000):
            moved = False
            for client in self.clients:
                messages = client.messages_to_send()
                if not messages:
                    continue
                moved = True
                self.sent[client].extend(messages)
                if client in self.down:
                    client.transport_failed(now=self.now)
                    continue
                others = [m for m in messages if not is_connect(m)]
                batches = [[m] for m in messages if is_connect(m)]
                for batch in [others, *batches] if others else batches:
                    conn = next(self._conns)
                    self._owner[conn] = client
                    decoded = decode_body(encode(batch))
                    assert isinstance(decoded, list)
                    self.engine.receive(conn, decoded, now=self.now)
            actions = self.engine.actions_to_send()
            moved = moved or bool(actions)
            self._route(actions)
            if not moved:
                break
        else:
            raise AssertionError("messages kept moving")
        for client in self.clients:
            self._events[client].extend(client.events())

    def _route(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Reply):
                client = self._owner.pop(action.conn)
                client.receive(orjson.loads(action.body), now=self.now)
            else:
                assert isinstance(action, Event), action  # no streams here
                self.server_events.append(action)

    def advance(self, seconds: float) -> None:
        """Move the clock, acting on every deadline on the way."""
        target = self.now + seconds
        for _ in range(10_000):
            parties: list[Engine | ClientSession] = [self.engine, *self.clients]
            due = [
                (deadline, party)
                for party in parties
                if (deadline := party.get_timer()) is not None and deadline <= target
            ]
            if not due:
                break
            self.now = max(self.now, min(deadline for deadline, _ in due))
            for deadline, party in due:
                if deadline <= self.now:
                    party.handle_timer(self.now)
            self.pump()
        else:
            raise AssertionError("timers kept firing")
        self.now = target

    def cut(self, client: ClientSession) -> None:
        """The client's network fails: its open requests die, what it sends is lost."""
        self.down.add(client)
        for conn, owner in list(self._owner.items()):
            if owner is client:
                del self._owner[conn]
                self.engine.close(conn, now=self.now)
        client.transport_failed(now=self.now)
        self.pump()

    def restore(self, client: ClientSession) -> None:
        self.down.discard(client)

    def restart(self, *, graceful: bool) -> None:
        """A new server with no sessions takes over.

        Graceful: held connects are answered first (``release_held``).
        Otherwise every open request dies with the old server.
        """
        if graceful:
            self.engine.release_held(now=self.now)
            self._route(self.engine.actions_to_send())
        failed = {id(c): c for c in self._owner.values()}
        self._owner.clear()
        for client in failed.values():
            client.transport_failed(now=self.now)
        self.engine = self._new_engine()
        self.pump()


def received(events: list[ClientEvent]) -> list[tuple[str, Any]]:
    return [(e.channel, e.data) for e in events if isinstance(e, MessageReceived)]


# ------------------------------------------------------------------ lifecycle


def test_full_lifecycle() -> None:
    pair = Pair()
    alice = pair.client()
    alice.handshake(now=0)
    pair.pump()
    assert alice.state is ClientState.CONNECTED
    assert alice.client_id == cid(1)
    assert alice.connection_type == "long-polling"
    assert pair.take(alice) == [HandshakeSucceeded(cid(1))]
    # Its connect is held by the server now.
    assert alice.get_timer() == pytest.approx(1.2 * 25)

    alice.subscribe("/chat", now=pair.now)
    pair.pump()
    assert pair.take(alice) == [SubscribeSucceeded("/chat")]

    first = alice.publish("/chat", {"text": "hi"}, now=pair.now)
    pair.pump()
    assert pair.take(alice) == [PublishSucceeded(first), MessageReceived("/chat", {"text": "hi"})]

    # Quiet for a while: connects are answered at the timeout and renewed.
    pair.advance(100)
    assert pair.take(alice) == []
    connects = [m for m in pair.sent[alice] if is_connect(m)]
    assert len(connects) == 1 + 1 + 1 + 4  # first, after hi, after the reply, 4 timeouts

    alice.unsubscribe("/chat", now=pair.now)
    second = alice.publish("/chat", 2, now=pair.now)
    pair.pump()
    assert pair.take(alice) == [PublishSucceeded(second)]

    alice.disconnect(now=pair.now)
    pair.pump()
    assert pair.take(alice) == [SessionEnded(None)]
    assert alice.get_timer() is None
    assert len(pair.engine.store) == 0
    assert pair.take_server() == [
        Handshaken(cid(1)),
        Subscribed(cid(1), "/chat"),
        Published(cid(1), "/chat", {"text": "hi"}),
        Unsubscribed(cid(1), "/chat"),
        Published(cid(1), "/chat", 2),
        Disconnected(cid(1), DisconnectReason.CLIENT),
    ]
    pair.advance(100)
    assert pair.take(alice) == []
    assert pair.engine.get_timer() is None


def test_publish_and_subscribe_between_clients() -> None:
    pair = Pair()
    alice = pair.start("/room")
    bob = pair.start("/room")
    carol = pair.start()
    message_id = carol.publish("/room", "hello", now=pair.now)
    carol.publish("/elsewhere", "nobody", now=pair.now)
    pair.pump()
    assert received(pair.take(alice)) == [("/room", "hello")]
    assert received(pair.take(bob)) == [("/room", "hello")]
    assert pair.take(carol)[0] == PublishSucceeded(message_id)
    # Several messages in one batch arrive together, in order.
    for n in range(3):
        bob.publish("/room", n, now=pair.now)
    pair.pump()
    assert received(pair.take(alice)) == [("/room", 0), ("/room", 1), ("/room", 2)]
    assert received(pair.take(bob)) == [("/room", 0), ("/room", 1), ("/room", 2)]


def test_wildcard_subscriptions_deliver_each_message_once() -> None:
    pair = Pair()
    alice = pair.start("/chat/*", "/chat/**", "/chat/a")
    bob = pair.start("/chat/a")
    carol = pair.start()
    for channel in ("/chat/a", "/chat/a/b", "/chat", "/other/a", "/chat/b"):
        carol.publish(channel, channel, now=pair.now)
    pair.pump()
    assert received(pair.take(alice)) == [
        ("/chat/a", "/chat/a"),
        ("/chat/a/b", "/chat/a/b"),
        ("/chat/b", "/chat/b"),
    ]
    assert received(pair.take(bob)) == [("/chat/a", "/chat/a")]


# ----------------------------------------------------------- losing the server


@pytest.mark.parametrize("graceful", [True, False])
def test_server_restart_rehandshakes_and_resubscribes(graceful: bool) -> None:
    pair = Pair()
    alice = pair.start("/news", "/chat/**")
    bob = pair.start()
    pair.take_server()
    pair.restart(graceful=graceful)
    # The old clientId is unknown to the new server: 401, handshake advised
    # (after error_interval); with a crash, the resend comes first (retry).
    pair.advance(10)
    assert alice.state is ClientState.CONNECTED
    assert alice.client_id not in (None, cid(1))
    events = pair.take(alice)
    assert HandshakeSucceeded(alice.client_id or "") in events
    assert not any(isinstance(e, SubscribeSucceeded) for e in events)  # renewed silently
    if graceful:
        assert events == [HandshakeSucceeded(alice.client_id or "")]
    else:
        assert events == [TransportDown(), TransportUp(), HandshakeSucceeded(alice.client_id or "")]
    assert {(e.client_id, e.channel) for e in pair.take_server() if isinstance(e, Subscribed)} == {
        (alice.client_id, "/news"),
        (alice.client_id, "/chat/**"),
    }
    bob.publish("/news", 1, now=pair.now)
    bob.publish("/chat/x/y", 2, now=pair.now)
    pair.pump()
    assert received(pair.take(alice)) == [("/news", 1), ("/chat/x/y", 2)]


def test_session_expired_on_the_server() -> None:
    pair = Pair(EngineConfig(session_timeout=30))
    alice = pair.start("/news")
    bob = pair.start("/news")
    old_id = alice.client_id
    pair.cut(alice)
    pair.advance(40)
    assert SessionExpired(old_id or "") in pair.take_server()
    # Published while alice's session was gone: lost for her.
    bob.publish("/news", "missed", now=pair.now)
    pair.pump()
    # Published by alice while down: held until the resend.
    held = alice.publish("/news", "from alice", now=pair.now)
    pair.restore(alice)
    pair.advance(10)
    assert alice.client_id not in (None, old_id)
    # The held publish went with the resend, under the expired clientId; the
    # engine, like Faye, takes publishes from unknown clients. The connect
    # got 401, and alice handshook again and renewed her subscription.
    assert pair.take(alice) == [
        TransportDown(),
        TransportUp(),
        PublishSucceeded(held),
        HandshakeSucceeded(alice.client_id or ""),
    ]
    assert received(pair.take(bob)) == [("/news", "missed"), ("/news", "from alice")]
    bob.publish("/news", "again", now=pair.now)
    pair.pump()
    assert received(pair.take(alice)) == [("/news", "again")]


def test_messages_sent_while_a_subscriber_is_cut_off_arrive_once_it_is_back() -> None:
    pair = Pair()
    alice = pair.start("/news")
    bob = pair.start()
    pair.cut(alice)
    assert pair.take(alice) == [TransportDown()]
    bob.publish("/news", 1, now=pair.now)
    bob.publish("/news", 2, now=pair.now)
    pair.pump()
    pair.advance(3)
    pair.restore(alice)
    pair.advance(5)  # the resend of her connect (retry = 5 s) collects them
    assert pair.take(alice) == [
        TransportUp(),
        MessageReceived("/news", 1),
        MessageReceived("/news", 2),
    ]
    assert alice.client_id == cid(1)


def test_a_lost_publish_is_sent_again_after_retry() -> None:
    pair = Pair()
    alice = pair.start("/news")
    bob = pair.start(retry=2)
    message_id = bob.publish("/news", "once", now=pair.now)
    pair.cut(bob)  # before it left: lost, and taken back from the outbox
    assert pair.take(bob) == [TransportDown()]
    assert received(pair.take(alice)) == []
    later = bob.publish("/news", "held", now=pair.now)  # down: held
    pair.restore(bob)
    pair.advance(2)
    assert pair.take(bob) == [
        TransportUp(),
        PublishSucceeded(message_id),
        PublishSucceeded(later),
    ]
    assert received(pair.take(alice)) == [("/news", "once"), ("/news", "held")]
    # Each went out once: the first only after the retry, with its id unchanged.
    publishes = [m for m in pair.sent[bob] if m["channel"] == "/news"]
    assert [m["id"] for m in publishes] == [message_id, later]


def test_a_client_down_for_long_keeps_trying_every_retry() -> None:
    pair = Pair()
    alice = pair.start(retry=5)
    pair.cut(alice)
    before = len(pair.sent[alice])
    pair.advance(20)
    assert len(pair.sent[alice]) == before + 4  # its connect, every 5 s
    assert pair.take(alice) == [TransportDown()]


# ------------------------------------------------------------------ publishing


def test_publish_before_the_handshake_is_delivered_after_it() -> None:
    pair = Pair()
    alice = pair.start("/news")
    bob = pair.client()
    first = bob.publish("/news", 1, now=pair.now)
    second = bob.publish("/news", 2, now=pair.now)
    pair.pump()
    assert received(pair.take(alice)) == []
    bob.handshake(now=pair.now)
    pair.pump()
    assert pair.take(bob) == [
        HandshakeSucceeded(cid(2)),
        PublishSucceeded(first),
        PublishSucceeded(second),
    ]
    assert received(pair.take(alice)) == [("/news", 1), ("/news", 2)]


def test_pending_publishes_are_bounded() -> None:
    pair = Pair()
    alice = pair.start("/news")
    bob = pair.client(max_pending=2)
    bob.publish("/news", 1, now=pair.now)
    bob.publish("/news", 2, now=pair.now)
    with pytest.raises(LocalProtocolError):
        bob.publish("/news", 3, now=pair.now)
    bob.handshake(now=pair.now)
    pair.pump()
    assert received(pair.take(alice)) == [("/news", 1), ("/news", 2)]
    # Room again once they are answered.
    bob.publish("/news", 4, now=pair.now)
    pair.pump()
    assert received(pair.take(alice)) == [("/news", 4)]


# ------------------------------------------------------------------ refusals


class RefuseSecrets(Extension):
    """Refuses subscriptions under /secret, as an authorising extension would."""

    def __init__(self, error: str) -> None:
        self.error = error

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/subscribe" and str(
            message.get("subscription")
        ).startswith("/secret"):
            message["error"] = self.error
        return message


@pytest.mark.parametrize("error", ["403:/secret:Forbidden channel", "401::Access denied"])
def test_subscribe_refused_by_a_server_extension_is_not_retried(error: str) -> None:
    pair = Pair(extensions=[RefuseSecrets(error)])
    alice = pair.client()
    alice.subscribe("/secret/plans", now=pair.now)
    alice.subscribe("/public", now=pair.now)
    alice.handshake(now=pair.now)
    pair.pump()
    assert pair.take(alice) == [
        HandshakeSucceeded(cid(1)),
        SubscribeFailed("/secret/plans", error),
        SubscribeSucceeded("/public"),
    ]
    assert alice.subscriptions == {"/public": True}
    # Neither over time nor after a new handshake is it asked again.
    pair.advance(60)
    pair.restart(graceful=True)
    pair.advance(10)
    assert alice.client_id == cid(2)
    subscribes = [m["subscription"] for m in pair.sent[alice] if m["channel"] == "/meta/subscribe"]
    assert subscribes == ["/secret/plans", "/public", "/public"]
    assert pair.take(alice) == [HandshakeSucceeded(cid(2))]


class RefuseHandshakes(Extension):
    """Refuses every handshake; with ``final``, also advises reconnect: none."""

    def __init__(self, *, final: bool) -> None:
        self.final = final
        self.refusing = True

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if self.refusing and message.get("channel") == "/meta/handshake":
            message["error"] = "403::Not today"
        return message

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if self.final and message.get("channel") == "/meta/handshake" and not message["successful"]:
            message["advice"] = {"reconnect": "none", "interval": 0}
        return message


def test_handshake_refused_with_reconnect_none_is_final() -> None:
    pair = Pair(extensions=[RefuseHandshakes(final=True)])
    alice = pair.client()
    alice.subscribe("/news", now=pair.now)
    alice.handshake(now=pair.now)
    pair.pump()
    assert pair.take(alice) == [
        HandshakeFailed("403::Not today", final=True),
        SubscribeFailed("/news", "403::Not today"),
        SessionEnded("403::Not today"),
    ]
    assert alice.state is ClientState.DISCONNECTED
    assert alice.get_timer() is None
    pair.advance(100)
    assert len(pair.sent[alice]) == 1
    assert len(pair.engine.store) == 0


def test_refused_handshake_is_retried_until_accepted() -> None:
    refuser = RefuseHandshakes(final=False)
    pair = Pair(extensions=[refuser])
    alice = pair.client(retry=5)
    alice.handshake(now=pair.now)
    pair.pump()
    pair.advance(10)
    assert pair.take(alice) == [HandshakeFailed("403::Not today", final=False)] * 3
    refuser.refusing = False
    pair.advance(5)
    assert pair.take(alice) == [HandshakeSucceeded(cid(1))]
    handshakes = [m for m in pair.sent[alice] if m["channel"] == "/meta/handshake"]
    assert len(handshakes) == 4


@pytest.mark.parametrize("held", [True, False])
def test_a_session_ended_by_the_server_on_overflow_starts_over(held: bool) -> None:
    # Overflow with the disconnect policy. Held: alice's connect is waiting
    # on the server and is answered with reconnect: handshake. Not held: she
    # pauses between connects (advice.interval) and her next connect gets 401.
    config = EngineConfig(
        interval=0 if held else 5, max_queue=1, overflow=OverflowPolicy.DISCONNECT
    )
    pair = Pair(config)
    alice = pair.start("/news")
    bob = pair.start()
    bob.publish("/news", 1, now=pair.now)
    bob.publish("/news", 2, now=pair.now)
    pair.pump()
    assert Disconnected(cid(1), DisconnectReason.OVERFLOW) in pair.take_server()
    pair.advance(6)
    assert alice.state is ClientState.CONNECTED
    assert alice.client_id == cid(3)
    assert pair.take(alice) == [HandshakeSucceeded(cid(3))]
    bob.publish("/news", 3, now=pair.now)
    pair.pump()
    pair.advance(5)
    assert received(pair.take(alice)) == [("/news", 3)]
