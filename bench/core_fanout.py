"""Deliveries per second through the sans-IO core alone (no sockets).

Each case subscribes N clients to one channel and then measures server
publishes: ``Engine.publish`` followed by ``Engine.actions_to_send``.

* ``stream``: the subscribers are bound to stream connections (WebSocket-like),
  so each publish yields one ``Deliver`` naming all N connections.
* ``long-poll``: every subscriber has a held ``/meta/connect``. Each publish
  answers all N of them (N ``Reply`` actions, each carrying the message),
  and then every subscriber sends its next connect, which is held again, as
  real long-polling clients do. The table gives the rate for publish and
  drain alone, and for the whole cycle with the re-connects.

A run repeats publishes for about a quarter of a second (at least one), and
the table shows the median of several runs. Each case stops adding runs after
a few seconds, so the whole benchmark stays well under a minute. Run it with
``make bench-core`` or ``python bench/core_fanout.py`` (``--help`` for
options).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from bayeux_core import Deliver, Engine, EngineConfig, Message, Reply

CHANNEL = "/bench/fanout"
DATA = {"text": "hello, subscribers", "n": 1}
#: seconds one timed run should take (it makes at least one publish)
RUN_SECONDS = 0.25
#: seconds of timed runs per case at most (at least three runs are made)
CASE_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Result:
    subscribers: int
    transport: str
    #: deliveries per second, median over the runs: publish + drain only
    rate: float
    #: deliveries per second of the whole cycle (re-connects included), if any
    cycle_rate: float | None
    runs: int
    publishes_per_run: int


class Bench:
    """One engine with ``n`` subscribers, and a clock that moves by hand."""

    def __init__(self, n: int) -> None:
        numbers = itertools.count(1)
        self.engine = Engine(
            EngineConfig(timeout=3600.0, session_timeout=3600.0),
            client_id_generator=lambda: f"{next(numbers):031d}",
        )
        self.n = n
        self.now = 0.0
        self._conns = itertools.count(1)

    def conn(self) -> int:
        return next(self._conns)

    def tick(self) -> float:
        self.now += 1e-6
        return self.now

    def handshake(self, conn: int, connection_type: str) -> str:
        message: Message = {
            "channel": "/meta/handshake",
            "version": "1.0",
            "supportedConnectionTypes": [connection_type],
        }
        self.engine.receive(conn, [message], now=self.tick())
        (reply,) = [a for a in self.engine.actions_to_send() if isinstance(a, Reply)]
        client_id: str = orjson.loads(reply.body)[0]["clientId"]
        return client_id


def _connect(client_id: str, connection_type: str) -> Message:
    return {"channel": "/meta/connect", "clientId": client_id, "connectionType": connection_type}


def _subscribe(client_id: str) -> Message:
    return {"channel": "/meta/subscribe", "clientId": client_id, "subscription": CHANNEL}


def setup_streams(n: int) -> Bench:
    bench = Bench(n)
    engine = bench.engine
    for _ in range(n):
        conn = bench.conn()
        engine.open_stream(conn, now=bench.tick())
        client_id = bench.handshake(conn, "websocket")
        # The first connect is answered at once and binds the stream.
        engine.receive(
            conn, [_connect(client_id, "websocket"), _subscribe(client_id)], now=bench.tick()
        )
        engine.actions_to_send()
    return bench


def run_streams(bench: Bench, publishes: int) -> tuple[float, float | None]:
    engine = bench.engine
    delivered = 0
    start = time.perf_counter()
    for _ in range(publishes):
        engine.publish(CHANNEL, DATA, now=bench.tick())
        for action in engine.actions_to_send():
            if isinstance(action, Deliver):
                delivered += len(action.conns)
    elapsed = time.perf_counter() - start
    assert delivered == publishes * bench.n, (delivered, publishes, bench.n)
    return delivered / elapsed, None


class LongPoll(Bench):
    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.connects: list[list[Message]] = []

    def hold_all(self) -> None:
        engine = self.engine
        for connect in self.connects:
            engine.receive(self.conn(), connect, now=self.tick())
        assert not engine.actions_to_send()  # every connect is held


def setup_long_poll(n: int) -> LongPoll:
    bench = LongPoll(n)
    engine = bench.engine
    for _ in range(n):
        client_id = bench.handshake(bench.conn(), "long-polling")
        engine.receive(
            bench.conn(),
            [_subscribe(client_id), _connect(client_id, "long-polling")],
            now=bench.tick(),
        )
        engine.actions_to_send()
        bench.connects.append([_connect(client_id, "long-polling")])
    bench.hold_all()
    return bench


def run_long_poll(bench: LongPoll, publishes: int) -> tuple[float, float | None]:
    engine = bench.engine
    delivered = 0
    in_publish = 0.0
    start = time.perf_counter()
    for _ in range(publishes):
        begin = time.perf_counter()
        engine.publish(CHANNEL, DATA, now=bench.tick())
        for action in engine.actions_to_send():
            if isinstance(action, Reply):
                delivered += len(action.messages)
        in_publish += time.perf_counter() - begin
        bench.hold_all()
    elapsed = time.perf_counter() - start
    assert delivered == publishes * bench.n, (delivered, publishes, bench.n)
    return delivered / in_publish, delivered / elapsed


CASES: dict[str, tuple[Callable[[int], Bench], Callable[..., tuple[float, float | None]]]] = {
    "stream": (setup_streams, run_streams),
    "long-poll": (setup_long_poll, run_long_poll),
}


def measure(n: int, transport: str, runs: int) -> Result:
    setup, run = CASES[transport]
    bench = setup(n)
    # Warm up, and size the runs from how long one publish cycle takes.
    publishes = 1
    while True:
        began = time.perf_counter()
        run(bench, publishes)
        took = time.perf_counter() - began
        if took >= RUN_SECONDS / 10:
            break
        publishes *= 10
    publishes = max(1, round(publishes * RUN_SECONDS / took))
    rates: list[float] = []
    cycles: list[float] = []
    deadline = time.perf_counter() + CASE_SECONDS
    for _ in range(runs):
        gc.collect()
        rate, cycle = run(bench, publishes)
        rates.append(rate)
        if cycle is not None:
            cycles.append(cycle)
        if time.perf_counter() > deadline and len(rates) >= 3:
            break
    return Result(
        subscribers=n,
        transport=transport,
        rate=statistics.median(rates),
        cycle_rate=statistics.median(cycles) if cycles else None,
        runs=len(rates),
        publishes_per_run=publishes,
    )


def table(results: Sequence[Result]) -> str:
    lines = [
        "| subscribers | transport | deliveries/s (publish + drain) | deliveries/s "
        "(with re-connects) | µs per publish (publish + drain) | runs x publishes |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for r in results:
        cycle = f"{r.cycle_rate:,.0f}" if r.cycle_rate is not None else "n/a"
        per_publish = r.subscribers / r.rate * 1e6
        lines.append(
            f"| {r.subscribers:,} | {r.transport} | {r.rate:,.0f} | {cycle} "
            f"| {per_publish:,.1f} | {r.runs} x {r.publishes_per_run:,} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fan-out through bayeux_core.")
    parser.add_argument(
        "--subscribers",
        default="1,100,10000",
        help="comma-separated subscriber counts (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (median)")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.subscribers.split(",")]
    started = time.perf_counter()
    results = [measure(n, transport, args.runs) for transport in CASES for n in sizes]
    print(table(results))
    print(
        f"\nPython {sys.version.split()[0]}, {time.perf_counter() - started:.1f} s in all; "
        f"median of up to {args.runs} runs of about {RUN_SECONDS} s each."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
