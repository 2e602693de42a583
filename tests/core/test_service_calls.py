"""Service calls: a /service publish with an id, answered to the caller alone."""

from __future__ import annotations

from typing import Any

import pytest

from bayeux_core import (
    CallFailed,
    CallSucceeded,
    ClientSession,
    EngineConfig,
    Extension,
    LocalProtocolError,
    Message,
    MessageContext,
    Published,
    PublishSucceeded,
    SessionEnded,
    refuse,
)
from tests.core.helpers import Wire, events, replies

#: connects answered at once, so a test can poll without timers
CONFIG = EngineConfig(timeout=0)


def connect(client_id: str) -> Message:
    return {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}


def test_a_call_is_reported_with_its_id_and_answered_to_the_caller_alone() -> None:
    wire = Wire(CONFIG)
    caller, other = wire.handshake(), wire.handshake()
    for client_id in (caller, other):
        wire.send([connect(client_id)])
    call = {"channel": "/service/add", "data": [1, 2], "clientId": caller, "id": "7"}
    actions = wire.send([call])
    assert replies(actions) == [
        {"id": "7", "clientId": caller, "channel": "/service/add", "successful": True}
    ]
    assert events(actions) == [Published(caller, "/service/add", [1, 2], None, "7")]
    assert wire.engine.answer_call(caller, "/service/add", "7", now=wire.now, data=3)
    assert replies(wire.send([connect(other)]))[1:] == []  # the connect reply alone
    result = replies(wire.send([connect(caller)]))[1:]
    assert result == [{"channel": "/service/add", "id": "7", "successful": True, "data": 3}]


def test_a_failed_call_carries_the_error_and_null_data() -> None:
    wire = Wire(CONFIG)
    caller = wire.handshake()
    wire.send([connect(caller)])
    assert wire.engine.answer_call(caller, "/service/x", 1, now=wire.now, error="400::No")
    result = replies(wire.send([connect(caller)]))[1:]
    assert result == [
        {"channel": "/service/x", "id": 1, "successful": False, "data": None, "error": "400::No"}
    ]


def test_answer_call_refuses_misuse() -> None:
    wire = Wire(CONFIG)
    caller = wire.handshake()
    with pytest.raises(LocalProtocolError):
        wire.engine.answer_call(caller, "/chat", "1", now=0)
    with pytest.raises(LocalProtocolError):
        wire.engine.answer_call(caller, "/service/x", "1", now=0, data={1, 2})
    assert not wire.engine.answer_call("gone", "/service/x", "1", now=0, data=1)


def test_outgoing_extensions_see_the_result() -> None:
    class Stamp(Extension):
        def outgoing(self, message: Message, context: MessageContext) -> Message | None:
            if context.is_delivery:
                message["ext"] = {"for": context.client_id}
            return message

    wire = Wire(CONFIG, extensions=(Stamp(),))
    caller = wire.handshake()
    wire.send([connect(caller)])
    wire.engine.answer_call(caller, "/service/x", "1", now=0, data=1)
    (result,) = replies(wire.send([connect(caller)]))[1:]
    assert result["ext"] == {"for": caller}


class Loop:
    """A ClientSession talking to an Engine, by hand."""

    def __init__(self, *extensions: Extension) -> None:
        self.wire = Wire(CONFIG, extensions=extensions)
        self.session = ClientSession(connection_types=["long-polling"], retry=1.0)
        self.session.handshake(now=0)
        self.published: list[Published] = []

    def round(self, *, drop_acks: bool = False) -> list[Any]:
        """Send what the session has; feed back the replies (acks last, or not at all)."""
        sent = self.session.messages_to_send()
        actions = self.wire.send(sent) if sent else []
        self.published += [e for e in events(actions) if isinstance(e, Published)]
        got = replies(actions)
        if drop_acks:
            got = [m for m in got if not str(m.get("channel")).startswith("/service/")]
        self.session.receive(got, now=self.wire.now)
        return self.session.events()

    def settle(self) -> list[Any]:
        seen: list[Any] = []
        for _ in range(5):  # bounded: a connect per round brings the queue in
            seen += self.round()
        return seen


def test_a_client_session_call_succeeds_with_the_data() -> None:
    loop = Loop()
    loop.settle()
    call_id = loop.session.call("/service/echo", {"q": 1}, now=0)
    loop.round()
    (call,) = loop.published
    assert call.message_id == call_id
    loop.wire.engine.answer_call(
        call.client_id or "", call.channel, call.message_id, now=0, data={"a": 1}
    )
    seen = loop.settle()
    assert [e for e in seen if isinstance(e, (CallSucceeded, CallFailed, PublishSucceeded))] == [
        CallSucceeded(call_id, {"a": 1})
    ]
    assert loop.session._unanswered == 0


def test_a_result_that_overtakes_its_acknowledgement_settles_the_call() -> None:
    loop = Loop()
    loop.settle()
    call_id = loop.session.call("/service/echo", 1, now=0)
    loop.round(drop_acks=True)  # the acknowledgement is late
    (call,) = loop.published
    loop.wire.engine.answer_call(
        call.client_id or "", call.channel, call_id, now=0, error="400::Bad"
    )
    seen = loop.settle()
    assert CallFailed(call_id, "400::Bad") in seen
    assert loop.session._unanswered == 0
    assert loop.session.get_timer() is not None  # only the connect loop waits


def test_a_refused_call_fails_and_a_cancelled_one_is_forgotten() -> None:
    class NoAdmin(Extension):
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            if message.get("channel") == "/service/admin":
                return refuse(message, "403::Forbidden")
            return message

    loop = Loop(NoAdmin())
    loop.settle()
    refused = loop.session.call("/service/admin", 1, now=0)
    assert CallFailed(refused, "403::Forbidden") in loop.round()
    cancelled = loop.session.call("/service/echo", 1, now=0)
    loop.round()
    loop.session.cancel_call(cancelled)
    loop.wire.engine.answer_call(
        loop.session.client_id or "", "/service/echo", cancelled, now=0, data=1
    )
    assert not [e for e in loop.settle() if isinstance(e, (CallSucceeded, CallFailed))]


def test_calls_waiting_for_results_fail_when_the_session_ends() -> None:
    loop = Loop()
    loop.settle()
    call_id = loop.session.call("/service/slow", 1, now=0)
    loop.round()
    loop.session.disconnect(now=0)
    assert loop.session.events() == [CallFailed(call_id, "Disconnected"), SessionEnded(None)]


def test_only_service_channels_can_be_called() -> None:
    session = ClientSession()
    with pytest.raises(LocalProtocolError):
        session.call("/chat", 1, now=0)
