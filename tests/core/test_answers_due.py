"""Engine.answers_due: a held connect that got messages is answered next."""

from __future__ import annotations

from bayeux_core import Engine, Reply

from .helpers import Wire, connected


def due(engine: Engine) -> bool:
    return engine.answers_due


def test_a_publish_to_a_held_subscriber_is_due_until_the_actions_are_taken() -> None:
    w = Wire()
    client_id = connected(w, "/chat")
    held = w.conn()
    w.engine.receive(
        held,
        [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}],
        now=w.now,
    )
    assert w.engine.actions_to_send() == []  # held
    assert not due(w.engine)
    w.engine.publish("/chat", {"n": 1}, now=w.now)
    assert due(w.engine)
    actions = w.engine.actions_to_send()
    assert any(isinstance(a, Reply) and a.conn == held for a in actions)
    assert not due(w.engine)


def test_a_publish_nobody_holds_a_connect_for_is_not_due() -> None:
    w = Wire()
    connected(w, "/chat")  # subscribed, but no connect held
    w.engine.publish("/chat", {"n": 1}, now=w.now)
    assert not due(w.engine)
