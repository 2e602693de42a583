"""ClientSession alone: what it sends, and what it does with hand-written replies.

Replies are written the way the engine (and Faye) shape them (faye.md 3.1).
The reconnection rules under test are those of faye.md 2.3 and bayeux.md 1.6.
"""

from __future__ import annotations

from typing import Any

import pytest

from bayeux_core import (
    ClientEvent,
    ClientSession,
    ClientState,
    Extension,
    HandshakeFailed,
    HandshakeSucceeded,
    LocalProtocolError,
    Message,
    MessageContext,
    MessageReceived,
    PublishFailed,
    PublishSucceeded,
    SessionEnded,
    SubscribeFailed,
    SubscribeSucceeded,
    TransportDown,
    TransportUp,
)
from bayeux_core._client import is_connect

CID = "c1"
#: what the engine advises on a successful handshake or connect (ms)
RETRY_ADVICE = {"reconnect": "retry", "interval": 0, "timeout": 25000}
#: what the engine advises on a failed handshake or connect (ms)
HANDSHAKE_ADVICE = {"reconnect": "handshake", "interval": 1000}
DROPPED = "Dropped by a client extension"


def handshake_ok(message: Message, client_id: str = CID, **extra: Any) -> Message:
    reply: Message = {
        "id": message["id"],
        "channel": "/meta/handshake",
        "successful": True,
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling", "websocket"],
        "clientId": client_id,
        "advice": dict(RETRY_ADVICE),
    }
    reply.update(extra)
    return reply


def ok(message: Message, **extra: Any) -> Message:
    reply: Message = {"id": message["id"], "channel": message["channel"], "successful": True}
    if "clientId" in message:
        reply["clientId"] = message["clientId"]
    if message["channel"] == "/meta/connect":
        reply["advice"] = dict(RETRY_ADVICE)
    reply.update(extra)
    return reply


def fail(message: Message, error: Any, **extra: Any) -> Message:
    reply: Message = {
        "id": message["id"],
        "channel": message["channel"],
        "successful": False,
        "error": error,
    }
    reply.update(extra)
    return reply


def one(messages: list[Message], channel: str) -> Message:
    (found,) = [m for m in messages if m["channel"] == channel]
    return found


def start(now: float = 0.0, **options: Any) -> tuple[ClientSession, Message]:
    """A session that just handshook as CID; returns it and its first connect."""
    session = ClientSession(**options)
    session.handshake(now=now)
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake)], now=now)
    (connect,) = session.messages_to_send()
    assert session.events() == [HandshakeSucceeded(CID)]
    return session, connect


def subscribed(
    channels: tuple[str, ...] = ("/a",), **options: Any
) -> tuple[ClientSession, Message]:
    """Connected, with ``channels`` acknowledged; returns it and its pending connect."""
    session, connect = start(**options)
    for channel in channels:
        session.subscribe(channel, now=0)
    messages = session.messages_to_send()
    session.receive([ok(m) for m in messages], now=0)
    assert session.events() == [SubscribeSucceeded(c) for c in channels]
    return session, connect


class Recorder(Extension):
    """Records what it sees; adds ext.token to outgoing messages."""

    def __init__(self) -> None:
        self.incoming_seen: list[tuple[Message, MessageContext]] = []
        self.outgoing_seen: list[tuple[Message, MessageContext]] = []

    def incoming(self, message: Message, context: MessageContext) -> Message | None:
        self.incoming_seen.append((message, context))
        return message

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        self.outgoing_seen.append((message, context))
        message.setdefault("ext", {})["token"] = "t"
        return message


class DropChannel(Extension):
    """Drops outgoing messages on one channel (or, for /meta/subscribe, one subscription)."""

    def __init__(self, channel: str, subscription: str | None = None) -> None:
        self.channel = channel
        self.subscription = subscription
        self.active = True

    def outgoing(self, message: Message, context: MessageContext) -> Message | None:
        if (
            self.active
            and message["channel"] == self.channel
            and (self.subscription is None or message.get("subscription") == self.subscription)
        ):
            return None
        return message


