"""Acknowledged delivery (CometD's ack extension) in the engine and ClientSession."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeux_core import (
    Action,
    ClientSession,
    Deliver,
    Engine,
    EngineConfig,
    Extension,
    Message,
    MessageContext,
    MessageReceived,
    Reply,
)

from .helpers import Wire, counter_ids, replies

CONNECT = {"channel": "/meta/connect", "connectionType": "long-polling"}


def ack_handshake(
    wire: Wire, ext: Any = None, types: tuple[str, ...] = ("long-polling",)
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": list(types),
    }
    message["ext"] = {"ack": True} if ext is None else ext
    (reply,) = replies(wire.send([message]))
    return reply


def setup(wire: Wire, conn_type: str = "long-polling", conn: int | None = None) -> str:
    """An acking session, connected and subscribed to /a."""
    reply = ack_handshake(wire, types=(conn_type,))
    assert reply["ext"] == {"ack": True}
    client_id: str = reply["clientId"]
    first = {"channel": "/meta/connect", "connectionType": conn_type, "clientId": client_id}
    subscribe = {"channel": "/meta/subscribe", "subscription": "/a", "clientId": client_id}
    found = replies(wire.send([first, subscribe], conn=conn))
    assert all(r["successful"] for r in found)
    assert "ext" not in found[0]  # nothing to number yet
    return client_id


def connect(client_id: str, ack: Any = ..., **extra: Any) -> dict[str, Any]:
    message = {**CONNECT, "clientId": client_id, **extra}
    if ack is not ...:
        message["ext"] = {"ack": ack}
    return message


def data_of(messages: list[dict[str, Any]]) -> list[Any]:
    return [m["data"] for m in messages if m.get("channel") == "/a"]


def connect_reply(messages: list[dict[str, Any]]) -> dict[str, Any]:
    (reply,) = [m for m in messages if m.get("channel") == "/meta/connect"]
    return reply


# ------------------------------------------------------------------ handshake


def test_handshake_agrees_only_when_asked() -> None:
    wire = Wire()
    assert ack_handshake(wire)["ext"] == {"ack": True}
    plain = wire.send(
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
            }
        ]
    )
    assert "ext" not in replies(plain)[0]
    # Anything but `true` is not a request (CometD sends a boolean).
    assert "ext" not in ack_handshake(wire, ext={"ack": 1})
    assert "ext" not in ack_handshake(wire, ext="ack")


def test_refused_when_switched_off() -> None:
    wire = Wire(EngineConfig(ack_extension=False))
    assert ack_handshake(wire)["ext"] == {"ack": False}


def test_agreed_by_a_cluster_node() -> None:
    # The bus moves the unacknowledged batch with the session (adopt(acked=)).
    ids = counter_ids()
    engine = Engine(local_routing=False, client_id_generator=lambda: next(ids))
    message = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        "ext": {"ack": True},
    }
    engine.receive(1, [message], now=0.0)
    (reply,) = replies(engine.actions_to_send())
    assert reply["successful"] is True
    assert reply["ext"] == {"ack": True}
    session = engine.store.get(reply["clientId"])
    assert session is not None
    assert session.ack


def test_config_checks_ack_extension() -> None:
    with pytest.raises(ValueError, match="ack_extension"):
        EngineConfig(ack_extension=1)  # type: ignore[arg-type]


class Stamp(Extension):
    """An outgoing extension that adds its own ext to every reply."""

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        ext = message.get("ext")
        message["ext"] = {**ext, "stamp": 1} if isinstance(ext, dict) else {"stamp": 1}
        return message


def test_ack_keeps_other_ext_of_a_reply() -> None:
    wire = Wire(extensions=(Stamp(),))
    assert ack_handshake(wire)["ext"] == {"ack": True, "stamp": 1}


# ------------------------------------------------------------- long-polling


def test_batches_are_numbered_and_kept_until_acknowledged() -> None:
    wire = Wire()
    client_id = setup(wire)
    wire.engine.publish("/a", 1, now=wire.now)
    wire.engine.publish("/a", 2, now=wire.now)
    first = replies(wire.send([connect(client_id, ack=0)]))
    assert connect_reply(first)["ext"] == {"ack": 1}
    assert data_of(first) == [1, 2]
    # The reply was lost: the next connect still says 0, and gets the same
    # batch, under the same number, before anything newer.
    wire.engine.publish("/a", 3, now=wire.now)
    again = replies(wire.send([connect(client_id, ack=0)]))
    assert connect_reply(again)["ext"] == {"ack": 1}
    assert data_of(again) == [1, 2]
    # Acknowledged: the newer message comes as batch 2.
    newer = replies(wire.send([connect(client_id, ack=1)]))
    assert connect_reply(newer)["ext"] == {"ack": 2}
    assert data_of(newer) == [3]
    # Acknowledged and nothing new: the connect is held, then times out
    # without a number (so a client's count never moves back).
    conn = wire.conn()
    assert wire.send([connect(client_id, ack=2)], conn=conn) == []
    timed_out = replies(wire.advance(wire.engine.config.timeout), conn)
    assert "ext" not in connect_reply(timed_out)
    assert data_of(timed_out) == []


@pytest.mark.parametrize("ack", [..., "1", True, 1.0, None])
def test_anything_but_the_batch_number_acknowledges_nothing(ack: Any) -> None:
    wire = Wire()
    client_id = setup(wire)
    wire.engine.publish("/a", 1, now=wire.now)
    assert data_of(replies(wire.send([connect(client_id, ack=0)]))) == [1]
    again = replies(wire.send([connect(client_id, ack=ack)]))
    assert data_of(again) == [1]


def test_ext_that_is_not_an_object_acknowledges_nothing() -> None:
    wire = Wire()
    client_id = setup(wire)
    wire.engine.publish("/a", 1, now=wire.now)
    wire.send([connect(client_id, ack=0)])
    again = replies(wire.send([{**connect(client_id), "ext": "x"}]))
    assert data_of(again) == [1]


def test_held_connect_is_released_with_a_numbered_batch() -> None:
    wire = Wire()
    client_id = setup(wire)
    conn = wire.conn()
    assert wire.send([connect(client_id, ack=0)], conn=conn) == []
    wire.engine.publish("/a", "x", now=wire.now)
    out = replies(wire.engine.actions_to_send(), conn)
    assert connect_reply(out)["ext"] == {"ack": 1}
    assert data_of(out) == ["x"]
    # The messages follow the reply that numbers them, in one body.
    assert out[0]["channel"] == "/meta/connect"


def test_replaced_connect_is_answered_without_a_number() -> None:
    wire = Wire()
    client_id = setup(wire)
    old = wire.conn()
    wire.send([connect(client_id, ack=0)], conn=old)
    wire.engine.publish("/a", "x", now=wire.now)
    # A newer connect arrives in the same batch as the publish is flushed.
    wire.engine.receive(wire.conn(), [connect(client_id, ack=0)], now=wire.now)
    actions = wire.engine.actions_to_send()
    old_reply = replies(actions, old)
    assert "ext" not in connect_reply(old_reply)
    assert data_of(old_reply) == []
    new_reply = [
        r for a in actions if isinstance(a, Reply) and a.conn != old for r in orjson.loads(a.body)
    ]
    assert connect_reply(new_reply)["ext"] == {"ack": 1}
    assert data_of(new_reply) == ["x"]


def test_failed_reply_is_not_queued_twice() -> None:
    wire = Wire()
    client_id = setup(wire)
    wire.engine.publish("/a", 1, now=wire.now)
    (reply,) = [a for a in wire.send([connect(client_id, ack=0)]) if isinstance(a, Reply)]
    wire.engine.reply_failed(reply, now=wire.now)
    again = replies(wire.send([connect(client_id, ack=0)]))
    assert data_of(again) == [1]
    assert data_of(replies(wire.send([connect(client_id, ack=1)]))) == []


def test_acknowledged_batch_does_not_count_against_the_queue() -> None:
    # The unacknowledged batch is held beside the queue: a full queue still
    # follows the overflow policy, and the batch is untouched by it.
    wire = Wire(EngineConfig(max_queue=2))
    client_id = setup(wire)
    for n in range(2):
        wire.engine.publish("/a", n, now=wire.now)
    assert data_of(replies(wire.send([connect(client_id, ack=0)]))) == [0, 1]
    for n in range(2, 5):
        wire.engine.publish("/a", n, now=wire.now)
    assert data_of(replies(wire.send([connect(client_id, ack=0)]))) == [0, 1]
    assert data_of(replies(wire.send([connect(client_id, ack=1)]))) == [3, 4]


# ------------------------------------------------------------------ streams


def test_websocket_deliveries_wait_for_the_connect() -> None:
    wire = Wire()
    ws = wire.conn()
    wire.engine.open_stream(ws, now=wire.now)
    client_id = setup(wire, "websocket", conn=ws)
    wire.send([{**connect(client_id, ack=0), "connectionType": "websocket"}], conn=ws)
    wire.engine.publish("/a", "x", now=wire.now)
    actions = wire.engine.actions_to_send()
    assert not [a for a in actions if isinstance(a, Deliver)]
    out = replies(actions, ws)
    assert connect_reply(out)["ext"] == {"ack": 1}
    assert data_of(out) == ["x"]
    # Published while no connect is held: queued, not pushed; the next
    # connect takes it in the same frame as its reply.
    wire.engine.publish("/a", "y", now=wire.now)
    assert not [a for a in wire.engine.actions_to_send() if isinstance(a, (Reply, Deliver))]
    frame = wire.send([{**connect(client_id, ack=1), "connectionType": "websocket"}], conn=ws)
    assert len([a for a in frame if isinstance(a, Reply)]) == 1
    out = replies(frame, ws)
    assert connect_reply(out)["ext"] == {"ack": 2}
    assert data_of(out) == ["y"]


class Tag(Extension):
    """Rewrites deliveries, so the engine copies each one per recipient."""

    rewrites_outgoing = True

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if context.is_delivery:
            message["data"] = f"{message['data']}!"
        return message


def test_per_recipient_deliveries_wait_for_the_connect() -> None:
    wire = Wire(extensions=(Tag(),))
    ws = wire.conn()
    wire.engine.open_stream(ws, now=wire.now)
    client_id = setup(wire, "websocket", conn=ws)
    wire.engine.publish("/a", "x", now=wire.now)
    assert not [a for a in wire.engine.actions_to_send() if isinstance(a, Deliver)]
    out = replies(
        wire.send([{**connect(client_id, ack=0), "connectionType": "websocket"}], conn=ws)
    )
    assert data_of(out) == ["x!"]


def test_eventsource_stream_does_not_flush_an_acking_queue() -> None:
    wire = Wire()
    client_id = setup(wire, "eventsource")
    wire.engine.publish("/a", "x", now=wire.now)
    assert wire.engine.open_stream(wire.conn(), now=wire.now, client_id=client_id)
    assert not [a for a in wire.engine.actions_to_send() if isinstance(a, (Reply, Deliver))]
    out = replies(wire.send([{**connect(client_id, ack=0), "connectionType": "eventsource"}]))
    assert connect_reply(out)["ext"] == {"ack": 1}
    assert data_of(out) == ["x"]


# --------------------------------------------------------------- the client


def test_client_asks_and_acknowledges() -> None:
    client = ClientSession(connection_types=["long-polling"], ack=True)
    client.handshake(now=0.0)
    (handshake,) = client.messages_to_send()
    assert handshake["ext"] == {"ack": True}
    client.receive(
        [{**handshake, "successful": True, "clientId": "c1", "ext": {"ack": True}}], now=0.0
    )
    assert client.acking
    (first,) = client.messages_to_send()
    assert first["ext"] == {"ack": 0}
    client.subscriptions["/a"] = True
    body = [
        {"channel": "/meta/connect", "id": first["id"], "successful": True, "ext": {"ack": 4}},
        {"channel": "/a", "data": 1},
    ]
    client.receive(body, now=0.0)
    (second,) = client.messages_to_send()
    assert second["ext"] == {"ack": 4}
    # A copy of batch 4 (a late or repeated reply): its deliveries are dropped,
    # and deliveries in other bodies are not.
    client.receive(body, now=0.0)
    client.receive([{"channel": "/a", "data": 2}], now=0.0)
    # A connect reply without a number changes nothing.
    client.receive([{"channel": "/meta/connect", "id": second["id"], "successful": True}], now=0.0)
    (third,) = client.messages_to_send()
    assert third["ext"] == {"ack": 4}
    data = [e.data for e in client.events() if isinstance(e, MessageReceived)]
    assert data == [1, 2]


def test_client_without_agreement_sends_no_ack() -> None:
    for ack, reply_ext in ((True, {"ack": False}), (True, None), (False, {"ack": True})):
        client = ClientSession(connection_types=["long-polling"], ack=ack)
        client.handshake(now=0.0)
        (handshake,) = client.messages_to_send()
        assert ("ext" in handshake) is ack
        reply: dict[str, Any] = {
            "channel": "/meta/handshake",
            "id": handshake["id"],
            "successful": True,
            "clientId": "c1",
        }
        if reply_ext is not None:
            reply["ext"] = reply_ext
        client.receive([reply], now=0.0)
        assert not client.acking
        (first,) = client.messages_to_send()
        assert "ext" not in first


# ----------------------------------------------------- random losses, end to end


class Sim:
    """An acking ClientSession and an Engine on a lossy network.

    Over long-polling each message the client sends goes on its own request
    connection; over WebSocket all go on one stream, which a lost frame
    closes (the server sees it close), and the next send opens another. Each
    reply, when it comes, is delivered, or lost after the server wrote it, or
    lost with the server told (``reply_failed``), or given up for lost by the
    client but handed to it late (after its next resends), as ``fates`` say in turn:
    the late ones are what the client's de-duplication is for.
    """

    def __init__(self, fates: list[int], transport: str = "long-polling") -> None:
        ids = counter_ids()
        config = EngineConfig(timeout=5.0, session_timeout=1_000.0)
        self.engine = Engine(config, client_id_generator=lambda: next(ids))
        self.client = ClientSession(connection_types=[transport], retry=1.0, ack=True)
        self.streaming = transport == "websocket"
        self.stream: int | None = None
        self.fates = iter(fates)
        self.now = 0.0
        self.received: list[Any] = []
        self.open: set[int] = set()
        self.late: list[Any] = []
        self._conns = iter(range(1, 1_000_000))

    def pump(self, actions: list[Action] | None = None) -> None:
        pending = list(actions or []) + self.engine.actions_to_send()
        for _ in range(1_000):
            for message in self.client.messages_to_send():
                self.engine.receive(self.connection(), [message], now=self.now)
            pending += self.engine.actions_to_send()
            if not pending:
                break
            # An acking session's deliveries are never pushed down a stream.
            assert not [a for a in pending if isinstance(a, Deliver)]
            for action in pending:
                if not isinstance(action, Reply):
                    continue
                if action.conn != self.stream:
                    self.open.discard(action.conn)
                fate = next(self.fates, 0)
                if fate == 0:
                    self.client.receive(orjson.loads(action.body), now=self.now)
                else:
                    if fate == 2:
                        self.engine.reply_failed(action, now=self.now)
                    elif fate == 3:
                        self.late.append(orjson.loads(action.body))
                    if action.conn == self.stream:
                        self.engine.close(self.stream, now=self.now)
                        self.open.discard(self.stream)
                        self.stream = None
                    self.client.transport_failed(now=self.now)
            pending = []
            self.collect()
        else:  # pragma: no cover - a livelock would be a bug
            raise AssertionError("the exchange never settled")

    def connection(self) -> int:
        """Where the client's next message goes."""
        if not self.streaming:
            conn = next(self._conns)
        elif self.stream is None:
            conn = self.stream = next(self._conns)
            self.engine.open_stream(conn, now=self.now)
        else:
            return self.stream
        self.open.add(conn)
        return conn

    def collect(self) -> None:
        for event in self.client.events():
            if isinstance(event, MessageReceived):
                self.received.append(event.data)

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.engine.handle_timer(self.now)
        self.client.handle_timer(self.now)
        self.pump()
        # After the client has sent its connect again, maybe been answered.
        late, self.late = self.late, []
        for body in late:
            self.client.receive(body, now=self.now)
        self.pump()

    def cut(self) -> None:
        """Every open connection drops (the server sees them close)."""
        for conn in sorted(self.open):
            self.engine.close(conn, now=self.now)
        self.open.clear()
        self.stream = None
        self.client.transport_failed(now=self.now)
        self.pump()


