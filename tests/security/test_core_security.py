"""Faye's security history (faye.md section 4) and our hardening, engine side.

Each test names the row it covers (tests/security/__init__.py maps them). The
network-layer rows (JSON-P callbacks, CORS, TLS, HTTPoxy, WebSocket frames)
are in test_faye_history.py, against a real server.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeux_core import (
    Action,
    BodyError,
    Deliver,
    Engine,
    EngineConfig,
    Extension,
    Handshaken,
    Message,
    MessageContext,
    Reply,
    decode_body,
)
from tests.core.helpers import LP, Wire, connected, events, handshake_msg, replies


def snapshot(w: Wire) -> list[tuple[str, str, list[str], list[bytes], bool]]:
    """Everything a message could have changed in the engine's sessions."""
    return sorted(
        (s.client_id, s.state.value, sorted(s.subscriptions), list(s.queue), s.held is None)
        for s in w.engine.store
    )


def only_replies(actions: list[Action]) -> list[dict[str, Any]]:
    """The decoded replies, after checking that nothing else happened."""
    assert all(isinstance(a, Reply) for a in actions), actions
    return replies(actions)


# ----------------------------------------------- 2013-01: remote method calls

#: Server method names (Faye's, and Python's) a /meta/<x> dispatch could reach.
METHOD_CHANNELS = [
    "/meta/process",
    "/meta/close",
    "/meta/constructor",
    "/meta/__proto__",
    "/meta/__init__",
    "/meta/__class__",
    "/meta/_handle",
    "/meta/publish",
    "/meta/toString",
    "/meta/hasOwnProperty",
]


@pytest.mark.parametrize("channel", METHOD_CHANNELS)
def test_faye_2013_01_meta_method_names_are_403_without_side_effects(channel: str) -> None:
    w = Wire()
    cid = connected(w, "/**", "/a")
    before = snapshot(w)
    timer = w.engine.get_timer()
    msg = handshake_msg(
        channel=channel,
        clientId=cid,
        connectionType=LP,
        subscription="/b",
        data={"x": 1},
        id="1",
    )
    actions = w.send([msg, msg | {"clientId": "nobody"}, msg | {"clientId": None}])
    refused = {
        "id": "1",
        "channel": channel,
        "successful": False,
        "error": f"403:{channel}:Forbidden channel",
    }
    assert only_replies(actions) == [refused, refused, refused]
    assert snapshot(w) == before
    assert w.engine.get_timer() == timer
    assert len(w.engine.store) == 1


# --------------------------------------- 2015-12 (#417): message=1 and friends


@pytest.mark.parametrize(
    "raw", [b"1", b'"str"', b"null", b"true", b"[1]", b"[null]", b'[{"channel":"/a"},2]', b"{"]
)
def test_faye_417_non_object_bodies_are_400_before_the_engine(raw: bytes) -> None:
    result = decode_body(raw)
    assert isinstance(result, BodyError)
    assert result.http_status == 400


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b"[]",
        b'{"channel":1}',
        b'{"channel":null}',
        b'{"channel":[]}',
        b'{"channel":{"__proto__":1}}',
        b'{"channel":"/meta/handshake","version":1,"supportedConnectionTypes":"x"}',
        b'{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":[[],{}]}',
        b'{"channel":"/meta/connect","clientId":{},"connectionType":1}',
        b'{"channel":"/meta/connect","clientId":"x","connectionType":{}}',
        b'{"channel":"/meta/connect","clientId":"x","connectionType":"long-polling","advice":[]}',
        b'{"channel":"/meta/subscribe","clientId":"x","subscription":[[],{},null]}',
        b'{"channel":"/meta/unsubscribe","clientId":"x","subscription":{"a":"/a"}}',
        b'{"channel":"/meta/disconnect","clientId":1.5}',
        b'{"channel":"/a","data":1,"clientId":[],"id":{}}',
        b'{"channel":"/a","data":1,"id":[1]}',
        b'{"channel":"/a","error":{},"id":"1"}',
        b'{"channel":"/a/*","data":1}',
        b'{"channel":"/service/x"}',
    ],
)
def test_faye_417_odd_messages_get_replies_never_exceptions(raw: bytes) -> None:
    w = Wire()
    connected(w, "/**")
    batch = decode_body(raw)
    assert isinstance(batch, list)
    actions = w.send(batch)
    answer = only_replies(actions)
    assert len(answer) == len(batch)
    assert all(reply["successful"] is False for reply in answer)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
