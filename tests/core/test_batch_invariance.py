"""Batching does not change what happens: one body of N messages, or N bodies.

A network layer may get a client's messages in one HTTP body (a Bayeux batch)
or one per request, and the engine must treat them alike: hypothesis draws a
list of messages (publishes, subscribes, unsubscribes, handshakes, connects,
disconnects, some of them invalid or from unknown clients) and feeds it to two
engines set up the same way, once as one batch on one request connection and
once message by message on a fresh request connection each, draining after
each. Then every client's queue is flushed with a connect, in both.

The two runs must agree on:

* what each client receives, in order (a connect reply, a held connect
  released, or a push down its WebSocket);
* the reply messages, as a multiset (how they are grouped into HTTP bodies,
  and when a held connect lets its body go, may differ);
* the application events, in order, and the streams closed;
* the sessions and subscriptions left at the end;
* every message gets exactly one reply, and no queue keeps a message while its
  client has a connect held (checked after every drain).

One difference is allowed: a session that a disconnect ends drops its queue at
once, so in one batch it may lose messages (and its held connect is told
``reconnect: none``) that, fed one by one, a held connect carried away first.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from bayeux_core import (
    Action,
    Close,
    Deliver,
    Disconnected,
    Engine,
    EngineConfig,
    Event,
    Reply,
)

from .helpers import Wire, replies

CONFIG = EngineConfig(timeout=10, interval=0, session_timeout=5)
CIDS = [f"c{n:030d}" for n in range(1, 7)]
LP1, LP2, WS3, NEW4, LATER5, LATER6 = CIDS
#: a client id that never existed
GHOST = "c" + "9" * 30
STREAM = 1000

CHANNELS = ("/a", "/a/b", "/a/b/c", "/b", "/b/x", "/service/s", "/a/*", "/meta/x")
PATTERNS = ("/a", "/a/b", "/a/*", "/a/**", "/b/**", "/*", "/**", "/service/**", "/meta/**", "bad")


def run_setup(engine: Engine, conns: itertools.count[int]) -> None:
    """Four clients: two long-polling (one with a connect held), one on a
    WebSocket with a connect held on it, one handshaken but never connected."""

    def send(conn: int, *messages: dict[str, Any]) -> None:
        engine.receive(conn, list(messages), now=0.0)

    for _ in range(4):
        send(next(conns), message("/meta/handshake", None, None))

    def connect(cid: str, kind: str = "long-polling") -> dict[str, Any]:
        return {"channel": "/meta/connect", "clientId": cid, "connectionType": kind}

    def subscribe(cid: str, *patterns: str) -> dict[str, Any]:
        return {"channel": "/meta/subscribe", "clientId": cid, "subscription": list(patterns)}

    send(next(conns), connect(LP1), subscribe(LP1, "/a/*"))
    send(next(conns), connect(LP1))  # held
    send(next(conns), connect(LP2), subscribe(LP2, "/**"))
    assert engine.open_stream(STREAM, now=0.0)
    send(STREAM, connect(WS3, "websocket"), subscribe(WS3, "/a/b", "/b/**"))
    send(STREAM, connect(WS3, "websocket"))  # held
    send(next(conns), subscribe(NEW4, "/a/**"))
    actions = engine.actions_to_send()
    assert [a.conn for a in actions if isinstance(a, Reply)] == [1, 2, 3, 4, 5, 7, STREAM, 8]
    assert engine.get_timer() == 5.0  # NEW4 expires first; nothing else is due


def message(kind: str, cid: str | None, arg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"channel": kind}
    if cid is not None:
        out["clientId"] = cid
    if kind == "publish":
        out["channel"] = arg
        out["data"] = None  # numbered later
    elif kind == "/meta/handshake":
        out.pop("clientId", None)
        out["version"] = "1.0"
        out["supportedConnectionTypes"] = ["long-polling"]
    elif kind == "/meta/connect":
        out["connectionType"] = "long-polling"
        if arg is not None:
            out["advice"] = {"timeout": arg}
    elif kind in ("/meta/subscribe", "/meta/unsubscribe"):
        out["subscription"] = arg
    return out


SENDERS = st.sampled_from([*CIDS, GHOST])
MESSAGES = st.one_of(
    st.builds(
        message,
        st.just("publish"),
        st.sampled_from([*CIDS, GHOST, None]),
        st.sampled_from(CHANNELS),
    ),
    st.builds(message, st.just("publish"), SENDERS, st.sampled_from(CHANNELS[:5])),
    st.builds(
        message,
        st.sampled_from(["/meta/subscribe", "/meta/unsubscribe"]),
        SENDERS,
        st.one_of(st.sampled_from(PATTERNS), st.lists(st.sampled_from(PATTERNS), max_size=3)),
    ),
    st.builds(message, st.just("/meta/handshake"), st.none(), st.none()),
    st.builds(message, st.just("/meta/disconnect"), SENDERS, st.none()),
    st.builds(message, st.just("/meta/connect"), SENDERS, st.sampled_from([None, 0, 5000])),
)


@dataclass
class Outcome:
    received: dict[str, list[Any]]
    replies: Counter[bytes]
    events: list[Event]
    closes: list[int]
    sessions: dict[str, set[str]]


def run(batch: list[dict[str, Any]], together: bool) -> Outcome:
    ids = iter(CIDS + [f"x{n}" for n in range(100)])
    engine = Engine(CONFIG, client_id_generator=lambda: next(ids))
    conns = itertools.count(1)
    run_setup(engine, conns)
    actions: list[Action] = []
    if together:
        engine.receive(next(conns), batch, now=1.0)
        actions += drain(engine)
    else:
        for item in batch:
            engine.receive(next(conns), [item], now=1.0)
            actions += drain(engine)
    # Flush every queue: a connect that is answered at once.
    for cid in CIDS:
        engine.receive(
            next(conns),
            [message("/meta/connect", cid, 0) | {"id": f"flush-{cid}"}],
            now=1.0,
        )
        actions += drain(engine)
    received, answers = sort_out(actions)
    return Outcome(
        received=received,
        replies=answers,
        events=[a for a in actions if isinstance(a, Event)],
        closes=[a.conn for a in actions if isinstance(a, Close)],
        sessions={s.client_id: set(s.subscriptions) for s in engine.store},
    )


def drain(engine: Engine) -> list[Action]:
    actions = engine.actions_to_send()
    for session in engine.store:
        # Nothing waits in a queue while a connect is held that could take it.
        assert session.held is None or not session.queue, session
    return actions


def sort_out(actions: list[Action]) -> tuple[dict[str, list[Any]], Counter[bytes]]:
    """What each client received, in order, and the reply messages."""
    received: dict[str, list[Any]] = defaultdict(list)
    answers: Counter[bytes] = Counter()
    for action in actions:
        if isinstance(action, Reply):
            body = orjson.loads(action.body)
            messages = [orjson.loads(m) for m in action.messages]
            assert body[len(body) - len(messages) :] == messages
            for reply in body[: len(body) - len(messages)]:
                answers[orjson.dumps(reply, option=orjson.OPT_SORT_KEYS)] += 1
            if messages:
                assert action.client_id is not None
                received[action.client_id].extend(messages)
        elif isinstance(action, Deliver):
            assert list(action.conns) == [STREAM]
            received[WS3].append(orjson.loads(action.payload))
    return dict(received), answers


def strip_advice(answers: Counter[bytes], cids: set[str]) -> Counter[bytes]:
    """The replies, without the advice of connect replies to ``cids``."""
    out: Counter[bytes] = Counter()
    for raw, count in answers.items():
        reply = orjson.loads(raw)
        if reply.get("channel") == "/meta/connect" and reply.get("clientId") in cids:
            reply.pop("advice", None)
        out[orjson.dumps(reply, option=orjson.OPT_SORT_KEYS)] += count
    return out


def number(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every message an id and every publish its own data."""
    out = []
    for n, item in enumerate(batch):
        numbered = dict(item, id=f"m{n}")
        if "data" in numbered:
            numbered["data"] = {"n": n}
        out.append(numbered)
    return out


