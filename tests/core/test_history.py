"""Per-channel history and recovery in the engine (bayeux_core._history)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeux_core import (
    Broadcast,
    ClientSession,
    Deliver,
    Engine,
    EngineConfig,
    Extension,
    HistoryPolicy,
    MessageContext,
    MessageReceived,
    Reply,
    SubscriptionRecovered,
)
from bayeux_core._history import REASONS, History, Recovery, parse_position

from .helpers import Wire, replies

CHAT = {"/chat/*": HistoryPolicy(size=5)}


def wire(history: dict[str, HistoryPolicy] | None = None, **kw: Any) -> Wire:
    return Wire(EngineConfig(history=CHAT if history is None else history, **kw))


def subscribe(w: Wire, client_id: str, channel: Any, since: Any = None, **more: Any) -> list[Any]:
    message: dict[str, Any] = {"channel": "/meta/subscribe", "clientId": client_id}
    message["subscription"] = channel
    if since is not None:
        message["ext"] = {"history": {"since": since}}
    message.update(more)
    return replies(w.send([message]))


def position_of(delivery: dict[str, Any]) -> str:
    position = delivery["ext"]["history"]["position"]
    assert isinstance(position, str)
    return position


# ---------------------------------------------------------------- policies


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "3"])
def test_policy_refuses_bad_sizes(size: Any) -> None:
    with pytest.raises(ValueError, match="size"):
        HistoryPolicy(size=size)


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), True, "5"])
def test_policy_refuses_bad_ttls(ttl: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        HistoryPolicy(size=1, ttl=ttl)


def test_policy_accepts_good_values() -> None:
    assert HistoryPolicy(size=3, ttl=2).ttl == 2
    assert HistoryPolicy(size=3).ttl is None


@pytest.mark.parametrize(
    ("history", "match"),
    [
        ([("/a", HistoryPolicy(size=1))], "mapping"),
        ({"a/b": HistoryPolicy(size=1)}, "valid channel pattern"),
        ({"/a": 5}, "HistoryPolicy"),
    ],
)
def test_config_refuses_bad_history(history: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EngineConfig(history=history)


@pytest.mark.parametrize("value", [0, 1.0, True])
def test_config_refuses_bad_history_channels(value: Any) -> None:
    with pytest.raises(ValueError, match="history_channels"):
        EngineConfig(history_channels=value)


def test_most_specific_pattern_wins() -> None:
    small, mid, big, exact = (HistoryPolicy(size=n) for n in (1, 2, 3, 4))
    history = History({"/**": small, "/a/**": mid, "/a/b/*": big, "/a/b/c": exact}, 10)
    assert history.policy("/a/b/c") is exact
    assert history.policy("/a/b/d") is big
    assert history.policy("/a/b/d/e") is mid
    assert history.policy("/z") is small
    assert History({"/a/*": small}, 10).policy("/b") is None


def test_recovery_ext_shape() -> None:
    assert Recovery(True, "e:3").ext() == {"position": "e:3", "recovered": True}
    failed = Recovery(False, "e:3", reason="too old").ext()
    assert failed == {"position": "e:3", "recovered": False, "reason": "too old"}
    assert "too old" in REASONS


@pytest.mark.parametrize(
    "position", [None, 5, "", "5", ":5", "e:", "e:x", "e:-1", "e:\u0661", "e:" + "1" * 70]
)
def test_malformed_positions(position: object) -> None:
    assert parse_position(position)[1] is None


def test_parse_keeps_colons_in_the_epoch() -> None:
    assert parse_position("a:b:7") == ("a:b", 7)


# ------------------------------------------------------------------ engine


def test_publishes_carry_positions_and_keep_the_publishers_ext() -> None:
    w = wire()
    client = w.handshake()
    reply = subscribe(w, client, "/chat/a")
    epoch, _, top = reply[0]["ext"]["history"]["position"].rpartition(":")
    assert top == "0"
    conn = w.conn()
    w.engine.open_stream(conn, now=w.now)
    w.send(
        [{"channel": "/meta/connect", "clientId": client, "connectionType": "websocket"}], conn=conn
    )
    w.engine.publish("/chat/a", 1, now=w.now, ext={"token": "t", "history": "spoofed"})
    w.engine.publish("/chat/a", 2, now=w.now, ext=[1])
    w.engine.publish("/chat/a", 3, now=w.now)
    delivered = [
        orjson.loads(a.payload) for a in w.engine.actions_to_send() if isinstance(a, Deliver)
    ]
    assert [d["data"] for d in delivered] == [1, 2, 3]
    assert [position_of(d) for d in delivered] == [f"{epoch}:{n}" for n in (1, 2, 3)]
    assert delivered[0]["ext"]["token"] == "t"
    assert delivered[1]["ext"] == {"history": {"position": f"{epoch}:2"}}


def test_channels_without_history_are_untouched() -> None:
    w = wire()
    client = w.handshake()
    assert "ext" not in subscribe(w, client, "/news")[0]
    w.engine.publish("/news", 1, now=w.now)
    w.engine.publish("/nobody/listens", 1, now=w.now)
    w.engine.publish("/chat/empty", 1, now=w.now)  # kept though nobody listens
    (connect,) = [m for m in w_connect(w, client) if m.get("channel") == "/news"]
    assert "ext" not in connect
    assert len(w.engine._history or ()) == 1
    no_history = Wire()
    client = no_history.handshake()
    assert "ext" not in subscribe(no_history, client, "/chat/a", since="x:1")[0]


def test_unencodable_publish_to_history_channel_is_refused_without_effect() -> None:
    w = wire()
    client = w.handshake()
    before = subscribe(w, client, "/chat/a")[0]["ext"]["history"]["position"]
    with pytest.raises(Exception, match="encode"):
        w.engine.publish("/chat/a", object(), now=w.now)
    other = w.handshake()
    assert subscribe(w, other, "/chat/a")[0]["ext"]["history"]["position"] == before


def w_connect(w: Wire, client: str) -> list[dict[str, Any]]:
    return replies(
        w.send([{"channel": "/meta/connect", "clientId": client, "connectionType": "long-polling"}])
    )


def test_recover_after_losing_the_session() -> None:
    w = wire()
    first = w.handshake()
    position = subscribe(w, first, "/chat/a")[0]["ext"]["history"]["position"]
    w.engine.publish("/chat/a", "seen", now=w.now)
    (seen,) = [m for m in w_connect(w, first) if m.get("channel") == "/chat/a"]
    position = position_of(seen)
    w.send([{"channel": "/meta/disconnect", "clientId": first}])
    for n in range(3):
        w.engine.publish("/chat/a", n, now=w.now)
    again = w.handshake()
    reply, *missed = subscribe(w, again, "/chat/a", since=position, id="s")
    assert reply["successful"] is True
    assert reply["id"] == "s"
    history = reply["ext"]["history"]
    assert history["recovered"] is True
    assert [m["data"] for m in missed] == [0, 1, 2]
    assert history["position"] == position_of(missed[-1])
    # Caught up: nothing more, still recovered.
    reply, *missed = subscribe(w, w.handshake(), "/chat/a", since=history["position"])
    assert reply["ext"]["history"]["recovered"] is True
    assert missed == []


def test_too_old_epoch_changed_and_bad_positions() -> None:
    w = wire({"/chat/*": HistoryPolicy(size=2, ttl=10)})
    client = w.handshake()
    start = subscribe(w, client, "/chat/a")[0]["ext"]["history"]["position"]
    epoch = start.rpartition(":")[0]
    for n in range(3):
        w.engine.publish("/chat/a", n, now=w.now)

    def outcome(since: Any) -> dict[str, Any]:
        result: dict[str, Any] = subscribe(w, w.handshake(), "/chat/a", since=since)[0]
        history: dict[str, Any] = result["ext"]["history"]
        return history

    assert outcome(start) == {"position": f"{epoch}:3", "recovered": False, "reason": "too old"}
    assert outcome(f"{epoch}:1")["recovered"] is True
    assert outcome(f"{epoch}:4")["reason"] == "bad position"
    assert outcome("nonsense")["reason"] == "bad position"
    assert outcome("other:1")["reason"] == "epoch changed"
    w.now += 10  # everything expired: only a caught-up client recovers
    assert outcome(f"{epoch}:2")["reason"] == "too old"
    assert outcome(f"{epoch}:3")["recovered"] is True


def test_refusals_for_wildcards_lists_services_and_plain_channels() -> None:
    w = wire({"/chat/*": HistoryPolicy(size=2), "/service/**": HistoryPolicy(size=2)})
    client = w.handshake()

    def reason(subscription: Any, since: Any = "e:1") -> Any:
        reply = subscribe(w, client, subscription, since=since)[0]
        return reply.get("ext", {}).get("history", {}).get("reason")

    assert reason("/chat/*") == "wildcard"
    assert reason(["/chat/a", "/chat/b"]) == "several channels"
    assert reason(["/chat/c"], since=None) is None
    assert reason("/service/x") == "no history"
    assert reason("/plain") == "no history"
    assert reason("/plain", since=None) is None


def test_failed_subscribe_carries_no_history() -> None:
    w = wire(max_subscriptions=1)
    client = w.handshake()
    subscribe(w, client, "/chat/a")
    reply = subscribe(w, client, "/chat/b", since="e:0")[0]
    assert reply["successful"] is False
    assert "ext" not in reply


def test_live_subscription_recovers_nothing_twice() -> None:
    w = wire()
    client = w.handshake()
    start = subscribe(w, client, "/chat/a")[0]["ext"]["history"]["position"]
    w.engine.publish("/chat/a", 1, now=w.now)
    reply, *more = subscribe(w, client, "/chat/a", since=start)
    assert reply["ext"]["history"]["recovered"] is True
    assert more == []


def test_recovered_messages_follow_the_replies_on_a_stream() -> None:
    w = wire()
    start = subscribe(w, w.handshake(), "/chat/a")[0]["ext"]["history"]["position"]
    w.engine.publish("/chat/a", "x", now=w.now)
    client = w.handshake()
    conn = w.conn()
    w.engine.open_stream(conn, now=w.now)
    message = {
        "channel": "/meta/subscribe",
        "clientId": client,
        "subscription": "/chat/a",
        "ext": {"history": {"since": start}},
    }
    connect = {"channel": "/meta/connect", "clientId": client, "connectionType": "websocket"}
    actions = w.send([message, connect], conn=conn)
    (reply,) = [a for a in actions if isinstance(a, Reply)]
    assert reply.messages
    assert reply.client_id == client
    body = orjson.loads(reply.body)
    assert [m["channel"] for m in body] == ["/meta/subscribe", "/meta/connect", "/chat/a"]


def test_recovery_in_a_batch_that_already_carries_another_clients_queue() -> None:
    w = wire()
    start = subscribe(w, w.handshake(), "/chat/a")[0]["ext"]["history"]["position"]
    other = w.handshake()
    subscribe(w, other, "/news")
    w.engine.publish("/news", "n", now=w.now)
    w.engine.publish("/chat/a", "x", now=w.now)
    client = w.handshake()
    sub = {
        "channel": "/meta/subscribe",
        "clientId": client,
        "subscription": "/chat/a",
        "ext": {"history": {"since": start}},
    }
    connect = {"channel": "/meta/connect", "clientId": other, "connectionType": "long-polling"}
    body = replies(w.send([connect, sub]))
    assert [m["data"] for m in body if "data" in m] == ["n"]  # the other client's queue
    # The recovered message was queued for the recovering client instead.
    got = [m for m in w_connect(w, client) if "data" in m]
    assert [m["data"] for m in got] == ["x"]


class _Stamp(Extension):
    """Rewrites deliveries: recovered ones go through it too."""

    def outgoing(self, message: dict[str, Any], context: MessageContext) -> dict[str, Any] | None:
        if "data" in message and context.is_delivery:
            message["stamped"] = context.client_id
        return message


def test_recovered_messages_pass_rewriting_extensions() -> None:
    w = Wire(EngineConfig(history=CHAT), extensions=(_Stamp(),))
    start = subscribe(w, w.handshake(), "/chat/a")[0]["ext"]["history"]["position"]
    w.engine.publish("/chat/a", "x", now=w.now)
    client = w.handshake()
    subscribe(w, client, "/chat/a", since=start)
    got = [m for m in w_connect(w, client) if "data" in m]
    assert [(m["data"], m["stamped"]) for m in got] == [("x", client)]


def test_cluster_nodes_number_what_they_route() -> None:
    """Without a shared log, each node numbers what it routes on its own."""
    config = EngineConfig(history=CHAT)
    node = Engine(config, local_routing=False)
    node.publish("/chat/a", 1, now=0)
    (payload,) = [a.payload for a in node.actions_to_send() if isinstance(a, Broadcast)]
    assert b"history" not in payload
    node.route("/chat/a", payload, now=0)
    node.route("/other", b'{"channel":"/other","data":1}', now=0)
    assert node._history is not None
    assert node._history.retained() == 1
    assert node.numbered("/chat/a", payload, 7) == payload  # not shared
    plain = Engine(EngineConfig(), local_routing=False)
    assert plain.route("/chat/a", payload, now=0) == ()
    assert plain.share_history("E", 1) is False


def test_shared_history_numbers_by_log_offset() -> None:
    w = wire(history_channels=2)
    ids = iter(f"n{n:030d}" for n in range(1, 100))
    w.engine = Engine(
        EngineConfig(history=CHAT, history_channels=2),
        local_routing=False,
        client_id_generator=lambda: next(ids),
    )
    node = w.engine
    assert node.share_history("E", 100)

    def route(channel: str, data: Any, offset: int) -> None:
        body = orjson.dumps({"channel": channel, "data": data})
        node.route(channel, body, now=w.now, offset=offset)

    def ask(channel: str, since: str | None) -> tuple[dict[str, Any], list[Any]]:
        reply, *rest = subscribe(w, w.handshake(), channel, since=since)
        history: dict[str, Any] = reply["ext"]["history"]
        return history, [m["data"] for m in rest]

    assert ask("/chat/a", None)[0] == {"position": "E:100"}
    route("/chat/a", "x", 105)
    route("/chat/a", "y", 110)
    route("/other", "z", 111)
    assert ask("/chat/a", "E:100") == ({"position": "E:110", "recovered": True}, ["x", "y"])
    assert ask("/chat/a", "E:105")[1] == ["y"]
    assert ask("/chat/a", "E:111")[0]["reason"] == "bad position"
    assert ask("/chat/a", "E:99")[0]["reason"] == "too old"
    assert ask("/chat/b", None)[0] == {"position": "E:110"}  # a new stream: the log's latest
    numbered = orjson.loads(node.numbered("/chat/q", b'{"channel":"/chat/q","data":1}', 120))
    assert numbered["ext"] == {"history": {"position": "E:120"}}
    assert node.numbered("/other", b"{}", 120) == b"{}"
    # /chat/a is dropped (least recently used): a new stream knows nothing
    # up to the dropped one's latest offset.
    route("/chat/c", "c", 130)
    route("/chat/a", "again", 140)
    assert ask("/chat/a", "E:105")[0]["reason"] == "too old"
    assert ask("/chat/a", "E:110") == ({"position": "E:140", "recovered": True}, ["again"])


# -------------------------------------------------------------- properties


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(1, 6),
    ttl=st.none() | st.integers(1, 5),
    steps=st.lists(st.integers(0, 3), min_size=0, max_size=25),
    pick=st.integers(0, 30),
    wait=st.integers(0, 4),
)
def test_recovered_is_exactly_what_followed_the_position(
    size: int, ttl: int | None, steps: list[int], pick: int, wait: int
) -> None:
    """Recovered: exactly the messages after the position, in order; else none is lost silently."""
    w = wire({"/chat/a": HistoryPolicy(size=size, ttl=ttl)}, session_timeout=1e6)
    positions = [subscribe(w, w.handshake(), "/chat/a")[0]["ext"]["history"]["position"]]
    published: list[tuple[int, float]] = []  # (data, time)
    listener = w.handshake()
    subscribe(w, listener, "/chat/a")
    for n, gap in enumerate(steps):
        w.now += gap
        w.engine.publish("/chat/a", n, now=w.now)
        published.append((n, w.now))
    for message in w_connect(w, listener):
        if "data" in message:
            positions.append(position_of(message))
    assert len(positions) == len(published) + 1
    w.now += wait
    index = pick % len(positions)
    reply, *missed = subscribe(w, w.handshake(), "/chat/a", since=positions[index])
    after = published[index:]
    kept = published[-size:]
    recoverable = all(item in kept and (ttl is None or item[1] > w.now - ttl) for item in after)
    history = reply["ext"]["history"]
    assert history["recovered"] is recoverable
    if recoverable:
        assert [m["data"] for m in missed] == [n for n, _ in after]
        assert history["position"] == positions[-1]
    else:
        assert history["reason"] == "too old"
        assert missed == []


@settings(max_examples=60, deadline=None)
@given(
    channels=st.lists(st.integers(0, 20), min_size=1, max_size=60),
    size=st.integers(1, 4),
    cap=st.integers(1, 5),
)
def test_memory_stays_bounded(channels: list[int], size: int, cap: int) -> None:
    """At most ``history_channels`` streams of at most ``size`` messages each."""
    w = wire({"/chat/*": HistoryPolicy(size=size)}, history_channels=cap)
    history = w.engine._history
    assert history is not None
    for n in channels:
        w.engine.publish(f"/chat/c{n}", n, now=w.now)
        assert len(history) <= cap
        assert history.retained() <= cap * size
    # A dropped stream restarts under a new epoch: old positions are refused.
    client = w.handshake()
    name = f"/chat/c{channels[0]}"
    position = subscribe(w, client, name)[0]["ext"]["history"]["position"]
    for n in range(cap):
        w.engine.publish(f"/chat/other{n}", n, now=w.now)
    w.engine.publish(name, "again", now=w.now)
    reply = subscribe(w, w.handshake(), name, since=position)[0]
    assert reply["ext"]["history"]["reason"] == "epoch changed"


def test_config_history_is_frozen_and_hashable() -> None:
    source = {"/chat/*": HistoryPolicy(size=5)}
    config = EngineConfig(history=source)
    source["/other"] = HistoryPolicy(size=1)
    assert dict(config.history) == CHAT
    assert len(config.history) == 1
    assert config.history["/chat/*"].size == 5
    assert hash(config) == hash(EngineConfig(history=CHAT))
    assert config == EngineConfig(history=CHAT)
    assert "/chat/*" in repr(config)


# ------------------------------------------------------------------ client


def _pair(**config: Any) -> Any:
    from .test_client_engine import Pair

    return Pair(EngineConfig(history=CHAT, **config))


def _recovered(events: list[Any]) -> list[Any]:
    return [e for e in events if isinstance(e, SubscriptionRecovered)]


def test_client_recovers_after_its_session_expired() -> None:
    pair = _pair(session_timeout=30)
    alice = pair.start("/chat/a", "/chat/*")
    bob = pair.start()
    bob.publish("/chat/a", "seen", now=pair.now)
    pair.pump()
    assert [e.data for e in pair.take(alice) if isinstance(e, MessageReceived)] == ["seen"] * 1
    assert alice.positions["/chat/a"].endswith(":1")
    assert "/chat/*" not in alice.positions  # positions are per channel
    pair.cut(alice)
    pair.advance(40)  # the server forgot alice
    bob.publish("/chat/a", "missed 1", now=pair.now)
    bob.publish("/chat/a", "missed 2", now=pair.now)
    pair.pump()
    pair.restore(alice)
    pair.advance(10)
    events = pair.take(alice)
    assert _recovered(events) == [SubscriptionRecovered("/chat/a", True)]
    got = [e.data for e in events if isinstance(e, MessageReceived)]
    assert got == ["missed 1", "missed 2"]
    assert alice.positions["/chat/a"].endswith(":3")
    bob.publish("/chat/a", "live", now=pair.now)
    pair.pump()
    assert [e.data for e in pair.take(alice) if isinstance(e, MessageReceived)] == ["live"]


def test_client_is_told_when_a_restart_lost_the_history() -> None:
    pair = _pair()
    alice = pair.start("/chat/a")
    pair.restart(graceful=True)
    pair.advance(10)
    (event,) = _recovered(pair.take(alice))
    assert event == SubscriptionRecovered("/chat/a", False, "epoch changed")
    # The new stream's position replaces the old one.
    epoch = alice.positions["/chat/a"].rpartition(":")[0]
    assert alice.positions["/chat/a"] == f"{epoch}:0"


def test_client_subscribes_from_a_known_position_and_forgets_it() -> None:
    pair = _pair()
    bob = pair.start("/chat/a")
    start = bob.positions["/chat/a"]
    bob.publish("/chat/a", 1, now=pair.now)
    pair.pump()
    carol = pair.client()
    carol.subscribe("/chat/a", now=pair.now, since=start)
    carol.handshake(now=pair.now)
    pair.pump()
    events = pair.take(carol)
    assert _recovered(events) == [SubscriptionRecovered("/chat/a", True)]
    assert [e.data for e in events if isinstance(e, MessageReceived)] == [1]
    carol.unsubscribe("/chat/a", now=pair.now)
    assert carol.positions == {}
    bob.disconnect(now=pair.now)
    assert bob.positions == {}


def test_client_ignores_odd_history_fields() -> None:
    client = ClientSession()
    client.subscribe("/chat/a", now=0)
    for ext in (None, [1], {"other": 1}, {"history": 5}, {"history": {"position": 5}}):
        client._deliver({"channel": "/chat/a", "data": 1, "ext": ext})
        client._history_reply("/chat/a", {"successful": True, "ext": ext})
    assert client.positions == {}
    client._history_reply("/chat/a", {"ext": {"history": {"recovered": False, "reason": 3}}})
    assert client.events()[-1] == SubscriptionRecovered("/chat/a", False, None)


def test_an_acknowledged_session_takes_recovered_messages_in_a_numbered_batch() -> None:
    w = wire()
    start = subscribe(w, w.handshake(), "/chat/a")[0]["ext"]["history"]["position"]
    w.engine.publish("/chat/a", "x", now=w.now)
    (reply,) = replies(
        w.send(
            [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": ["long-polling"],
                    "ext": {"ack": True},
                }
            ]
        )
    )
    client = reply["clientId"]
    assert reply["ext"]["ack"] is True
    head, *rest = subscribe(w, client, "/chat/a", since=start)
    assert head["ext"]["history"]["recovered"] is True
    assert rest == []  # not in the subscribe's response: queued
    body = w_connect(w, client)
    (connect,) = [m for m in body if m.get("channel") == "/meta/connect"]
    assert isinstance(connect["ext"]["ack"], int)
    assert [m["data"] for m in body if "data" in m] == ["x"]
