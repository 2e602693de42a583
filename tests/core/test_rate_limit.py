"""Publish rate limiting: a token bucket per session, timed by ``now`` only."""

from __future__ import annotations

from typing import Any

import pytest

from bayeux_core import EngineConfig, Published

from .helpers import Wire, events, replies

LIMITED = "407::Publish rate limit exceeded"


def make(**kwargs: Any) -> EngineConfig:
    return EngineConfig(**kwargs)


def publish(wire: Wire, client_id: str | None, count: int = 1, **extra: Any) -> list[Any]:
    """Publish ``count`` messages in one batch; returns the replies' errors (None: ok)."""
    messages = [{"channel": "/chat", "data": n, **extra} for n in range(count)]
    if client_id is not None:
        for message in messages:
            message["clientId"] = client_id
    actions = wire.send(messages)
    out = replies(actions)
    assert len(out) == count
    assert sum(isinstance(e, Published) for e in events(actions)) == sum(
        r["successful"] for r in out
    )
    return [None if r["successful"] else r["error"] for r in out]


def test_defaults_unlimited() -> None:
    config = EngineConfig()
    assert config.publish_rate is None
    assert config.publish_burst is None
    assert config.bucket_size == 0.0
    wire = Wire()
    client_id = wire.handshake()
    assert publish(wire, client_id, 500) == [None] * 500


def test_bucket_size() -> None:
    assert EngineConfig(publish_rate=5).bucket_size == 10
    assert EngineConfig(publish_rate=0.1).bucket_size == 1
    assert EngineConfig(publish_rate=5, publish_burst=3).bucket_size == 3


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), True, "5"])
def test_bad_rate(value: Any) -> None:
    with pytest.raises(ValueError, match="publish_rate"):
        make(publish_rate=value)


@pytest.mark.parametrize("value", [0, 0.5, -1, float("inf"), float("nan"), False, "5"])
def test_bad_burst(value: Any) -> None:
    with pytest.raises(ValueError, match="publish_burst"):
        make(publish_rate=1, publish_burst=value)


def test_burst_needs_rate() -> None:
    with pytest.raises(ValueError, match="publish_burst needs publish_rate"):
        EngineConfig(publish_burst=3)


def test_burst_then_refused_then_refilled() -> None:
    wire = Wire(EngineConfig(publish_rate=2, publish_burst=3))
    client_id = wire.handshake()
    assert publish(wire, client_id, 5) == [None, None, None, LIMITED, LIMITED]
    reply = replies(wire.send([{"channel": "/chat", "clientId": client_id, "data": 1}]))[0]
    assert reply == {"channel": "/chat", "successful": False, "error": LIMITED}
    wire.now += 0.4  # 0.8 tokens: still nothing
    assert publish(wire, client_id) == [LIMITED]
    wire.now += 0.1  # now 1 token (refusals do not cost tokens)
    assert publish(wire, client_id, 2) == [None, LIMITED]
    wire.now += 20  # the bucket never holds more than the burst
    assert publish(wire, client_id, 4) == [None, None, None, LIMITED]


def test_default_burst_is_twice_the_rate() -> None:
    wire = Wire(EngineConfig(publish_rate=2))
    client_id = wire.handshake()
    assert publish(wire, client_id, 5) == [None] * 4 + [LIMITED]


def test_buckets_are_per_session() -> None:
    wire = Wire(EngineConfig(publish_rate=1, publish_burst=1))
    first, second = wire.handshake(), wire.handshake()
    assert publish(wire, first, 2) == [None, LIMITED]
    assert publish(wire, second, 2) == [None, LIMITED]


def test_time_comes_from_now_only() -> None:
    wire = Wire(EngineConfig(publish_rate=1, publish_burst=1))
    client_id = wire.handshake()
    assert publish(wire, client_id) == [None]
    wire.now -= 50  # an earlier `now` cannot refill (nor drain) the bucket
    assert publish(wire, client_id) == [LIMITED]
    wire.now += 51
    assert publish(wire, client_id) == [None]


def test_anonymous_and_unknown_publishers_are_not_limited() -> None:
    wire = Wire(EngineConfig(publish_rate=1, publish_burst=1))
    assert publish(wire, None, 5) == [None] * 5
    assert publish(wire, "nobody", 5) == [None] * 5


def test_resent_publish_is_acknowledged_without_a_token() -> None:
    wire = Wire(EngineConfig(publish_rate=1, publish_burst=1))
    client_id = wire.handshake()
    message = {"channel": "/chat", "clientId": client_id, "data": 1, "id": "p1"}
    assert replies(wire.send([message]))[0]["successful"] is True
    # The resend is a duplicate: acknowledged, not delivered, not charged.
    assert replies(wire.send([message]))[0]["successful"] is True
    (refused,) = replies(wire.send([{**message, "id": "p2"}]))
    assert refused == {"id": "p2", "channel": "/chat", "successful": False, "error": LIMITED}
    # A refused id is not remembered: its resend, once allowed, is delivered.
    wire.now += 1
    actions = wire.send([{**message, "id": "p2"}])
    assert replies(actions)[0]["successful"] is True
    assert [e.data for e in events(actions) if isinstance(e, Published)] == [1]


def test_refused_publish_is_not_delivered() -> None:
    wire = Wire(EngineConfig(publish_rate=1, publish_burst=1))
    listener = wire.handshake()
    connect = {"channel": "/meta/connect", "clientId": listener, "connectionType": "long-polling"}
    wire.send([{"channel": "/meta/subscribe", "clientId": listener, "subscription": "/chat"}])
    wire.send([connect])
    publisher = wire.handshake()
    assert publish(wire, publisher, 3) == [None, LIMITED, LIMITED]
    delivered = [m for m in replies(wire.send([connect])) if m.get("channel") == "/chat"]
    assert [m["data"] for m in delivered] == [0]


def test_service_channels_and_meta_are_not_limited() -> None:
    wire = Wire(EngineConfig(publish_rate=1, publish_burst=1))
    client_id = wire.handshake()
    actions = wire.send(
        [{"channel": "/service/x", "clientId": client_id, "data": n} for n in range(3)]
    )
    assert [r["successful"] for r in replies(actions)] == [True] * 3
    subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/a"}
    assert [r["successful"] for r in replies(wire.send([subscribe] * 3))] == [True] * 3
    assert publish(wire, client_id) == [None]
