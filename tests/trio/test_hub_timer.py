"""The hub's timer: deadlines rounded up to a tick, never moved earlier."""

from __future__ import annotations

import math
import random  # noqa: TID251 - seeded, repeatable test inputs; nothing secret

import trio
import trio.testing

from bayeux_core import Engine, EngineConfig
from bayeux_trio.server._hub import TIMER_TICK, Hub
from tests.trio.helpers import WsClient, make_config, start_server


class _Timer:
    """Stands in for the engine's timer: returns whatever deadline it is given."""

    def __init__(self) -> None:
        self.deadline: float | None = None

    def get_timer(self) -> float | None:
        return self.deadline


def hub_with(timer: _Timer) -> Hub:
    hub = Hub(Engine(EngineConfig()))
    hub.engine = timer  # type: ignore[assignment]  # only get_timer is used here
    return hub


def test_deadlines_are_rounded_up_to_the_tick_and_never_earlier() -> None:
    timer = _Timer()
    hub = hub_with(timer)
    rng = random.Random(10)
    deadlines = [0.0, TIMER_TICK, 0.07, 0.3, 1e6 + 0.005, 123456.789]
    deadlines += [rng.uniform(0, 1e7) for _ in range(2000)]
    deadlines += [k * TIMER_TICK for k in range(1, 500)]  # on the grid, as far as floats go
    for deadline in deadlines:
        timer.deadline = deadline
        hub._update_timer()
        got = hub._timer_scope.deadline
        assert got >= deadline
        assert got - deadline < TIMER_TICK * 1.000001
        # on the tick grid (up to float error), unless kept at the deadline itself
        ticks = got / TIMER_TICK
        assert math.isclose(ticks, round(ticks), rel_tol=1e-9, abs_tol=1e-6) or got == deadline


def test_no_deadline_means_no_wake_up() -> None:
    timer = _Timer()
    hub = hub_with(timer)
    timer.deadline = 5.0
    hub._update_timer()
    assert hub._timer_scope.deadline == 5.0
    timer.deadline = None
    hub._update_timer()
    assert hub._timer_scope.deadline == math.inf


def test_a_held_connect_is_answered_after_its_timeout() -> None:
    """In virtual time: the reply comes at the timeout, not before, within a tick."""
    answered: list[float] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await start_server(nursery, make_config(timeout=2.0))
            assert server.port is not None
            async with await WsClient.connect(server.port) as ws:
                await ws.send_json(
                    [
                        {
                            "channel": "/meta/handshake",
                            "version": "1.0",
                            "id": "1",
                            "supportedConnectionTypes": ["websocket"],
                        }
                    ]
                )
                (reply,) = await ws.receive_json()
                connect = {
                    "channel": "/meta/connect",
                    "clientId": reply["clientId"],
                    "connectionType": "websocket",
                }
                await ws.send_json([dict(connect, id="2")])  # the first is answered at once
                await ws.receive_json()
                await trio.sleep(0.1234)  # off the tick grid
                sent = trio.current_time()
                await ws.send_json([dict(connect, id="3")])  # this one is held
                (held,) = await ws.receive_json()
                assert held["id"] == "3"
                answered.append(trio.current_time() - sent)
            nursery.cancel_scope.cancel()

    # The clock jumps only once every task has waited 50 ms of real time, so
    # loopback traffic is never overtaken by a jump.
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0.05))
    (held_for,) = answered
    assert 2.0 <= held_for < 2.0 + 2 * TIMER_TICK
