"""The engine's path for a lone publish without a session (Engine._plain_publish).

It must do exactly what the general path (_handle) does: the same reply bytes,
deliveries, events and error counts. An engine with a do-nothing extension
always takes the general path, so it is the reference here.
"""

from __future__ import annotations

from typing import Any

import pytest

from bayeux_core import Engine, Extension, _engine, _store

from .helpers import Wire, connected

#: single-message batches the plain path takes
PLAIN: list[Any] = [
    {"channel": "/a/b", "data": {"text": "hello", "n": 1}},
    {"channel": "/a/b", "data": None, "ext": {"k": [1, 2]}},
    {"channel": "/z", "data": "nobody listens"},
    {"channel": "/a/b", "data": {1, 2}},  # cannot be encoded: an error reply
    {"channel": "/a/b", "data": 1, "advice": {"reconnect": "none"}},
]

#: single-message batches it leaves to the general path
GENERAL: list[Any] = [
    {"channel": "/a/b", "data": 1, "id": "7"},
    {"channel": "/a/b", "data": 1, "clientId": "nobody"},
    {"channel": "/a/b", "data": 1, "clientId": None},
    {"channel": "/a/b", "data": 1, "error": "403::no"},
    {"channel": "/a/b"},
    {"channel": "/a/*", "data": 1},
    {"channel": "/meta/other", "data": 1},
    {"channel": "/service/x", "data": 1},
    {"channel": 5, "data": 1},
    {"data": 1},
    "not an object",
]


def _wires() -> tuple[Wire, Wire]:
    wires = (Wire(), Wire(extensions=(Extension(),)))
    for w in wires:
        connected(w, "/a/**")
        w.engine.actions_to_send()
    return wires


def _forbid_general_path(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the general path ran")

    monkeypatch.setattr(engine, "_handle", refuse)


@pytest.mark.parametrize("message", PLAIN, ids=repr)
def test_plain_publish_matches_general_path(message: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, reference = _wires()
    _forbid_general_path(fast.engine, monkeypatch)
    assert fast.send([message]) == reference.send([message])
    assert fast.engine.error_counts == reference.engine.error_counts
    assert _queues(fast) == _queues(reference)


def _queues(w: Wire) -> list[list[bytes]]:
    return [list(session.queue) for session in w.engine.store]


@pytest.mark.parametrize("message", GENERAL, ids=repr)
def test_other_messages_take_general_path(message: Any) -> None:
    fast, reference = _wires()
    seen: list[object] = []
    handle = fast.engine._handle

    def spy(*args: Any) -> Any:
        seen.append(args[0])
        return handle(*args)

    fast.engine._handle = spy  # type: ignore[method-assign,assignment]
    assert fast.send([message]) == reference.send([message])
    assert fast.engine.error_counts == reference.engine.error_counts
    assert seen == ([message] if type(message) is dict else [])


def test_batches_and_extensions_take_general_path(monkeypatch: pytest.MonkeyPatch) -> None:
    fast, reference = _wires()
    batch = [{"channel": "/a/b", "data": 1}, {"channel": "/a/c", "data": 2}]
    assert fast.send(batch) == reference.send(batch)
    # With an extension the reference itself must not take the plain path.
    monkeypatch.setattr(reference.engine, "_plain_publish", None)
    one = [{"channel": "/a/b", "data": 1}]
    assert fast.send(one) == reference.send(one)


def test_a_channel_is_checked_once_and_its_reply_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    # The plain path keeps each channel's verdict and reply; a full set starts
    # over. A refused channel is not kept, and a kept one still refuses data
    # that cannot be encoded.
    monkeypatch.setattr(_engine, "_PLAIN_REPLIES", 2)
    fast, reference = _wires()
    _forbid_general_path(fast.engine, monkeypatch)
    sequence: list[Any] = [
        {"channel": "/a/b", "data": 1},
        {"channel": "/a/b", "data": {1, 2}},
        {"channel": "/a/c", "data": 2},
        {"channel": "/a/d", "data": 3},
        {"channel": "/a/b", "data": 4},
        {"channel": "/a/b", "data": 5},
    ]
    for message in sequence:
        assert fast.send([message]) == reference.send([message])
    assert fast.engine.error_counts == reference.engine.error_counts
    assert _queues(fast) == _queues(reference)
    assert len(fast.engine._plain_replies) <= 2
    monkeypatch.undo()
    for message in GENERAL[-6:] * 2:  # refused names stay refused
        assert fast.send([message]) == reference.send([message])


def test_the_store_keeps_expansions_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_store, "_EXPANSIONS", 2)
    fast, reference = _wires()
    for channel in ["/a/b", "/a/c", "/a/d/e", "/a/b", "/x", "/a/c"]:
        message = {"channel": channel, "data": channel}
        assert fast.send([message]) == reference.send([message])
    assert _queues(fast) == _queues(reference)
    assert _queues(fast)[0]  # /a/** got the publishes under /a
    expansions = fast.engine.store._expansions  # type: ignore[attr-defined]
    assert 0 < len(expansions) <= 2