# ------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    "options",
    [
        {"connection_types": []},
        {"retry": 0},
        {"retry": float("inf")},
        {"retry": float("nan")},
        {"timeout": -1},
        {"timeout": float("inf")},
        {"max_pending": -1},
        {"retry": 2, "max_retry": 1},
        {"max_retry": float("inf")},
        {"max_retry": float("nan")},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        ClientSession(**options)


def test_a_new_session_sends_nothing_and_waits_for_nothing() -> None:
    session = ClientSession()
    assert session.state is ClientState.UNCONNECTED
    assert session.messages_to_send() == []
    assert session.events() == []
    assert session.get_timer() is None
    session.handle_timer(100)
    assert session.messages_to_send() == []


# --------------------------------------------------------------------- handshake


def test_handshake_message_and_reply_timeout() -> None:
    session = ClientSession(connection_types=("websocket", "long-polling"), timeout=10)
    session.handshake(now=5)
    assert session.state is ClientState.HANDSHAKING
    (message,) = session.messages_to_send()
    assert message == {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": ["websocket", "long-polling"],
        "id": "1",
    }
    assert session.get_timer() == pytest.approx(5 + 1.2 * 10)
    # A second call while handshaking sends nothing more.
    session.handshake(now=6)
    assert session.messages_to_send() == []


def test_handshake_success_connects_with_the_first_shared_type() -> None:
    session = ClientSession(connection_types=("websocket", "long-polling"))
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    reply = handshake_ok(handshake, supportedConnectionTypes=["long-polling", "eventsource"])
    session.receive([reply], now=1)
    assert session.state is ClientState.CONNECTED
    assert session.client_id == CID
    assert session.connection_type == "long-polling"
    assert session.events() == [HandshakeSucceeded(CID)]
    (connect,) = session.messages_to_send()
    assert is_connect(connect)
    assert connect == {
        "channel": "/meta/connect",
        "connectionType": "long-polling",
        "id": "2",
        "clientId": CID,
    }
    # advice.timeout 25 s from the handshake reply: overdue after 30 s
    assert session.advice.timeout == 25
    assert session.get_timer() == pytest.approx(1 + 30)
    # Once connected, handshake() does nothing.
    session.handshake(now=2)
    assert session.messages_to_send() == []


@pytest.mark.parametrize(
    ("offered", "expected"),
    [(["callback-polling"], "websocket"), ("long-polling", "websocket"), (None, "websocket")],
)
def test_connection_type_when_the_server_offers_nothing_usable(offered: Any, expected: str) -> None:
    session = ClientSession(connection_types=("websocket", "long-polling"))
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake, supportedConnectionTypes=offered)], now=0)
    assert session.connection_type == expected
    (connect,) = session.messages_to_send()
    assert connect["connectionType"] == expected


def test_refused_handshake_is_retried_after_retry() -> None:
    session = ClientSession(retry=5)
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    error = "301:iframe:Connection types not supported"
    session.receive([fail(handshake, error, advice=dict(HANDSHAKE_ADVICE))], now=2)
    assert session.events() == [HandshakeFailed(error, final=False)]
    assert session.state is ClientState.HANDSHAKING
    assert session.get_timer() == 7
    session.handle_timer(6.9)
    assert session.messages_to_send() == []
    session.handle_timer(7)
    (again,) = session.messages_to_send()
    assert again["channel"] == "/meta/handshake"
    assert again["id"] != handshake["id"]
    session.receive([handshake_ok(again)], now=8)
    assert session.events() == [HandshakeSucceeded(CID)]


def test_refused_handshake_waits_for_a_longer_advised_interval() -> None:
    session = ClientSession(retry=1)
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    advice = {"reconnect": "handshake", "interval": 3000}
    session.receive([fail(handshake, "500::oops", advice=advice)], now=0)
    assert session.get_timer() == 3


def test_handshake_reply_without_client_id_is_a_failure() -> None:
    session = ClientSession(retry=2)
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    reply = handshake_ok(handshake)
    del reply["clientId"]
    session.receive([reply], now=0)
    assert session.events() == [HandshakeFailed("The handshake reply has no clientId", False)]
    assert session.state is ClientState.HANDSHAKING
    assert session.get_timer() == 2


def test_handshake_failure_without_error_text() -> None:
    session = ClientSession()
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    session.receive([{"id": handshake["id"], "successful": False, "error": 42}], now=0)
    assert session.events() == [HandshakeFailed("Unknown error", False)]


def test_handshake_refused_with_reconnect_none_is_final() -> None:
    session = ClientSession()
    session.subscribe("/a", now=0)
    held = session.publish("/a", 1, now=0)
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    advice = {"reconnect": "none", "interval": 0}
    session.receive([fail(handshake, "403::Go away", advice=advice)], now=1)
    assert session.events() == [
        HandshakeFailed("403::Go away", final=True),
        PublishFailed(held, "403::Go away"),
        SubscribeFailed("/a", "403::Go away"),
        SessionEnded("403::Go away"),
    ]
    assert session.state is ClientState.DISCONNECTED
    assert session.get_timer() is None
    assert session.subscriptions == {}
    session.handle_timer(1000)
    assert session.messages_to_send() == []
    with pytest.raises(LocalProtocolError):
        session.handshake(now=2)
    with pytest.raises(LocalProtocolError):
        session.publish("/a", 1, now=2)
    with pytest.raises(LocalProtocolError):
        session.subscribe("/a", now=2)
    # Nothing more happens: not even transport events.
    session.transport_failed(now=3)
    session.receive([{"channel": "/a", "data": 1}], now=3)
    assert session.events() == []
    assert session.messages_to_send() == []


# ------------------------------------------------------------------ connect loop


def test_connect_loop_with_interval_zero_reconnects_at_once() -> None:
    session, connect = start()
    session.receive([ok(connect)], now=3)
    (second,) = session.messages_to_send()
    assert is_connect(second)
    assert second["id"] != connect["id"]
    assert session.get_timer() == pytest.approx(3 + 30)
    assert session.events() == []


def test_connect_loop_waits_for_the_advised_interval() -> None:
    session, connect = start()
    advice = {"reconnect": "retry", "interval": 2000, "timeout": 10000}
    session.receive([ok(connect, advice=advice)], now=1)
    assert session.messages_to_send() == []
    assert session.advice.interval == 2
    assert session.advice.timeout == 10
    assert session.get_timer() == 3
    session.handle_timer(2.5)
    assert session.messages_to_send() == []
    session.handle_timer(3)
    (second,) = session.messages_to_send()
    assert is_connect(second)
    assert session.get_timer() == pytest.approx(3 + 12)