FIELD_VALUES = st.one_of(
    JSON,
    st.sampled_from(
        [
            "/meta/handshake",
            "/meta/connect",
            "/meta/subscribe",
            "/meta/unsubscribe",
            "/meta/disconnect",
            "/meta/subscribe/x",
            "/service/x",
            "/a",
            "/**",
            "long-polling",
            "websocket",
            "eventsource",
            "1.0",
            ["long-polling"],
            "__proto__",
            {"timeout": 0},
        ]
    ),
)
MESSAGES = st.lists(
    st.dictionaries(
        st.sampled_from(
            [
                "channel",
                "clientId",
                "id",
                "data",
                "version",
                "supportedConnectionTypes",
                "connectionType",
                "subscription",
                "advice",
                "ext",
                "error",
                "successful",
            ]
        ),
        FIELD_VALUES,
    )
    | JSON,
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(MESSAGES, min_size=1, max_size=4))
def test_faye_417_no_input_makes_the_engine_raise(batches: list[list[Any]]) -> None:
    w = Wire(EngineConfig(max_batch=3))
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    connected(w, "/**")
    for batch in batches:
        # Through JSON, as a peer would send it.
        decoded = decode_body(orjson.dumps(batch))
        if isinstance(decoded, BodyError):
            continue
        w.engine.receive(ws, decoded, now=w.now)
        w.engine.receive(w.conn(), decoded, now=w.now)
        for action in w.engine.actions_to_send():
            if isinstance(action, Reply):
                assert isinstance(orjson.loads(action.body), list)
        w.advance(10)


# ------------------------------------------- CVE-2020-11020: prefixed meta


PREFIXED = [
    "/meta/subscribe/x",
    "/meta/connect/x",
    "/meta/handshake/x",
    "/meta/unsubscribe/x",
    "/meta/disconnect/x",
    "/meta/subscribe/",
    "/meta/connect/long-polling",
]


@pytest.mark.parametrize("channel", PREFIXED)
def test_cve_2020_11020_prefixed_meta_channels_are_403(channel: str) -> None:
    w = Wire()
    cid = connected(w, "/a")
    w.send([{"channel": "/meta/connect", "clientId": cid, "connectionType": LP}], conn=w.conn())
    before = snapshot(w)
    msg = handshake_msg(
        channel=channel, clientId=cid, connectionType=LP, subscription="/secret", id="1"
    )
    actions = w.send([msg])
    assert only_replies(actions) == [
        {
            "id": "1",
            "channel": channel,
            "successful": False,
            "error": f"403:{channel}:Forbidden channel",
        }
    ]
    assert events(actions) == []
    assert snapshot(w) == before
    assert len(w.engine.store) == 1


