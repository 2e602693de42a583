"""Presence in the engine: members by user, join and leave on ``/presence<channel>``."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bayeux_core import (
    Deliver,
    Engine,
    EngineConfig,
    Extension,
    ExtensionFailed,
    LocalProtocolError,
    Message,
    MessageContext,
    PresenceEntered,
    PresenceExited,
    PresenceJoined,
    PresenceLeft,
    Reply,
    can_have_presence,
    presence_channel,
    presence_delivery,
    presence_probe,
    presence_target,
    probe_refusal,
    refuse,
)
from bayeux_core._presence import PresenceTracker, check_presence_patterns
from tests._support.presence import Names

from .helpers import LP, Wire, counter_ids, events, replies

ROOM = "/chat/room"
WATCH = "/presence/chat/room"
PRESENCE = EngineConfig(presence=("/chat/**",), timeout=10.0, session_timeout=5.0)


def wire(config: EngineConfig = PRESENCE, *extensions: Extension) -> Wire:
    return Wire(config, extensions=extensions or (Names(),))


def handshake(w: Wire, user: str | None = None, info: Any = None) -> str:
    message: dict[str, Any] = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": [LP, "websocket"],
    }
    if user is not None:
        message["ext"] = {"user": user, "info": info}
    (reply,) = replies(w.send([message]))
    assert reply["successful"] is True, reply
    return str(reply["clientId"])


def subscribe(w: Wire, cid: str, *channels: str, conn: int | None = None) -> list[Any]:
    return w.send(
        [{"channel": "/meta/subscribe", "clientId": cid, "subscription": list(channels)}],
        conn=conn,
    )


def unsubscribe(w: Wire, cid: str, channel: str) -> list[Any]:
    return w.send([{"channel": "/meta/unsubscribe", "clientId": cid, "subscription": channel}])


def stream(w: Wire, cid: str) -> int:
    """Bind ``cid`` to a new WebSocket-like stream; its first connect is answered."""
    conn = w.conn()
    w.engine.open_stream(conn, now=w.now)
    w.send(
        [{"channel": "/meta/connect", "clientId": cid, "connectionType": "websocket"}], conn=conn
    )
    return conn


def pushed(actions: list[Any], conn: int) -> list[dict[str, Any]]:
    """Every message that reached stream ``conn``, replies and deliveries, in order."""
    out: list[dict[str, Any]] = []
    for action in actions:
        if isinstance(action, Reply) and action.conn == conn:
            out.extend(orjson.loads(action.body))
        elif isinstance(action, Deliver) and conn in action.conns:
            out.append(orjson.loads(action.payload))
    return out


def data_on(messages: list[dict[str, Any]], channel: str = WATCH) -> list[Any]:
    return [m["data"] for m in messages if m.get("channel") == channel and "data" in m]


# ------------------------------------------------------------- pure helpers


def test_presence_channel_and_target() -> None:
    assert presence_channel(ROOM) == WATCH
    assert presence_target(WATCH) == ROOM
    assert presence_target("/presence/a/*") == "/a/*"
    assert presence_target("/presence") is None
    assert presence_target("/chat/room") is None
    assert presence_target(3) is None


def test_presence_delivery() -> None:
    assert presence_delivery(ROOM, "join", "al", {"n": 1}) == {
        "channel": WATCH,
        "data": {"join": {"user": "al", "info": {"n": 1}}},
    }


def test_presence_probe() -> None:
    message = {"channel": "/meta/subscribe", "clientId": "c", "subscription": WATCH, "ext": 1}
    assert presence_probe(message) == dict(message, subscription=ROOM)
    assert message["subscription"] == WATCH  # a copy
    several = {"channel": "/meta/subscribe", "subscription": ["/a", WATCH, "/presence/b"]}
    assert presence_probe(several) == dict(several, subscription=[ROOM, "/b"])
    assert presence_probe({"channel": "/meta/subscribe", "subscription": "/a"}) is None
    assert presence_probe({"channel": "/meta/subscribe", "subscription": 5}) is None
    assert presence_probe({"channel": "/meta/unsubscribe", "subscription": WATCH}) is None
    assert presence_probe([WATCH]) is None


@pytest.mark.parametrize(
    "patterns", ["/chat/**", ["bad"], ["/meta/x"], ["/service/x"], ["/presence/**"], ["/presence"]]
)
def test_bad_presence_patterns(patterns: Any) -> None:
    with pytest.raises(ValueError, match="presence"):
        check_presence_patterns(patterns)
    with pytest.raises(ValueError, match="presence"):
        EngineConfig(presence=patterns)


def test_presence_patterns_are_kept_once_in_order() -> None:
    assert EngineConfig(presence=["/b/*", "/a", "/b/*"]).presence == ("/b/*", "/a")  # type: ignore[arg-type]
    assert EngineConfig().presence == ()


def test_tracker_enabled() -> None:
    tracker = PresenceTracker(("/chat/**", "/**"))
    assert tracker.enabled(ROOM)
    assert tracker.enabled(ROOM)  # remembered
    assert tracker.enabled("/other")
    for channel in ("/chat/*", WATCH, "/presence", "/meta/x", "/service/x", "bad"):
        assert not tracker.enabled(channel)
        assert not can_have_presence(channel)
    assert can_have_presence(ROOM)
    assert not can_have_presence(5)
    small = PresenceTracker(("/chat/*",))
    assert not small.enabled("/chat/a/b")
    for n in range(10_001):
        small.enabled(f"/x/{n}")
    assert len(small._enabled) <= 10_000


def test_tracker_sessions_and_members() -> None:
    tracker = PresenceTracker(("/chat/**",))
    assert tracker.enter(ROOM, "al", "c1") is True
    assert tracker.enter(ROOM, "al", "c2") is False
    assert tracker.local_users(ROOM) == 1
    assert tracker.exit(ROOM, "al", "c9") is False
    assert tracker.exit(ROOM, "bo", "c1") is False
    assert tracker.exit("/chat/none", "al", "c1") is False
    assert tracker.exit(ROOM, "al", "c1") is False
    assert tracker.exit(ROOM, "al", "c2") is True
    assert tracker.local_users(ROOM) == 0
    assert tracker.join(ROOM, "al", 1) is True
    assert tracker.join(ROOM, "al", 2) is False
    assert tracker.join(ROOM, "bo", None) is True
    assert tracker.members(ROOM)[0] == {"user": "al", "info": 1}
    assert tracker.members(ROOM) == [{"user": "al", "info": 1}, {"user": "bo", "info": None}]
    assert tracker.counts() == {ROOM: 2}
    assert tracker.leave(ROOM, "al") == (True, 1)
    assert tracker.leave(ROOM, "al") == (False, None)
    assert tracker.leave("/chat/none", "al") == (False, None)
    assert tracker.leave(ROOM, "bo") == (True, None)
    assert tracker.counts() == {}
    tracker.reset({ROOM: {"x": 1}, "/chat/empty": {}})
    assert tracker.counts() == {ROOM: 1}


def test_tracker_apply() -> None:
    tracker = PresenceTracker(("/chat/**",))

    def apply(data: Any, channel: str = WATCH) -> Any:
        return tracker.apply(channel, orjson.dumps({"channel": channel, "data": data}))

    assert apply({"join": {"user": "al", "info": 1}}) == ("join", "al", 1, True)
    assert apply({"join": {"user": "al", "info": 1}}) == ("join", "al", 1, False)  # a repeat
    assert apply({"leave": {"user": "al"}}) == ("leave", "al", 1, True)
    assert apply({"leave": {"user": "al"}}) == ("leave", "al", None, False)
    junk: Any
    for junk in (
        None,
        [1],
        {"join": 1},
        {"join": {"user": 1}},
        {"hop": {"user": "al"}},
        {"join": {"user": "al"}, "x": 1},
        {"members": []},
    ):
        assert apply(junk) is None
    assert apply({"join": {"user": "al"}}, "/chat/room") is None
    assert tracker.apply(WATCH, b"[1]") is None
    assert tracker.apply(WATCH, b"{") is None


# ---------------------------------------------------------- a lone engine


def test_off_by_default_presence_is_a_channel_like_any_other() -> None:
    w = Wire(EngineConfig())
    cid = handshake(w)
    (reply,) = replies(subscribe(w, cid, WATCH))
    assert reply["successful"] is True
    actions = w.send([{"channel": WATCH, "clientId": cid, "data": {"join": "me"}}])
    assert replies(actions)[0]["successful"] is True
    with pytest.raises(LocalProtocolError):
        w.engine.presence(ROOM)
    with pytest.raises(LocalProtocolError):
        w.engine.reset_presence({})
    assert w.engine.presence_counts() == {}


def test_members_join_and_leave_for_a_watcher() -> None:
    w = wire()
    watcher = handshake(w, "wa")
    conn = stream(w, watcher)
    actions = subscribe(w, watcher, WATCH, conn=conn)
    got = pushed(actions, conn)
    assert got[0]["channel"] == "/meta/subscribe"
    assert got[0]["successful"] is True
    assert data_on(got) == [{"members": []}]

    al = handshake(w, "al", {"name": "Al"})
    actions = subscribe(w, al, ROOM)
    assert data_on(pushed(actions, conn)) == [{"join": {"user": "al", "info": {"name": "Al"}}}]
    assert [e for e in events(actions) if isinstance(e, PresenceJoined)] == [
        PresenceJoined(ROOM, "al", {"name": "Al"})
    ]
    assert w.engine.presence(ROOM) == [{"user": "al", "info": {"name": "Al"}}]
    assert w.engine.presence_counts() == {ROOM: 1}

    actions = unsubscribe(w, al, ROOM)
    assert data_on(pushed(actions, conn)) == [{"leave": {"user": "al", "info": {"name": "Al"}}}]
    assert PresenceLeft(ROOM, "al", {"name": "Al"}) in events(actions)
    assert w.engine.presence(ROOM) == []


def test_a_second_tab_is_not_a_second_join_and_only_the_last_leaves() -> None:
    w = wire()
    watcher = handshake(w, "wa")
    conn = stream(w, watcher)
    subscribe(w, watcher, WATCH, conn=conn)
    tab1, tab2 = handshake(w, "al"), handshake(w, "al")
    seen = pushed(subscribe(w, tab1, ROOM), conn) + pushed(subscribe(w, tab2, ROOM), conn)
    assert data_on(seen) == [{"join": {"user": "al", "info": None}}]
    actions = w.send([{"channel": "/meta/disconnect", "clientId": tab1}])
    assert data_on(pushed(actions, conn)) == []
    assert w.engine.presence(ROOM) == [{"user": "al", "info": None}]
    actions = w.send([{"channel": "/meta/disconnect", "clientId": tab2}])
    assert data_on(pushed(actions, conn)) == [{"leave": {"user": "al", "info": None}}]


def test_without_a_user_the_client_id_is_the_user() -> None:
    w = Wire(PRESENCE)
    a, b = handshake(w), handshake(w)
    subscribe(w, a, ROOM)
    subscribe(w, b, ROOM)
    assert w.engine.presence(ROOM) == [{"user": a, "info": None}, {"user": b, "info": None}]


def test_a_session_that_expires_leaves() -> None:
    w = wire()
    al = handshake(w, "al")
    subscribe(w, al, ROOM)
    watcher = handshake(w, "wa")
    conn = stream(w, watcher)
    subscribe(w, watcher, WATCH, conn=conn)
    # The watcher's stream keeps it alive; al holds no connect and expires.
    actions: list[Any] = []
    for _ in range(4):
        actions += w.advance(2.0)
        w.send(
            [{"channel": "/meta/connect", "clientId": watcher, "connectionType": "websocket"}],
            conn=conn,
        )
    assert data_on(pushed(actions, conn)) == [{"leave": {"user": "al", "info": None}}]
    assert w.engine.presence(ROOM) == []


def test_a_wildcard_subscription_is_not_membership() -> None:
    w = wire()
    al = handshake(w, "al")
    subscribe(w, al, "/chat/*", "/chat/**")
    assert w.engine.presence(ROOM) == []
    assert w.engine.presence_counts() == {}


def test_channels_without_presence_cost_no_event() -> None:
    w = wire()
    al = handshake(w, "al")
    actions = subscribe(w, al, "/news") + unsubscribe(w, al, "/news")
    assert not [e for e in events(actions) if isinstance(e, PresenceJoined | PresenceLeft)]
    with pytest.raises(LocalProtocolError, match="no presence"):
        w.engine.presence("/news")


def test_the_watcher_of_a_room_it_joins_in_the_same_batch_sees_itself_once() -> None:
    w = wire()
    al = handshake(w, "al")
    conn = stream(w, al)
    got = pushed(subscribe(w, al, WATCH, ROOM, conn=conn), conn)
    assert data_on(got) == [{"members": [{"user": "al", "info": None}]}]
    # Reply first, then the members list.
    assert [m["channel"] for m in got] == ["/meta/subscribe", WATCH]


def test_a_long_polling_watcher_gets_the_members_in_the_subscribe_response() -> None:
    w = wire()
    al = handshake(w, "al")
    subscribe(w, al, ROOM)
    bo = handshake(w, "bo")
    got = replies(subscribe(w, bo, WATCH))
    assert got[0]["channel"] == "/meta/subscribe"
    assert data_on(got) == [{"members": [{"user": "al", "info": None}]}]
    # Later changes queue for its next connect.
    subscribe(w, bo, ROOM)
    got = replies(w.send([{"channel": "/meta/connect", "clientId": bo, "connectionType": LP}]))
    assert data_on(got) == [{"join": {"user": "bo", "info": None}}]


def test_a_repeated_watch_gets_a_fresh_list_and_no_stale_change() -> None:
    """A client resends a subscribe whose reply it lost: it gets the list
    again, and the changes queued before it are dropped (they are in it)."""
    w = wire()
    al = handshake(w, "al")
    assert data_on(replies(subscribe(w, al, WATCH))) == [{"members": []}]
    subscribe(w, al, "/news")
    bo = handshake(w, "bo")
    subscribe(w, bo, ROOM)  # a join queued for al
    w.engine.publish("/news", "kept", now=w.now)
    w.engine.actions_to_send()
    got = replies(subscribe(w, al, WATCH))
    assert data_on(got) == [{"members": [{"user": "bo", "info": None}]}]
    got = replies(w.send([{"channel": "/meta/connect", "clientId": al, "connectionType": LP}]))
    assert data_on(got) == []
    assert data_on(got, "/news") == ["kept"]
    # Nothing stale queued: the queue is left as it is.
    w.engine.publish("/news", "again", now=w.now)
    w.engine.actions_to_send()
    assert len(data_on(replies(subscribe(w, al, WATCH)))) == 1
    got = replies(w.send([{"channel": "/meta/connect", "clientId": al, "connectionType": LP}]))
    assert data_on(got, "/news") == ["again"]
    # Twice in one message: one list.
    got = replies(subscribe(w, al, WATCH, WATCH))
    assert len(data_on(got)) == 1


def test_watch_and_unwatch_in_one_batch_sends_no_members() -> None:
    w = wire()
    al = handshake(w, "al")
    actions = w.send(
        [
            {"channel": "/meta/subscribe", "clientId": al, "subscription": WATCH},
            {"channel": "/meta/unsubscribe", "clientId": al, "subscription": WATCH},
        ]
    )
    assert data_on(replies(actions)) == []
    actions = w.send(
        [
            {"channel": "/meta/subscribe", "clientId": al, "subscription": WATCH},
            {"channel": "/meta/disconnect", "clientId": al},
        ]
    )
    assert data_on(replies(actions)) == []


def test_members_for_a_watcher_whose_batch_answers_another_client() -> None:
    """A batch whose tail carries another client's messages: the members list
    is queued (or pushed) for the watcher instead."""
    w = wire()
    al = handshake(w, "al")
    bo = handshake(w, "bo")
    subscribe(w, bo, "/x")
    w.send([{"channel": "/meta/connect", "clientId": bo, "connectionType": LP}])
    w.engine.publish("/x", 1, now=w.now)
    w.engine.actions_to_send()
    actions = w.send(
        [
            {"channel": "/meta/connect", "clientId": bo, "connectionType": LP},
            {"channel": "/meta/subscribe", "clientId": al, "subscription": WATCH},
        ]
    )
    assert data_on(replies(actions)) == []
    got = replies(w.send([{"channel": "/meta/connect", "clientId": al, "connectionType": LP}]))
    assert data_on(got) == [{"members": []}]


def test_presence_channels_are_the_servers_to_publish() -> None:
    w = wire()
    al = handshake(w, "al")
    for message in (
        {"channel": WATCH, "data": {"join": {"user": "x"}}},
        {"channel": WATCH, "clientId": al, "data": 1, "id": "1"},
    ):
        (reply,) = replies(w.send([message]))
        assert reply["successful"] is False
        assert reply["error"].startswith("403:")
    with pytest.raises(LocalProtocolError):
        w.engine.publish(WATCH, 1, now=w.now)


@pytest.mark.parametrize("channel", ["/presence/news", "/presence/chat/*", "/presence/chat/**"])
def test_no_watching_without_presence(channel: str) -> None:
    w = wire()
    al = handshake(w, "al")
    (reply,) = replies(subscribe(w, al, channel))
    assert reply["successful"] is False
    assert reply["error"] == f"403:{channel}:No presence on this channel"
    # Unsubscribing is harmless.
    (reply,) = replies(unsubscribe(w, al, channel))
    assert reply["successful"] is True


class Guard(Extension):
    """Only users with ext.token may subscribe to /chat/secret (or drop it)."""

    def __init__(self, drop: bool = False) -> None:
        self.drop = drop

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") == "/meta/subscribe" and message.get("subscription") in (
            "/chat/secret",
            ["/chat/secret"],
        ):
            if (message.get("ext") or {}).get("token") != "ok":
                if self.drop:
                    return None
                return refuse(message, "403::Invalid subscription auth token")
        return message


@pytest.mark.parametrize("drop", [False, True])
def test_watching_obeys_the_rules_of_the_channel(drop: bool) -> None:
    w = wire(PRESENCE, Names(), Guard(drop))
    al = handshake(w, "al")
    watch = "/presence/chat/secret"
    got = replies(subscribe(w, al, watch))
    assert got[0]["successful"] is False
    if drop:
        assert got[0]["error"] == "403:/chat/secret:Forbidden channel"
    else:
        assert got[0]["error"] == "403::Invalid subscription auth token"
    got = replies(
        w.send(
            [
                {
                    "channel": "/meta/subscribe",
                    "clientId": al,
                    "subscription": watch,
                    "ext": {"token": "ok"},
                }
            ]
        )
    )
    assert got[0]["successful"] is True
    assert data_on(got, watch) == [{"members": []}]


def test_the_probe_names_every_channel_watched() -> None:
    class DropAll(Extension):
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            if message.get("subscription") == ["/chat/a", "/chat/b"]:
                return None
            return message

    w = wire(PRESENCE, DropAll())
    al = handshake(w)
    (reply,) = replies(subscribe(w, al, "/presence/chat/a", "/presence/chat/b"))
    assert reply["error"] == "403:/chat/a,/chat/b:Forbidden channel"


def test_extensions_see_the_user_on_later_messages() -> None:
    seen: list[tuple[str | None, Any]] = []

    class Spy(Extension):
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            seen.append((context.user, context.info))
            if message.get("channel") != "/meta/handshake":
                context.user = "mallory"  # changes nothing
            return message

    w = wire(PRESENCE, Names(), Spy())
    al = handshake(w, "al", {"n": 1})
    subscribe(w, al, ROOM)
    assert seen[-1] == ("al", {"n": 1})
    assert w.engine.presence(ROOM) == [{"user": "al", "info": {"n": 1}}]


@pytest.mark.parametrize(("user", "info"), [("", None), (5, None), ("x" * 257, None), ("al", {1j})])
def test_a_bad_identity_is_the_extensions_bug(user: Any, info: Any) -> None:
    w = wire()
    message = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": [LP],
        "ext": {"user": user, "info": info},
    }
    actions = w.send([message])
    (reply,) = replies(actions)
    assert reply["successful"] is False
    assert reply["error"] == "500::Internal server error"
    assert [e for e in events(actions) if isinstance(e, ExtensionFailed)]
    # The next handshake is not given the refused one's identity.
    cid = handshake(w)
    subscribe(w, cid, ROOM)
    assert w.engine.presence(ROOM) == [{"user": cid, "info": None}]


def test_a_refused_handshake_leaves_no_identity_behind() -> None:
    w = wire()
    message = {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["carrier-pigeon"],
        "ext": {"user": "al"},
    }
    assert replies(w.send([message]))[0]["successful"] is False
    w.engine.remove_extension(w.engine._extensions[0])
    cid = handshake(w)
    subscribe(w, cid, ROOM)
    assert w.engine.presence(ROOM) == [{"user": cid, "info": None}]


def test_server_side_unsubscribe_and_kick_leave() -> None:
    w = wire()
    al, bo = handshake(w, "al"), handshake(w, "bo")
    subscribe(w, al, ROOM)
    subscribe(w, bo, ROOM)
    w.engine.unsubscribe(al, ROOM, now=w.now)
    w.engine.disconnect(bo, now=w.now)
    left = [e for e in events(w.engine.actions_to_send()) if isinstance(e, PresenceLeft)]
    assert left == [PresenceLeft(ROOM, "al"), PresenceLeft(ROOM, "bo")]
    assert not w.engine.unsubscribe(al, "/news", now=w.now)


class Stamp(Extension):
    """Rewrites deliveries per recipient (the slow path), and drops some."""

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if "data" in message and context.is_delivery:
            if context.client_id == self.blocked:
                return None
            message["ext"] = {"to": context.client_id}
        return message

    blocked: str | None = None


def test_outgoing_extensions_see_presence_deliveries() -> None:
    stamp = Stamp()
    w = wire(PRESENCE, Names(), stamp)
    al = handshake(w, "al")
    got = replies(subscribe(w, al, WATCH))
    assert [m["ext"] for m in got if m.get("channel") == WATCH] == [{"to": al}]
    bo = handshake(w, "bo")
    subscribe(w, bo, ROOM)
    got = replies(w.send([{"channel": "/meta/connect", "clientId": al, "connectionType": LP}]))
    assert [(m["data"], m["ext"]) for m in got if m.get("channel") == WATCH] == [
        ({"join": {"user": "bo", "info": None}}, {"to": al})
    ]
    stamp.blocked = bo
    assert data_on(replies(subscribe(w, bo, WATCH))) == []


def test_acknowledged_sessions_get_the_members_in_their_next_batch() -> None:
    w = wire()
    (reply,) = replies(
        w.send(
            [
                {
                    "channel": "/meta/handshake",
                    "version": "1.0",
                    "supportedConnectionTypes": [LP],
                    "ext": {"ack": True, "user": "al"},
                }
            ]
        )
    )
    al = reply["clientId"]
    assert data_on(replies(subscribe(w, al, WATCH))) == []
    got = replies(
        w.send(
            [{"channel": "/meta/connect", "clientId": al, "connectionType": LP, "ext": {"ack": -1}}]
        )
    )
    assert data_on(got) == [{"members": []}]


# ----------------------------------------------------------- a cluster node


def node() -> Engine:
    ids = counter_ids()
    return Engine(
        PRESENCE, extensions=[Names()], client_id_generator=lambda: next(ids), local_routing=False
    )


def test_a_cluster_node_reports_sessions_and_routes_the_logs_decisions() -> None:
    engine = node()
    w = Wire.__new__(Wire)
    w.engine, w.now = engine, 0.0
    w._conns = iter(range(1, 1000))  # type: ignore[assignment]
    al = handshake(w, "al", {"n": 1})
    actions = subscribe(w, al, ROOM)
    assert [a for a in actions if isinstance(a, PresenceEntered)] == [
        PresenceEntered(al, ROOM, "al", {"n": 1})
    ]
    # No join is made here: the bus decides for the whole cluster.
    assert not [a for a in actions if isinstance(a, PresenceJoined)]
    assert engine.presence(ROOM) == []
    join = orjson.dumps(presence_delivery(ROOM, "join", "al", {"n": 1}))
    engine.route(WATCH, join, now=0.0)
    engine.route(WATCH, join, now=0.0)  # a repeat changes nothing
    assert events(engine.actions_to_send()) == [PresenceJoined(ROOM, "al", {"n": 1})]
    assert engine.presence(ROOM) == [{"user": "al", "info": {"n": 1}}]
    # A watcher here gets the node's view of the cluster.
    bo = handshake(w, "bo")
    assert data_on(replies(subscribe(w, bo, WATCH))) == [
        {"members": [{"user": "al", "info": {"n": 1}}]}
    ]
    actions = unsubscribe(w, al, ROOM)
    assert [a for a in actions if isinstance(a, PresenceExited)] == [PresenceExited(al, ROOM, "al")]
    engine.route(WATCH, orjson.dumps(presence_delivery(ROOM, "leave", "al", None)), now=0.0)
    actions = engine.actions_to_send()
    assert events(actions) == [PresenceLeft(ROOM, "al", {"n": 1})]
    engine.reset_presence({ROOM: {"zed": None}})
    assert engine.presence(ROOM) == [{"user": "zed", "info": None}]


def test_a_repeated_join_or_leave_from_the_log_reaches_no_watcher() -> None:
    # A node that rebuilt its view from the backend (reset_presence) and then
    # reads the log entries the rebuild already holds: no watcher may get a
    # join for someone in its members list, nor a leave for someone not in it.
    engine = node()
    w = Wire.__new__(Wire)
    w.engine, w.now = engine, 0.0
    w._conns = iter(range(1, 1000))  # type: ignore[assignment]
    engine.reset_presence({ROOM: {"al": None}})
    bo = handshake(w, "bo")
    conn = stream(w, bo)
    assert data_on(pushed(subscribe(w, bo, WATCH, conn=conn), conn)) == [
        {"members": [{"user": "al", "info": None}]}
    ]
    join = orjson.dumps(presence_delivery(ROOM, "join", "al", None))
    assert engine.route(WATCH, join, now=0.0) == ()
    leave = orjson.dumps(presence_delivery(ROOM, "leave", "zed", None))
    assert engine.route(WATCH, leave, now=0.0) == ()
    assert engine.actions_to_send() == []
    # A change still goes out, and so does anything else on the channel.
    leave = orjson.dumps(presence_delivery(ROOM, "leave", "al", None))
    assert [s.client_id for s in engine.route(WATCH, leave, now=0.0)] == [bo]
    other = orjson.dumps({"channel": WATCH, "data": {"note": 1}})
    assert [s.client_id for s in engine.route(WATCH, other, now=0.0)] == [bo]
    assert data_on(pushed(engine.actions_to_send(), conn)) == [
        {"leave": {"user": "al", "info": None}},
        {"note": 1},
    ]


def test_adopted_and_evicted_sessions_fire_no_presence_action() -> None:
    engine = node()
    session = engine.adopt("c1", now=0.0, subscriptions=[ROOM, "/x"], user="al", info=1)
    assert (session.user, session.info) == ("al", 1)
    assert engine.actions_to_send() == []
    assert engine._presence is not None
    assert engine._presence.local_users(ROOM) == 1
    assert engine.evict("c1", now=0.0)
    assert engine.actions_to_send() == []
    assert engine._presence.local_users(ROOM) == 0
    # Without a user, the client id.
    engine.adopt("c2", now=0.0, subscriptions=[ROOM])
    engine.disconnect("c2", now=0.0)
    assert PresenceExited("c2", ROOM, "c2") in engine.actions_to_send()


def test_evict_without_presence() -> None:
    engine = Engine(local_routing=False)
    engine.adopt("c1", now=0.0, subscriptions=["/x"])
    assert engine.evict("c1", now=0.0)


def test_two_watches_in_one_message_get_a_members_list_each() -> None:
    w = wire()
    al = handshake(w, "al")
    got = replies(subscribe(w, al, WATCH, "/presence/chat/other"))
    assert [m["channel"] for m in got] == ["/meta/subscribe", WATCH, "/presence/chat/other"]


def test_a_member_dropped_by_a_reset_does_not_leave_twice() -> None:
    w = wire()
    al = handshake(w, "al")
    subscribe(w, al, ROOM)
    w.engine.reset_presence({})
    actions = unsubscribe(w, al, ROOM)
    assert not [e for e in events(actions) if isinstance(e, PresenceLeft)]


def test_tracker_keeps_one_session_as_a_string() -> None:
    tracker = PresenceTracker(("/chat/**",))
    assert tracker.enter(ROOM, "al", "c1") is True
    assert tracker.enter(ROOM, "al", "c1") is False  # the same session again
    assert tracker._sessions[ROOM]["al"] == "c1"
    assert tracker.enter(ROOM, "al", "c2") is False
    assert tracker.enter(ROOM, "al", "c3") is False
    assert tracker.exit(ROOM, "al", "c9") is False
    assert tracker.exit(ROOM, "al", "c3") is False
    assert tracker.exit(ROOM, "al", "c1") is False
    assert tracker._sessions[ROOM]["al"] == "c2"
    assert tracker.exit(ROOM, "al", "c9") is False
    assert tracker.exit(ROOM, "al", "c2") is True


def test_a_firehose_subscriber_hears_joins_and_watch_counts_go_back_to_zero() -> None:
    w = wire()
    spy = handshake(w, "spy")
    subscribe(w, spy, "/**")
    al = handshake(w, "al")
    subscribe(w, al, ROOM)
    got = replies(w.send([{"channel": "/meta/connect", "clientId": spy, "connectionType": LP}]))
    assert data_on(got) == [{"join": {"user": "al", "info": None}}]
    watcher = handshake(w, "wa")
    subscribe(w, watcher, WATCH)
    tracker = w.engine._presence
    assert tracker is not None
    assert tracker._watches == {"/**": 1, WATCH: 1}
    unsubscribe(w, spy, "/**")
    w.send([{"channel": "/meta/disconnect", "clientId": watcher}])
    assert tracker._watches == {}
    # Nobody watching: a leave is made (the event fires) and sent to no one.
    actions = unsubscribe(w, al, ROOM)
    assert PresenceLeft(ROOM, "al") in events(actions)
    assert not [a for a in actions if isinstance(a, Deliver)]


def test_a_watcher_of_another_room_hears_nothing_of_this_one() -> None:
    w = wire()
    watcher = handshake(w, "wa")
    conn = stream(w, watcher)
    subscribe(w, watcher, "/presence/chat/other", conn=conn)
    al = handshake(w, "al")
    actions = subscribe(w, al, ROOM)
    assert PresenceJoined(ROOM, "al") in events(actions)
    assert pushed(actions, conn) == []


def test_probe_refusal() -> None:
    probe = {"channel": "/meta/subscribe", "subscription": ROOM}
    assert probe_refusal(probe, dict(probe)) is None
    assert probe_refusal(probe, None) == f"403:{ROOM}:Forbidden channel"
    assert probe_refusal(probe, dict(probe, error="403::No")) == "403::No"
    # As the engine answers a message an extension refused with a non-string.
    assert probe_refusal(probe, dict(probe, error={"no": 1})) == "400::Bad request"