def test_failed_connect_waits_at_least_retry() -> None:
    session, connect = start(retry=4)
    session.receive([fail(connect, "402:connectionType:Missing required parameter")], now=1)
    assert session.messages_to_send() == []
    assert session.get_timer() == 5
    assert session.state is ClientState.CONNECTED
    session.handle_timer(5)
    (second,) = session.messages_to_send()
    assert is_connect(second)


def test_timeout_zero_advice_makes_replies_overdue_after_retry() -> None:
    session, connect = start(retry=2)
    advice = {"reconnect": "retry", "interval": 0, "timeout": 0}
    session.receive([ok(connect, advice=advice)], now=0)
    (_second,) = session.messages_to_send()
    assert session.get_timer() == pytest.approx(1.2 * 2)


@pytest.mark.parametrize(
    "advice",
    [
        {"interval": -1, "timeout": -5},
        {"interval": True, "timeout": False},
        {"interval": "10", "timeout": None},
        {"interval": float("inf"), "timeout": float("nan")},
        {"reconnect": "sometimes"},
    ],
)
def test_unusable_advice_is_ignored(advice: dict[str, Any]) -> None:
    session, connect = start()
    session.receive([ok(connect, advice=advice)], now=0)
    assert session.advice.interval == 0
    assert session.advice.timeout == 25
    (second,) = session.messages_to_send()  # reconnect as for "retry"
    assert is_connect(second)
    assert session.state is ClientState.CONNECTED


def test_connect_reply_without_advice_keeps_the_last_advice() -> None:
    session, connect = start()
    reply = ok(connect)
    del reply["advice"]
    session.receive([reply], now=0)
    (second,) = session.messages_to_send()
    assert is_connect(second)


def test_reconnect_handshake_rehandshakes_after_the_interval_and_resubscribes() -> None:
    session, connect = subscribed(("/a", "/b/*"))
    session.receive([fail(connect, f"401:{CID}:Unknown client", advice=HANDSHAKE_ADVICE)], now=10)
    assert session.state is ClientState.HANDSHAKING
    assert session.client_id is None
    assert session.messages_to_send() == []
    assert session.get_timer() == 11
    session.handle_timer(11)
    (handshake,) = session.messages_to_send()
    assert handshake["channel"] == "/meta/handshake"
    assert "clientId" not in handshake
    session.receive([handshake_ok(handshake, client_id="c2")], now=11)
    assert session.events() == [HandshakeSucceeded("c2")]
    messages = session.messages_to_send()
    assert [(m["channel"], m.get("subscription"), m["clientId"]) for m in messages] == [
        ("/meta/subscribe", "/a", "c2"),
        ("/meta/subscribe", "/b/*", "c2"),
        ("/meta/connect", None, "c2"),
    ]
    # Renewed subscriptions fire no second success.
    session.receive([ok(m) for m in messages[:2]], now=12)
    assert session.events() == []
    assert session.subscriptions == {"/a": True, "/b/*": True}


def test_a_401_naming_us_without_advice_rehandshakes_at_once() -> None:
    session, connect = start()
    session.receive([fail(connect, f"401:{CID}:Unknown client")], now=0)
    (handshake,) = session.messages_to_send()
    assert handshake["channel"] == "/meta/handshake"


def test_reconnect_handshake_on_a_successful_connect_reply() -> None:
    session, connect = start()
    session.receive([ok(connect, advice={"reconnect": "handshake", "interval": 0})], now=0)
    (handshake,) = session.messages_to_send()
    assert handshake["channel"] == "/meta/handshake"
    assert session.state is ClientState.HANDSHAKING


def test_reconnect_none_on_a_connect_reply_ends_the_session() -> None:
    session, connect = subscribed(("/a",))
    session.subscribe("/b", now=0)
    sub_b = session.messages_to_send()
    session.receive([ok(connect, advice={"reconnect": "none", "interval": 0})], now=1)
    assert session.events() == [
        SubscribeFailed("/b", "The server advised reconnect: none"),
        SessionEnded("The server advised reconnect: none"),
    ]
    assert session.state is ClientState.DISCONNECTED
    assert session.messages_to_send() == []
    assert session.get_timer() is None
    # The late reply to the subscribe is ignored.
    session.receive([ok(m) for m in sub_b], now=2)
    assert session.events() == []


def test_reconnect_none_with_an_error_reports_the_error() -> None:
    session, connect = start()
    session.receive([fail(connect, "500::Shutting down", advice={"reconnect": "none"})], now=1)
    assert session.events() == [SessionEnded("500::Shutting down")]


# ------------------------------------------------------------------ subscribing


@pytest.mark.parametrize("channel", ["", "a", "/a/*/b", "/meta/x", "/meta", "/a b"])
def test_cannot_subscribe_to_invalid_or_meta_channels(channel: str) -> None:
    with pytest.raises(LocalProtocolError):
        ClientSession().subscribe(channel, now=0)