class SubscribeGuard(Extension):
    """An exact-match auth extension, the kind CVE-2020-11020 bypassed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        self.seen.append(message.get("channel", ""))
        if message.get("channel") == "/meta/subscribe":
            message["error"] = "403::Subscriptions need a token"
        return message


def test_cve_2020_11020_an_extension_refusing_subscribe_is_not_bypassed() -> None:
    guard = SubscribeGuard()
    w = Wire(extensions=(guard,))
    cid = w.handshake()
    actions = w.send(
        [
            {"channel": "/meta/subscribe", "clientId": cid, "subscription": "/secret", "id": "1"},
            {"channel": "/meta/subscribe/x", "clientId": cid, "subscription": "/secret", "id": "2"},
        ]
    )
    assert only_replies(actions) == [
        {
            "id": "1",
            "channel": "/meta/subscribe",
            "successful": False,
            "error": "403::Subscriptions need a token",
        },
        {
            "id": "2",
            "channel": "/meta/subscribe/x",
            "successful": False,
            "error": "403:/meta/subscribe/x:Forbidden channel",
        },
    ]
    assert guard.seen[-2:] == ["/meta/subscribe", "/meta/subscribe/x"]
    session = w.engine.store.get(cid)
    assert session is not None
    assert session.subscriptions == set()
    w.engine.publish("/secret", "x", now=w.now)
    assert not session.queue


# ------------------------------ 1.4.2 (2026): clientIds that are not sessions

HOSTILE_IDS = ["__proto__", "constructor", "prototype", "toString", "x" * 100_000, "0" * 31]


@pytest.mark.parametrize("client_id", HOSTILE_IDS)
def test_faye_1_4_2_hostile_client_ids_are_401(client_id: str) -> None:
    w = Wire()
    connected(w, "/a")
    before = snapshot(w)
    for channel, extra in [
        ("/meta/connect", {"connectionType": LP}),
        ("/meta/connect", {"connectionType": "websocket"}),
        ("/meta/subscribe", {"subscription": "/a"}),
        ("/meta/unsubscribe", {"subscription": "/a"}),
        ("/meta/disconnect", {}),
    ]:
        msg = {"channel": channel, "clientId": client_id} | extra
        (reply,) = only_replies(w.send([msg]))
        assert reply["successful"] is False
        assert reply["error"] == f"401:{client_id}:Unknown client"
        assert "clientId" not in reply
    assert snapshot(w) == before


@pytest.mark.parametrize("client_id", [123, 1.5, True, None, ["x"], {"__proto__": 1}])
def test_faye_1_4_2_non_string_client_ids_are_402(client_id: Any) -> None:
    w = Wire()
    connected(w, "/a")
    before = snapshot(w)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("/meta/connect", {"connectionType": LP}),
        ("/meta/subscribe", {"subscription": "/a"}),
        ("/meta/unsubscribe", {"subscription": "/a"}),
        ("/meta/disconnect", {}),
    ]
    if client_id is not None:
        # A publish needs no client (null is as good as none), but not a bad one.
        cases.append(("/a", {"data": 1}))
    for channel, extra in cases:
        msg = {"channel": channel, "clientId": client_id} | extra
        (reply,) = only_replies(w.send([msg]))
        assert reply["error"] == "402:clientId:Missing required parameter"
    assert snapshot(w) == before


@pytest.mark.parametrize("client_id", HOSTILE_IDS)
def test_faye_1_4_2_eventsource_stream_for_a_hostile_client_id_binds_nothing(
    client_id: str,
) -> None:
    w = Wire()
    victim = connected(w, "/a")
    attacker = w.conn()
    assert w.engine.open_stream(attacker, now=w.now, client_id=client_id) is False
    w.engine.publish("/a", "secret", now=w.now)
    actions = w.engine.actions_to_send()
    assert [a for a in actions if isinstance(a, Deliver)] == []
    session = w.engine.store.get(victim)
    assert session is not None
    assert session.stream is None
    assert list(session.queue) == [b'{"channel":"/a","data":"secret"}']


@pytest.mark.parametrize("client_id", HOSTILE_IDS)
def test_faye_1_4_2_websocket_connect_for_a_hostile_client_id_binds_nothing(client_id: str) -> None:
    """The 1.4.0 bug: a socket bound before the clientId was checked."""
    w = Wire()
    victim = connected(w, "/a")
    attacker = w.conn()
    w.engine.open_stream(attacker, now=w.now)
    actions = w.send(
        [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"}],
        conn=attacker,
    )
    assert only_replies(actions)[0]["error"] == f"401:{client_id}:Unknown client"
    w.engine.publish("/a", "secret", now=w.now)
    assert [a for a in w.engine.actions_to_send() if isinstance(a, Deliver)] == []
    session = w.engine.store.get(victim)
    assert session is not None
    assert len(session.queue) == 1


# ------------------------------- advice injection and fake acknowledgements


def subscribers(w: Wire) -> tuple[str, int, str]:
    """A WebSocket subscriber and a long-polling one, both on /x."""
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    streamed = w.handshake()
    w.send(
        [
            {"channel": "/meta/subscribe", "clientId": streamed, "subscription": "/x"},
            {"channel": "/meta/connect", "clientId": streamed, "connectionType": "websocket"},
        ],
        conn=ws,
    )
    return streamed, ws, connected(w, "/x")


def test_advice_injection_and_fake_acknowledgement_are_stripped() -> None:
    w = Wire()
    _, ws, polled = subscribers(w)
    publisher = w.handshake()
    actions = w.send(
        [
            {
                "channel": "/x",
                "data": 1,
                "clientId": publisher,
                "advice": {"reconnect": "none", "interval": 0},
                "successful": True,
                "id": "1",
            }
        ]
    )
    assert only_replies([a for a in actions if isinstance(a, Reply)]) == [
        {"id": "1", "clientId": publisher, "channel": "/x", "successful": True}
    ]
    (deliver,) = [a for a in actions if isinstance(a, Deliver)]
    assert deliver.conns == [ws]
    assert orjson.loads(deliver.payload) == {"channel": "/x", "data": 1}
    session = w.engine.store.get(polled)
    assert session is not None
    assert [orjson.loads(m) for m in session.queue] == [{"channel": "/x", "data": 1}]
    # The subscriber's next connect reply carries the delivery with no advice
    # and no `successful`, so a client cannot take it for a reply of its own.
    conn = w.conn()
    body = replies(
        w.send([{"channel": "/meta/connect", "clientId": polled, "connectionType": LP}], conn=conn)
    )
    assert body[1] == {"channel": "/x", "data": 1}


def test_a_publish_carrying_error_is_refused_and_not_delivered() -> None:
    w = Wire()
    _, _, polled = subscribers(w)
    actions = w.send(
        [
            {
                "channel": "/x",
                "data": 1,
                "advice": {"reconnect": "none"},
                "successful": True,
                "id": "1",
                "error": "x",
            }
        ]
    )
    assert only_replies(actions) == [
        {"id": "1", "channel": "/x", "successful": False, "error": "x"}
    ]
    session = w.engine.store.get(polled)
    assert session is not None
    assert not session.queue


# ------------------------------------ /meta and /service never reach wildcards


def test_wildcard_subscribers_never_receive_meta_or_service_messages() -> None:
    w = Wire()
    ws = w.conn()
    w.engine.open_stream(ws, now=w.now)
    spy = w.handshake()
    (reply,) = replies(
        w.send(
            [
                {
                    "channel": "/meta/subscribe",
                    "clientId": spy,
                    "subscription": ["/**", "/*", "/a/**", "/service/**", "/service/*"],
                }
            ]
        )
    )
    assert reply["successful"] is True
    w.send([{"channel": "/meta/connect", "clientId": spy, "connectionType": "websocket"}], conn=ws)
    for pattern in ("/meta/**", "/meta/*", "/meta/connect"):
        (refused,) = only_replies(
            w.send([{"channel": "/meta/subscribe", "clientId": spy, "subscription": pattern}])
        )
        assert refused["error"] == f"403:{pattern}:Forbidden channel"
    # Other clients' whole protocol life, publishes to /meta and /service...
    other = connected(w, "/b")
    actions = w.send(
        [
            {"channel": "/meta/connect", "clientId": other, "connectionType": LP, "data": 1},
            {"channel": "/meta/foo", "clientId": other, "data": 1},
            {"channel": "/service/x", "clientId": other, "data": 1},
            {"channel": "/service/a/b", "data": 1},
            {"channel": "/meta/disconnect", "clientId": other, "data": 1},
        ]
    )
    assert [a for a in actions if isinstance(a, Deliver)] == []
    # ... while an ordinary publish does reach it.
    actions = w.send([{"channel": "/a/b", "data": 1}])
    (deliver,) = [a for a in actions if isinstance(a, Deliver)]
    assert deliver.conns == [ws]
    session = w.engine.store.get(spy)
    assert session is not None
    assert session.subscriptions == {"/**", "/*", "/a/**"}


# --------------------------------------------- clientIds are bearer tokens


def test_client_ids_are_31_random_base36_characters() -> None:
    engine = Engine()
    engine.receive(1, [handshake_msg() for _ in range(200)], now=0)
    ids = [e.client_id for e in engine.actions_to_send() if isinstance(e, Handshaken)]
    assert len(set(ids)) == 200
    assert all(re.fullmatch(r"[0-9a-z]{31}", cid) for cid in ids)
    # 160 bits: every position varies across 200 ids (a counter would not).
    for position in range(31):
        assert len({cid[position] for cid in ids}) > 1


def test_another_clients_session_cannot_be_touched_without_its_id() -> None:
    engine = Engine()
    engine.receive(1, [handshake_msg(), handshake_msg()], now=0)
    victim, attacker = [e.client_id for e in engine.actions_to_send() if isinstance(e, Handshaken)]
    engine.receive(
        2, [{"channel": "/meta/subscribe", "clientId": victim, "subscription": "/a"}], now=0
    )
    engine.actions_to_send()
    near = [victim[:-1] + ("0" if victim[-1] != "0" else "1"), victim.upper(), victim[1:], ""]
    near += [attacker, victim + " ", victim[:16]]
    for guess in near:
        engine.receive(
            3,
            [
                {"channel": "/meta/unsubscribe", "clientId": guess, "subscription": "/a"},
                {"channel": "/meta/disconnect", "clientId": guess},
            ],
            now=0,
        )
        engine.actions_to_send()
        session = engine.store.get(victim)
        assert session is not None
        assert session.subscriptions == {"/a"}
    # A publisher's id never reaches subscribers.
    engine.receive(4, [{"channel": "/a", "data": 1, "clientId": attacker}], now=0)
    engine.actions_to_send()
    session = engine.store.get(victim)
    assert session is not None
    (queued,) = session.queue
    assert attacker.encode() not in queued
    assert b"clientId" not in queued


# ---------------------------------------------- section 7: strict limits


def test_error_advice_always_has_an_interval() -> None:
    """Faye #542: a bare reconnect=handshake makes clients spin at 0 ms."""
    w = Wire()
    actions = w.send(
        [
            {"channel": "/meta/handshake"},
            {"channel": "/meta/connect", "clientId": "nobody", "connectionType": LP},
            {"channel": "/meta/connect", "connectionType": LP},
        ]
    )
    for reply in only_replies(actions):
        assert reply["advice"]["reconnect"] == "handshake"
        assert reply["advice"]["interval"] > 0


def test_channel_names_are_bounded() -> None:
    w = Wire()
    cid = w.handshake()
    long_name = "/" + "a" * 1024
    deep_name = "/a" * 65
    actions = w.send(
        [
            {"channel": long_name, "data": 1},
            {"channel": deep_name, "data": 1},
            {"channel": "/meta/subscribe", "clientId": cid, "subscription": long_name},
            {"channel": "/meta/subscribe", "clientId": cid, "subscription": deep_name + "/**"},
        ]
    )
    assert [r["error"].split(":")[0] for r in only_replies(actions)] == ["405"] * 4


def test_batches_and_bodies_are_bounded() -> None:
    too_large = decode_body(b"[" + b"{}," * 100 + b"{}]", max_bytes=100)
    assert isinstance(too_large, BodyError)
    assert too_large.http_status == 413
    too_many = decode_body(b"[{},{},{}]", max_messages=2)
    assert isinstance(too_many, BodyError)
    w = Wire(EngineConfig(max_batch=2))
    answers = only_replies(w.send([handshake_msg()] * 3))
    assert [a["error"] for a in answers] == ["400::Too many messages in one batch"] * 3
    assert len(w.engine.store) == 0
