"""The engine, message by message: reply shapes as Faye sends them (faye.md 3.1),
batches, streams, timers, queues and overflow, server-side publishing."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bayeux_core import (
    CONNECTION_TYPES,
    Action,
    Close,
    Deliver,
    Disconnected,
    DisconnectReason,
    Engine,
    EngineConfig,
    ErrorCode,
    Handshaken,
    LocalProtocolError,
    MemoryStore,
    OverflowPolicy,
    Published,
    QueueOverflow,
    Reply,
    Session,
    SessionExpired,
    SessionState,
    Subscribed,
    Unsubscribed,
    decode_body,
)

from .helpers import Wire, events, replies

LP = "long-polling"
ALL_TYPES = list(CONNECTION_TYPES)
#: advice on a successful handshake or connect, default config (ms)
RETRY = {"reconnect": "retry", "interval": 0, "timeout": 25000}
#: advice on a failed handshake or connect: with an interval (Faye #542)
REHANDSHAKE = {"reconnect": "handshake", "interval": 1000}


# ------------------------------------------------------------------ helpers


def connect_msg(cid: Any, ctype: Any = LP, *, mid: str = "c", **extra: Any) -> dict[str, Any]:
    return {"channel": "/meta/connect", "clientId": cid, "connectionType": ctype, "id": mid} | extra


def sub_msg(cid: Any, subscription: Any, *, mid: str = "s") -> dict[str, Any]:
    return {"channel": "/meta/subscribe", "clientId": cid, "subscription": subscription, "id": mid}


def unsub_msg(cid: Any, subscription: Any, *, mid: str = "u") -> dict[str, Any]:
    return {
        "channel": "/meta/unsubscribe",
        "clientId": cid,
        "subscription": subscription,
        "id": mid,
    }


def pub_msg(channel: Any, data: Any = "hi", **extra: Any) -> dict[str, Any]:
    return {"channel": channel, "data": data} | extra


def connected(w: Wire, *subscriptions: str) -> str:
    """A session past its first connect, subscribed to ``subscriptions``."""
    cid = w.handshake()
    if subscriptions:
        w.send([sub_msg(cid, list(subscriptions))])
    w.send([connect_msg(cid)])
    return cid


def hold(w: Wire, cid: str, **extra: Any) -> int:
    """Send a later connect on a new request connection; it must be held."""
    conn = w.conn()
    assert w.send([connect_msg(cid, **extra)], conn=conn) == []
    return conn


def reply_actions(actions: list[Action], conn: int | None = None) -> list[Reply]:
    return [a for a in actions if isinstance(a, Reply) and (conn is None or a.conn == conn)]


def one_reply(actions: list[Action], conn: int) -> list[dict[str, Any]]:
    (reply,) = reply_actions(actions, conn)
    decoded: list[dict[str, Any]] = orjson.loads(reply.body)
    return decoded


def delivers(actions: list[Action]) -> list[Deliver]:
    return [a for a in actions if isinstance(a, Deliver)]


def overflows(actions: list[Action]) -> list[QueueOverflow]:
    found = [a for a in actions if isinstance(a, QueueOverflow)]
    return sorted(found, key=lambda e: e.client_id)


def session(w: Wire, cid: str) -> Session:
    found = w.engine.store.get(cid)
    assert found is not None
    return found


def nested(depth: int) -> Any:
    """A JSON value nested ``depth`` levels deep, as a peer would send it."""
    return orjson.loads(b"[" * depth + b"]" * depth)


# ---------------------------------------------------------------- handshake


def test_handshake_success_reply() -> None:
    w = Wire()
    actions = w.send(
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["websocket", "long-polling"],
                "id": "1",
                "ext": {"token": "secret"},
            }
        ]
    )
    cid = "c" + "1".rjust(30, "0")
    assert replies(actions) == [
        {
            "id": "1",
            "channel": "/meta/handshake",
            "successful": True,
            "version": "1.0",
            "supportedConnectionTypes": ALL_TYPES,
            "clientId": cid,
            "advice": RETRY,
        }
    ]
    assert events(actions) == [Handshaken(cid)]
    assert session(w, cid).state is SessionState.HANDSHAKEN


def test_handshake_ignores_a_client_id_it_carries() -> None:
    w = Wire()
    first = w.handshake()
    actions = w.send(
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": [LP],
                "clientId": first,
            }
        ]
    )
    (reply,) = replies(actions)
    assert reply["successful"] is True
    assert reply["clientId"] != first
    assert len(w.engine.store) == 2


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"supportedConnectionTypes": [LP]}, "402:version:Missing required parameter"),
        (
            {"version": "", "supportedConnectionTypes": [LP]},
            "402:version:Missing required parameter",
        ),
        (
            {"version": 1, "supportedConnectionTypes": [LP]},
            "402:version:Missing required parameter",
        ),
        ({"version": "1.0"}, "402:supportedConnectionTypes:Missing required parameter"),
        (
            {"version": "1.0", "supportedConnectionTypes": []},
            "402:supportedConnectionTypes:Missing required parameter",
        ),
        (
            {"version": "1.0", "supportedConnectionTypes": LP},
            "402:supportedConnectionTypes:Missing required parameter",
        ),
        (
            {"version": "1.0", "supportedConnectionTypes": ["iframe", "flash"]},
            "301:iframe,flash:Connection types not supported",
        ),
        (
            {"version": "1.0", "supportedConnectionTypes": [1, None, "flash"]},
            "301:flash:Connection types not supported",
        ),
    ],
)
def test_handshake_failure_reply(fields: dict[str, Any], error: str) -> None:
    w = Wire()
    actions = w.send([{"channel": "/meta/handshake", "id": "1"} | fields])
    assert replies(actions) == [
        {
            "id": "1",
            "channel": "/meta/handshake",
            "successful": False,
            "error": error,
            "version": "1.0",
            "supportedConnectionTypes": ALL_TYPES,
            "advice": REHANDSHAKE,
        }
    ]
    assert events(actions) == []
    assert len(w.engine.store) == 0


def test_handshake_offers_the_configured_connection_types() -> None:
    w = Wire(EngineConfig(connection_types=("websocket", LP)))
    actions = w.send(
        [{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": [LP]}]
    )
    assert replies(actions)[0]["supportedConnectionTypes"] == ["websocket", LP]
    actions = w.send(
        [{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": ["iframe"]}]
    )
    assert replies(actions)[0]["error"] == "301:iframe:Connection types not supported"


def test_handshake_beyond_max_clients_is_refused() -> None:
    w = Wire(EngineConfig(max_clients=1))
    w.handshake()
    actions = w.send(
        [{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": [LP]}]
    )
    (reply,) = replies(actions)
    assert reply["successful"] is False
    assert reply["error"] == "503::Too many clients"
    assert reply["advice"] == REHANDSHAKE
    assert "clientId" not in reply
    assert len(w.engine.store) == 1


def test_handshake_skips_an_id_in_use() -> None:
    ids = iter(["a" * 31, "a" * 31, "b" * 31])
    engine = Engine(client_id_generator=lambda: next(ids))
    msg = {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": [LP]}
    engine.receive(1, [msg], now=0)
    engine.receive(2, [msg], now=0)
    assert [e for e in engine.actions_to_send() if isinstance(e, Handshaken)] == [
        Handshaken("a" * 31),
        Handshaken("b" * 31),
    ]


def test_handshake_with_a_stuck_id_generator_is_a_local_error() -> None:
    engine = Engine(client_id_generator=lambda: "a" * 31)
    msg = {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": [LP]}
    engine.receive(1, [msg], now=0)
    with pytest.raises(LocalProtocolError):
        engine.receive(2, [msg], now=0)


def test_default_client_ids_are_random_and_faye_shaped() -> None:
    engine = Engine()
    msg = {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": [LP]}
    engine.receive(1, [msg, msg], now=0)
    ids = [e.client_id for e in engine.actions_to_send() if isinstance(e, Handshaken)]
    assert len(ids) == 2
    assert ids[0] != ids[1]
    for cid in ids:
        assert len(cid) == 31
        assert set(cid) <= set("0123456789abcdefghijklmnopqrstuvwxyz")


# ------------------------------------------------------------------ connect


def test_first_connect_is_answered_at_once() -> None:
    w = Wire()
    cid = w.handshake()
    conn = w.conn()
    actions = w.send([connect_msg(cid, mid="2")], conn=conn)
    assert one_reply(actions, conn) == [
        {
            "id": "2",
            "clientId": cid,
            "channel": "/meta/connect",
            "successful": True,
            "advice": RETRY,
        }
    ]
    assert session(w, cid).state is SessionState.CONNECTED


def test_later_connect_is_held_until_a_message_arrives() -> None:
    w = Wire()
    cid = connected(w, "/a")
    conn = hold(w, cid, mid="3")
    w.now = 4.0
    w.engine.publish("/a", {"n": 1}, now=w.now)
    actions = w.engine.actions_to_send()
    assert one_reply(actions, conn) == [
        {
            "id": "3",
            "clientId": cid,
            "channel": "/meta/connect",
            "successful": True,
            "advice": RETRY,
        },
        {"channel": "/a", "data": {"n": 1}},
    ]
    (reply,) = reply_actions(actions, conn)
    assert reply.client_id == cid
    assert reply.messages == (b'{"channel":"/a","data":{"n":1}}',)


def test_later_connect_is_held_until_the_timeout() -> None:
    w = Wire()
    cid = connected(w)
    w.now = 10.0
    conn = hold(w, cid)
    assert w.engine.get_timer() == 35.0
    assert w.advance(24) == []
    actions = w.advance(1)
    assert one_reply(actions, conn) == [
        {
            "id": "c",
            "clientId": cid,
            "channel": "/meta/connect",
            "successful": True,
            "advice": RETRY,
        }
    ]


@pytest.mark.parametrize(
    ("advice", "held_for"),
    [
        ({"timeout": 5000}, 5.0),
        ({"timeout": 1500.5}, 1.5005),
        ({"timeout": 99_000}, 25.0),  # never longer than the server's timeout
        ({"timeout": -1}, 25.0),
        ({"timeout": True}, 25.0),
        ({"timeout": "5000"}, 25.0),
        ({"timeout": None}, 25.0),
        ({}, 25.0),
        ("timeout=5", 25.0),
    ],
)
def test_client_advice_timeout_sets_the_hold(advice: Any, held_for: float) -> None:
    w = Wire()
    cid = connected(w)
    hold(w, cid, advice=advice)
    assert w.engine.get_timer() == held_for


def test_client_advice_timeout_zero_answers_at_once() -> None:
    """The Faye client sends it when a connect shares a batch (faye.md 3.7)."""
    w = Wire()
    cid = connected(w)
    conn = w.conn()
    actions = w.send([connect_msg(cid, advice={"timeout": 0})], conn=conn)
    assert one_reply(actions, conn)[0]["successful"] is True


def test_server_timeout_zero_answers_every_connect_at_once() -> None:
    w = Wire(EngineConfig(timeout=0))
    cid = connected(w)
    conn = w.conn()
    actions = w.send([connect_msg(cid)], conn=conn)
    assert one_reply(actions, conn)[0]["advice"] == {
        "reconnect": "retry",
        "interval": 0,
        "timeout": 0,
    }


def test_eventsource_connect_is_never_held_and_advises_interval_timeout() -> None:
    w = Wire(EngineConfig(timeout=40, interval=2))
    cid = w.handshake()
    for _ in range(2):  # the first connect, and a later one
        conn = w.conn()
        actions = w.send([connect_msg(cid, "eventsource")], conn=conn)
        (reply,) = one_reply(actions, conn)
        assert reply["successful"] is True
        assert reply["advice"] == {"reconnect": "retry", "interval": 40000, "timeout": 0}
    # The session lives for the advised interval (the timeout) plus the
    # session timeout, which is by default twice the timeout (Faye's rule).
    assert w.engine.get_timer() == 40 + 2 * 40


def test_connect_with_unknown_client_is_401_with_rehandshake_advice() -> None:
    w = Wire()
    actions = w.send([connect_msg("fakeclientid")])
    assert replies(actions) == [
        {
            "id": "c",
            "channel": "/meta/connect",
            "successful": False,
            "error": "401:fakeclientid:Unknown client",
            "advice": REHANDSHAKE,
        }
    ]


def test_error_advice_interval_follows_the_config() -> None:
    w = Wire(EngineConfig(error_interval=2.5))
    (reply,) = replies(w.send([connect_msg("nobody")]))
    assert reply["advice"] == {"reconnect": "handshake", "interval": 2500}


@pytest.mark.parametrize(
    ("cid", "ctype", "error"),
    [
        (None, LP, "402:clientId:Missing required parameter"),
        ("", LP, "402:clientId:Missing required parameter"),
        (12, LP, "402:clientId:Missing required parameter"),
        ("known", None, "402:connectionType:Missing required parameter"),
        ("known", "", "402:connectionType:Missing required parameter"),
        ("known", ["long-polling"], "402:connectionType:Missing required parameter"),
        ("known", "iframe", "301:iframe:Connection types not supported"),
        # checked before the client: Faye's last check (connectionType) wins
        ("nobody", "iframe", "301:iframe:Connection types not supported"),
    ],
)
def test_connect_failure_reply(cid: Any, ctype: Any, error: str) -> None:
    w = Wire()
    known = w.handshake()
    actions = w.send([connect_msg(known if cid == "known" else cid, ctype)])
    assert replies(actions) == [
        {
            "id": "c",
            "channel": "/meta/connect",
            "successful": False,
            "error": error,
            "advice": REHANDSHAKE,
        }
    ]
    assert session(w, known).state is SessionState.HANDSHAKEN


def test_connect_type_not_configured_is_301() -> None:
    w = Wire(EngineConfig(connection_types=(LP,)))
    cid = w.handshake()
    (reply,) = replies(w.send([connect_msg(cid, "websocket")]))
    assert reply["error"] == "301:websocket:Connection types not supported"


def test_a_newer_connect_answers_the_older_without_messages() -> None:
    w = Wire()
    cid = connected(w, "/a")
    old = hold(w, cid, mid="old")
    new = w.conn()
    w.engine.publish("/a", 1, now=w.now)  # queued: the held connect is flushed at drain
    w.engine.receive(new, [connect_msg(cid, mid="new")], now=w.now)
    actions = w.engine.actions_to_send()
    assert one_reply(actions, old) == [
        {
            "id": "old",
            "clientId": cid,
            "channel": "/meta/connect",
            "successful": True,
            "advice": RETRY,
        }
    ]
    assert one_reply(actions, new) == [
        {
            "id": "new",
            "clientId": cid,
            "channel": "/meta/connect",
            "successful": True,
            "advice": RETRY,
        },
        {"channel": "/a", "data": 1},
    ]


def test_receive_on_a_request_still_waiting_is_a_local_error() -> None:
    w = Wire()
    cid = connected(w)
    conn = hold(w, cid)
    with pytest.raises(LocalProtocolError):
        w.engine.receive(conn, [], now=w.now)


# ------------------------------------------------------ subscribe/unsubscribe


def test_subscribe_to_one_channel() -> None:
    w = Wire()
    cid = w.handshake()
    actions = w.send([sub_msg(cid, "/foo/*", mid="5")])
    assert replies(actions) == [
        {
            "id": "5",
            "clientId": cid,
            "channel": "/meta/subscribe",
            "successful": True,
            "subscription": "/foo/*",
        }
    ]
    assert events(actions) == [Subscribed(cid, "/foo/*")]
    assert session(w, cid).subscriptions == {"/foo/*"}


def test_subscribe_to_a_list_echoes_the_list() -> None:
    w = Wire()
    cid = w.handshake()
    actions = w.send([sub_msg(cid, ["/a", "/b/**"])])
    (reply,) = replies(actions)
    assert reply["subscription"] == ["/a", "/b/**"]
    assert reply["successful"] is True
    assert events(actions) == [Subscribed(cid, "/a"), Subscribed(cid, "/b/**")]


def test_duplicate_subscriptions_fire_one_event() -> None:
    w = Wire()
    cid = w.handshake()
    actions = w.send([sub_msg(cid, ["/a", "/a"])])
    assert replies(actions)[0]["successful"] is True
    assert events(actions) == [Subscribed(cid, "/a")]
    actions = w.send([sub_msg(cid, "/a")])
    assert replies(actions)[0]["successful"] is True
    assert events(actions) == []


@pytest.mark.parametrize(
    ("subscription", "error"),
    [
        (None, "402:subscription:Missing required parameter"),
        ([], "402:subscription:Missing required parameter"),
        ({"a": 1}, "402:subscription:Missing required parameter"),
        ("foo", "405:foo:Invalid channel"),
        ("/foo/*/bar", "405:/foo/*/bar:Invalid channel"),
        ("/foo*", "405:/foo*:Invalid channel"),
        (["/ok", 5], "405:5:Invalid channel"),
        ("/meta/connect", "403:/meta/connect:Forbidden channel"),
        ("/meta/**", "403:/meta/**:Forbidden channel"),
        ("/meta", "403:/meta:Forbidden channel"),
    ],
)
@pytest.mark.parametrize("channel", ["/meta/subscribe", "/meta/unsubscribe"])
def test_subscription_failure_reply(channel: str, subscription: Any, error: str) -> None:
    w = Wire()
    cid = w.handshake()
    msg = {"channel": channel, "clientId": cid, "subscription": subscription, "id": "9"}
    actions = w.send([msg])
    assert replies(actions) == [
        {"id": "9", "channel": channel, "successful": False, "error": error}
    ]
    assert events(actions) == []
    assert session(w, cid).subscriptions == set()


@pytest.mark.parametrize("channel", ["/meta/subscribe", "/meta/unsubscribe"])
def test_subscription_with_unknown_client_is_401_without_advice(channel: str) -> None:
    w = Wire()
    actions = w.send([{"channel": channel, "clientId": "abc", "subscription": "/a", "id": "1"}])
    assert replies(actions) == [
        {"id": "1", "channel": channel, "successful": False, "error": "401:abc:Unknown client"}
    ]


@pytest.mark.parametrize("channel", ["/meta/subscribe", "/meta/unsubscribe"])
def test_subscription_without_client_is_402(channel: str) -> None:
    w = Wire()
    (reply,) = replies(w.send([{"channel": channel, "subscription": "/a"}]))
    assert reply == {
        "channel": channel,
        "successful": False,
        "error": "402:clientId:Missing required parameter",
    }


def test_service_subscription_is_accepted_but_not_recorded() -> None:
    w = Wire()
    cid = w.handshake()
    actions = w.send([sub_msg(cid, ["/service/chat", "/service/**"])])
    (reply,) = replies(actions)
    assert reply["successful"] is True
    assert reply["subscription"] == ["/service/chat", "/service/**"]
    assert events(actions) == []
    assert session(w, cid).subscriptions == set()
    # ... and nothing published there ever reaches the client.
    w.send([connect_msg(cid)])
    actions = w.send([pub_msg("/service/chat", "x", clientId=cid)])
    assert events(actions) == [Published(cid, "/service/chat", "x")]
    assert delivers(actions) == []
    assert not session(w, cid).queue


def test_subscription_limit() -> None:
    w = Wire(EngineConfig(max_subscriptions=2))
    cid = w.handshake()
    assert replies(w.send([sub_msg(cid, ["/a", "/b", "/a"])]))[0]["successful"] is True
    actions = w.send([sub_msg(cid, ["/c", "/d"])])
    assert replies(actions) == [
        {
            "id": "s",
            "channel": "/meta/subscribe",
            "successful": False,
            "error": "403:/c:Too many subscriptions",
        }
    ]
    assert events(actions) == []
    # Repeats and /service channels do not count against the limit.
    (reply,) = replies(w.send([sub_msg(cid, ["/a", "/service/x"])]))
    assert reply["successful"] is True
    assert session(w, cid).subscriptions == {"/a", "/b"}


def test_unsubscribe() -> None:
    w = Wire()
    cid = w.handshake()
    w.send([sub_msg(cid, ["/a", "/b"])])
    actions = w.send([unsub_msg(cid, ["/a", "/never"], mid="7")])
    assert replies(actions) == [
        {
            "id": "7",
            "clientId": cid,
            "channel": "/meta/unsubscribe",
            "successful": True,
            "subscription": ["/a", "/never"],
        }
    ]
    assert events(actions) == [Unsubscribed(cid, "/a")]
    assert session(w, cid).subscriptions == {"/b"}
    actions = w.send([unsub_msg(cid, "/b")])
    assert replies(actions)[0]["subscription"] == "/b"
    assert events(actions) == [Unsubscribed(cid, "/b")]
    assert w.engine.store.subscribers("/b") == ()


# --------------------------------------------------------------- disconnect


def test_disconnect_reply_and_events() -> None:
    w = Wire()
    cid = connected(w, "/b", "/a")
    actions = w.send([{"channel": "/meta/disconnect", "clientId": cid, "id": "9"}])
    assert replies(actions) == [
        {"id": "9", "clientId": cid, "channel": "/meta/disconnect", "successful": True}
    ]
    assert events(actions) == [
        Unsubscribed(cid, "/a"),
        Unsubscribed(cid, "/b"),
        Disconnected(cid, DisconnectReason.CLIENT),
    ]
    assert w.engine.store.get(cid) is None
    assert w.engine.store.subscribers("/a") == ()
    (reply,) = replies(w.send([connect_msg(cid)]))
    assert reply["error"] == f"401:{cid}:Unknown client"
    assert w.engine.get_timer() is None


@pytest.mark.parametrize(
    ("cid", "error"),
    [
        ("nobody", "401:nobody:Unknown client"),
        (None, "402:clientId:Missing required parameter"),
        (["x"], "402:clientId:Missing required parameter"),
    ],
)
def test_disconnect_failure_reply(cid: Any, error: str) -> None:
    w = Wire()
    actions = w.send([{"channel": "/meta/disconnect", "clientId": cid, "id": "9"}])
    assert replies(actions) == [
        {"id": "9", "channel": "/meta/disconnect", "successful": False, "error": error}
    ]


def test_disconnect_answers_a_held_connect_with_reconnect_retry() -> None:
    """As Faye: the disconnect may come from anyone who learnt the clientId,
    so the real client is told to retry; its next connect gets 401 and it
    handshakes again. ``reconnect: none`` would silence it for good."""
    w = Wire()
    cid = connected(w, "/a")
    held = hold(w, cid)
    w.engine.publish("/a", "lost", now=w.now)  # queued, not yet flushed
    actions = w.send([{"channel": "/meta/disconnect", "clientId": cid}])
    assert one_reply(actions, held) == [
        {
            "id": "c",
            "clientId": cid,
            "channel": "/meta/connect",
            "successful": True,
            "advice": {"reconnect": "retry", "interval": 0, "timeout": 25000},
        }
    ]
    (reply,) = replies(w.send([connect_msg(cid)]))
    assert reply["error"] == f"401:{cid}:Unknown client"
    assert reply["advice"]["reconnect"] == "handshake"


def test_a_kick_answers_a_held_connect_with_reconnect_none() -> None:
    w = Wire()
    cid = connected(w, "/a")
    held = hold(w, cid)
    assert w.engine.disconnect(cid, now=w.now) is True
    (reply,) = one_reply(w.engine.actions_to_send(), held)
    assert reply["advice"] == {"reconnect": "none", "interval": 0}


# ------------------------------------------------------------------ publish


def test_anonymous_publish_is_accepted_and_delivered() -> None:
    w = Wire()
    sub = connected(w, "/chat")
    actions = w.send([{"channel": "/chat", "data": {"text": "hi"}, "id": "p"}])
    assert replies(actions) == [{"id": "p", "channel": "/chat", "successful": True}]
    assert events(actions) == [Published(None, "/chat", {"text": "hi"})]
    assert list(session(w, sub).queue) == [b'{"channel":"/chat","data":{"text":"hi"}}']


def test_publish_reply_has_client_id_and_no_data() -> None:
    w = Wire()
    cid = w.handshake()
    actions = w.send([pub_msg("/chat", [1, 2], clientId=cid, id="p", ext={"k": "v"})])
    assert replies(actions) == [
        {"id": "p", "clientId": cid, "channel": "/chat", "successful": True}
    ]
    assert events(actions) == [Published(cid, "/chat", [1, 2], {"k": "v"})]


def test_publish_with_an_unknown_client_id_is_anonymous_but_echoed() -> None:
    w = Wire()
    actions = w.send([pub_msg("/chat", 1, clientId="whoever")])
    assert replies(actions) == [{"clientId": "whoever", "channel": "/chat", "successful": True}]


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        (pub_msg("/a/*"), "405:/a/*:Invalid channel"),
        (pub_msg("/a/**"), "405:/a/**:Invalid channel"),
        (pub_msg("/**"), "405:/**:Invalid channel"),
        (pub_msg("foo"), "405:foo:Invalid channel"),
        (pub_msg("/a b"), "405:/a b:Invalid channel"),
        (pub_msg("/"), "405:/:Invalid channel"),
        ({"channel": "/a"}, "402:data:Missing required parameter"),
        (pub_msg("/a", 1, clientId=5), "402:clientId:Missing required parameter"),
        (pub_msg("/meta/foo"), "403:/meta/foo:Forbidden channel"),
        ({"channel": "/service/x"}, "402:data:Missing required parameter"),
    ],
)
def test_publish_failure_reply(msg: dict[str, Any], error: str) -> None:
    w = Wire()
    connected(w, "/**")
    actions = w.send([msg | {"id": "p"}])
    assert replies(actions) == [
        {"id": "p", "channel": msg["channel"], "successful": False, "error": error}
    ]
    assert events(actions) == []
    assert delivers(actions) == []


def test_publish_data_null_is_allowed_and_delivered() -> None:
    w = Wire()
    sub = connected(w, "/a")
    actions = w.send([pub_msg("/a", None)])
    assert replies(actions) == [{"channel": "/a", "successful": True}]
    assert events(actions) == [Published(None, "/a", None)]
    assert list(session(w, sub).queue) == [b'{"channel":"/a","data":null}']


def test_publish_ext_travels_to_subscribers() -> None:
    w = Wire()
    sub = connected(w, "/a")
    w.send([pub_msg("/a", 1, ext={"replay": 3})])
    assert list(session(w, sub).queue) == [b'{"channel":"/a","data":1,"ext":{"replay":3}}']


def test_publish_of_unencodable_data_is_refused_without_effect() -> None:
    w = Wire()
    sub = connected(w, "/a")
    actions = w.send([pub_msg("/a", nested(300), id="p"), pub_msg("/b", nested(300))])
    assert replies(actions) == [
        {
            "id": "p",
            "channel": "/a",
            "successful": False,
            "error": "400:data:Cannot encode message",
        },
        {"channel": "/b", "successful": False, "error": "400:data:Cannot encode message"},
    ]
    assert events(actions) == []
    assert not session(w, sub).queue


def test_deliveries_never_carry_the_publishers_fields() -> None:
    w = Wire()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    streamed = w.handshake()
    w.send([sub_msg(streamed, "/x"), connect_msg(streamed, "websocket")], conn=ws)
    polled = connected(w, "/x")
    publisher = w.handshake()
    actions = w.send(
        [
            {
                "channel": "/x",
                "data": 1,
                "clientId": publisher,
                "id": "1",
                "advice": {"reconnect": "none"},
                "successful": True,
                "connectionType": LP,
                "subscription": "/y",
                "version": "1.0",
                "extra": "field",
            }
        ]
    )
    (deliver,) = delivers(actions)
    assert orjson.loads(deliver.payload) == {"channel": "/x", "data": 1}
    assert [orjson.loads(m) for m in session(w, polled).queue] == [{"channel": "/x", "data": 1}]


# ------------------------------------------------------------ odd messages


@pytest.mark.parametrize("mid", [{"a": 1}, [1], None, True])
def test_message_with_an_invalid_id_is_refused(mid: Any) -> None:
    w = Wire()
    sub = connected(w, "/a")
    actions = w.send([{"channel": "/a", "data": 1, "id": mid}])
    assert replies(actions) == [{"successful": False, "error": "400:id:Invalid message id"}]
    assert events(actions) == []
    assert not session(w, sub).queue


@pytest.mark.parametrize("mid", ["abc", 7, 1.5])
def test_message_id_is_echoed(mid: Any) -> None:
    w = Wire()
    (reply,) = replies(w.send([pub_msg("/a", id=mid)]))
    assert reply["id"] == mid


def test_non_object_items_get_their_own_error_reply() -> None:
    w = Wire()
    actions = w.send([1, "x", None, [], pub_msg("/a", id="p")])
    bad = {"successful": False, "error": "400::Message must be an object"}
    assert replies(actions) == [
        bad,
        bad,
        bad,
        bad,
        {"id": "p", "channel": "/a", "successful": True},
    ]


@pytest.mark.parametrize("channel", [None, 5, ["/a"]])
def test_message_without_a_string_channel_is_402(channel: Any) -> None:
    w = Wire()
    msg: dict[str, Any] = {"data": 1, "id": "1"}
    if channel is not None:
        msg["channel"] = channel
    assert replies(w.send([msg])) == [
        {"id": "1", "successful": False, "error": "402:channel:Missing required parameter"}
    ]


def test_a_message_carrying_error_is_refused() -> None:
    w = Wire()
    sub = connected(w, "/a")
    actions = w.send(
        [
            pub_msg("/a", error="403::Nope", id="1"),
            pub_msg("/a", error={"not": "a string"}, id="2"),
        ]
    )
    assert replies(actions) == [
        {"id": "1", "channel": "/a", "successful": False, "error": "403::Nope"},
        {"id": "2", "channel": "/a", "successful": False, "error": "400::Bad request"},
    ]
    assert events(actions) == []
    assert not session(w, sub).queue


# ------------------------------------------------------------------ batches


def test_connect_reply_and_queued_deliveries_share_one_array_after_other_replies() -> None:
    w = Wire()
    cid = w.handshake()
    w.send([sub_msg(cid, "/a")])
    w.engine.publish("/a", 1, now=w.now)
    w.engine.publish("/a", 2, now=w.now)
    w.engine.actions_to_send()
    conn = w.conn()
    actions = w.send(
        [sub_msg(cid, "/b", mid="s"), connect_msg(cid, mid="c"), pub_msg("/z", id="p")],
        conn=conn,
    )
    (reply,) = reply_actions(actions)
    assert [m.get("id") for m in orjson.loads(reply.body)] == ["s", "c", "p", None, None]
    assert orjson.loads(reply.body)[3:] == [
        {"channel": "/a", "data": 1},
        {"channel": "/a", "data": 2},
    ]
    assert reply.client_id == cid
    assert reply.messages == (b'{"channel":"/a","data":1}', b'{"channel":"/a","data":2}')
    assert not session(w, cid).queue


def test_a_held_request_carries_the_other_replies_of_its_batch() -> None:
    w = Wire()
    cid = connected(w)
    conn = w.conn()
    assert w.send([sub_msg(cid, "/a"), connect_msg(cid)], conn=conn) == [Subscribed(cid, "/a")]
    w.engine.publish("/a", "x", now=w.now)
    actions = w.engine.actions_to_send()
    assert [m.get("channel") for m in one_reply(actions, conn)] == [
        "/meta/subscribe",
        "/meta/connect",
        "/a",
    ]


def test_a_publish_in_the_batch_answers_the_connect_at_once() -> None:
    w = Wire()
    cid = connected(w, "/a")
    conn = w.conn()
    actions = w.send([connect_msg(cid), pub_msg("/a", 1, id="p")], conn=conn)
    assert one_reply(actions, conn) == [
        {"id": "p", "channel": "/a", "successful": True},
        {
            "id": "c",
            "clientId": cid,
            "channel": "/meta/connect",
            "successful": True,
            "advice": RETRY,
        },
        {"channel": "/a", "data": 1},
    ]


def test_empty_batch_gets_empty_array() -> None:
    w = Wire()
    conn = w.conn()
    assert w.send([], conn=conn) == [Reply(conn, b"[]")]


def test_empty_batch_on_a_stream_gets_empty_array() -> None:
    """Pre-1.3 Faye clients ping a WebSocket with ``[]`` (faye.md 3.12)."""
    w = Wire()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    assert w.send([], conn=ws) == [Reply(ws, b"[]")]


def test_too_many_messages_in_one_batch() -> None:
    w = Wire(EngineConfig(max_batch=2))
    hs = {"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": [LP]}
    conn = w.conn()
    publish = {"channel": "/a", "data": 1, "id": 7, "clientId": "x"}
    actions = w.send([hs | {"id": "1"}, hs, publish, "junk", {"id": [1], "channel": 2}], conn=conn)
    # Each message gets its error reply, with what a client matches replies by,
    # so that a Faye client settles its callbacks instead of resending the batch.
    error = "400::Too many messages in one batch"
    assert replies(actions, conn) == [
        {"id": "1", "channel": "/meta/handshake", "successful": False, "error": error},
        {"channel": "/meta/handshake", "successful": False, "error": error},
        {"id": 7, "channel": "/a", "clientId": "x", "successful": False, "error": error},
        {"successful": False, "error": error},
        {"successful": False, "error": error},
    ]
    assert len(w.engine.store) == 0
    assert len(replies(w.send([hs, hs]))) == 2


def test_batches_have_no_size_limit_by_default() -> None:
    w = Wire()
    cid = w.handshake()
    batch = [{"channel": "/a", "clientId": cid, "data": n, "id": str(n)} for n in range(5_000)]
    answers = replies(w.send(batch))
    assert len(answers) == 5_000
    assert all(a["successful"] is True for a in answers)


def test_two_connects_for_different_clients_in_one_batch_lose_nothing() -> None:
    w = Wire()
    a = w.handshake()
    w.send([sub_msg(a, "/a")])
    b = connected(w, "/b")
    w.engine.publish("/a", "for a", now=w.now)
    w.engine.actions_to_send()
    conn = w.conn()
    actions = w.send([connect_msg(a, mid="a"), connect_msg(b, mid="b")], conn=conn)
    body = one_reply(actions, conn)
    assert [m.get("id") for m in body] == ["a", "b", None]
    assert body[2] == {"channel": "/a", "data": "for a"}
    (reply,) = reply_actions(actions, conn)
    assert reply.client_id == a
    assert not session(w, a).queue
    # b's connect was not held (the request already carries a's messages), and
    # a message for b now waits for b's next connect.
    w.engine.publish("/b", "for b", now=w.now)
    assert w.engine.actions_to_send() == [Published(None, "/b", "for b")]
    conn = w.conn()
    body = one_reply(w.send([connect_msg(b)], conn=conn), conn)
    assert body[1] == {"channel": "/b", "data": "for b"}


def test_two_connects_of_one_client_in_one_batch_lose_nothing() -> None:
    w = Wire()
    cid = connected(w, "/a")
    conn = w.conn()
    actions = w.send(
        [connect_msg(cid, mid="1"), pub_msg("/a", "x"), connect_msg(cid, mid="2")], conn=conn
    )
    body = one_reply(actions, conn)
    assert [m.get("id") for m in body] == [None, "2", "1", None]
    assert body[3] == {"channel": "/a", "data": "x"}


def test_two_first_connects_in_one_batch_keep_the_second_queue() -> None:
    w = Wire()
    a = w.handshake()
    b = w.handshake()
    w.send([sub_msg(a, "/x"), sub_msg(b, "/x")])
    w.engine.publish("/x", 1, now=w.now)
    w.engine.actions_to_send()
    conn = w.conn()
    body = one_reply(w.send([connect_msg(a, mid="a"), connect_msg(b, mid="b")], conn=conn), conn)
    assert [m.get("id") for m in body] == ["a", "b", None]
    assert list(session(w, b).queue) == [b'{"channel":"/x","data":1}']


def test_connect_and_disconnect_of_one_client_in_one_batch() -> None:
    w = Wire()
    cid = connected(w, "/a")
    conn = w.conn()
    actions = w.send(
        [connect_msg(cid, mid="c"), {"channel": "/meta/disconnect", "clientId": cid, "id": "d"}],
        conn=conn,
    )
    body = one_reply(actions, conn)
    assert [(m["id"], m["successful"]) for m in body] == [("d", True), ("c", True)]
    assert events(actions) == [
        Unsubscribed(cid, "/a"),
        Disconnected(cid, DisconnectReason.CLIENT),
    ]
    assert w.engine.store.get(cid) is None
    assert w.engine.get_timer() is None


def test_first_connect_and_disconnect_in_one_batch() -> None:
    w = Wire()
    cid = w.handshake()
    actions = w.send([connect_msg(cid), {"channel": "/meta/disconnect", "clientId": cid}])
    assert [m["successful"] for m in replies(actions)] == [True, True]
    assert w.engine.store.get(cid) is None
    assert w.engine.get_timer() is None


# ------------------------------------------------------------------ streams


def test_websocket_is_bound_by_its_first_connect() -> None:
    w = Wire()
    ws = w.conn()
    assert w.engine.open_stream(ws, now=w.now) is True
    cid = w.handshake()
    w.send([sub_msg(cid, "/a")], conn=ws)
    assert session(w, cid).stream is None
    actions = w.send([connect_msg(cid, "websocket")], conn=ws)
    assert one_reply(actions, ws)[0]["successful"] is True
    assert session(w, cid).stream == ws
    w.engine.publish("/a", 1, now=w.now)
    assert delivers(w.engine.actions_to_send()) == [Deliver(b'{"channel":"/a","data":1}', [ws])]
    assert not session(w, cid).queue


def test_one_deliver_lists_every_stream_and_shares_one_payload() -> None:
    w = Wire()
    streams = []
    for _ in range(3):
        ws = w.conn()
        w.engine.open_stream(ws, now=w.now)
        cid = w.handshake()
        w.send([sub_msg(cid, "/a"), connect_msg(cid, "websocket")], conn=ws)
        streams.append(ws)
    polled = [connected(w, "/a"), connected(w, "/**")]
    w.engine.publish("/a", "x", now=w.now)
    (deliver,) = delivers(w.engine.actions_to_send())
    assert sorted(deliver.conns) == streams
    assert deliver.payload == b'{"channel":"/a","data":"x"}'
    for cid in polled:
        (queued,) = session(w, cid).queue
        assert queued is deliver.payload


def test_websocket_connect_is_held_and_its_batch_replies_go_now() -> None:
    w = Wire()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    cid = w.handshake()
    w.send([connect_msg(cid, "websocket", mid="1")], conn=ws)
    # A held connect alone: nothing is sent.
    assert w.send([connect_msg(cid, "websocket", mid="2")], conn=ws) == []
    # Deliveries are pushed while it is held ...
    w.send([sub_msg(cid, "/a", mid="s")], conn=ws)
    w.engine.publish("/a", 1, now=w.now)
    assert delivers(w.engine.actions_to_send()) == [Deliver(b'{"channel":"/a","data":1}', [ws])]
    # ... and the next connect answers the previous one, then the subscribe
    # reply goes at once while the new connect is held.
    actions = w.send([sub_msg(cid, "/b", mid="t"), connect_msg(cid, "websocket", mid="3")], conn=ws)
    assert [[m["id"] for m in orjson.loads(r.body)] for r in reply_actions(actions, ws)] == [
        ["2"],
        ["t"],
    ]
    actions = w.advance(25)
    assert [m["id"] for m in one_reply(actions, ws)] == ["3"]


def test_queued_messages_go_down_a_new_stream_before_later_deliveries() -> None:
    w = Wire()
    cid = w.handshake()
    w.send([sub_msg(cid, "/a")])
    w.engine.publish("/a", 1, now=w.now)
    w.engine.actions_to_send()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    actions = w.send([connect_msg(cid, "websocket"), pub_msg("/a", 2)], conn=ws)
    frames: list[list[dict[str, Any]]] = []
    for action in actions:
        if isinstance(action, Reply):
            frames.append(orjson.loads(action.body))
        elif isinstance(action, Deliver):
            frames.append([orjson.loads(action.payload)])
    assert [m["data"] for frame in frames for m in frame if "data" in m] == [1, 2]
    (first, *_) = reply_actions(actions, ws)
    assert first.client_id == cid
    assert first.messages == (b'{"channel":"/a","data":1}',)


def test_a_later_websocket_connect_finding_a_queue_pushes_it_and_is_answered() -> None:
    w = Wire()
    cid = connected(w, "/a")
    w.engine.publish("/a", 1, now=w.now)
    w.engine.actions_to_send()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    actions = w.send([connect_msg(cid, "websocket", mid="2")], conn=ws)
    messages = (b'{"channel":"/a","data":1}',)
    queued, answer = reply_actions(actions, ws)
    assert queued == Reply(ws, b"[" + messages[0] + b"]", cid, messages)
    assert [m["id"] for m in orjson.loads(answer.body)] == ["2"]
    assert session(w, cid).held is None
    assert not session(w, cid).queue


def test_eventsource_stream_flushes_the_queue_as_one_reply() -> None:
    w = Wire()
    cid = connected(w, "/a")
    w.engine.publish("/a", 1, now=w.now)
    w.engine.publish("/a", 2, now=w.now)
    w.engine.actions_to_send()
    es = w.conn()
    assert w.engine.open_stream(es, now=w.now, client_id=cid) is True
    messages = (b'{"channel":"/a","data":1}', b'{"channel":"/a","data":2}')
    assert w.engine.actions_to_send() == [
        Reply(es, b"[" + b",".join(messages) + b"]", cid, messages)
    ]
    assert session(w, cid).stream == es
    w.engine.publish("/a", 3, now=w.now)
    assert delivers(w.engine.actions_to_send()) == [Deliver(b'{"channel":"/a","data":3}', [es])]


def test_eventsource_stream_with_an_empty_queue_sends_nothing() -> None:
    w = Wire()
    cid = w.handshake()
    es = w.conn()
    assert w.engine.open_stream(es, now=w.now, client_id=cid) is True
    assert w.engine.actions_to_send() == []


@pytest.mark.parametrize("client_id", ["nobody", "", 5, None])
def test_eventsource_stream_for_an_unknown_client_binds_nothing(client_id: Any) -> None:
    w = Wire()
    cid = connected(w, "/a")
    es = w.conn()
    expected = client_id is None  # None: a WebSocket, bound later
    assert w.engine.open_stream(es, now=w.now, client_id=client_id) is expected
    assert session(w, cid).stream is None
    w.engine.publish("/a", 1, now=w.now)
    assert delivers(w.engine.actions_to_send()) == []
    # The connection is known now: announcing it twice is a caller error.
    with pytest.raises(LocalProtocolError):
        w.engine.open_stream(es, now=w.now)


def test_open_stream_on_a_held_request_is_a_local_error() -> None:
    w = Wire()
    cid = connected(w)
    conn = hold(w, cid)
    with pytest.raises(LocalProtocolError):
        w.engine.open_stream(conn, now=w.now)


def test_a_stream_carrying_a_second_client_rebinds() -> None:
    w = Wire()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    a = w.handshake()
    b = w.handshake()
    w.send([sub_msg(a, "/a"), sub_msg(b, "/b")])
    w.send([connect_msg(a, "websocket")], conn=ws)
    w.send([connect_msg(b, "websocket")], conn=ws)
    assert session(w, a).stream is None
    assert session(w, b).stream == ws
    w.engine.publish("/a", "for a", now=w.now)
    w.engine.publish("/b", "for b", now=w.now)
    assert delivers(w.engine.actions_to_send()) == [
        Deliver(b'{"channel":"/b","data":"for b"}', [ws])
    ]
    assert list(session(w, a).queue) == [b'{"channel":"/a","data":"for a"}']
    # Closing the stream unbinds b only.
    w.engine.close(ws, now=w.now)
    assert session(w, b).stream is None


def test_a_stream_changing_client_answers_the_old_clients_held_connect() -> None:
    """Faye flushes the old connection when a socket changes clientId (3.10)."""
    w = Wire()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    a = w.handshake()
    b = w.handshake()
    w.send([connect_msg(a, "websocket", mid="a1")], conn=ws)
    w.send([connect_msg(b, "websocket", mid="b1")], conn=ws)
    w.send([connect_msg(a, "websocket", mid="a2")], conn=ws)  # held on ws
    actions = w.send([connect_msg(b, "websocket", mid="b2")], conn=ws)
    # a's held connect is answered; b's connect is now the one held on ws.
    assert [m["id"] for m in one_reply(actions, ws)] == ["a2"]
    assert session(w, a).held is None
    assert session(w, a).stream is None
    actions = w.advance(25)
    assert [m["id"] for m in one_reply(actions, ws)] == ["b2"]


def test_a_stream_changing_client_keeps_a_connect_held_elsewhere() -> None:
    w = Wire()
    ws1, ws2 = w.conn(), w.conn()
    w.engine.open_stream(ws1, now=w.now)
    w.engine.open_stream(ws2, now=w.now)
    a = w.handshake()
    b = w.handshake()
    w.send([connect_msg(a, "websocket")], conn=ws1)
    assert w.send([connect_msg(a, "websocket")], conn=ws2) == []  # a moved to ws2, held
    assert session(w, a).stream == ws2
    w.send([connect_msg(b, "websocket")], conn=ws1)
    assert session(w, a).stream == ws2
    held = session(w, a).held
    assert held is not None
    assert held.conn == ws2
    w.engine.close(ws1, now=w.now)
    assert session(w, a).stream == ws2


def test_a_connect_held_on_a_stream_taken_by_another_client_answers_later_connects_at_once() -> (
    None
):
    w = Wire()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    a = connected(w)
    b = connected(w)
    c = connected(w)
    # a's connect is held on ws; b's, in the same frame, rebinds ws to b.
    actions = w.send(
        [connect_msg(a, "websocket", mid="a"), connect_msg(b, "websocket", mid="b")], conn=ws
    )
    assert [m["id"] for m in one_reply(actions, ws)] == ["b"]
    assert session(w, b).stream == ws
    # c's later connect on ws cannot be held there too: it is answered at once.
    actions = w.send([connect_msg(c, "websocket", mid="c")], conn=ws)
    assert [m["id"] for m in one_reply(actions, ws)] == ["c"]
    assert session(w, c).held is None
    held = session(w, a).held
    assert held is not None
    assert held.conn == ws


def test_a_client_rebound_away_mid_batch_still_gets_what_was_queued_for_it() -> None:
    w = Wire()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    a = connected(w, "/a")
    b = connected(w)
    # a's connect would be held on ws, b's takes ws over, then a message for a
    # (no longer bound) is queued: a's connect is answered with it, on ws.
    actions = w.send(
        [
            connect_msg(a, "websocket", mid="a"),
            connect_msg(b, "websocket", mid="b"),
            pub_msg("/a", "x", id="p"),
        ],
        conn=ws,
    )
    carrying = [r for r in reply_actions(actions, ws) if r.messages]
    assert [(r.client_id, r.messages) for r in carrying] == [(a, (b'{"channel":"/a","data":"x"}',))]
    assert sorted(m.get("id", "-") for m in replies(actions, ws)) == ["-", "a", "b", "p"]
    assert session(w, a).held is None
    assert not session(w, a).queue


def test_an_eventsource_stream_can_move_to_a_new_connection() -> None:
    w = Wire()
    cid = connected(w, "/a")
    old, new = w.conn(), w.conn()
    w.engine.open_stream(old, now=w.now, client_id=cid)
    w.engine.open_stream(new, now=w.now, client_id=cid)
    w.engine.close(old, now=w.now)
    assert session(w, cid).stream == new
    w.engine.publish("/a", 1, now=w.now)
    assert delivers(w.engine.actions_to_send()) == [Deliver(b'{"channel":"/a","data":1}', [new])]


def test_disconnect_over_a_stream_does_not_close_that_stream() -> None:
    w = Wire()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    cid = w.handshake()
    w.send([connect_msg(cid, "websocket")], conn=ws)
    actions = w.send([{"channel": "/meta/disconnect", "clientId": cid}], conn=ws)
    assert [a for a in actions if isinstance(a, Close)] == []
    assert one_reply(actions, ws)[0]["successful"] is True


def test_disconnect_elsewhere_closes_the_stream() -> None:
    w = Wire()
    es = w.conn()
    cid = connected(w)
    w.engine.open_stream(es, now=w.now, client_id=cid)
    actions = w.send([{"channel": "/meta/disconnect", "clientId": cid}])
    assert Close(es) in actions
    # The connection is still open (the network layer closes it) but unbound.
    w.engine.close(es, now=w.now)


# -------------------------------------------------------------------- close


def test_close_of_a_held_request_drops_it_and_keeps_messages_queued() -> None:
    w = Wire(EngineConfig(session_timeout=30))
    cid = connected(w, "/a")
    conn = hold(w, cid)
    w.now = 5.0
    w.engine.close(conn, now=w.now)
    assert session(w, cid).held is None
    w.engine.publish("/a", 1, now=w.now)
    actions = w.engine.actions_to_send()
    assert reply_actions(actions) == []
    # The session lives on from the close: interval 0 + session timeout 30.
    assert w.engine.get_timer() == 35.0
    conn = w.conn()
    body = one_reply(w.send([connect_msg(cid)], conn=conn), conn)
    assert body[1] == {"channel": "/a", "data": 1}


def test_close_of_a_held_request_after_a_publish_sends_nothing() -> None:
    w = Wire()
    cid = connected(w, "/a")
    conn = hold(w, cid)
    w.engine.publish("/a", 1, now=w.now)  # marks the held connect for flushing
    w.engine.close(conn, now=w.now)
    assert reply_actions(w.engine.actions_to_send()) == []
    assert len(session(w, cid).queue) == 1


def test_close_of_a_stream_unbinds_it() -> None:
    w = Wire()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    cid = w.handshake()
    w.send([sub_msg(cid, "/a"), connect_msg(cid, "websocket")], conn=ws)
    w.engine.close(ws, now=w.now)
    assert session(w, cid).stream is None
    w.engine.publish("/a", 1, now=w.now)
    assert delivers(w.engine.actions_to_send()) == []
    assert len(session(w, cid).queue) == 1
    # The id can be used again.
    assert w.engine.open_stream(ws, now=w.now) is True


def test_close_of_a_stream_with_a_held_connect() -> None:
    w = Wire()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    cid = w.handshake()
    w.send([connect_msg(cid, "websocket")], conn=ws)
    w.send([connect_msg(cid, "websocket")], conn=ws)
    w.engine.close(ws, now=w.now)
    assert session(w, cid).held is None
    assert w.advance(25) == []


def test_close_of_unknown_connections_is_ignored() -> None:
    w = Wire()
    w.engine.close(12345, now=w.now)
    conn = w.conn()
    w.send([], conn=conn)  # a finished request
    w.engine.close(conn, now=w.now)
    assert w.engine.actions_to_send() == []


# ------------------------------------------------------------- reply_failed


def test_reply_failed_requeues_in_order_before_newer_messages() -> None:
    w = Wire()
    cid = connected(w, "/a")
    conn = hold(w, cid)
    w.engine.publish("/a", 1, now=w.now)
    w.engine.publish("/a", 2, now=w.now)
    (failed,) = reply_actions(w.engine.actions_to_send(), conn)
    assert len(failed.messages) == 2
    w.engine.publish("/a", 3, now=w.now)
    w.engine.reply_failed(failed, now=w.now)
    conn = w.conn()
    body = one_reply(w.send([connect_msg(cid)], conn=conn), conn)
    assert [m["data"] for m in body[1:]] == [1, 2, 3]


def test_reply_failed_flushes_a_held_connect() -> None:
    w = Wire()
    cid = connected(w, "/a")
    w.engine.publish("/a", 1, now=w.now)
    conn = w.conn()
    (failed,) = reply_actions(w.send([connect_msg(cid)], conn=conn))
    held = hold(w, cid)
    w.engine.reply_failed(failed, now=w.now)
    body = one_reply(w.engine.actions_to_send(), held)
    assert body[1] == {"channel": "/a", "data": 1}


def test_reply_failed_keeps_the_queue_cap_dropping_the_oldest() -> None:
    w = Wire(EngineConfig(max_queue=3))
    cid = connected(w, "/a")
    conn = hold(w, cid)
    for n in (1, 2, 3):
        w.engine.publish("/a", n, now=w.now)
    (failed,) = reply_actions(w.engine.actions_to_send(), conn)
    assert len(failed.messages) == 3
    for n in (4, 5):
        w.engine.publish("/a", n, now=w.now)
    w.engine.reply_failed(failed, now=w.now)
    assert len(session(w, cid).queue) == 3
    overflow = [e for e in events(w.engine.actions_to_send()) if isinstance(e, QueueOverflow)]
    assert overflow == [QueueOverflow(cid, 2)]
    conn = w.conn()
    body = one_reply(w.send([connect_msg(cid)], conn=conn), conn)
    assert [m["data"] for m in body[1:]] == [3, 4, 5]


def test_reply_failed_adds_to_drops_already_counted_in_the_same_drain() -> None:
    w = Wire(EngineConfig(max_queue=2))
    cid = connected(w, "/a")
    conn = hold(w, cid)
    w.engine.publish("/a", 1, now=w.now)
    (failed,) = reply_actions(w.engine.actions_to_send(), conn)
    for n in (2, 3, 4):  # the third publish drops 2: one drop counted already
        w.engine.publish("/a", n, now=w.now)
    w.engine.reply_failed(failed, now=w.now)  # 1 comes back, over the cap again
    overflow = [e for e in events(w.engine.actions_to_send()) if isinstance(e, QueueOverflow)]
    assert overflow == [QueueOverflow(cid, 2)]
    assert [orjson.loads(m)["data"] for m in session(w, cid).queue] == [3, 4]


def test_reply_failed_over_the_cap_ends_the_session_under_disconnect() -> None:
    w = Wire(EngineConfig(max_queue=2, overflow=OverflowPolicy.DISCONNECT))
    cid = connected(w, "/a")
    conn = hold(w, cid)
    w.engine.publish("/a", 1, now=w.now)
    (failed,) = reply_actions(w.engine.actions_to_send(), conn)
    w.engine.publish("/a", 2, now=w.now)
    w.engine.publish("/a", 3, now=w.now)
    w.engine.reply_failed(failed, now=w.now)
    assert Disconnected(cid, DisconnectReason.OVERFLOW) in events(w.engine.actions_to_send())
    assert w.engine.store.get(cid) is None


def test_reply_failed_without_messages_or_session_is_ignored() -> None:
    w = Wire()
    cid = connected(w, "/a")
    w.engine.reply_failed(Reply(1, b"[]"), now=w.now)
    w.engine.reply_failed(Reply(1, b"[]", cid, ()), now=w.now)
    w.engine.reply_failed(Reply(1, b"[]", "gone", (b"{}",)), now=w.now)
    assert not session(w, cid).queue
    assert w.engine.actions_to_send() == []


# -------------------------------------------------------------- release_held


def test_release_held_answers_every_held_connect_with_retry() -> None:
    w = Wire()
    a = connected(w, "/a")
    b = connected(w)
    ca, cb = hold(w, a), hold(w, b)
    w.engine.publish("/a", 1, now=w.now)  # queued, not drained yet
    w.engine.release_held(now=w.now)
    actions = w.engine.actions_to_send()
    assert [m.get("advice") for m in one_reply(actions, ca)] == [RETRY, None]
    assert one_reply(actions, cb)[0]["advice"] == RETRY
    # Sessions are untouched: the next connect is held again.
    hold(w, a)
    assert session(w, b).state is SessionState.CONNECTED


# ------------------------------------------------------------------- timers


def test_no_timer_without_sessions() -> None:
    assert Engine().get_timer() is None
    w = Wire()
    assert w.advance(1000) == []


def test_handshake_starts_the_session_timer() -> None:
    w = Wire(EngineConfig(interval=2, session_timeout=10))
    w.now = 100.0
    w.handshake()
    assert w.engine.get_timer() == 112.0


def test_session_expiry_counts_from_the_release_of_the_last_connect() -> None:
    w = Wire(EngineConfig(timeout=20, interval=3, session_timeout=10))
    cid = connected(w, "/b", "/a")
    es = w.conn()
    w.engine.open_stream(es, now=w.now, client_id=cid)
    w.now = 10.0
    hold(w, cid)
    assert w.engine.get_timer() == 30.0
    w.advance(20)  # released at 30
    assert w.engine.get_timer() == 30 + 3 + 10
    assert w.advance(12) == []
    actions = w.advance(1)
    assert actions == [
        Close(es),
        Unsubscribed(cid, "/a"),
        Unsubscribed(cid, "/b"),
        SessionExpired(cid),
    ]
    assert w.engine.store.get(cid) is None
    assert w.engine.get_timer() is None
    (reply,) = replies(w.send([connect_msg(cid)]))
    assert reply["error"] == f"401:{cid}:Unknown client"
    assert reply["advice"] == REHANDSHAKE


def test_an_unconnected_session_expires() -> None:
    w = Wire(EngineConfig(session_timeout=30))
    cid = w.handshake()
    assert w.advance(30) == [SessionExpired(cid)]


@pytest.mark.parametrize(("timeout", "expiry"), [(25, 50), (60, 120), (0, 10), (2, 10)])
def test_the_default_session_timeout_is_twice_the_timeout(timeout: float, expiry: float) -> None:
    """Faye drops a session 2 x timeout after its last connect; never sooner
    here, and never under 10 s (a server that never holds stays usable)."""
    w = Wire(EngineConfig(timeout=timeout))
    assert w.engine.config.session_expiry == expiry
    cid = w.handshake()
    assert w.advance(expiry - 0.5) == []
    assert w.advance(0.5) == [SessionExpired(cid)]


def test_an_input_after_the_deadline_finds_the_session_expired() -> None:
    """Without a handle_timer call in between, a late connect still gets 401."""
    w = Wire(EngineConfig(session_timeout=30))
    cid = w.handshake()  # expires at 30
    w.now = 31.0
    conn = w.conn()
    actions = w.send([connect_msg(cid)], conn=conn)
    assert SessionExpired(cid) in events(actions)
    (reply,) = replies(actions, conn)
    assert reply["error"].startswith("401:")


def test_a_stream_opened_after_the_deadline_finds_the_session_expired() -> None:
    w = Wire(EngineConfig(session_timeout=30))
    cid = w.handshake()
    assert w.engine.open_stream(w.conn(), now=31.0, client_id=cid) is False
    assert SessionExpired(cid) in events(w.engine.actions_to_send())


def test_stale_timers_are_ignored() -> None:
    w = Wire(EngineConfig(session_timeout=30))
    cid = connected(w)  # expires at 30
    w.now = 20.0
    conn = hold(w, cid)  # now the hold ends at 45
    assert w.engine.get_timer() == 45.0
    assert w.advance(10) == []  # 30: the old expiry is stale
    w.engine.close(conn, now=w.now)  # expiry 30 + 30 = 60
    assert w.advance(25) == []  # 45: the hold timer is stale
    assert w.engine.get_timer() == 60.0
    assert w.advance(5) == [SessionExpired(cid)]


def test_deadlines_never_move_back_in_time() -> None:
    w = Wire(EngineConfig(session_timeout=30))
    w.now = 10.0
    cid = w.handshake()
    assert w.engine.get_timer() == 40.0
    w.now = 5.0  # a stray earlier clock value
    w.send([connect_msg(cid)])
    assert w.engine.get_timer() == 40.0


def test_handle_timer_before_the_deadline_does_nothing() -> None:
    w = Wire()
    w.handshake()
    w.engine.handle_timer(29.999)
    assert w.engine.actions_to_send() == []
    assert len(w.engine.store) == 1


# ----------------------------------------------------------------- overflow


def test_drop_oldest_keeps_the_newest_and_reports_once_per_drain() -> None:
    w = Wire(EngineConfig(max_queue=2))
    a = connected(w, "/x")
    b = connected(w, "/x")
    for n in range(5):
        w.engine.publish("/x", n, now=w.now)
    actions = w.engine.actions_to_send()
    assert overflows(actions) == [
        QueueOverflow(a, 3),
        QueueOverflow(b, 3),
    ]
    assert [orjson.loads(m)["data"] for m in session(w, a).queue] == [3, 4]
    w.engine.publish("/x", 5, now=w.now)
    actions = w.engine.actions_to_send()
    assert overflows(actions) == [
        QueueOverflow(a, 1),
        QueueOverflow(b, 1),
    ]
    assert w.engine.actions_to_send() == []


def test_disconnect_policy_ends_the_session() -> None:
    w = Wire(EngineConfig(max_queue=1, overflow=OverflowPolicy.DISCONNECT))
    a = connected(w, "/x")
    b = connected(w, "/x", "/y")
    w.engine.publish("/x", 1, now=w.now)
    w.engine.actions_to_send()
    w.engine.publish("/x", 2, now=w.now)
    actions = w.engine.actions_to_send()
    ended = {e.client_id for e in actions if isinstance(e, Disconnected)}
    assert ended == {a, b}
    assert all(
        e.reason is DisconnectReason.OVERFLOW for e in actions if isinstance(e, Disconnected)
    )
    assert Unsubscribed(b, "/y") in actions
    assert w.engine.store.subscribers("/x") == ()
    (reply,) = replies(w.send([connect_msg(a)]))
    assert reply["error"] == f"401:{a}:Unknown client"
    assert reply["advice"] == REHANDSHAKE


def test_disconnect_policy_tells_a_held_connect_to_handshake() -> None:
    """The client must start over, never stop (reconnect: none)."""
    w = Wire(EngineConfig(max_queue=1, overflow=OverflowPolicy.DISCONNECT))
    cid = connected(w, "/x")
    conn = hold(w, cid)
    w.engine.publish("/x", 1, now=w.now)
    w.engine.publish("/x", 2, now=w.now)  # before the drain: the queue is full
    actions = w.engine.actions_to_send()
    (reply,) = one_reply(actions, conn)
    assert reply["advice"] == REHANDSHAKE
    assert Disconnected(cid, DisconnectReason.OVERFLOW) in actions
    assert w.engine.store.get(cid) is None


def test_overflow_never_hits_stream_clients() -> None:
    w = Wire(EngineConfig(max_queue=1, overflow=OverflowPolicy.DISCONNECT))
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    cid = w.handshake()
    w.send([sub_msg(cid, "/x"), connect_msg(cid, "websocket")], conn=ws)
    for n in range(3):
        w.engine.publish("/x", n, now=w.now)
    assert len(delivers(w.engine.actions_to_send())) == 3
    assert w.engine.store.get(cid) is not None


# ---------------------------------------------------------- server publish


def test_server_publish_delivers_and_reports() -> None:
    w = Wire()
    cid = connected(w, "/a/**")
    w.engine.publish("/a/b", {"x": 1}, now=w.now, ext={"from": "server"})
    assert w.engine.actions_to_send() == [Published(None, "/a/b", {"x": 1}, {"from": "server"})]
    assert list(session(w, cid).queue) == [
        b'{"channel":"/a/b","data":{"x":1},"ext":{"from":"server"}}'
    ]


@pytest.mark.parametrize(
    ("channel", "hint"),
    [
        ("foo", ErrorCode.CHANNEL_INVALID),
        ("/a/*", ErrorCode.CHANNEL_INVALID),
        ("/a/**", ErrorCode.CHANNEL_INVALID),
        ("/meta/connect", ErrorCode.CHANNEL_FORBIDDEN),
        ("/meta", ErrorCode.CHANNEL_FORBIDDEN),
        ("/service/x", ErrorCode.CHANNEL_FORBIDDEN),
    ],
)
def test_server_publish_to_a_bad_channel_raises(channel: str, hint: ErrorCode) -> None:
    w = Wire()
    connected(w, "/**")
    with pytest.raises(LocalProtocolError) as info:
        w.engine.publish(channel, 1, now=w.now)
    assert info.value.error_hint is hint
    assert w.engine.actions_to_send() == []


@pytest.mark.parametrize("data", [nested(256), {1, 2}, object(), 2**70])
@pytest.mark.parametrize("subscribed", [True, False])
def test_server_publish_of_unencodable_data_raises_without_effect(
    data: Any, subscribed: bool
) -> None:
    w = Wire()
    cid = connected(w, *(["/a"] if subscribed else []))
    with pytest.raises(LocalProtocolError) as info:
        w.engine.publish("/a", data, now=w.now)
    assert info.value.error_hint is ErrorCode.BAD_REQUEST
    assert w.engine.actions_to_send() == []
    assert not session(w, cid).queue


def test_server_publish_of_deep_but_encodable_data_is_fine() -> None:
    w = Wire()
    w.engine.publish("/a", nested(200), now=w.now)
    assert len(w.engine.actions_to_send()) == 1


# -------------------------------------------------------------------- store


def test_memory_store() -> None:
    store = MemoryStore()
    a, b = Session("a" * 31), Session("b" * 31)
    assert repr(a) == "<Session aaaaaa... handshaken>"
    store.add(a)
    store.add(b)
    assert len(store) == 2
    assert set(store) == {a, b}
    assert store.subscribe(a, "/x") is True
    assert store.subscribe(a, "/x") is False
    assert store.subscribe(b, "/x") is True
    assert store.subscribe(b, "/**") is True
    assert set(store.subscribers("/x")) == {a, b}
    assert set(store.subscribers("/y")) == {b}
    assert store.subscribers("/y/z") == {b}
    assert set(store.patterns()) == {"/x", "/**"}
    assert store.unsubscribe(a, "/x") is True
    assert store.unsubscribe(a, "/x") is False
    assert set(store.subscribers("/x")) == {b}
    store.remove(b)
    assert store.get(b.client_id) is None
    assert b.subscriptions == set()
    assert set(store.patterns()) == set()
    assert store.subscribers("/x") == ()
    # Removing a session that is not (or no longer) kept is harmless.
    store.remove(b)
    stranger = Session(a.client_id)
    store.remove(stranger)
    assert store.get(a.client_id) is a
    assert list(store) == [a]


def test_engine_store_property_and_custom_store() -> None:
    store = MemoryStore()
    engine = Engine(store=store)
    assert engine.store is store
    engine.receive(
        1,
        [{"channel": "/meta/handshake", "version": "1.0", "supportedConnectionTypes": [LP]}],
        now=0,
    )
    assert len(store) == 1


def test_decoded_bodies_drive_the_engine() -> None:
    w = Wire()
    batch = decode_body(b'{"channel":"/a","data":1,"id":"1"}')
    assert isinstance(batch, list)
    assert replies(w.send(batch)) == [{"id": "1", "channel": "/a", "successful": True}]


# ------------------------------------------------------ resent publishes


def test_a_resent_publish_is_acknowledged_but_delivered_once() -> None:
    w = Wire()
    watcher = connected(w, "/a")
    publisher = connected(w)
    message = {"channel": "/a", "data": 1, "clientId": publisher, "id": "7"}
    first = w.send([message])
    again = w.send([dict(message)])
    assert [r["successful"] for r in replies(first) + replies(again)] == [True, True]
    assert [e for e in events(first) if isinstance(e, Published)] == [Published(publisher, "/a", 1)]
    assert not [e for e in events(again) if isinstance(e, Published)]
    assert len(session(w, watcher).queue) == 1


def test_publish_ids_are_remembered_per_session_and_only_when_accepted() -> None:
    w = Wire()
    watcher = connected(w, "/a")
    one, two = connected(w), connected(w)
    w.send([{"channel": "/a/*", "data": 0, "clientId": one, "id": "x"}])  # refused: 405
    deep: list[Any] = []
    for _ in range(300):  # deeper than orjson encodes: refused after validation
        deep = [deep]
    (refused,) = replies(w.send([{"channel": "/a", "data": deep, "clientId": one, "id": "x"}]))
    assert refused["successful"] is False
    w.send([{"channel": "/a", "data": 1, "clientId": one, "id": "x"}])
    w.send([{"channel": "/a", "data": 2, "clientId": two, "id": "x"}])
    w.send([{"channel": "/a", "data": 3, "id": "x"}])  # anonymous: nothing to compare with
    w.send([{"channel": "/a", "data": 4, "id": "x"}])
    queued = [orjson.loads(m)["data"] for m in session(w, watcher).queue]
    assert queued == [1, 2, 3, 4]


def test_only_the_latest_publish_ids_are_remembered() -> None:
    w = Wire()
    watcher = connected(w, "/a")
    publisher = connected(w)
    for n in range(65):
        w.send([{"channel": "/a", "data": n, "clientId": publisher, "id": str(n)}])
    w.send([{"channel": "/a", "data": "old", "clientId": publisher, "id": "0"}])  # forgotten
    w.send([{"channel": "/a", "data": "new", "clientId": publisher, "id": "64"}])  # remembered
    queued = [orjson.loads(m)["data"] for m in session(w, watcher).queue]
    assert queued == [*range(65), "old"]