def test_subscribe_while_connected() -> None:
    session, _ = start()
    session.subscribe("/a/**", now=1)
    (message,) = session.messages_to_send()
    assert message == {
        "channel": "/meta/subscribe",
        "subscription": "/a/**",
        "id": "3",
        "clientId": CID,
    }
    assert session.subscriptions == {"/a/**": False}
    # A second subscribe while waiting sends nothing and fires nothing.
    session.subscribe("/a/**", now=1)
    assert session.messages_to_send() == []
    assert session.events() == []
    session.receive([ok(message, subscription="/a/**")], now=2)
    assert session.events() == [SubscribeSucceeded("/a/**")]
    assert session.subscriptions == {"/a/**": True}
    # Once acknowledged, subscribing again succeeds at once, without a message.
    session.subscribe("/a/**", now=3)
    assert session.messages_to_send() == []
    assert session.events() == [SubscribeSucceeded("/a/**")]
    # A duplicate reply fires nothing.
    session.receive([ok(message)], now=4)
    assert session.events() == []


def test_subscriptions_made_before_the_handshake_go_out_with_it() -> None:
    session = ClientSession()
    session.subscribe("/a", now=0)
    session.subscribe("/b", now=0)
    assert session.messages_to_send() == []
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake)], now=0)
    messages = session.messages_to_send()
    assert [m["channel"] for m in messages] == [
        "/meta/subscribe",
        "/meta/subscribe",
        "/meta/connect",
    ]
    session.receive([ok(m) for m in messages[:2]], now=0)
    assert session.events() == [
        HandshakeSucceeded(CID),
        SubscribeSucceeded("/a"),
        SubscribeSucceeded("/b"),
    ]


def test_refused_subscribe_fails_and_is_never_retried() -> None:
    session, connect = start()
    session.subscribe("/secret", now=0)
    (message,) = session.messages_to_send()
    session.receive([fail(message, "403:/secret:Forbidden channel")], now=0)
    assert session.events() == [SubscribeFailed("/secret", "403:/secret:Forbidden channel")]
    assert session.subscriptions == {}
    # Not sent again after a new handshake either.
    session.receive([fail(connect, f"401:{CID}:Unknown client", advice=HANDSHAKE_ADVICE)], now=0)
    session.handle_timer(1)
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake)], now=1)
    assert [m["channel"] for m in session.messages_to_send()] == ["/meta/connect"]


def test_a_401_not_naming_us_is_a_refusal_not_a_lost_session() -> None:
    session, _ = start()
    session.subscribe("/a", now=0)
    (message,) = session.messages_to_send()
    session.receive([fail(message, "401::Access denied")], now=0)
    assert session.events() == [SubscribeFailed("/a", "401::Access denied")]
    assert session.state is ClientState.CONNECTED
    assert session.messages_to_send() == []


def test_subscribe_for_a_lost_session_is_renewed_after_the_new_handshake() -> None:
    session, _ = start()
    session.subscribe("/a", now=0)
    (message,) = session.messages_to_send()
    session.receive([fail(message, f"401:{CID}:Unknown client")], now=0)
    assert session.state is ClientState.HANDSHAKING
    assert session.subscriptions == {"/a": False}
    assert session.events() == []
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake, client_id="c2")], now=0)
    subscribe, _connect = session.messages_to_send()
    assert subscribe["subscription"] == "/a"
    assert subscribe["clientId"] == "c2"
    session.receive([ok(subscribe)], now=0)
    assert session.events() == [HandshakeSucceeded("c2"), SubscribeSucceeded("/a")]


def test_replies_for_a_channel_unsubscribed_meanwhile_fire_nothing() -> None:
    session, _ = start()
    session.subscribe("/a", now=0)
    session.subscribe("/b", now=0)
    sub_a, sub_b = session.messages_to_send()
    session.unsubscribe("/a", now=0)
    session.unsubscribe("/b", now=0)
    unsub_a, unsub_b = session.messages_to_send()
    assert unsub_a == {
        "channel": "/meta/unsubscribe",
        "subscription": "/a",
        "id": "5",
        "clientId": CID,
    }
    session.receive([ok(sub_a), fail(sub_b, "403::No"), ok(unsub_a), fail(unsub_b, "x")], now=0)
    assert session.events() == []
    assert session.subscriptions == {}


def test_unsubscribe_when_not_connected_or_not_subscribed_sends_nothing() -> None:
    session = ClientSession()
    session.subscribe("/a", now=0)
    session.unsubscribe("/a", now=0)
    session.unsubscribe("/never", now=0)
    assert session.subscriptions == {}
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake)], now=0)
    assert [m["channel"] for m in session.messages_to_send()] == ["/meta/connect"]
    session.unsubscribe("/never", now=0)
    assert session.messages_to_send() == []


# ------------------------------------------------------------------- publishing


@pytest.mark.parametrize("channel", ["", "/a/*", "/a/**", "/meta/connect", "/meta", "x"])
def test_cannot_publish_to_patterns_or_meta(channel: str) -> None:
    with pytest.raises(LocalProtocolError):
        ClientSession().publish(channel, 1, now=0)


def test_publish_results() -> None:
    session, _ = start()
    first = session.publish("/a", {"x": 1}, now=0)
    second = session.publish("/service/b", [1], now=0, ext={"k": "v"})
    third = session.publish("/c", None, now=0)
    m1, m2, m3 = session.messages_to_send()
    assert m1 == {"channel": "/a", "data": {"x": 1}, "id": first, "clientId": CID}
    assert m2 == {
        "channel": "/service/b",
        "data": [1],
        "id": second,
        "ext": {"k": "v"},
        "clientId": CID,
    }
    assert len({first, second, third}) == 3
    session.receive(
        [ok(m1), fail(m2, "405:/service/b:Invalid channel"), {"id": m3["id"], "successful": 0}],
        now=0,
    )
    assert session.events() == [
        PublishSucceeded(first),
        PublishFailed(second, "405:/service/b:Invalid channel"),
        PublishFailed(third, "Unknown error"),
    ]


