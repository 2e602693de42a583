"""Server-side control of sessions: Engine.disconnect, Engine.unsubscribe, error counts."""

from __future__ import annotations

from bayeux_core import (
    Close,
    Deliver,
    Disconnected,
    DisconnectReason,
    EngineConfig,
    Unsubscribed,
)

from .helpers import Wire, events, replies


def _subscribe(wire: Wire, client_id: str, *channels: str) -> None:
    wire.send(
        [
            {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel}
            for channel in channels
        ]
    )


def _connect(wire: Wire, client_id: str, conn: int | None = None) -> list[object]:
    message = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "long-polling"}
    return list(wire.send([message], conn=conn))


def test_disconnect_releases_held_connect_with_reconnect_none() -> None:
    wire = Wire()
    client_id = wire.handshake()
    _subscribe(wire, client_id, "/a", "/b")
    _connect(wire, client_id)  # the first connect is answered at once
    conn = wire.conn()
    assert _connect(wire, client_id, conn) == []  # held
    assert wire.engine.disconnect(client_id, now=wire.now) is True
    actions = wire.engine.actions_to_send()
    (reply,) = replies(actions, conn)
    assert reply["channel"] == "/meta/connect"
    assert reply["advice"] == {"reconnect": "none", "interval": 0}
    assert [e for e in events(actions) if isinstance(e, Unsubscribed)] == [
        Unsubscribed(client_id, "/a"),
        Unsubscribed(client_id, "/b"),
    ]
    assert events(actions)[-1] == Disconnected(client_id, DisconnectReason.SERVER)
    assert wire.engine.store.get(client_id) is None


def test_kicked_client_is_told_reconnect_none_until_the_session_timeout() -> None:
    wire = Wire(EngineConfig(session_timeout=30.0))
    client_id = wire.handshake()
    _connect(wire, client_id)
    assert wire.engine.disconnect(client_id, now=wire.now)
    wire.engine.actions_to_send()
    (reply,) = replies(_connect(wire, client_id))  # type: ignore[arg-type]
    assert reply["successful"] is False
    assert reply["error"].startswith("401:")
    assert reply["advice"]["reconnect"] == "none"
    # An id never kicked still gets the usual advice to handshake again.
    (plain,) = replies(_connect(wire, "c" + "9" * 30))  # type: ignore[arg-type]
    assert plain["advice"]["reconnect"] == "handshake"
    # After the session timeout the id is forgotten: the usual 402 again.
    wire.advance(31.0)
    (later,) = replies(_connect(wire, client_id))  # type: ignore[arg-type]
    assert later["advice"]["reconnect"] == "handshake"
    # A later kick sweeps the stale entry away.
    other = wire.handshake()
    assert wire.engine.disconnect(other, now=wire.now)
    assert list(wire.engine._kicked) == [other]


def test_disconnect_closes_a_stream() -> None:
    wire = Wire()
    client_id = wire.handshake(("websocket",))
    stream = wire.conn()
    wire.engine.open_stream(stream, now=wire.now)
    wire.send(
        [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"}],
        conn=stream,
    )
    assert wire.engine.disconnect(client_id, now=wire.now)
    actions = wire.engine.actions_to_send()
    assert Close(stream) in actions


def test_disconnect_unknown_client() -> None:
    wire = Wire()
    assert wire.engine.disconnect("nobody", now=0.0) is False
    assert wire.engine.disconnect(42, now=0.0) is False  # type: ignore[arg-type]
    assert wire.engine.actions_to_send() == []


def test_unsubscribe_from_the_server_stops_deliveries() -> None:
    wire = Wire()
    client_id = wire.handshake(("websocket",))
    stream = wire.conn()
    wire.engine.open_stream(stream, now=wire.now)
    wire.send(
        [{"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"}],
        conn=stream,
    )
    _subscribe(wire, client_id, "/news", "/other")
    assert wire.engine.unsubscribe(client_id, "/news", now=wire.now) is True
    assert events(wire.engine.actions_to_send()) == [Unsubscribed(client_id, "/news")]
    wire.engine.publish("/news", "x", now=wire.now)
    assert not [a for a in wire.engine.actions_to_send() if isinstance(a, Deliver)]
    wire.engine.publish("/other", "y", now=wire.now)
    assert [a for a in wire.engine.actions_to_send() if isinstance(a, Deliver)]
    assert wire.engine.store.get(client_id).subscriptions == {"/other"}  # type: ignore[union-attr]


def test_unsubscribe_of_what_does_not_exist() -> None:
    wire = Wire()
    client_id = wire.handshake()
    assert wire.engine.unsubscribe(client_id, "/never", now=wire.now) is False
    assert wire.engine.unsubscribe("nobody", "/never", now=wire.now) is False
    assert wire.engine.unsubscribe(7, "/never", now=wire.now) is False  # type: ignore[arg-type]
    assert events(wire.engine.actions_to_send()) == []


def test_error_counts_by_code() -> None:
    wire = Wire()
    assert wire.engine.error_counts == {}
    _connect(wire, "c" + "1" * 30)
    _connect(wire, "c" + "2" * 30)
    wire.send([{"channel": "/meta/subscribe", "clientId": wire.handshake()}])
    # Two connects from unknown clients (401), one subscribe without a subscription (402).
    assert wire.engine.error_counts == {"401": 2, "402": 1}


def test_error_counts_keep_client_chosen_errors_to_one_key() -> None:
    # A client may set "error" on its own messages (it refuses itself); those
    # strings must not grow the table (or the metric labels built from it).
    wire = Wire()
    client_id = wire.handshake()
    for n in range(50):
        wire.send([{"channel": "/a", "clientId": client_id, "data": 1, "error": f"x{n}:no"}])
    wire.send([{"channel": "/a", "clientId": client_id, "data": 1, "error": "4031:no"}])
    wire.send([{"channel": "/a", "clientId": client_id, "data": 1, "error": "403:/a:no"}])
    assert wire.engine.error_counts == {"other": 51, "403": 1}
