"""Engine limits added for issue 8: clients per remote address, JS-safe integers.

Listed in the security suite's map (tests/security/__init__.py); kept here so
that tests/core alone covers bayeux_core.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from bayeux_core import (
    Engine,
    EngineConfig,
    Extension,
    LocalProtocolError,
    Message,
    MessageContext,
    OverflowPolicy,
    Reply,
)

from .helpers import Wire, connected, handshake_msg, replies


def only_replies(actions: list[Any]) -> list[dict[str, Any]]:
    assert all(isinstance(a, Reply) for a in actions), actions
    return replies(actions)


# ------------------------------------- issue 8: clients per remote address


def handshake_from(w: Wire, address: str | None) -> dict[str, Any]:
    w.engine.receive(w.conn(), [handshake_msg()], now=w.now, address=address)
    (reply,) = replies(w.engine.actions_to_send())
    return reply


def test_clients_per_address_limit_refuses_the_next_handshake() -> None:
    w = Wire(EngineConfig(max_clients_per_address=3))
    for _ in range(3):
        assert handshake_from(w, "192.0.2.1")["successful"] is True
    refused = handshake_from(w, "192.0.2.1")
    assert refused["successful"] is False
    assert refused["error"] == "503::Too many clients from this address"
    assert refused["advice"] == {"reconnect": "handshake", "interval": 1000}
    assert "clientId" not in refused
    assert len(w.engine.store) == 3
    # Other addresses, and handshakes the network layer did not attribute, go on.
    assert handshake_from(w, "192.0.2.2")["successful"] is True
    assert handshake_from(w, None)["successful"] is True
    assert len(w.engine.store) == 5


def test_clients_per_address_counts_handshakes_within_one_batch() -> None:
    w = Wire(EngineConfig(max_clients_per_address=2))
    w.engine.receive(w.conn(), [handshake_msg(id=str(n)) for n in range(4)], now=0, address="a")
    answers = replies(w.engine.actions_to_send())
    assert [r["successful"] for r in answers] == [True, True, False, False]


def end_by_disconnect(w: Wire, client_id: str) -> None:
    w.send([{"channel": "/meta/disconnect", "clientId": client_id}])


def end_by_expiry(w: Wire, client_id: str) -> None:
    w.advance(w.engine.config.session_expiry + 1)
    assert w.engine.store.get(client_id) is None


def end_by_overflow(w: Wire, client_id: str) -> None:
    w.send([{"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/q"}])
    for n in range(3):
        w.engine.publish("/q", n, now=w.now)
    w.engine.actions_to_send()
    assert w.engine.store.get(client_id) is None


def end_by_eviction(w: Wire, client_id: str) -> None:
    assert w.engine.evict(client_id, now=w.now) is True


@pytest.mark.parametrize(
    "end", [end_by_disconnect, end_by_expiry, end_by_overflow, end_by_eviction]
)
def test_a_session_that_ends_frees_its_address_slot(end: Any) -> None:
    config = EngineConfig(
        max_clients_per_address=2, max_queue=2, overflow=OverflowPolicy.DISCONNECT
    )
    w = Wire(config)
    first = handshake_from(w, "a")["clientId"]
    handshake_from(w, "a")
    assert handshake_from(w, "a")["successful"] is False
    end(w, first)
    if end is not end_by_expiry:
        assert handshake_from(w, "a")["successful"] is True
        assert handshake_from(w, "a")["successful"] is False
    else:
        # Expiry ended both sessions: two slots free.
        assert [handshake_from(w, "a")["successful"] for _ in range(3)] == [True, True, False]


def test_ending_an_uncounted_session_leaves_the_counts_alone() -> None:
    w = Wire(EngineConfig(max_clients_per_address=1))
    handshake_from(w, "a")
    uncounted = handshake_from(w, None)["clientId"]
    adopted = w.engine.adopt("x" * 31, now=w.now).client_id
    end_by_disconnect(w, uncounted)
    assert w.engine.evict(adopted, now=w.now) is True
    assert handshake_from(w, "a")["successful"] is False


def test_without_the_limit_addresses_are_not_tracked() -> None:
    w = Wire()
    for _ in range(50):
        assert handshake_from(w, "a")["successful"] is True
    assert w.engine._per_address == {}
    assert w.engine._address_of == {}


# ------------------------------------------ issue 8: JavaScript-safe integers

JS_MAX = 2**53 - 1


@pytest.mark.parametrize(
    "field", [{"data": {"n": JS_MAX + 1}}, {"data": [-JS_MAX - 1]}, {"ext": {"n": 2**60}}]
)
def test_js_safe_integers_refuse_what_browsers_would_round(field: dict[str, Any]) -> None:
    w = Wire(EngineConfig(js_safe_integers=True))
    subscriber = connected(w, "/x")
    actions = w.send([{"channel": "/x", "data": 0, "id": "1"} | field])
    assert only_replies(actions) == [
        {
            "id": "1",
            "channel": "/x",
            "successful": False,
            "error": "400:data:Cannot encode message",
        }
    ]
    session = w.engine.store.get(subscriber)
    assert session is not None
    assert not session.queue


def test_js_safe_integers_pass_the_exact_range() -> None:
    w = Wire(EngineConfig(js_safe_integers=True))
    subscriber = connected(w, "/x")
    data = [JS_MAX, -JS_MAX, 1.5e300]
    (reply,) = replies(w.send([{"channel": "/x", "data": data}]))
    assert reply["successful"] is True
    session = w.engine.store.get(subscriber)
    assert session is not None
    assert [orjson.loads(m)["data"] for m in session.queue] == [data]


def test_64_bit_integers_pass_by_default() -> None:
    w = Wire()
    subscriber = connected(w, "/x")
    data = [2**63 - 1, -(2**63), 2**64 - 1]
    (reply,) = replies(w.send([{"channel": "/x", "data": data}]))
    assert reply["successful"] is True
    session = w.engine.store.get(subscriber)
    assert session is not None
    assert [orjson.loads(m)["data"] for m in session.queue] == [data]


class Stamp(Extension):
    """Rewrites deliveries (the per-recipient path), adding a big number."""

    def __init__(self, value: int) -> None:
        self.value = value

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if context.is_delivery:
            message["ext"] = {"stamp": self.value}
        return message


def test_js_safe_integers_on_every_routing_path() -> None:
    config = EngineConfig(js_safe_integers=True)
    big = {"channel": "/x", "data": 2**53}
    # no subscriber at all
    w = Wire(config)
    (reply,) = only_replies(w.send([big]))
    assert reply["error"] == "400:data:Cannot encode message"
    # a cluster node: the publish would become a Broadcast
    node = Engine(config, local_routing=False)
    node.receive(1, [big], now=0)
    actions = node.actions_to_send()
    assert only_replies(actions)[0]["error"] == "400:data:Cannot encode message"
    # deliveries rewritten per recipient: the template, then each copy
    w = Wire(config, extensions=(Stamp(1),))
    connected(w, "/x")
    (reply,) = only_replies([a for a in w.send([big]) if isinstance(a, Reply)])
    assert reply["error"] == "400:data:Cannot encode message"
    w = Wire(config, extensions=(Stamp(2**60),))
    subscriber = connected(w, "/x")
    actions = w.send([{"channel": "/x", "data": 1}])
    assert only_replies([a for a in actions if isinstance(a, Reply)])[0]["successful"] is True
    session = w.engine.store.get(subscriber)
    assert session is not None
    assert not session.queue  # the copy the extension made unsafe is dropped
    # and the server's own publish
    with pytest.raises(LocalProtocolError, match="cannot encode"):
        Engine(config).publish("/x", 2**53, now=0)