def test_publishes_before_the_handshake_are_held_then_sent_in_order() -> None:
    session = ClientSession()
    ids = [session.publish("/a", n, now=0) for n in range(3)]
    assert session.messages_to_send() == []
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake)], now=0)
    *publishes, connect = session.messages_to_send()
    assert [(m["id"], m["data"], m["clientId"]) for m in publishes] == [
        (ids[0], 0, CID),
        (ids[1], 1, CID),
        (ids[2], 2, CID),
    ]
    assert is_connect(connect)
    session.receive([ok(m) for m in publishes], now=0)
    assert session.events() == [HandshakeSucceeded(CID)] + [PublishSucceeded(i) for i in ids]


def test_pending_publishes_are_bounded() -> None:
    session = ClientSession(max_pending=2)
    session.publish("/a", 1, now=0)
    session.publish("/a", 2, now=0)
    with pytest.raises(LocalProtocolError, match="waiting"):
        session.publish("/a", 3, now=0)
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake)], now=0)
    p1, p2, _ = session.messages_to_send()
    assert [p1["data"], p2["data"]] == [1, 2]
    # Connected with the transport up: no bound.
    for n in range(5):
        session.publish("/a", n, now=0)
    assert len(session.messages_to_send()) == 5


def test_the_bound_counts_unanswered_publishes_while_the_transport_is_down() -> None:
    session, connect = start(max_pending=3, retry=1)
    in_flight = [session.publish("/a", n, now=0) for n in range(2)]
    session.messages_to_send()
    session.transport_failed(now=0)
    assert session.events() == [TransportDown()]
    held = session.publish("/a", 2, now=0)
    assert session.messages_to_send() == []
    with pytest.raises(LocalProtocolError):
        session.publish("/a", 3, now=0)
    # The resend sends the lost ones first, then the held one.
    session.handle_timer(1)
    messages = session.messages_to_send()
    assert [m["id"] for m in messages] == [connect["id"], *in_flight, held]
    session.receive([ok(m) for m in messages[1:]], now=1)
    assert session.events() == [
        TransportUp(),
        PublishSucceeded(in_flight[0]),
        PublishSucceeded(in_flight[1]),
        PublishSucceeded(held),
    ]
    # All answered: room again, and the transport is up, so it goes out at once.
    session.publish("/a", 4, now=1)
    assert len(session.messages_to_send()) == 1


def test_publishes_held_while_down_go_out_when_the_server_is_heard_again() -> None:
    session, _connect = start(retry=5)
    session.transport_failed(now=0)
    session.events()
    held = session.publish("/a", 1, now=1)
    assert session.messages_to_send() == []
    # Some reply arrives before the resend (an old request's late answer).
    session.receive([], now=2)
    assert session.events() == [TransportUp()]
    (message,) = session.messages_to_send()
    assert message["id"] == held


def test_a_publish_for_a_lost_session_is_published_again_after_the_handshake() -> None:
    # A server that checks the clientId of publishes (CometD) answers 401.
    session, _ = start()
    message_id = session.publish("/a", 1, now=0)
    (message,) = session.messages_to_send()
    session.receive([fail(message, f"401:{CID}:Unknown client")], now=0)
    assert session.events() == []
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake, client_id="c2")], now=0)
    again, _connect = session.messages_to_send()
    assert again == {"channel": "/a", "data": 1, "id": message_id, "clientId": "c2"}
    session.receive([ok(again)], now=0)
    assert session.events() == [HandshakeSucceeded("c2"), PublishSucceeded(message_id)]


def test_a_publish_answered_for_an_older_session_goes_again_at_once() -> None:
    session, connect = start()
    message_id = session.publish("/a", 1, now=0)
    (old,) = session.messages_to_send()
    session.receive([fail(connect, f"401:{CID}:Unknown client", advice=HANDSHAKE_ADVICE)], now=0)
    session.handle_timer(1)
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake, client_id="c2")], now=1)
    session.messages_to_send()
    session.events()
    # Now the old publish is answered: the old session was unknown.
    session.receive([fail(old, f"401:{CID}:Unknown client")], now=1)
    assert session.state is ClientState.CONNECTED
    assert session.client_id == "c2"
    (again,) = session.messages_to_send()
    assert again["id"] == message_id
    assert again["clientId"] == "c2"
    session.receive([ok(again)], now=1)
    assert session.events() == [PublishSucceeded(message_id)]


def test_a_publish_answered_for_an_older_session_waits_while_down() -> None:
    session, connect = start(retry=3)
    session.publish("/a", 1, now=0)
    (old,) = session.messages_to_send()
    session.receive([fail(connect, f"401:{CID}:Unknown client", advice=HANDSHAKE_ADVICE)], now=0)
    # Still handshaking when the answer comes: held until the handshake.
    session.receive([fail(old, f"401:{CID}:Unknown client")], now=0)
    assert session.messages_to_send() == []
    session.handle_timer(1)
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake, client_id="c2")], now=1)
    again, _ = session.messages_to_send()
    assert again["id"] == old["id"]
    assert again["clientId"] == "c2"


