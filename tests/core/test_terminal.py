"""Terminal refusals: an extension refuses a handshake for good (Faye #542).

The reply then advises ``reconnect: none``, and our client session stops.
"""

from __future__ import annotations

from typing import Any

from bayeux_core import (
    ClientSession,
    ClientState,
    Extension,
    HandshakeFailed,
    Message,
    MessageContext,
    SessionEnded,
    refuse,
)
from tests.core.helpers import Wire, replies

HANDSHAKE: Message = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "supportedConnectionTypes": ["long-polling"],
    "id": "1",
}


class TokenAuth(Extension):
    """Refuses handshakes without the right token; bad tokens for good."""

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        if message.get("channel") != "/meta/handshake":
            return message
        ext = message.get("ext")
        token = ext.get("token") if isinstance(ext, dict) else None
        if token == "good":
            return message
        if token is None:
            return refuse(message, "401::Token missing")  # may come later: retry
        return refuse(message, "403::Bad token", final=True, interval=5000)


def handshake_reply(wire: Wire, ext: Any = None) -> dict[str, Any]:
    message = dict(HANDSHAKE)
    if ext is not None:
        message["ext"] = ext
    (reply,) = replies(wire.send([message]))
    return reply


def test_a_final_refusal_advises_reconnect_none_with_the_interval() -> None:
    wire = Wire(extensions=(TokenAuth(),))
    reply = handshake_reply(wire, {"token": "stolen"})
    assert reply["successful"] is False
    assert reply["error"] == "403::Bad token"
    assert reply["advice"] == {"reconnect": "none", "interval": 5000}
    assert len(wire.engine.store) == 0


def test_an_ordinary_refusal_still_advises_a_new_handshake() -> None:
    wire = Wire(extensions=(TokenAuth(),))
    reply = handshake_reply(wire)
    assert reply["error"] == "401::Token missing"
    assert reply["advice"]["reconnect"] == "handshake"
    assert handshake_reply(wire, {"token": "good"})["successful"] is True


def test_a_bad_interval_becomes_zero() -> None:
    class Odd(Extension):
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            message["error"] = "403::No"
            message["advice"] = {"reconnect": "none", "interval": "soon"}
            return message

    reply = handshake_reply(Wire(extensions=(Odd(),)))
    assert reply["advice"] == {"reconnect": "none", "interval": 0}


def test_advice_without_an_error_is_ignored() -> None:
    # A client cannot make the server advise anything by sending advice itself.
    wire = Wire()
    message = dict(HANDSHAKE, advice={"reconnect": "none", "interval": 1})
    (reply,) = replies(wire.send([message]))
    assert reply["successful"] is True
    assert reply["advice"]["reconnect"] == "retry"


def test_a_refused_publish_gets_no_advice() -> None:
    class RefuseAll(Extension):
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            if message.get("channel") == "/chat":
                return refuse(message, "403::No", final=True)
            return message

    wire = Wire(extensions=(RefuseAll(),))
    client_id = wire.handshake()
    publish = {"channel": "/chat", "data": 1, "clientId": client_id, "id": "p"}
    (reply,) = replies(wire.send([publish]))
    assert reply["error"] == "403::No"
    assert "advice" not in reply


def test_a_client_session_stops_after_a_final_refusal() -> None:
    wire = Wire(extensions=(TokenAuth(),))
    session = ClientSession(connection_types=["long-polling"], retry=1.0)
    session.handshake(now=0)
    for _ in range(3):  # bounded: a looping client would send a handshake each round
        sent = session.messages_to_send()
        if not sent:
            break
        for message in sent:
            message["ext"] = {"token": "stolen"}
        session.receive(replies(wire.send(sent)), now=wire.now)
        wire.now += 10
        session.handle_timer(wire.now)
    assert session.state is ClientState.DISCONNECTED
    assert session.events() == [
        HandshakeFailed("403::Bad token", final=True),
        SessionEnded("403::Bad token"),
    ]
    assert session.get_timer() is None
    assert session.messages_to_send() == []
