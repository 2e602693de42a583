"""Timesync: CometD's ext.timesync answered with the wall-clock time given as input."""

from __future__ import annotations

from typing import Any

import pytest

from bayeux_core import Message, MessageContext, TimesyncExtension, timesync_answer
from tests.core.helpers import Wire, replies

WALL = 1_700_000_000_000.0


def connect(client_id: str, ext: Any = None) -> Message:
    message: Message = {
        "channel": "/meta/connect",
        "clientId": client_id,
        "connectionType": "long-polling",
        "id": "c",
    }
    if ext is not None:
        message["ext"] = ext
    return message


def send(wire: Wire, messages: list[Any], wall: float | None, conn: int | None = None) -> Any:
    wire.engine.receive(wire.next_conn(conn), messages, now=wire.now, wall=wall)
    return replies(wire.engine.actions_to_send())


def test_a_handshake_with_timesync_gets_the_server_time() -> None:
    wire = Wire()
    sync = {"tc": WALL - 300, "l": 20, "o": 250}
    (reply,) = send(
        wire,
        [
            {
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
                "ext": {"timesync": sync},
            }
        ],
        WALL,
    )
    # a = tc + o + l - ts: how far the client's estimate was off
    assert reply["ext"] == {"timesync": {"tc": WALL - 300, "ts": WALL, "p": 0, "a": -30}}


def test_without_a_wall_clock_or_without_timesync_there_is_no_answer() -> None:
    wire = Wire()
    client_id = wire.handshake()
    (reply,) = send(wire, [connect(client_id, {"timesync": {"tc": 1}})], None)
    assert "ext" not in reply
    subscribe = {
        "channel": "/meta/subscribe",
        "clientId": client_id,
        "subscription": "/a",
        "ext": {"other": 1},
    }
    (reply,) = send(wire, [subscribe], WALL)
    assert reply["successful"] is True
    assert "ext" not in reply


def test_publishes_and_service_messages_are_not_answered() -> None:
    wire = Wire()
    client_id = wire.handshake()
    publish = {"channel": "/a", "data": 1, "clientId": client_id, "ext": {"timesync": {"tc": 1}}}
    (reply,) = send(wire, [publish], WALL)
    assert "ext" not in reply
    (reply,) = send(wire, [dict(publish, channel="/service/a")], WALL)
    assert "ext" not in reply


def test_a_held_connect_reports_how_long_it_was_held() -> None:
    wire = Wire()
    client_id = wire.handshake()
    send(wire, [connect(client_id)], WALL)  # the first connect is answered at once
    conn = wire.conn()
    assert send(wire, [connect(client_id, {"timesync": {"tc": WALL}})], WALL, conn) == []
    wire.now += 2.5
    wire.engine.publish("/x", 1, now=wire.now)  # nobody subscribed: still held
    (reply,) = replies(wire.advance(wire.engine.config.timeout))
    assert reply["ext"]["timesync"]["ts"] == WALL
    assert reply["ext"]["timesync"]["p"] == round((2.5 + wire.engine.config.timeout) * 1000)


def test_a_held_connect_closed_early_is_forgotten() -> None:
    wire = Wire()
    client_id = wire.handshake()
    send(wire, [connect(client_id)], WALL)
    conn = wire.conn()
    send(wire, [connect(client_id, {"timesync": {"tc": WALL}})], WALL, conn)
    wire.engine.close(conn, now=wire.now)
    assert wire.engine._synced == {}
    # the next held connect is timed from its own arrival
    conn = wire.conn()
    send(wire, [connect(client_id, {"timesync": {"tc": WALL}})], WALL, conn)
    wire.now += 1
    (reply,) = replies(wire.advance(wire.engine.config.timeout))
    assert reply["ext"]["timesync"]["p"] == round((1 + wire.engine.config.timeout) * 1000)


@pytest.mark.parametrize(
    "ext",
    [
        None,
        "x",
        {"timesync": "x"},
        {"timesync": {}},
        {"timesync": {"tc": True}},
        {"timesync": {"tc": float("nan")}},
        {"timesync": {"tc": 1e300}},
    ],
)
def test_malformed_timesync_is_ignored(ext: Any) -> None:
    assert timesync_answer(ext, WALL) is None


def test_missing_lag_and_offset_count_as_zero() -> None:
    answer = timesync_answer({"timesync": {"tc": 1000, "l": "x"}}, 1500.4)
    assert answer == {"tc": 1000, "ts": 1500, "p": 0, "a": -500}


class FakeClock:
    def __init__(self, ms: float) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms


def test_the_client_extension_estimates_offset_and_lag() -> None:
    clock = FakeClock(10_000)
    sync = TimesyncExtension(clock, samples=2)
    assert not sync.synced
    context = MessageContext(0.0)
    sent = sync.outgoing({"channel": "/meta/connect", "ext": {"ack": 1}}, context)
    assert sent is not None
    assert sent["ext"] == {"ack": 1, "timesync": {"tc": 10_000, "l": 0, "o": 0}}
    # Server clock 5 s ahead; 40 ms each way; held 1 s.
    clock.ms = 10_000 + 40 + 1000 + 40
    reply = {
        "channel": "/meta/connect",
        "ext": {"timesync": {"tc": 10_000, "ts": 15_040, "p": 1000}},
    }
    assert sync.incoming(reply, context) is reply
    assert (sync.lag, sync.offset, sync.synced) == (40, 5000, True)
    assert sync.server_time() == clock.ms + 5000
    # Averaged over the last `samples` estimates.
    clock.ms = 20_100
    sync.incoming(
        {"channel": "/meta/connect", "ext": {"timesync": {"tc": 20_000, "ts": 25_110, "p": 0}}},
        context,
    )
    assert (sync.lag, sync.offset) == (45, 5030)  # (40+50)/2, (5000+5060)/2


def test_the_client_extension_leaves_other_messages_alone() -> None:
    sync = TimesyncExtension(FakeClock(1))
    context = MessageContext(0.0)
    publish = {"channel": "/chat", "data": 1}
    assert sync.outgoing(dict(publish), context) == publish
    for message in (
        {"channel": "/meta/connect"},
        {"channel": "/meta/connect", "ext": {"timesync": "x"}},
        {"channel": "/meta/connect", "ext": {"timesync": {"tc": 1, "ts": 2}}},
    ):
        sync.incoming(message, context)
    assert not sync.synced
    with pytest.raises(ValueError, match="samples"):
        TimesyncExtension(FakeClock(1), samples=0)