def test_publishes_survive_a_rehandshake_in_flight() -> None:
    session, connect = start()
    message_id = session.publish("/a", 1, now=0)
    (message,) = session.messages_to_send()
    session.receive([fail(connect, f"401:{CID}:Unknown client")], now=0)
    (_handshake,) = session.messages_to_send()
    # The publish is answered (a server that accepts anonymous publishes).
    session.receive([ok(message)], now=0)
    assert session.events() == [PublishSucceeded(message_id)]
    assert session.state is ClientState.HANDSHAKING


def test_reconnect_none_on_a_publish_reply_ends_the_session() -> None:
    session, _ = start()
    message_id = session.publish("/a", 1, now=0)
    (message,) = session.messages_to_send()
    session.receive([ok(message, advice={"reconnect": "none"})], now=0)
    assert session.events() == [
        PublishSucceeded(message_id),
        SessionEnded("The server advised reconnect: none"),
    ]


# -------------------------------------------------------- transport failures


def test_transport_failure_resends_everything_after_retry() -> None:
    session, connect = start(retry=5)
    session.subscribe("/a", now=0)
    message_id = session.publish("/a", 1, now=0)
    sub, pub = session.messages_to_send()
    session.transport_failed(now=10)
    assert session.events() == [TransportDown()]
    assert session.get_timer() == 15
    # A second failure while down fires no second event.
    session.transport_failed(now=11)
    assert session.events() == []
    assert session.get_timer() == 16
    session.handle_timer(15.5)
    assert session.messages_to_send() == []
    session.handle_timer(16)
    resent = session.messages_to_send()
    assert resent == [connect, sub, pub]  # same ids, same clientId
    assert session.events() == []
    session.receive([ok(sub), ok(pub)], now=17)
    assert session.events() == [
        TransportUp(),
        SubscribeSucceeded("/a"),
        PublishSucceeded(message_id),
    ]
    # The answer to the first attempt arrives late: nothing twice.
    session.receive([ok(sub), ok(pub)], now=18)
    assert session.events() == []


def test_resends_back_off_up_to_max_retry_while_the_server_is_silent() -> None:
    session, connect = start(retry=1, max_retry=5)
    session.transport_failed(now=0)
    assert session.events() == [TransportDown()]
    now = 0.0
    waits = []
    for _ in range(5):
        deadline = session.get_timer()
        assert deadline is not None
        waits.append(deadline - now)
        now = deadline
        session.handle_timer(now)
        assert session.messages_to_send() == [connect]  # the same connect each round
        session.transport_failed(now=now)  # and it fails again at once
    assert waits == [1, 2, 4, 5, 5]
    assert session.events() == []  # down once, however many rounds
    # Hearing from the server starts again from ``retry``.
    session.receive([], now=now)
    assert session.events() == [TransportUp()]
    session.transport_failed(now=now)
    assert session.get_timer() == now + 1


def test_by_default_resends_wait_retry_every_round() -> None:
    session, connect = start(retry=3)
    assert session.max_retry == 3
    session.transport_failed(now=0)
    session.handle_timer(3)
    assert session.messages_to_send() == [connect]
    session.transport_failed(now=3)
    assert session.get_timer() == 6


def test_resends_wait_at_least_the_advised_interval() -> None:
    session, connect = start(retry=1)
    advice = {"reconnect": "retry", "interval": 4000, "timeout": 10000}
    session.receive([ok(connect, advice=advice)], now=0)
    assert session.messages_to_send() == []  # the next connect waits for the interval
    session.handle_timer(4)
    (connect2,) = session.messages_to_send()
    assert is_connect(connect2)
    session.transport_failed(now=5)
    assert session.get_timer() == 9  # max(retry, interval)


def test_transport_failure_takes_back_messages_not_yet_drained() -> None:
    session, connect = start(retry=2)
    message_id = session.publish("/a", 1, now=0)
    # The driver has not drained the publish when the transport fails: it must
    # not go now and again after the retry.
    session.transport_failed(now=0)
    assert session.messages_to_send() == []
    session.handle_timer(2)
    (again_connect, pub) = session.messages_to_send()
    assert again_connect == connect
    assert pub["id"] == message_id


def test_overdue_replies_count_as_lost() -> None:
    session, connect = start(retry=2)
    session.publish("/a", 1, now=0)
    (pub,) = session.messages_to_send()
    assert session.get_timer() == pytest.approx(30)
    session.handle_timer(29)
    assert session.events() == []
    session.handle_timer(30)
    assert session.events() == [TransportDown()]
    assert session.messages_to_send() == []
    assert session.get_timer() == pytest.approx(32)
    session.handle_timer(32)
    assert session.messages_to_send() == [connect, pub]


def test_transport_failure_while_handshaking_resends_the_handshake() -> None:
    session = ClientSession(retry=1)
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    session.transport_failed(now=0)
    assert session.events() == [TransportDown()]
    session.handle_timer(1)
    assert session.messages_to_send() == [handshake]
    session.receive([handshake_ok(handshake)], now=1)
    assert session.events() == [TransportUp(), HandshakeSucceeded(CID)]


def test_transport_failure_before_the_handshake() -> None:
    session = ClientSession(retry=1)
    session.transport_failed(now=0)
    assert session.events() == [TransportDown()]
    session.handle_timer(1)
    assert session.messages_to_send() == []
    assert session.get_timer() is None