@settings(max_examples=800, deadline=None)
@given(st.lists(MESSAGES, min_size=1, max_size=12).map(number))
def test_one_batch_or_one_by_one(batch: list[dict[str, Any]]) -> None:
    together = run(batch, together=True)
    apart = run(batch, together=False)
    # A session that ends in the batch drops its queue at once. Fed one by one,
    # its held connect may have been answered with some of it first (and told
    # to retry, not to stop).
    ended = {e.client_id for e in together.events if isinstance(e, Disconnected)}
    for cid in ended:
        got, could = together.received.pop(cid, []), apart.received.pop(cid, [])
        assert got == could[: len(got)]
    assert together.received == apart.received
    assert strip_advice(together.replies, ended) == strip_advice(apart.replies, ended)
    assert together.events == apart.events
    assert together.closes == apart.closes
    assert together.sessions == apart.sessions
    # Every message got exactly one reply (in both, as they have the same).
    ids = Counter(orjson.loads(r).get("id") for r in together.replies.elements())
    assert all(ids[f"m{n}"] == 1 for n in range(len(batch))), ids


def test_connect_batched_with_its_disconnect_is_answered_as_a_held_one() -> None:
    """Found by the property: a connect followed by a disconnect of the same
    client in one batch must get what the disconnect gives a held connect,
    ``reconnect: retry`` (as Faye: a disconnect may come from anyone)."""
    wire = Wire(CONFIG)
    me, other = wire.handshake(), wire.handshake()
    for cid in (me, other):
        wire.send([message("/meta/connect", cid, None)])  # the first is answered at once
    # Another client's disconnect leaves the connect to be held as usual.
    out = wire.send([message("/meta/connect", me, None), message("/meta/disconnect", other, None)])
    assert [m["channel"] for m in replies(out)] == []
    connect_me = message("/meta/connect", me, None) | {"id": "c"}
    out = wire.send([connect_me, message("/meta/disconnect", me, None) | {"id": "d"}])
    (answer,) = [r for r in replies(out) if r["channel"] == "/meta/connect" and "id" not in r]
    assert answer["advice"]["reconnect"] == "retry"  # the one held before: replaced
    by_id = {r["id"]: r for r in replies(out) if "id" in r}
    assert by_id["c"]["advice"] == answer["advice"]
    assert by_id["d"]["successful"] is True
