"""A model-based test of the Engine: hypothesis drives it like a network layer.

One :class:`Engine` (deterministic client ids, a short timeout and session
timeout) is driven through random sequences of handshakes, connects (held
long-polling requests, WebSocket-style streams, EventSource), subscribes,
unsubscribes, publishes (by a client, anonymous, or from the server), vanishing
connections, failed writes (:meth:`Engine.reply_failed`), stale ``now`` values,
disconnects and the passing of time. A small model keeps what the engine should
know: which sessions are alive, what each one is subscribed to
(:func:`bayeux_core.matches` is the reference), which connect it has held and
until when, when it expires, and which published messages it has not received
yet. Two variants use queues of two messages, under each overflow policy.

After every input the actions are drained and checked, as a network layer would
execute them:

* a delivery only reaches a client that, by the model, was alive and subscribed
  to a matching pattern when the message was published; never twice;
* nothing is lost: a client that is bound to a stream, or has a connect held
  after the drain, has received everything published to it; a connect that is
  answered at once carries everything queued (only what its own batch publishes
  after it may wait for the next connect); a full queue drops exactly what the
  policy says, and the ``QueueOverflow`` events count it;
* per recipient, messages arrive in publish order (so per publisher too);
* each message id is answered once, on the connection it came on; a request
  connection gets at most one reply, a closed connection none; every message is
  answered, or waits in the batch of a held connect;
* the events (handshakes, subscriptions, publishes, endings) match the model,
  and the store holds exactly the live sessions with their subscriptions;
* a held connect is answered when its deadline is handled, and not before
  (unless messages arrived, a newer connect replaced it, or its session ended);
* sessions expire exactly when the model says, and a connect afterwards gets a
  ``401`` with ``reconnect: handshake``;
* :meth:`Engine.get_timer` is the model's earliest pending deadline, never a
  deadline that was already handled.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from bayeux_core import (
    Action,
    Close,
    Deliver,
    Disconnected,
    DisconnectReason,
    Engine,
    EngineConfig,
    Handshaken,
    OverflowPolicy,
    Published,
    QueueOverflow,
    Reply,
    SessionExpired,
    Subscribed,
    Unsubscribed,
    is_service,
    matches,
)

from .helpers import Wire, replies

TIMEOUT = 10.0
SESSION_TIMEOUT = 5.0
INTERVAL = 0.0
CONFIG = EngineConfig(
    timeout=TIMEOUT, interval=INTERVAL, session_timeout=SESSION_TIMEOUT, max_queue=10_000
)
MAX_LIVE = 5
ADVICE = st.sampled_from([None, 0, 2_000, 30_000])
WHO = st.integers(0, MAX_LIVE - 1)
SOURCE = st.one_of(WHO, st.sampled_from(["server", "anonymous"]))

LP = "long-polling"
WS = "websocket"
ES = "eventsource"

CHANNELS = ("/a", "/a/b", "/a/b/c", "/a/c", "/b", "/b/x/y", "/service/s")
PATTERNS = ("/a", "/a/b", "/a/*", "/a/**", "/a/b/*", "/*", "/**", "/b/**", "/service/**")


@dataclass(eq=False)
class Client:
    """What the model knows of one session (alive or ended)."""

    cid: str
    transport: str
    expiry: float
    alive: bool = True
    #: a connect was accepted: later connects are held
    connected: bool = False
    #: advised interval, which the session's expiry counts from
    interval: float = INTERVAL
    subs: set[str] = field(default_factory=set)
    #: (conn, message id) of the held connect
    held: tuple[int, str] | None = None
    held_deadline: float = 0.0
    #: the stream deliveries are pushed to
    bound: int | None = None
    #: open streams of this client
    streams: list[int] = field(default_factory=list)
    #: sequence numbers published to it and not received yet, in publish order
    pending: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<{self.transport} client {self.cid[-3:]}>"


@dataclass
class Step:
    """What one drain produced, sorted out."""

    #: message id -> reply message
    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: reply messages without an id (none expected)
    anonymous: list[dict[str, Any]] = field(default_factory=list)
    died: dict[str, str] = field(default_factory=dict)
    subscribed: set[tuple[str, str]] = field(default_factory=set)
    unsubscribed: set[tuple[str, str]] = field(default_factory=set)
    handshaken: list[str] = field(default_factory=list)
    published: int = 0
    closes: list[int] = field(default_factory=list)
    #: clients whose held connect was answered
    released: set[str] = field(default_factory=set)
    write_failed: bool = False
    #: the subscriptions of each session that ended
    ended_subs: dict[str, set[str]] = field(default_factory=dict)
    #: QueueOverflow events
    dropped: dict[str, int] = field(default_factory=dict)

    def none_of(self, *names: str) -> None:
        for name in names:
            assert not getattr(self, name), f"unexpected {name}: {self}"


def decode(raw: bytes) -> Any:
    return orjson.loads(raw)


class EngineModel(RuleBasedStateMachine):
    config: ClassVar[EngineConfig] = CONFIG

    def __init__(self) -> None:
        super().__init__()
        ids = (f"c{n:030d}" for n in itertools.count(1))
        self.engine = Engine(self.config, client_id_generator=lambda: next(ids))
        self.ids_made = 0
        self.now = 0.0
        self.engine.handle_timer(self.now)
        #: subtracted from ``now`` on inputs other than the timer
        self.skew = 0.0
        self._conns = itertools.count(1)
        self._msg_ids = itertools.count(1)
        self._seqs = itertools.count(1)
        self.all: list[Client] = []
        #: request connections waiting for their reply -> who sent on it
        self.requests: dict[int, Client | None] = {}
        #: request connections that got their reply or were closed
        self.finished: set[int] = set()
        #: open streams -> their client (None until a handshake reply names it)
        self.streams: dict[int, Client | None] = {}
        self.closed_streams: set[int] = set()
        #: request connections closed by the client before their reply
        self.vanished: set[int] = set()
        #: message id -> the connection it was sent on
        self.sent: dict[str, int] = {}
        self.answered: set[str] = set()
        #: sequence number -> (channel, publisher)
        self.published: dict[int, tuple[str, str]] = {}
        self.fail_next_write = False
        #: queue overflows the model expects at the next drain
        self.dropped: Counter[str] = Counter()
        self.overflowing: set[str] = set()

    # ------------------------------------------------------------- plumbing

    @property
    def input_now(self) -> float:
        return self.now - self.skew

    def live(self) -> list[Client]:
        return [c for c in self.all if c.alive]

    def by_cid(self, cid: str) -> Client:
        (client,) = [c for c in self.all if c.cid == cid]
        return client

    def request_conn(self, client: Client | None) -> int:
        conn = next(self._conns)
        self.requests[conn] = client
        return conn

    def new_stream(self, client: Client | None) -> int:
        conn = next(self._conns)
        assert self.engine.open_stream(conn, now=self.input_now)
        self.streams[conn] = client
        if client is not None:
            client.streams.append(conn)
        return conn

    def msg_id(self, conn: int) -> str:
        mid = str(next(self._msg_ids))
        self.sent[mid] = conn
        return mid

    def send(self, conn: int, messages: list[dict[str, Any]]) -> Step:
        self.engine.receive(conn, messages, now=self.input_now)
        return self.pump()

    def pump(self) -> Step:
        step = Step()
        self._process(self.engine.actions_to_send(), step)
        # The network layer closes what the engine asks it to, and the streams
        # of ended sessions (the client goes away).
        to_close = list(step.closes)
        for cid in step.died:
            to_close.extend(c for c in self.by_cid(cid).streams if c not in to_close)
        for conn in to_close:
            self._close_stream(conn)
        assert self.engine.actions_to_send() == [], "closing a stream made actions"
        for cid, subs in step.ended_subs.items():
            assert {p for c, p in step.unsubscribed if c == cid} == subs
        # Overflows are checked here; the rules see only the other endings.
        assert step.dropped == dict(self.dropped), "QueueOverflow events"
        overflowed = {cid for cid, how in step.died.items() if how == "overflow"}
        assert overflowed == self.overflowing, "sessions ended by overflow"
        for cid in overflowed:
            del step.died[cid]
            step.unsubscribed -= {(cid, p) for p in step.ended_subs[cid]}
        self.dropped.clear()
        self.overflowing.clear()
        return step

    def _process(self, actions: list[Action], step: Step) -> None:
        failed: list[Reply] = []
        for action in actions:
            if isinstance(action, Reply):
                if self._on_reply(action, step):
                    failed.append(action)
            elif isinstance(action, Deliver):
                assert len(set(action.conns)) == len(action.conns), action
                message = decode(action.payload)
                for conn in action.conns:
                    assert conn in self.streams, f"delivery to closed or unknown stream {conn}"
                    owner = self.streams[conn]
                    assert owner is not None, f"delivery to stream {conn} with no session"
                    assert owner.bound == conn, f"delivery to {owner} on stale stream {conn}"
                    self._deliver(owner, message)
            elif isinstance(action, Close):
                assert action.conn in self.streams, f"Close of unknown stream {action.conn}"
                step.closes.append(action.conn)
            elif isinstance(action, SessionExpired):
                self._died(action.client_id, "expired", step)
            elif isinstance(action, Disconnected):
                self._died(action.client_id, action.reason.value, step)
            elif isinstance(action, Subscribed):
                step.subscribed.add((action.client_id, action.channel))
            elif isinstance(action, Unsubscribed):
                step.unsubscribed.add((action.client_id, action.channel))
            elif isinstance(action, Handshaken):
                step.handshaken.append(action.client_id)
            elif isinstance(action, Published):
                step.published += 1
            else:
                assert isinstance(action, QueueOverflow), f"unexpected action {action!r}"
                assert action.client_id not in step.dropped
                step.dropped[action.client_id] = action.dropped
        for reply in failed:
            self.engine.reply_failed(reply, now=self.input_now)
            step.write_failed = True
            # Back in the queue, which keeps its cap.
            assert reply.client_id is not None
            client = self.by_cid(reply.client_id)
            excess = len(client.pending) - self.config.max_queue
            if excess > 0:
                if self.config.overflow is OverflowPolicy.DISCONNECT:
                    self.overflowing.add(client.cid)
                else:
                    del client.pending[:excess]
                    self.dropped[client.cid] += excess
            self._process(self.engine.actions_to_send(), step)

    def _on_reply(self, reply: Reply, step: Step) -> bool:
        """Check one Reply; True if the model makes writing it fail."""
        conn = reply.conn
        owner: Client | None
        if conn in self.requests:
            owner = self.requests.pop(conn)
            self.finished.add(conn)
            request = True
        else:
            assert conn not in self.finished, f"second reply, or reply after close, on {conn}"
            assert conn in self.streams, f"reply on unknown or closed connection {conn}"
            owner = self.streams[conn]
            request = False
        body = decode(reply.body)
        assert type(body) is list
        deliveries = [m for m in body if "data" in m and "successful" not in m]
        metas = [m for m in body if not ("data" in m and "successful" not in m)]
        # Deliveries come after the replies, and are exactly reply.messages.
        assert body == metas + deliveries, body
        assert [decode(m) for m in reply.messages] == deliveries, reply
        for message in metas:
            mid = message.get("id")
            if mid is None:
                step.anonymous.append(message)
                continue
            assert mid in self.sent, f"reply to a message never sent: {message}"
            assert mid not in self.answered, f"message {mid} answered twice"
            assert self.sent[mid] == conn, f"reply to {mid} on the wrong connection {conn}"
            self.answered.add(mid)
            step.answers[mid] = message
            if owner is not None and owner.held == (conn, mid):
                owner.held = None
                step.released.add(owner.cid)
                if owner.alive:
                    owner.expiry = self.now + owner.interval + SESSION_TIMEOUT
        if not deliveries:
            return False
        assert owner is not None, f"deliveries on {conn}, which belongs to no client"
        assert reply.client_id == owner.cid, reply
        if request and self.fail_next_write:
            self.fail_next_write = False
            # Not received: check they would have been valid, then re-queue.
            seqs = [m["data"]["seq"] for m in deliveries]
            assert seqs == owner.pending[: len(seqs)], (seqs, owner.pending)
            return True
        for message in deliveries:
            self._deliver(owner, message)
        return False

    def _deliver(self, client: Client, message: dict[str, Any]) -> None:
        seq = message["data"]["seq"]
        channel, publisher = self.published[seq]
        assert message == {"channel": channel, "data": {"seq": seq, "by": publisher}}
        assert client.alive, f"{client} got {seq} after its session ended"
        assert seq not in client.received, f"{client} got {seq} twice"
        assert seq in client.pending, (
            f"{client} got {seq} on {channel}, but was not subscribed to it when published"
        )
        same_publisher = [s for s in client.pending if self.published[s][1] == publisher]
        assert same_publisher[0] == seq, (
            f"{client} got {seq} from {publisher} before {same_publisher[0]}"
        )
        assert client.pending[0] == seq, f"{client} got {seq} before {client.pending[0]}"
        client.pending.remove(seq)
        client.received.append(seq)

    def _died(self, cid: str, how: str, step: Step) -> None:
        client = self.by_cid(cid)
        assert client.alive, f"{client} ended twice"
        assert client.held is None, f"{client} ended with its connect left unanswered"
        assert cid not in step.died
        step.died[cid] = how
        step.ended_subs[cid] = set(client.subs)
        client.alive = False
        client.pending.clear()
        client.subs.clear()

    def _close_stream(self, conn: int) -> None:
        self.engine.close(conn, now=self.input_now)
        owner = self.streams.pop(conn)
        self.closed_streams.add(conn)
        if owner is None:
            return
        owner.streams.remove(conn)
        if owner.bound == conn:
            owner.bound = None
        if owner.held is not None and owner.held[0] == conn:
            # Dropped without a reply: the session counts down from now.
            owner.held = None
            owner.expiry = self.now + owner.interval + SESSION_TIMEOUT

    def check_unchanged(self, step: Step, *, answers: int = 1) -> None:
        """Nothing but ``answers`` replies happened."""
        assert len(step.answers) == answers, step
        step.none_of("anonymous", "died", "subscribed", "unsubscribed")
        step.none_of("handshaken", "closes", "released")

    def answer(self, step: Step, mid: str) -> dict[str, Any]:
        assert mid in step.answers, f"message {mid} not answered: {step}"
        return step.answers[mid]

    def check_unknown_client(self, reply: dict[str, Any], connect: bool = False) -> None:
        assert reply["successful"] is False
        assert reply["error"].startswith("401:"), reply
        if connect:
            assert reply["advice"]["reconnect"] == "handshake", reply

    # ---------------------------------------------------------------- rules

    def pick(self, who: int) -> Client:
        live = self.live()
        return live[who % len(live)]

    def wanted(self) -> list[str]:
        """The channels some live client is subscribed to."""
        return [ch for ch in CHANNELS if self.recipients(ch)]

    @initialize(
        transports=st.lists(st.sampled_from([LP, WS, ES]), min_size=1, max_size=3),
        patterns=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=2),
    )
    def start(self, transports: list[str], patterns: list[str]) -> None:
        """Every run starts with a few connected, subscribed clients."""
        for transport in transports:
            self.handshake(transport, False, patterns, True)

    @precondition(lambda self: len(self.live()) < MAX_LIVE)
    @rule(
        transport=st.sampled_from([LP, WS, ES]),
        via_stream=st.booleans(),
        patterns=st.lists(st.sampled_from(PATTERNS), max_size=2),
        connect=st.booleans(),
    )
    def handshake(
        self, transport: str, via_stream: bool, patterns: list[str], connect: bool
    ) -> None:
        """A new client, which may subscribe and connect right away."""
        self.ids_made += 1
        cid = f"c{self.ids_made:030d}"
        conn = self.new_stream(None) if transport == WS and via_stream else self.request_conn(None)
        mid = self.msg_id(conn)
        step = self.send(
            conn,
            [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": [transport],
                    "id": mid,
                }
            ],
        )
        reply = self.answer(step, mid)
        assert reply["successful"] is True, reply
        assert reply["clientId"] == cid, reply
        assert step.handshaken == [cid]
        client = Client(cid, transport, expiry=self.now + INTERVAL + SESSION_TIMEOUT)
        self.all.append(client)
        if conn in self.streams:
            self.streams[conn] = client
            client.streams.append(conn)
        if patterns:
            self._subscription(client, patterns, True, True)
        if connect:
            self._connect(client, None, 1, None)

    @precondition(lambda self: bool(self.live()))
    @rule(advice=ADVICE)
    def everyone_polls(self, advice: int | None) -> None:
        """Each client without a connect held sends one, as a live client does."""
        for client in self.live():
            if client.alive and client.held is None:
                self._connect(client, advice, 1, None)

    @precondition(lambda self: bool(self.live()))
    @rule(who=WHO, advice=ADVICE, stream=st.integers(0, 3))
    def connect(self, who: int, advice: int | None, stream: int) -> None:
        self._connect(self.pick(who), advice, stream, None)

    @precondition(lambda self: bool(self.live()))
    @rule(who=WHO, advice=ADVICE, stream=st.integers(0, 3), index=st.integers(0, 20))
    def connect_and_publish(self, who: int, advice: int | None, stream: int, index: int) -> None:
        """A connect and a publish by the same client in one batch."""
        channels = self.wanted() or CHANNELS
        self._connect(self.pick(who), advice, stream, channels[index % len(channels)])

    def _connect(
        self, client: Client, advice: int | None, stream: int, channel: str | None
    ) -> None:
        if client.transport == WS:
            # 0: a new stream; otherwise one of the client's open streams.
            conn = (
                client.streams[stream % len(client.streams)]
                if stream and client.streams
                else self.new_stream(client)
            )
        else:
            conn = self.request_conn(client)
        mid = self.msg_id(conn)
        message: dict[str, Any] = {
            "channel": "/meta/connect",
            "clientId": client.cid,
            "connectionType": client.transport,
            "id": mid,
        }
        if advice is not None:
            message["advice"] = {"timeout": advice}
        batch = [message]
        publish_id = None
        if channel is not None:
            publish_id = self.msg_id(conn)
            batch.append(self.publication(channel, client.cid, publish_id))
        if not client.alive:
            if channel is not None:
                self.route(channel, client.cid)  # anyone may publish
            step = self.send(conn, batch)
            self.check_unknown_client(self.answer(step, mid), connect=True)
            self.check_unchanged(step, answers=len(batch))
            return
        old = client.held
        hold = TIMEOUT if advice is None else min(TIMEOUT, advice / 1000)
        client.interval = TIMEOUT if client.transport == ES else INTERVAL
        now = not client.connected or client.transport == ES or hold <= 0 or bool(client.pending)
        if channel is not None and client.transport != WS:
            # A message queued for the client by its own batch rides along.
            now = now or client in self.recipients(channel)
        client.connected = True
        if client.transport == WS:
            client.bound = conn
        if publish_id is not None:
            # After the connect: a WebSocket client is bound to its stream by
            # now, and a connect answered at once has taken the queue.
            assert channel is not None
            self.route(channel, client.cid, flushed=client if now else None)
        step = self.send(conn, batch)
        assert step.published == (publish_id is not None)
        if publish_id is not None and (now or client.transport == WS):
            # (The reply to a publish that shares a request with a held connect
            # waits with it.)
            assert self.answer(step, publish_id)["successful"] is True
        if old is not None:
            # Replaced: answered now, with nothing (there was nothing queued).
            assert client.cid in step.released, step
            assert old[1] in step.answers, step
            assert step.answers[old[1]]["successful"] is True
        assert not step.died, step
        if now:
            reply = self.answer(step, mid)
            assert reply["successful"] is True, reply
            assert reply["advice"]["reconnect"] == "retry", reply
            assert client.held is None
            client.expiry = self.now + client.interval + SESSION_TIMEOUT
            if not step.write_failed:
                # Only what its own batch published after the connect may wait.
                late = [max(self.published)] if channel is not None else []
                assert set(client.pending) <= set(late), f"{client}: answered without its queue"
        else:
            assert mid not in step.answers, f"{client}: connect answered instead of held"
            client.held = (conn, mid)
            client.held_deadline = self.now + hold

    @precondition(lambda self: bool(self.live()))
    @rule(
        who=WHO,
        patterns=st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3),
        as_list=st.booleans(),
        subscribe=st.booleans(),
    )
    def subscription(self, who: int, patterns: list[str], as_list: bool, subscribe: bool) -> None:
        self._subscription(self.pick(who), patterns, as_list, subscribe)

    def _subscription(
        self, client: Client, patterns: list[str], as_list: bool, subscribe: bool
    ) -> None:
        conn = self.via(client)
        mid = self.msg_id(conn)
        subscription: str | list[str] = patterns if as_list or len(patterns) > 1 else patterns[0]
        channel = "/meta/subscribe" if subscribe else "/meta/unsubscribe"
        step = self.send(
            conn,
            [{"channel": channel, "clientId": client.cid, "subscription": subscription, "id": mid}],
        )
        reply = self.answer(step, mid)
        if not client.alive:
            self.check_unknown_client(reply)
            self.check_unchanged(step)
            return
        assert reply["successful"] is True, reply
        assert reply["subscription"] == subscription
        before = set(client.subs)
        if subscribe:
            client.subs.update(p for p in patterns if not is_service(p))
        else:
            client.subs.difference_update(patterns)
        assert step.subscribed == {(client.cid, p) for p in client.subs - before}
        assert step.unsubscribed == {(client.cid, p) for p in before - client.subs}
        step.none_of("died", "released")

    def via(self, client: Client) -> int:
        """A WebSocket client sends on its stream if it has one; others use HTTP."""
        if client.transport == WS and client.streams:
            return client.bound if client.bound is not None else client.streams[-1]
        return self.request_conn(client)

    def publication(self, channel: str, publisher: str, mid: str | None) -> dict[str, Any]:
        """A publish message; the model learns its sequence number."""
        seq = next(self._seqs)
        self.published[seq] = (channel, publisher)
        message: dict[str, Any] = {"channel": channel, "data": {"seq": seq, "by": publisher}}
        if mid is not None:
            message["id"] = mid
        if publisher not in ("server", "anonymous"):
            message["clientId"] = publisher
        return message

    def route(self, channel: str, publisher: str, flushed: Client | None = None) -> None:
        """The model's routing of the last publication: who must receive it.

        ``flushed``: a client whose queue the same batch has just taken.
        """
        seq = max(self.published)
        assert self.published[seq] == (channel, publisher)
        cap = self.config.max_queue
        for client in self.recipients(channel):
            queued = 0 if client is flushed else len(client.pending)
            if client.bound is None and queued >= cap:
                if self.config.overflow is OverflowPolicy.DISCONNECT:
                    self.overflowing.add(client.cid)
                    continue
                client.pending.pop(0)
                self.dropped[client.cid] += 1
            client.pending.append(seq)

    def recipients(self, channel: str) -> list[Client]:
        """Who gets a publish to ``channel``, by the model (``/service`` is not routed)."""
        if is_service(channel):
            return []
        return [c for c in self.live() if any(matches(p, channel) for p in c.subs)]

    def source(self, source: int | str) -> Client | str:
        if isinstance(source, str):
            return source
        return self.pick(source) if self.live() else "anonymous"

    @rule(source=SOURCE, channel=st.sampled_from(CHANNELS))
    def publish(self, source: int | str, channel: str) -> None:
        self._publish(self.source(source), channel)

    @precondition(lambda self: any(c.subs for c in self.live()))
    @rule(source=SOURCE, index=st.integers(0, 20))
    def publish_to_subscriber(self, source: int | str, index: int) -> None:
        """Publish on a channel that some live client is subscribed to."""
        wanted = self.wanted()
        self._publish(self.source(source), wanted[index % len(wanted)])

    def _publish(self, source: Client | str, channel: str) -> None:
        if source == "server" and is_service(channel):
            channel = "/a"  # the server cannot publish to /service
        publisher = source.cid if isinstance(source, Client) else source
        if source == "server":
            message = self.publication(channel, publisher, None)
            self.route(channel, publisher)
            self.engine.publish(channel, message["data"], now=self.input_now)
            step = self.pump()
        else:
            conn = self.via(source) if isinstance(source, Client) else self.request_conn(None)
            mid = self.msg_id(conn)
            message = self.publication(channel, publisher, mid)
            self.route(channel, publisher)
            step = self.send(conn, [message])
            assert self.answer(step, mid)["successful"] is True
        assert step.published == 1
        step.none_of("died", "subscribed", "unsubscribed")
        seq = max(self.published)
        for cid in step.released:
            # Answered early for a reason: it carried this message.
            assert step.write_failed or self.by_cid(cid).received[-1:] == [seq], cid

    @precondition(lambda self: len(self.live()) >= 3)  # (else few sessions live long)
    @rule(who=WHO, on_stream=st.booleans())
    def disconnect(self, who: int, on_stream: bool) -> None:
        self._disconnect(self.pick(who), on_stream)

    @precondition(lambda self: any(not c.alive for c in self.all))
    @rule(
        index=st.integers(0, 20),
        kind=st.sampled_from(["connect", "subscribe", "unsubscribe", "disconnect", "publish"]),
    )
    def ghost(self, index: int, kind: str) -> None:
        """A client whose session ended carries on: 401, and its publishes are anonymous."""
        dead = [c for c in self.all if not c.alive]
        client = dead[index % len(dead)]
        if kind == "connect":
            self._connect(client, None, 0, None)
        elif kind == "publish":
            self._publish(client, CHANNELS[index % len(CHANNELS)])
        elif kind == "disconnect":
            self._disconnect(client, False)
        else:
            self._subscription(client, ["/**"], False, kind == "subscribe")

    def _disconnect(self, client: Client, on_stream: bool) -> None:
        conn = self.via(client) if on_stream else self.request_conn(client)
        mid = self.msg_id(conn)
        alive, bound, held, subs = client.alive, client.bound, client.held, set(client.subs)
        step = self.send(conn, [{"channel": "/meta/disconnect", "clientId": client.cid, "id": mid}])
        reply = self.answer(step, mid)
        if not alive:
            self.check_unknown_client(reply)
            self.check_unchanged(step)
            return
        assert reply["successful"] is True, reply
        assert step.died == {client.cid: DisconnectReason.CLIENT.value}, step
        assert step.unsubscribed == {(client.cid, p) for p in subs}
        if held is not None:
            # retry, as Faye: the disconnect may not come from the client itself
            assert step.answers[held[1]]["advice"]["reconnect"] == "retry"
        if bound is not None and bound != conn:
            assert step.closes == [bound], step
        else:
            assert step.closes == [], step

    @precondition(lambda self: any(c.held and c.held[0] in self.requests for c in self.all))
    @rule(index=st.integers(0, MAX_LIVE))
    def vanish(self, index: int) -> None:
        """The client of a held long-polling request goes away."""
        held = [c for c in self.all if c.held and c.held[0] in self.requests]
        client = held[index % len(held)]
        assert client.held is not None
        conn = client.held[0]
        self.engine.close(conn, now=self.input_now)
        del self.requests[conn]
        self.finished.add(conn)
        self.vanished.add(conn)
        client.held = None
        client.expiry = self.now + client.interval + SESSION_TIMEOUT
        self.check_unchanged(self.pump(), answers=0)

    @precondition(lambda self: bool(self.streams))
    @rule(index=st.integers(0, 10))
    def close_stream(self, index: int) -> None:
        conns = sorted(self.streams)
        self._close_stream(conns[index % len(conns)])
        self.check_unchanged(self.pump(), answers=0)

    @precondition(lambda self: any(c.transport == ES for c in self.all))
    @rule(index=st.integers(0, 10))
    def open_eventsource(self, index: int) -> None:
        """An EventSource stream names its client up front."""
        candidates = [c for c in self.all if c.transport == ES]
        client = candidates[index % len(candidates)]
        conn = next(self._conns)
        ok = self.engine.open_stream(conn, now=self.input_now, client_id=client.cid)
        assert ok is client.alive
        self.streams[conn] = client
        client.streams.append(conn)
        if ok:
            client.bound = conn
        step = self.pump()
        if not ok:
            self._close_stream(conn)  # the network layer refuses it
        self.check_unchanged(step, answers=0)
        assert client.pending == [], f"{client}: queue not flushed down its new stream"

    @rule()
    def next_write_fails(self) -> None:
        """The next reply that carries deliveries on a request cannot be written."""
        self.fail_next_write = True

    @rule(skew=st.sampled_from([0.0, 0.5, 3.0]))
    def clock_skew(self, skew: float) -> None:
        """Inputs pass a stale ``now``: the engine must keep its latest time."""
        self.skew = skew

    @rule(
        seconds=st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 16.0]),
        mode=st.sampled_from(["each", "late", "jump"]),
    )
    def advance(self, seconds: float, mode: str) -> None:
        """Time passes; the timer is handled at each deadline, late, or once at the end."""
        target = self.now + seconds
        if mode != "jump":
            for _ in range(100):
                when = self.engine.get_timer()
                if when is None or when > target:
                    break
                if mode == "late":
                    when = min(when + 0.25, target)
                self.fire(when)
            else:
                raise AssertionError("the timer does not make progress")
        self.fire(target)

    def fire(self, when: float) -> None:
        assert when >= self.now
        self.now = when
        due_held = {c.cid for c in self.live() if c.held and c.held_deadline <= when}
        due_expiry = {c.cid for c in self.live() if not c.held and c.expiry <= when}
        held = {c.cid: c.held for c in self.live() if c.held}
        self.engine.handle_timer(when)
        step = self.pump()
        assert step.released == due_held, f"at {when}: released {step.released}, due {due_held}"
        for cid in due_held:
            reply = step.answers[held[cid][1]]
            assert reply["successful"] is True
            assert reply["advice"]["reconnect"] == "retry"
        assert step.died == dict.fromkeys(due_expiry, "expired"), f"at {when}: {step.died}"
        connects = [m for m in step.answers.values() if m["channel"] == "/meta/connect"]
        assert len(connects) == len(due_held), step
        step.none_of("subscribed", "handshaken", "anonymous")

    # ----------------------------------------------------------- invariants

    @invariant()
    def sessions_match_the_model(self) -> None:
        assert {s.client_id for s in self.engine.store} == {c.cid for c in self.live()}

    @invariant()
    def nothing_waits_that_could_be_sent(self) -> None:
        for client in self.live():
            if client.bound is not None or client.held is not None:
                assert client.pending == [], f"{client} has {client.pending} undelivered"
            sessions = [s for s in self.engine.store if s.client_id == client.cid]
            assert sorted(s.subscriptions for s in sessions) == [client.subs]

    @invariant()
    def every_request_is_answered_or_held(self) -> None:
        held = {c.held[0] for c in self.live() if c.held}
        assert set(self.requests) <= held, f"unanswered requests {set(self.requests) - held}"
        held_ids = {c.held[1] for c in self.live() if c.held}
        for mid, conn in self.sent.items():
            if mid in self.answered or conn in self.vanished or conn in self.closed_streams:
                continue
            # A held request keeps the replies of its batch; a stream only its connect's.
            assert mid in held_ids or (conn in held and conn in self.requests), f"{mid} unanswered"

    @invariant()
    def timer_is_the_next_deadline(self) -> None:
        deadlines = [c.held_deadline if c.held else c.expiry for c in self.live()]
        when = self.engine.get_timer()
        if not deadlines:
            assert when is None
        else:
            assert when == min(deadlines), (when, sorted(deadlines))
            assert when > self.now, "a deadline was left behind"


class DropOldestModel(EngineModel):
    """Tiny queues that drop their oldest message when full."""

    config = replace(CONFIG, max_queue=2, overflow=OverflowPolicy.DROP_OLDEST)


class DisconnectOnOverflowModel(EngineModel):
    """Tiny queues whose overflow ends the session."""

    config = replace(CONFIG, max_queue=2, overflow=OverflowPolicy.DISCONNECT)


# About 15 s in all under coverage on a 2-core machine (the main model gets most).
SETTINGS = settings(
    max_examples=50,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineModel = EngineModel.TestCase
TestEngineModel.settings = settings(SETTINGS, max_examples=100)
TestDropOldest = DropOldestModel.TestCase
TestDropOldest.settings = SETTINGS
TestDisconnectOnOverflow = DisconnectOnOverflowModel.TestCase
TestDisconnectOnOverflow.settings = SETTINGS


# ------------------------------------------------------------ regressions


def test_queued_messages_go_before_pushes_of_the_same_frame() -> None:
    """Found by the model: a WebSocket frame ``[connect, publish]`` pushed the new
    message before the queued ones, which rode with the connect reply at the end."""
    wire = Wire(CONFIG)
    cid = wire.handshake((WS,))
    wire.send([{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/a"}])
    wire.send([{"channel": "/a", "clientId": cid, "data": 1}])  # queued: no stream yet
    wire.engine.open_stream(100, now=wire.now)
    actions = wire.send(
        [
            {"channel": "/meta/connect", "clientId": cid, "connectionType": WS},
            {"channel": "/a", "clientId": cid, "data": 2},
        ],
        conn=100,
    )
    pushed: list[Any] = []
    for action in actions:
        if isinstance(action, Reply):
            assert action.conn == 100
            pushed += [m["data"] for m in decode(action.body) if "successful" not in m]
        elif isinstance(action, Deliver):
            pushed.append(decode(action.payload)["data"])
    assert pushed == [1, 2]
    assert [m["channel"] for m in replies(actions) if m.get("successful")] == [
        "/meta/connect",
        "/a",
    ]