def test_lost_publishes_wait_for_the_new_session_when_it_is_not_there_yet() -> None:
    session, connect = start(retry=1)
    message_id = session.publish("/a", 1, now=0)
    session.messages_to_send()
    session.transport_failed(now=0)
    # The session is lost before the resend (the server restarted, say).
    session.receive([fail(connect, f"401:{CID}:Unknown client", advice=HANDSHAKE_ADVICE)], now=0)
    session.handle_timer(1)  # handshake and resend are both due
    (handshake,) = session.messages_to_send()
    assert handshake["channel"] == "/meta/handshake"
    session.receive([handshake_ok(handshake, client_id="c2")], now=1)
    again, connect2 = session.messages_to_send()
    assert (again["id"], again["clientId"]) == (message_id, "c2")
    assert is_connect(connect2)


def test_a_lost_session_forgets_meta_messages_waiting_for_a_resend() -> None:
    session, _connect = subscribed(("/a",), retry=1)
    session.subscribe("/b", now=0)
    session.messages_to_send()
    session.transport_failed(now=0)
    session.events()
    # While down, an old request's answer says the session is gone.
    session.receive([], now=0)
    session.transport_failed(now=0)  # nothing in flight: down again, nothing lost
    session.events()
    session.receive([{"channel": "/x", "data": 1}], now=0)
    session.events()
    # A 401 on a fresh message: rehandshake; the connect and subscribe
    # waiting for a resend belong to the old session and are dropped.
    message_id = session.publish("/a", 1, now=0)
    (pub,) = session.messages_to_send()
    session.receive([fail(pub, f"401:{CID}:Unknown client")], now=0)
    (handshake,) = session.messages_to_send()
    session.handle_timer(1)  # the resend is due: nothing of the old session goes
    assert session.messages_to_send() == []
    session.receive([handshake_ok(handshake, client_id="c2")], now=1)
    messages = session.messages_to_send()
    assert [(m["channel"], m.get("subscription")) for m in messages] == [
        ("/meta/subscribe", "/a"),
        ("/meta/subscribe", "/b"),
        ("/a", None),
        ("/meta/connect", None),
    ]
    assert messages[2]["id"] == message_id


# -------------------------------------------------------------------- delivery


def test_deliveries_reach_the_application_once() -> None:
    session, _ = subscribed(("/chat/*", "/chat/**", "/chat/room", "/other"))
    session.receive(
        [
            {"channel": "/chat/room", "data": "hi", "ext": {"from": "x"}},
            {"channel": "/chat/room/deep", "data": 2},
            {"channel": "/nothing", "data": 3},
            {"channel": "/meta/connect", "data": 4},
            {"channel": "/chat/room"},
            {"data": 5},
            "not a message",
            {"channel": 7, "data": 6},
        ],
        now=0,
    )
    assert session.events() == [
        MessageReceived("/chat/room", "hi", {"from": "x"}),
        MessageReceived("/chat/room/deep", 2),
    ]


def test_a_delivery_with_the_id_of_a_message_in_flight_is_not_its_reply() -> None:
    session, _ = subscribed(("/a",))
    message_id = session.publish("/a", 1, now=0)
    session.messages_to_send()
    session.receive([{"channel": "/a", "data": 1, "id": message_id}], now=0)
    assert session.events() == [MessageReceived("/a", 1)]
    assert session.get_timer() == pytest.approx(30)  # still waiting for the reply


def test_replies_to_unknown_ids_are_ignored() -> None:
    session, _connect = start()
    session.receive(
        [{"id": "999", "channel": "/a", "successful": True}, {"successful": True}], now=0
    )
    assert session.events() == []
    assert session.messages_to_send() == []


# ------------------------------------------------------------------ extensions


def test_outgoing_extensions_see_a_copy_and_incoming_ones_every_message() -> None:
    recorder = Recorder()
    session = ClientSession(extensions=[recorder])
    session.subscribe("/a", now=0)
    ext = {"mine": 1}
    session.publish("/a", 1, now=0, ext=ext)
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    assert handshake["ext"] == {"token": "t"}
    assert recorder.outgoing_seen[0][1] == MessageContext(0, None)
    session.receive([handshake_ok(handshake)], now=1)
    assert recorder.incoming_seen[0][1] == MessageContext(1, None)
    _sub, pub, _connect = session.messages_to_send()
    assert pub["ext"] == {"mine": 1, "token": "t"}
    assert ext == {"mine": 1}  # the application's object is untouched
    assert recorder.outgoing_seen[-1][1] == MessageContext(1, CID)
    # A resend runs the extensions again on a fresh copy.
    session.transport_failed(now=1)
    session.handle_timer(6)
    resent = session.messages_to_send()
    assert [(m["channel"], m["ext"]) for m in resent] == [
        ("/meta/subscribe", {"token": "t"}),
        ("/a", {"mine": 1, "token": "t"}),
        ("/meta/connect", {"token": "t"}),
    ]


