"""failure_reply(), refused_copy() and unanswered()."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bayeux_core import (
    ClientSession,
    Extension,
    HandshakeFailed,
    Message,
    MessageContext,
    PublishFailed,
    failure_reply,
    refuse,
    refused_copy,
    unanswered,
)

from .helpers import Wire, replies

ERROR = "500::Internal server error"


# ------------------------------------------------------------ failure_reply


def test_failure_reply_names_what_a_client_matches_replies_by() -> None:
    message = {
        "id": "7",
        "channel": "/chat",
        "clientId": "abc",
        "data": {"text": "hi"},
        "ext": {"token": "secret"},
    }
    assert failure_reply(message, ERROR) == {
        "id": "7",
        "channel": "/chat",
        "clientId": "abc",
        "successful": False,
        "error": ERROR,
    }
    assert message["data"] == {"text": "hi"}  # untouched


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"id": 3, "channel": "/a"}, {"id": 3, "channel": "/a"}),
        ({"id": 1.5, "channel": "/a"}, {"channel": "/a"}),
        ({"id": True, "channel": "/a"}, {"channel": "/a"}),
        ({"id": None, "channel": "/a"}, {"channel": "/a"}),
        ({"id": ["x"], "channel": 5, "clientId": {"a": 1}}, {}),
        ({"channel": "/meta/handshake"}, {"channel": "/meta/handshake"}),
        ({}, {}),
        (None, {}),
        (["/a"], {}),
        ("text", {}),
    ],
)
def test_failure_reply_leaves_out_what_is_not_an_id_or_a_name(
    message: object, expected: dict[str, Any]
) -> None:
    assert failure_reply(message, "e") == {**expected, "successful": False, "error": "e"}


def test_the_engine_refuses_with_failure_reply() -> None:
    class Broken(Extension):
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            raise RuntimeError("bug")

    w = Wire(extensions=(Broken(),))
    message = {"channel": "/chat", "id": 4, "data": 1}
    (reply,) = replies(w.send([message]))
    assert reply == failure_reply(message, ERROR)


# -------------------------------------------------------------- refused_copy


def test_refused_copy_keeps_only_what_a_reply_is_matched_by() -> None:
    message = {
        "id": "9",
        "channel": "/meta/subscribe",
        "clientId": "abc",
        "subscription": "/x",
        "ext": {"auth": "t"},
        "advice": {"reconnect": "none"},
    }
    copy = refused_copy(message, ERROR)
    assert copy == {"id": "9", "channel": "/meta/subscribe", "clientId": "abc", "error": ERROR}
    assert "error" not in message
    assert copy is not message


def test_refused_copy_copies_fields_as_they_are() -> None:
    # The engine judges them when it answers (a bad id gets its own error).
    assert refused_copy({"id": [1], "channel": 2}, "e") == {"id": [1], "channel": 2, "error": "e"}
    assert refused_copy({"data": 1}, "e") == {"error": "e"}


def test_the_engine_answers_a_refused_copy_as_a_refusal() -> None:
    w = Wire()
    cid = w.handshake()
    message = {"channel": "/meta/subscribe", "clientId": cid, "subscription": "/x", "id": "s"}
    (reply,) = replies(w.send([refused_copy(message, "403::Denied")]))
    assert reply["successful"] is False
    assert reply["error"] == "403::Denied"
    assert reply["id"] == "s"
    assert reply.get("subscription", "/x") == "/x"
    assert w.engine.store.get(cid) is not None
    assert w.engine.store.get(cid).subscriptions == set()  # type: ignore[union-attr]


def test_refused_copy_is_refuse_on_a_fresh_message() -> None:
    message = {"id": "1", "channel": "/a", "clientId": "c"}
    assert refused_copy({**message, "data": 5}, "e") == refuse(dict(message), "e")


# ---------------------------------------------------------------- unanswered


def test_unanswered_are_the_messages_without_a_reply() -> None:
    sent = [
        {"id": "1", "channel": "/a"},
        {"id": "2", "channel": "/b"},
        {"id": "3", "channel": "/c"},
    ]
    got = [
        {"id": "1", "channel": "/a", "successful": True},
        {"id": "3", "channel": "/c", "data": "a delivery is no answer"},
        "not a message",
        None,
        {"id": "3", "channel": "/c"},
    ]
    assert unanswered(sent, got) == [sent[1], sent[2]]
    assert unanswered(sent, []) == sent
    assert unanswered([], got) == []


def test_a_failure_answers_too() -> None:
    sent = [{"id": "1", "channel": "/a"}]
    assert unanswered(sent, [{"id": "1", "successful": False, "error": "e"}]) == []


def test_ids_compare_as_text() -> None:
    sent: list[Message] = [{"id": 1, "channel": "/a"}, {"channel": "/b"}]
    assert unanswered(sent, [{"id": "1", "successful": True}]) == [sent[1]]
    # No id is answered by a reply with none, as a client would take it.
    assert unanswered(sent, [{"successful": True}]) == [sent[0]]


def test_replies_are_read_once() -> None:
    sent = [{"id": "1"}, {"id": "2"}]
    stream = iter([{"id": "2", "successful": True}])
    assert unanswered(sent, stream) == [sent[0]]


ids = st.lists(st.text(max_size=4), unique=True, max_size=8)


@given(ids, st.data())
def test_refusing_the_unanswered_answers_everything(message_ids: list[str], data: Any) -> None:
    sent: list[Message] = [{"id": i, "channel": "/a"} for i in message_ids]
    answered = data.draw(st.lists(st.sampled_from(sent), unique_by=id) if sent else st.just([]))
    got: list[Message] = [{"id": m["id"], "successful": True} for m in answered]
    missing = unanswered(sent, got)
    assert missing == [m for m in sent if m not in answered]
    got += [failure_reply(m, "e") for m in missing]
    assert unanswered(sent, got) == []


def _session() -> ClientSession:
    session = ClientSession(connection_types=("in-process",), retry=1.0, timeout=10.0)
    session.handshake(now=0.0)
    return session


def test_a_client_session_takes_a_failure_reply_as_a_refusal() -> None:
    session = _session()
    (handshake,) = session.messages_to_send()
    session.receive([failure_reply(handshake, "dropped")], now=0.0)
    failed = [e for e in session.events() if isinstance(e, HandshakeFailed)]
    assert [e.error for e in failed] == ["dropped"]


def test_a_publish_missing_from_the_replies_fails_with_the_error() -> None:
    # What the in-process client does with a batch a server extension dropped.
    session = _session()
    (handshake,) = session.messages_to_send()
    welcome = {
        "id": handshake["id"],
        "channel": "/meta/handshake",
        "successful": True,
        "clientId": "c1",
        "version": "1.0",
        "supportedConnectionTypes": ["in-process"],
    }
    session.receive([welcome], now=0.0)
    session.events()
    session.messages_to_send()
    publish_id = session.publish("/chat", {"x": 1}, now=0.0)
    sent = [m for m in session.messages_to_send() if m["channel"] == "/chat"]
    body: list[Message] = orjson.loads(b"[]")
    body.extend(failure_reply(m, "dropped") for m in unanswered(sent, body))
    session.receive(body, now=0.0)
    assert PublishFailed(publish_id, "dropped") in session.events()
