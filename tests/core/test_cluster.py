"""What a cluster bus asks of a batch: claimed_sessions(), recovery_offset(),
refuse_without_backend() and fail_without_backend()."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bayeux_core import (
    EngineConfig,
    HistoryPolicy,
    Message,
    claimed_sessions,
    fail_without_backend,
    recovery_offset,
    refuse_without_backend,
)
from bayeux_core._cluster import MAX_CLAIMED_ID_LENGTH
from bayeux_core._history import requested_since

from .helpers import Wire, replies

ERROR = "503::Redis unreachable"
PUBLISH_ERROR = "407::Redis unreachable"
CID = "c" * 31


def msg(channel: Any, **fields: Any) -> dict[str, Any]:
    return {"channel": channel, **fields}


# ----------------------------------------------------------- claimed_sessions


def test_a_batch_of_publishes_and_handshakes_claims_nothing() -> None:
    batch = [
        msg("/chat", clientId=CID, data=1),
        msg("/meta/handshake", clientId=CID),
        msg("/service/echo", clientId=CID, data=1),
        msg("/meta/foo", clientId=CID),
        msg("/meta", clientId=CID),
    ]
    assert claimed_sessions(batch) == {}
    assert claimed_sessions([]) == {}


@pytest.mark.parametrize(
    "channel", ["/meta/connect", "/meta/subscribe", "/meta/unsubscribe", "/meta/disconnect"]
)
def test_each_session_message_claims(channel: str) -> None:
    connect = channel == "/meta/connect"
    assert claimed_sessions([msg(channel, clientId=CID)]) == {CID: connect}


def test_a_connect_anywhere_in_the_batch_claims_for_deliveries() -> None:
    batch = [
        msg("/meta/subscribe", clientId="b", subscription="/x"),
        msg("/meta/subscribe", clientId="a", subscription="/x"),
        msg("/meta/connect", clientId="a"),
        msg("/meta/unsubscribe", clientId="a", subscription="/x"),
        msg("/meta/disconnect", clientId="c"),
    ]
    claims = claimed_sessions(batch)
    assert claims == {"b": False, "a": True, "c": False}
    assert list(claims) == ["b", "a", "c"]  # in the order first named


@pytest.mark.parametrize(
    "message",
    [
        None,
        "text",
        ["/meta/connect"],
        {"clientId": CID},
        msg(None, clientId=CID),
        msg(["/meta/connect"], clientId=CID),  # unhashable: must not raise
        msg({"a": 1}, clientId=CID),
        msg("/meta/connect"),
        msg("/meta/connect", clientId=None),
        msg("/meta/connect", clientId=5),
        msg("/meta/connect", clientId=[CID]),
        msg("/meta/connect", clientId=""),
        msg("/meta/connect", clientId="x" * (MAX_CLAIMED_ID_LENGTH + 1)),
    ],
)
def test_what_names_no_session_claims_nothing(message: object) -> None:
    assert claimed_sessions([message]) == {}


def test_the_longest_claimed_id() -> None:
    client_id = "x" * MAX_CLAIMED_ID_LENGTH
    assert claimed_sessions([msg("/meta/connect", clientId=client_id)]) == {client_id: True}


def claims_model(batch: list[Any]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for m in batch:
        if not isinstance(m, dict) or not isinstance(m.get("channel"), str):
            continue
        if m["channel"] not in (
            "/meta/connect",
            "/meta/subscribe",
            "/meta/unsubscribe",
            "/meta/disconnect",
        ):
            continue
        cid = m.get("clientId")
        if isinstance(cid, str) and 1 <= len(cid) <= 128:
            out[cid] = out.get(cid, False) or m["channel"] == "/meta/connect"
    return out


batch_messages = st.one_of(
    st.fixed_dictionaries(
        {
            "channel": st.sampled_from(
                [
                    "/meta/connect",
                    "/meta/subscribe",
                    "/meta/unsubscribe",
                    "/meta/disconnect",
                    "/meta/handshake",
                    "/meta/other",
                    "/service/x",
                    "/chat",
                ]
            )
            | st.integers()
            | st.none()
        },
        optional={"clientId": st.sampled_from(["a", "b", "", "z" * 129]) | st.integers()},
    ),
    st.none(),
    st.text(max_size=3),
)


@given(st.lists(batch_messages, max_size=10))
def test_claims_match_the_model(batch: list[Any]) -> None:
    assert claimed_sessions(batch) == claims_model(batch)


# ----------------------------------------------------------- recovery_offset


def subscribe(since: Any = None, **fields: Any) -> dict[str, Any]:
    message = msg("/meta/subscribe", **({"clientId": CID, "subscription": "/x"} | fields))
    if since is not None:
        message["ext"] = {"history": {"since": since}}
    return message


def test_a_recovering_subscribe_names_its_offset() -> None:
    assert recovery_offset(subscribe("ab12:42"), "ab12") == 42
    assert recovery_offset(subscribe("ab12:0"), "ab12") == 0
    assert recovery_offset(subscribe("a:b:7"), "a:b") == 7


@pytest.mark.parametrize(
    "message",
    [
        subscribe(),
        subscribe("other:42"),
        subscribe("ab12:"),
        subscribe("ab12:-1"),
        subscribe("ab12:4x"),
        subscribe("ab12:\u0663"),  # a digit, but not an ASCII one
        subscribe(":42"),
        subscribe("42"),
        subscribe("ab12:" + "9" * 60),  # a position is at most 64 characters
        subscribe(42),
        subscribe(["ab12:42"]),
        subscribe(ext="ab12:42"),
        subscribe(ext={"history": "ab12:42"}),
        subscribe(ext={"history": {"position": "ab12:42"}}),
        msg("/meta/connect", clientId=CID, ext={"history": {"since": "ab12:42"}}),
        msg("/chat", data=1, ext={"history": {"since": "ab12:42"}}),
        msg("/meta/subscribe/x", ext={"history": {"since": "ab12:42"}}),
        msg(None, ext={"history": {"since": "ab12:42"}}),
        None,
        ["/meta/subscribe"],
    ],
)
def test_no_offset_to_recover(message: object) -> None:
    assert recovery_offset(message, "ab12") is None


def test_an_empty_epoch_names_nothing() -> None:
    assert recovery_offset(subscribe(":42"), "") is None


@given(st.text(min_size=1, max_size=20).filter(lambda e: len(e) < 40), st.integers(0, 10**20))
def test_the_position_the_engine_hands_out_is_recovered(epoch: str, offset: int) -> None:
    assert recovery_offset(subscribe(f"{epoch}:{offset}"), epoch) == offset


def test_a_position_from_a_shared_history_engine_round_trips() -> None:
    config = EngineConfig(history={"/x": HistoryPolicy(size=10)})
    w = Wire(config)
    assert w.engine.share_history("ep01", 100)
    cid = w.handshake()
    (reply,) = replies(w.send([subscribe(clientId=cid)]))
    position = reply["ext"]["history"]["position"]
    assert recovery_offset(subscribe(position, clientId=cid), "ep01") == 100


def test_requested_since() -> None:
    assert requested_since(subscribe("e:1")) == "e:1"
    assert requested_since(subscribe(ext={"history": {"since": 5}})) == 5
    assert requested_since(subscribe()) is None
    assert requested_since(subscribe(ext=[1])) is None
    assert requested_since(subscribe(ext={"history": None})) is None


# ---------------------------------------------------- refuse_without_backend


@pytest.mark.parametrize(
    ("channel", "error"),
    [
        ("/meta/handshake", ERROR),
        ("/meta/connect", ERROR),
        ("/meta/subscribe", ERROR),
        ("/meta/unsubscribe", ERROR),
        ("/meta/disconnect", ERROR),
        ("/chat", PUBLISH_ERROR),
        ("/a/b/c", PUBLISH_ERROR),
        ("not a channel", PUBLISH_ERROR),  # the engine would refuse it anyway
        ("/metadata", PUBLISH_ERROR),
        ("/meta/foo", None),
        ("/meta", None),
        ("/service/echo", None),
        ("/service", None),
    ],
)
def test_what_needs_the_backend_is_refused(channel: str, error: str | None) -> None:
    message = msg(channel, clientId=CID, id="1")
    refuse_without_backend([message], error=ERROR, publish_error=PUBLISH_ERROR)
    assert message.get("error") == error
    assert message["channel"] == channel
    assert set(message) == {"channel", "clientId", "id"} | ({"error"} if error else set())


def test_what_is_refused_already_or_no_message_is_left_alone() -> None:
    batch: list[Any] = [
        msg("/chat", error="403::Denied"),
        msg("/meta/subscribe", error=None),  # error set, even to null
        msg(None),
        msg(7),
        {"data": 1},
        None,
        "text",
    ]
    before = orjson.dumps(batch)
    refuse_without_backend(batch, error=ERROR, publish_error=PUBLISH_ERROR)
    assert orjson.dumps(batch) == before


def test_the_engine_answers_a_refused_batch_with_the_errors() -> None:
    w = Wire()
    cid = w.handshake()
    batch: list[Message] = [
        msg("/meta/subscribe", clientId=cid, subscription="/x", id="s"),
        msg("/chat", clientId=cid, data=1, id="p"),
        msg("/meta/handshake", version="1.0", supportedConnectionTypes=["long-polling"], id="h"),
    ]
    refuse_without_backend(batch, error=ERROR, publish_error=PUBLISH_ERROR)
    got = {r["id"]: r for r in replies(w.send(batch))}
    assert got["s"]["successful"] is False
    assert got["s"]["error"] == ERROR
    assert got["p"]["successful"] is False
    assert got["p"]["error"] == PUBLISH_ERROR
    assert got["h"]["successful"] is False
    assert got["h"]["error"] == ERROR
    assert w.engine.store.get(cid).subscriptions == set()  # type: ignore[union-attr]


# ------------------------------------------------------ fail_without_backend


def fail(answers: list[Any]) -> list[Any]:
    body = fail_without_backend(orjson.dumps(answers), error=ERROR, publish_error=PUBLISH_ERROR)
    result: list[Any] = orjson.loads(body)
    return result


@pytest.mark.parametrize(
    ("channel", "error"),
    [
        ("/meta/handshake", ERROR),
        ("/meta/subscribe", ERROR),
        ("/meta/unsubscribe", ERROR),
        ("/chat", PUBLISH_ERROR),
        ("/metadata", PUBLISH_ERROR),
    ],
)
def test_an_acknowledged_change_the_backend_lost_fails(channel: str, error: str) -> None:
    ack = {"id": "1", "channel": channel, "clientId": CID, "successful": True, "extra": [1]}
    assert fail([ack]) == [
        {"id": "1", "channel": channel, "successful": False, "extra": [1], "error": error}
    ]


@pytest.mark.parametrize(
    "answer",
    [
        {"channel": "/meta/connect", "clientId": CID, "successful": True},
        {"channel": "/meta/disconnect", "clientId": CID, "successful": True},
        {"channel": "/service/echo", "clientId": CID, "successful": True},
        {"channel": "/service", "clientId": CID, "successful": True},
        {"channel": "/meta/other", "successful": True},
        {"channel": "/meta", "successful": True},
        {"channel": "/chat", "clientId": CID, "successful": False, "error": "403::x"},
        {"channel": "/chat", "clientId": CID, "successful": 1},
        {"channel": "/chat", "data": {"text": "a delivery"}},
        {"channel": 5, "successful": True},
        {"successful": True},
        "text",
        None,
    ],
)
def test_other_answers_are_kept(answer: Any) -> None:
    assert fail([answer]) == [answer]


def test_a_body_with_nothing_to_fail_comes_back_the_same() -> None:
    body = orjson.dumps(
        [
            {"id": "c", "channel": "/meta/connect", "clientId": CID, "successful": True},
            {"channel": "/chat", "data": {"n": 1}},
        ]
    )
    assert fail_without_backend(body, error=ERROR, publish_error=PUBLISH_ERROR) == body


def test_an_engine_reply_fails_as_a_whole() -> None:
    w = Wire()
    cid = w.handshake()
    body = orjson.dumps(
        replies(
            w.send(
                [
                    msg("/meta/subscribe", clientId=cid, subscription="/x", id="s"),
                    msg("/chat", clientId=cid, data=1, id="p"),
                    msg("/meta/connect", clientId=cid, connectionType="long-polling", id="c"),
                ]
            )
        )
    )
    failed = fail_without_backend(body, error="e", publish_error="p")
    got = {a["id"]: a for a in orjson.loads(failed)}
    assert got["s"]["successful"] is False
    assert got["s"]["error"] == "e"
    assert "clientId" not in got["s"]
    assert got["p"]["successful"] is False
    assert got["p"]["error"] == "p"
    assert "clientId" not in got["p"]
    assert got["c"]["successful"] is True
    assert got["c"]["clientId"] == cid