steps = st.lists(
    st.one_of(
        st.tuples(st.just("publish"), st.integers(1, 3)),
        st.tuples(st.just("tick"), st.sampled_from([0.5, 1.0, 3.0])),
        st.tuples(st.just("cut"), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(
    steps=steps,
    fates=st.lists(st.sampled_from([0, 0, 1, 2, 3]), max_size=60),
    transport=st.sampled_from(["long-polling", "websocket"]),
)
def test_every_message_arrives_once_in_order(
    steps: list[tuple[str, Any]], fates: list[int], transport: str
) -> None:
    sim = Sim([], transport)
    sim.client.subscribe("/a", now=0.0)
    sim.client.handshake(now=0.0)
    sim.pump()
    assert sim.client.acking
    assert sim.client.subscriptions == {"/a": True}
    sim.fates = iter(fates)
    published = 0
    for step, arg in steps:
        if step == "publish":
            for _ in range(arg):
                sim.engine.publish("/a", published, now=sim.now)
                published += 1
            sim.pump()
        elif step == "tick":
            sim.tick(arg)
        else:
            sim.cut()
    sim.fates = iter(())  # the network heals
    for _ in range(60):
        if len(sim.received) >= published:
            break
        sim.tick(1.0)
    assert sim.received == list(range(published))


def test_one_batch_per_body() -> None:
    # Two acking clients' connects in one request (a proxy might batch them):
    # the first takes its batch; the other is answered without one, and its
    # messages wait for its next connect.
    wire = Wire()
    first, second = setup(wire), setup(wire)
    wire.engine.publish("/a", "x", now=wire.now)
    out = replies(wire.send([connect(first, ack=0), connect(second, ack=0)]))
    numbered = [r for r in out if r.get("channel") == "/meta/connect" and "ext" in r]
    assert [(r["clientId"], r["ext"]) for r in numbered] == [(first, {"ack": 1})]
    assert data_of(out) == ["x"]
    later = replies(wire.send([connect(second, ack=0)]))
    assert connect_reply(later)["ext"] == {"ack": 1}
    assert data_of(later) == ["x"]
