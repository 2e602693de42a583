"""Every (session state, message kind) pair of TRANSITIONS, driven through a real engine.

For each pair the engine is first brought into the state (NONE: a clientId that
names no session; HANDSHAKEN: after a handshake; CONNECTED: after the first
connect), then sent one message of the kind (EXPIRE: time passes beyond the
session's deadline). The test checks what can be observed (the reply, the
events) against the row's :class:`Outcome`, and then probes the state the
session is in afterwards against the row's next state.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bayeux_core import (
    TRANSITIONS,
    Action,
    Deliver,
    Disconnected,
    DisconnectReason,
    Event,
    Handshaken,
    MessageKind,
    Outcome,
    Published,
    Reply,
    SessionExpired,
    SessionState,
    Subscribed,
    Unsubscribed,
)

from .helpers import Wire, events, replies

LP = "long-polling"
NOBODY = "nobody" + "0" * 25
TIMEOUT = 25.0
#: the default interval (0) plus the default session timeout (twice TIMEOUT)
EXPIRY = 2 * TIMEOUT
PAIRS = list(itertools.product(SessionState, MessageKind))

_S, _K, _O = SessionState, MessageKind, Outcome
#: The specification, written out independently of the engine's table: a
#: change to TRANSITIONS must be made here too, on purpose.
EXPECTED = {
    # no session: only a handshake or an (anonymous) publish does anything
    (_S.NONE, _K.HANDSHAKE): (_O.HANDSHAKE, _S.NONE),
    (_S.NONE, _K.CONNECT): (_O.UNKNOWN_CLIENT, _S.NONE),
    (_S.NONE, _K.SUBSCRIBE): (_O.UNKNOWN_CLIENT, _S.NONE),
    (_S.NONE, _K.UNSUBSCRIBE): (_O.UNKNOWN_CLIENT, _S.NONE),
    (_S.NONE, _K.DISCONNECT): (_O.UNKNOWN_CLIENT, _S.NONE),
    (_S.NONE, _K.OTHER_META): (_O.FORBIDDEN, _S.NONE),
    (_S.NONE, _K.SERVICE): (_O.SERVICE, _S.NONE),
    (_S.NONE, _K.PUBLISH): (_O.PUBLISH, _S.NONE),
    (_S.NONE, _K.EXPIRE): (_O.IGNORE, _S.NONE),
    # handshaken: the first connect is answered at once
    (_S.HANDSHAKEN, _K.HANDSHAKE): (_O.HANDSHAKE, _S.HANDSHAKEN),
    (_S.HANDSHAKEN, _K.CONNECT): (_O.CONNECT_FIRST, _S.CONNECTED),
    (_S.HANDSHAKEN, _K.SUBSCRIBE): (_O.SUBSCRIBE, _S.HANDSHAKEN),
    (_S.HANDSHAKEN, _K.UNSUBSCRIBE): (_O.UNSUBSCRIBE, _S.HANDSHAKEN),
    (_S.HANDSHAKEN, _K.DISCONNECT): (_O.DISCONNECT, _S.NONE),
    (_S.HANDSHAKEN, _K.OTHER_META): (_O.FORBIDDEN, _S.HANDSHAKEN),
    (_S.HANDSHAKEN, _K.SERVICE): (_O.SERVICE, _S.HANDSHAKEN),
    (_S.HANDSHAKEN, _K.PUBLISH): (_O.PUBLISH, _S.HANDSHAKEN),
    (_S.HANDSHAKEN, _K.EXPIRE): (_O.EXPIRE, _S.NONE),
    # connected: later connects are held
    (_S.CONNECTED, _K.HANDSHAKE): (_O.HANDSHAKE, _S.CONNECTED),
    (_S.CONNECTED, _K.CONNECT): (_O.CONNECT, _S.CONNECTED),
    (_S.CONNECTED, _K.SUBSCRIBE): (_O.SUBSCRIBE, _S.CONNECTED),
    (_S.CONNECTED, _K.UNSUBSCRIBE): (_O.UNSUBSCRIBE, _S.CONNECTED),
    (_S.CONNECTED, _K.DISCONNECT): (_O.DISCONNECT, _S.NONE),
    (_S.CONNECTED, _K.OTHER_META): (_O.FORBIDDEN, _S.CONNECTED),
    (_S.CONNECTED, _K.SERVICE): (_O.SERVICE, _S.CONNECTED),
    (_S.CONNECTED, _K.PUBLISH): (_O.PUBLISH, _S.CONNECTED),
    (_S.CONNECTED, _K.EXPIRE): (_O.EXPIRE, _S.NONE),
}


def test_every_pair_has_a_row() -> None:
    assert set(TRANSITIONS) == set(PAIRS)
    assert len(TRANSITIONS) == len(PAIRS)


def test_the_table_is_the_specification() -> None:
    assert TRANSITIONS == EXPECTED


def test_every_outcome_is_used_and_checked() -> None:
    used = {outcome for outcome, _ in EXPECTED.values()}
    assert used == set(Outcome)
    assert set(CHECKS) == set(Outcome)


def test_only_disconnect_and_expiry_end_a_session() -> None:
    for (state, kind), (_, next_state) in EXPECTED.items():
        if state is SessionState.NONE or kind in (MessageKind.DISCONNECT, MessageKind.EXPIRE):
            assert next_state is SessionState.NONE
        else:
            assert next_state is not SessionState.NONE


# ------------------------------------------------------------------- driving


@dataclass
class Run:
    """One engine with one session (or a name for none) in a chosen state."""

    wire: Wire
    cid: str
    #: a /** subscriber bound to a stream: it sees every routed message
    watcher: str
    watcher_stream: int
    conn: int = 0
    actions: list[Action] = field(default_factory=list)

    @property
    def answer(self) -> list[dict[str, Any]]:
        return replies(self.actions, self.conn)

    @property
    def events(self) -> list[Event]:
        return events(self.actions)


def enter(state: SessionState) -> Run:
    """A fresh engine with a session in ``state``, subscribed to ``/sub``."""
    w = Wire()
    watcher_stream = w.conn()
    w.engine.open_stream(watcher_stream, now=w.now)
    watcher = w.handshake()
    w.send(
        [
            {"channel": "/meta/subscribe", "clientId": watcher, "subscription": "/**"},
            {"channel": "/meta/connect", "clientId": watcher, "connectionType": "websocket"},
        ],
        conn=watcher_stream,
    )
    if state is SessionState.NONE:
        cid = NOBODY
    else:
        cid = w.handshake()
        w.send([{"channel": "/meta/subscribe", "clientId": cid, "subscription": "/sub"}])
        if state is SessionState.CONNECTED:
            (reply,) = replies(
                w.send([{"channel": "/meta/connect", "clientId": cid, "connectionType": LP}])
            )
            assert reply["successful"] is True
    assert probe_state(w, cid, consume=False) is state
    return Run(w, cid, watcher, watcher_stream)


def message(kind: MessageKind, cid: str) -> dict[str, Any]:
    base: dict[str, Any] = {"clientId": cid, "id": "m"}
    if kind is MessageKind.HANDSHAKE:
        return base | {
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": [LP],
        }
    if kind is MessageKind.CONNECT:
        return base | {"channel": "/meta/connect", "connectionType": LP}
    if kind is MessageKind.SUBSCRIBE:
        return base | {"channel": "/meta/subscribe", "subscription": "/new"}
    if kind is MessageKind.UNSUBSCRIBE:
        return base | {"channel": "/meta/unsubscribe", "subscription": "/sub"}
    if kind is MessageKind.DISCONNECT:
        return base | {"channel": "/meta/disconnect"}
    if kind is MessageKind.OTHER_META:
        return base | {"channel": "/meta/other", "data": 1}
    if kind is MessageKind.SERVICE:
        return base | {"channel": "/service/app", "data": 1}
    assert kind is MessageKind.PUBLISH
    return base | {"channel": "/pub", "data": 1}


def act(run: Run, kind: MessageKind) -> None:
    w = run.wire
    if kind is MessageKind.EXPIRE:
        # Keep the watcher alive across the jump, then pass the deadline.
        w.now = EXPIRY - 1
        w.send([{"channel": "/meta/connect", "clientId": run.watcher, "connectionType": LP}])
        run.actions = w.advance(1)
        return
    run.conn = w.conn()
    run.actions = w.send([message(kind, run.cid)], conn=run.conn)


def probe_state(w: Wire, cid: str, *, consume: bool = True) -> SessionState:
    """The state of ``cid`` as a client sees it (a connect probes it).

    NONE: the connect gets 401. HANDSHAKEN: it is answered at once.
    CONNECTED: it is held. With ``consume=False`` only the store is read.
    """
    session = w.engine.store.get(cid)
    stored = SessionState.NONE if session is None else session.state
    if not consume:
        return stored
    conn = w.conn()
    actions = w.send(
        [{"channel": "/meta/connect", "clientId": cid, "connectionType": LP}], conn=conn
    )
    answer = replies(actions, conn)
    if not answer:
        seen = SessionState.CONNECTED
    elif answer[0]["successful"]:
        seen = SessionState.HANDSHAKEN
    else:
        assert answer[0]["error"] == f"401:{cid}:Unknown client"
        seen = SessionState.NONE
    assert seen is stored
    return seen


# ------------------------------------------------------- outcome checkers


def routed(run: Run) -> list[Deliver]:
    return [a for a in run.actions if isinstance(a, Deliver)]


def check_handshake(run: Run, kind: MessageKind) -> None:
    (reply,) = run.answer
    assert reply["successful"] is True
    new = reply["clientId"]
    assert new != run.cid
    assert run.events == [Handshaken(new)]


def check_connect_first(run: Run, kind: MessageKind) -> None:
    (reply,) = run.answer
    assert reply["successful"] is True
    assert reply["advice"]["reconnect"] == "retry"
    assert run.events == []


def check_connect(run: Run, kind: MessageKind) -> None:
    assert run.actions == []
    assert run.wire.engine.get_timer() == run.wire.now + TIMEOUT
    actions = run.wire.advance(TIMEOUT)
    (reply,) = replies(actions, run.conn)
    assert reply["successful"] is True


def check_subscribe(run: Run, kind: MessageKind) -> None:
    (reply,) = run.answer
    assert reply["successful"] is True
    assert run.events == [Subscribed(run.cid, "/new")]


def check_unsubscribe(run: Run, kind: MessageKind) -> None:
    (reply,) = run.answer
    assert reply["successful"] is True
    assert run.events == [Unsubscribed(run.cid, "/sub")]


def check_disconnect(run: Run, kind: MessageKind) -> None:
    (reply,) = run.answer
    assert reply["successful"] is True
    assert run.events == [
        Unsubscribed(run.cid, "/sub"),
        Disconnected(run.cid, DisconnectReason.CLIENT),
    ]


def check_publish(run: Run, kind: MessageKind) -> None:
    (reply,) = run.answer
    assert reply["successful"] is True
    # A clientId that names no session still publishes (anonymously, as Faye),
    # but the event does not name a publisher that does not exist.
    assert run.events == [Published(publisher_of(run), "/pub", 1)]
    (deliver,) = routed(run)
    assert deliver.conns == [run.watcher_stream]


def publisher_of(run: Run) -> str | None:
    """Events name the publisher only when it is a live session."""
    return None if run.cid == NOBODY else run.cid


def check_service(run: Run, kind: MessageKind) -> None:
    (reply,) = run.answer
    assert reply["successful"] is True
    # the message id comes along: it is how a service call is answered
    assert run.events == [Published(publisher_of(run), "/service/app", 1, message_id="m")]
    assert routed(run) == []  # not even to the /** watcher


def check_unknown_client(run: Run, kind: MessageKind) -> None:
    (reply,) = run.answer
    assert reply["successful"] is False
    assert reply["error"] == f"401:{run.cid}:Unknown client"
    assert run.events == []


def check_forbidden(run: Run, kind: MessageKind) -> None:
    (reply,) = run.answer
    assert reply["successful"] is False
    assert reply["error"] == "403:/meta/other:Forbidden channel"
    assert run.events == []
    assert routed(run) == []


def check_expire(run: Run, kind: MessageKind) -> None:
    assert [a for a in run.actions if not isinstance(a, Reply)] == [
        Unsubscribed(run.cid, "/sub"),
        SessionExpired(run.cid),
    ]


def check_ignore(run: Run, kind: MessageKind) -> None:
    assert run.actions == []


CHECKS: dict[Outcome, Callable[[Run, MessageKind], None]] = {
    Outcome.HANDSHAKE: check_handshake,
    Outcome.CONNECT_FIRST: check_connect_first,
    Outcome.CONNECT: check_connect,
    Outcome.SUBSCRIBE: check_subscribe,
    Outcome.UNSUBSCRIBE: check_unsubscribe,
    Outcome.DISCONNECT: check_disconnect,
    Outcome.PUBLISH: check_publish,
    Outcome.SERVICE: check_service,
    Outcome.UNKNOWN_CLIENT: check_unknown_client,
    Outcome.FORBIDDEN: check_forbidden,
    Outcome.EXPIRE: check_expire,
    Outcome.IGNORE: check_ignore,
}


@pytest.mark.parametrize(("state", "kind"), PAIRS, ids=[f"{s.name}-{k.name}" for s, k in PAIRS])
def test_transition(state: SessionState, kind: MessageKind) -> None:
    outcome, next_state = EXPECTED[(state, kind)]
    run = enter(state)
    act(run, kind)
    CHECKS[outcome](run, kind)
    assert probe_state(run.wire, run.cid) is next_state
