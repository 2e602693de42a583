"""The engine inputs and outputs a cluster node uses (docs/redis.md).

``local_routing=False`` turns publishes into :class:`Broadcast` actions; the
bus feeds them back with :meth:`Engine.route`; a session moves between nodes
with :meth:`Engine.adopt` and :meth:`Engine.evict`.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bayeux_core import (
    Broadcast,
    Close,
    Deliver,
    Engine,
    EngineConfig,
    Extension,
    Handshaken,
    LocalProtocolError,
    MessageContext,
    OverflowPolicy,
    Published,
    QueueOverflow,
    Reply,
    SessionState,
    Subscribed,
    Unsubscribed,
)

from .helpers import Wire, events, replies


def node(config: EngineConfig | None = None, **kwargs: Any) -> Wire:
    wire = Wire(config, **kwargs)
    wire.engine = Engine(
        config,
        extensions=kwargs.get("extensions", ()),
        client_id_generator=wire.engine._new_id,
        local_routing=False,
    )
    return wire


def subscribe(wire: Wire, cid: str, channel: str, conn: int | None = None) -> None:
    wire.send([{"channel": "/meta/subscribe", "clientId": cid, "subscription": channel}], conn=conn)


def connect(
    wire: Wire, cid: str, conn: int | None = None, ctype: str = "long-polling"
) -> list[Any]:
    return wire.send(
        [{"channel": "/meta/connect", "clientId": cid, "connectionType": ctype}], conn=conn
    )


def test_a_publish_becomes_a_broadcast_and_is_not_routed() -> None:
    wire = node()
    cid = wire.handshake()
    subscribe(wire, cid, "/a")
    connect(wire, cid)
    held = wire.conn()
    assert connect(wire, cid, held) == []
    actions = wire.send([{"channel": "/a", "data": {"x": 1}, "clientId": cid, "id": "1"}])
    (broadcast,) = [a for a in actions if isinstance(a, Broadcast)]
    assert broadcast.channel == "/a"
    assert orjson.loads(broadcast.payload) == {"channel": "/a", "data": {"x": 1}}
    assert [type(e) for e in events(actions)] == [Published]
    assert replies(actions) == [{"id": "1", "clientId": cid, "channel": "/a", "successful": True}]
    # Nothing was queued: the held connect is still held.
    assert not any(isinstance(a, Reply) and a.conn == held for a in actions)
    assert not wire.engine.store.get(cid).queue  # type: ignore[union-attr]


def test_a_server_publish_becomes_a_broadcast_with_its_ext() -> None:
    wire = node()
    wire.engine.publish("/b", [1, 2], now=0.0, ext={"e": 1})
    actions = wire.engine.actions_to_send()
    assert isinstance(actions[0], Broadcast)
    assert orjson.loads(actions[0].payload) == {"channel": "/b", "data": [1, 2], "ext": {"e": 1}}
    with pytest.raises(LocalProtocolError):
        wire.engine.publish("/b", {1, 2}, now=0.0)
    assert wire.engine.actions_to_send() == []


def test_an_unencodable_client_publish_fails_without_a_broadcast() -> None:
    wire = node()
    cid = wire.handshake()
    wire.engine.receive(1000, [{"channel": "/a", "data": 1, "clientId": cid}], now=0.0)
    wire.engine._actions.clear()
    # orjson refuses integers above 64 bits.
    wire.engine.receive(1001, [{"channel": "/a", "data": 1 << 70, "clientId": cid}], now=0.0)
    actions = wire.engine.actions_to_send()
    assert not any(isinstance(a, Broadcast) for a in actions)
    assert replies(actions)[0]["successful"] is False


def test_route_queues_and_pushes_the_same_bytes() -> None:
    wire = node()
    polling = wire.handshake()
    streaming = wire.handshake(("websocket",))
    for cid in (polling, streaming):
        subscribe(wire, cid, "/a/*")
    connect(wire, polling)
    held = wire.conn()
    connect(wire, polling, held)
    ws = wire.conn()
    wire.engine.open_stream(ws, now=wire.now)
    connect(wire, streaming, ws, "websocket")
    payload = b'{"channel":"/a/b","data":1}'
    recipients = wire.engine.route("/a/b", payload, now=wire.now)
    assert {s.client_id for s in recipients} == {polling, streaming}
    actions = wire.engine.actions_to_send()
    (deliver,) = [a for a in actions if isinstance(a, Deliver)]
    assert deliver.payload is payload
    assert deliver.conns == [ws]
    (reply,) = [a for a in actions if isinstance(a, Reply) and a.conn == held]
    assert reply.messages == (payload,)
    assert events(actions) == []
    assert wire.engine.route("/nobody", payload, now=wire.now) == ()
    assert wire.engine.actions_to_send() == []


class Stamp(Extension):
    rewrites_outgoing = True

    def outgoing(self, message: dict[str, Any], context: MessageContext) -> dict[str, Any] | None:
        if context.is_delivery:
            message["to"] = context.client_id
        return message


def test_route_and_adopt_run_rewriting_extensions_per_recipient() -> None:
    wire = node(extensions=(Stamp(),))
    cid = wire.handshake()
    subscribe(wire, cid, "/a")
    connect(wire, cid)
    wire.engine.route("/a", b'{"channel":"/a","data":1}', now=wire.now)
    wire.engine.actions_to_send()
    (queued,) = wire.engine.store.get(cid).queue  # type: ignore[union-attr]
    assert orjson.loads(queued) == {"channel": "/a", "data": 1, "to": cid}
    wire.engine.adopt("moved", now=wire.now, backlog=[b'{"channel":"/a","data":2}'])
    (queued,) = wire.engine.store.get("moved").queue  # type: ignore[union-attr]
    assert orjson.loads(queued) == {"channel": "/a", "data": 2, "to": "moved"}


def test_adopt_installs_subscriptions_and_backlog_silently() -> None:
    wire = node()
    backlog = [b'{"channel":"/a","data":1}', b'{"channel":"/a","data":2}']
    session = wire.engine.adopt(
        "elsewhere", now=0.0, subscriptions=["/a", "/b/**"], backlog=backlog
    )
    assert session.state is SessionState.CONNECTED
    assert session.subscriptions == {"/a", "/b/**"}
    assert wire.engine.actions_to_send() == []
    # The next connect is answered at once with the backlog, in order.
    conn = wire.conn()
    actions = connect(wire, "elsewhere", conn)
    (reply,) = [a for a in actions if isinstance(a, Reply)]
    assert reply.messages == tuple(backlog)
    assert reply.client_id == "elsewhere"
    # Routing reaches it like any local session.
    held = wire.conn()
    assert connect(wire, "elsewhere", held) == []
    wire.engine.route("/b/c/d", b'{"channel":"/b/c/d","data":3}', now=wire.now)
    assert replies(wire.engine.actions_to_send(), held)[-1]["data"] == 3


def test_adopt_not_connected_answers_the_first_connect_at_once() -> None:
    wire = node()
    wire.engine.adopt("fresh", now=0.0, connected=False)
    actions = connect(wire, "fresh")
    assert replies(actions)[0]["successful"] is True
    assert wire.engine.store.get("fresh").state is SessionState.CONNECTED  # type: ignore[union-attr]


def test_adopted_session_expires_like_any_other() -> None:
    wire = node(EngineConfig(session_timeout=5))
    wire.engine.adopt("gone", now=0.0)
    assert wire.engine.get_timer() == 5.0
    actions = wire.advance(5.0)
    assert [type(e).__name__ for e in events(actions)] == ["SessionExpired"]


def test_adopt_applies_the_queue_cap() -> None:
    wire = node(EngineConfig(max_queue=2))
    backlog = [b'{"n":%d}' % n for n in range(3)]
    session = wire.engine.adopt("full", now=0.0, backlog=backlog)
    assert list(session.queue) == backlog[1:]
    assert wire.engine.actions_to_send() == [QueueOverflow("full", 1)]
    strict = node(EngineConfig(max_queue=1, overflow=OverflowPolicy.DISCONNECT))
    strict.engine.adopt("strict", now=0.0, backlog=backlog)
    assert strict.engine.store.get("strict") is None


@pytest.mark.parametrize("client_id", ["", 7, "taken"])
def test_adopt_refuses_a_bad_or_present_id(client_id: Any) -> None:
    wire = node()
    wire.engine.adopt("taken", now=0.0)
    with pytest.raises(LocalProtocolError):
        wire.engine.adopt(client_id, now=0.0)


def test_evict_answers_a_held_connect_without_messages_and_fires_nothing() -> None:
    wire = node()
    cid = wire.handshake()
    subscribe(wire, cid, "/a")
    connect(wire, cid)
    held = wire.conn()
    connect(wire, cid, held)
    wire.engine.route("/a", b'{"channel":"/a","data":1}', now=wire.now)
    # In the same pass as the delivery: the connect was marked for release.
    assert wire.engine.evict(cid, now=wire.now) is True
    actions = wire.engine.actions_to_send()
    (reply,) = [a for a in actions if isinstance(a, Reply)]
    assert reply.conn == held
    assert reply.messages == ()
    (answer,) = orjson.loads(reply.body)
    assert answer["successful"] is True
    assert answer["advice"]["reconnect"] == "retry"
    assert events(actions) == []
    assert wire.engine.store.get(cid) is None
    assert wire.engine.evict(cid, now=wire.now) is False
    assert wire.engine.evict(None, now=wire.now) is False  # type: ignore[arg-type]
    # Its connect conn is free again, and its client is unknown here now.
    assert replies(connect(wire, cid))[0]["error"].startswith("401:")


def test_evict_closes_a_bound_stream_and_the_stream_can_serve_another() -> None:
    wire = node()
    cid = wire.handshake(("websocket",))
    ws = wire.conn()
    wire.engine.open_stream(ws, now=wire.now)
    connect(wire, cid, ws, "websocket")
    assert wire.engine.evict(cid, now=wire.now)
    assert wire.engine.actions_to_send() == [Close(ws)]
    other = wire.handshake(("websocket",))
    assert replies(connect(wire, other, ws, "websocket"))[0]["successful"] is True
    wire.engine.close(ws, now=wire.now)


def test_evict_of_a_session_with_a_queue_drops_it_and_its_timers() -> None:
    wire = node(EngineConfig(session_timeout=5))
    cid = wire.handshake()
    subscribe(wire, cid, "/a")
    wire.engine.route("/a", b'{"channel":"/a","data":1}', now=wire.now)
    session = wire.engine.store.get(cid)
    assert session is not None
    assert wire.engine.evict(cid, now=wire.now)
    assert not session.queue
    assert events(wire.advance(100)) == []


def test_handshake_and_subscribe_events_still_fire_on_a_node() -> None:
    wire = node()
    cid = wire.handshake()
    actions = wire.send([{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/x"}])
    assert events(actions) == [Subscribed(cid, "/x")]
    actions = wire.send([{"channel": "/meta/disconnect", "clientId": cid}])
    assert Unsubscribed(cid, "/x") in events(actions)
    assert not isinstance(events(actions)[0], Handshaken)