def test_incoming_extensions_may_rewrite_or_drop() -> None:
    class Incoming(Extension):
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            if message.get("data") == "drop":
                return None
            if message.get("data") == "rewrite":
                return {**message, "data": "rewritten"}
            return message

    session, _ = subscribed(("/a",), extensions=[Incoming(), Extension()])
    session.receive(
        [
            {"channel": "/a", "data": "drop"},
            {"channel": "/a", "data": "rewrite"},
            {"channel": "/a", "data": "as is"},
        ],
        now=0,
    )
    assert session.events() == [
        MessageReceived("/a", "rewritten"),
        MessageReceived("/a", "as is"),
    ]


def test_an_incoming_extension_dropping_a_reply_leaves_the_message_in_flight() -> None:
    class DropReplies(Extension):
        def incoming(self, message: Message, context: MessageContext) -> Message | None:
            return None if "successful" in message else message

    session = ClientSession(extensions=[DropReplies()], timeout=10)
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake)], now=0)
    assert session.events() == []
    assert session.get_timer() == 12


def test_dropped_publish_and_subscribe_fail() -> None:
    session, _ = start(
        extensions=[DropChannel("/a"), DropChannel("/meta/subscribe", subscription="/x")]
    )
    message_id = session.publish("/a", 1, now=0)
    session.subscribe("/x", now=0)
    session.subscribe("/y", now=0)
    (sub_y,) = session.messages_to_send()
    assert sub_y["subscription"] == "/y"
    assert session.events() == [PublishFailed(message_id, DROPPED), SubscribeFailed("/x", DROPPED)]
    assert session.subscriptions == {"/y": False}
    assert session.get_timer() == pytest.approx(30)  # only the connect and /y wait


def test_dropped_connect_is_tried_again_after_retry() -> None:
    dropper = DropChannel("/meta/connect")
    session = ClientSession(extensions=[dropper], retry=3)
    session.handshake(now=0)
    (handshake,) = session.messages_to_send()
    session.receive([handshake_ok(handshake)], now=0)
    assert session.messages_to_send() == []
    assert session.get_timer() == 3
    dropper.active = False
    session.handle_timer(3)
    (connect,) = session.messages_to_send()
    assert is_connect(connect)


def test_dropped_handshake_is_a_failed_handshake() -> None:
    dropper = DropChannel("/meta/handshake")
    session = ClientSession(extensions=[dropper], retry=3)
    session.handshake(now=0)
    assert session.messages_to_send() == []
    assert session.events() == [HandshakeFailed(DROPPED, final=False)]
    assert session.get_timer() == 3
    dropper.active = False
    session.handle_timer(3)
    (handshake,) = session.messages_to_send()
    assert handshake["channel"] == "/meta/handshake"


def test_dropped_unsubscribe_and_disconnect_are_silent() -> None:
    session, _ = subscribed(
        ("/a",), extensions=[DropChannel("/meta/unsubscribe"), DropChannel("/meta/disconnect")]
    )
    session.unsubscribe("/a", now=0)
    assert session.messages_to_send() == []
    assert session.events() == []
    session.disconnect(now=0)
    assert session.messages_to_send() == []
    assert session.events() == [SessionEnded(None)]


# ------------------------------------------------------------------- disconnect


def test_disconnect_when_connected() -> None:
    session, connect = subscribed(("/a",))
    session.subscribe("/b", now=0)
    message_id = session.publish("/a", 1, now=0)
    sub_b, pub = session.messages_to_send()
    session.disconnect(now=1)
    (message,) = session.messages_to_send()
    assert message == {"channel": "/meta/disconnect", "id": "6", "clientId": CID}
    assert session.events() == [
        PublishFailed(message_id, "Disconnected"),
        SubscribeFailed("/b", "Disconnected"),
        SessionEnded(None),
    ]
    assert session.state is ClientState.DISCONNECTED
    assert session.get_timer() is None
    # Replies that arrive afterwards change nothing; a second disconnect neither.
    session.receive([ok(connect), ok(pub), ok(sub_b), ok(message)], now=2)
    session.disconnect(now=2)
    session.unsubscribe("/a", now=2)
    assert session.events() == []
    assert session.messages_to_send() == []


def test_disconnect_before_connecting_sends_nothing() -> None:
    session = ClientSession()
    message_id = session.publish("/a", 1, now=0)
    session.disconnect(now=0)
    assert session.messages_to_send() == []
    assert session.events() == [PublishFailed(message_id, "Disconnected"), SessionEnded(None)]
    session = ClientSession()
    session.handshake(now=0)
    session.messages_to_send()
    session.disconnect(now=0)
    assert session.messages_to_send() == []
    assert session.events() == [SessionEnded(None)]


def test_disconnect_fails_lost_publishes_waiting_for_a_resend() -> None:
    session, _ = start()
    message_id = session.publish("/a", 1, now=0)
    session.messages_to_send()
    session.transport_failed(now=0)
    session.disconnect(now=1)
    events: list[ClientEvent] = session.events()
    assert events == [
        TransportDown(),
        PublishFailed(message_id, "Disconnected"),
        SessionEnded(None),
    ]


def test_a_late_reply_to_a_lost_message_settles_it_and_stops_its_resend() -> None:
    session, connect = start(retry=5)
    message_id = session.publish("/a", 1, now=0)
    (pub,) = session.messages_to_send()
    session.transport_failed(now=0)
    session.receive([ok(pub)], now=1)
    assert session.events() == [TransportDown(), TransportUp(), PublishSucceeded(message_id)]
    session.handle_timer(5)
    assert session.messages_to_send() == [connect]
