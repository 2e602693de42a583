"""A session's private access data (MessageContext.access) and the
credential-expiry disconnect (Engine.disconnect(..., rehandshake=True))."""

from __future__ import annotations

from typing import Any

from bayeux_core import (
    Disconnected,
    DisconnectReason,
    Extension,
    ExtensionFailed,
    Message,
    MessageContext,
)

from .helpers import Wire, events, replies
from .test_engine import connected, hold, one_reply


class Remember(Extension):
    """Gives each handshake access data from its ext; records what later messages see."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        channel = message["channel"]
        if channel == "/meta/handshake":
            ext = message.get("ext") or {}
            context.access = ext.get("grant")
        else:
            self.seen.append((channel, context.access))
        return message


def hs(ext: Any) -> dict[str, Any]:
    return {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
        "ext": ext,
        "id": "h",
    }


def handshake(w: Wire, ext: Any) -> dict[str, Any]:
    actions = w.send([hs(ext)])
    (reply,) = replies(actions)
    return reply


def test_access_set_on_handshake_is_seen_by_later_messages_and_never_sent() -> None:
    remember = Remember()
    w = Wire(extensions=(remember,))
    reply = handshake(w, {"grant": {"channels": ["/a/**"], "exp": 12.5}})
    cid = reply["clientId"]
    assert "channels" not in str(reply)
    w.send([{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/a/b"}])
    assert remember.seen == [("/meta/subscribe", {"channels": ["/a/**"], "exp": 12.5})]
    assert w.engine.store.get(cid).access == {"channels": ["/a/**"], "exp": 12.5}  # type: ignore[union-attr]


def test_a_refused_handshake_leaves_no_access_for_the_next_one() -> None:
    class RefuseFirst(Remember):
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            super().incoming(message, context)
            if message["channel"] == "/meta/handshake" and message["ext"].get("refuse"):
                message["error"] = "401::no"
            return message

    w = Wire(extensions=(RefuseFirst(),))
    assert handshake(w, {"grant": "secret", "refuse": True})["successful"] is False
    cid = handshake(w, {})["clientId"]
    assert w.engine.store.get(cid).access is None  # type: ignore[union-attr]


def test_access_that_json_cannot_encode_is_the_extensions_bug() -> None:
    w = Wire(extensions=(Remember(),))
    assert handshake(w, {"grant": 1})["successful"] is True
    actions = w.send([hs({"grant": {1, 2}})])
    (reply,) = replies(actions)
    assert reply["successful"] is False
    assert [type(e) for e in events(actions)] == [ExtensionFailed]


def test_adopted_session_keeps_its_access() -> None:
    remember = Remember()
    w = Wire(extensions=(remember,))
    w.engine.adopt("c" * 31, now=0.0, subscriptions=["/a"], access={"exp": 3})
    w.send([{"channel": "/meta/connect", "clientId": "c" * 31, "connectionType": "long-polling"}])
    assert remember.seen == [("/meta/connect", {"exp": 3})]


def test_rehandshake_answers_a_held_connect_with_reconnect_handshake() -> None:
    w = Wire()
    cid = connected(w, "/a")
    held = hold(w, cid)
    assert w.engine.disconnect(cid, now=w.now, rehandshake=True) is True
    actions = w.engine.actions_to_send()
    (reply,) = one_reply(actions, held)
    assert reply["advice"] == {"reconnect": "handshake", "interval": 0}
    assert Disconnected(cid, DisconnectReason.SERVER) in events(actions)
    # Not a kick: its next message gets the usual "handshake again".
    actions = w.send(
        [{"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling"}]
    )
    (again,) = replies(actions)
    assert again["error"] == f"401:{cid}:Unknown client"
    assert again["advice"]["reconnect"] == "handshake"
    assert w.engine.disconnect(cid, now=w.now, rehandshake=True) is False
