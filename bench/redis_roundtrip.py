"""A Redis round trip under trio: what each way of making it costs in CPU.

One ``PING`` at a time, many times over, against a Redis of your own; CPU
(``getrusage``) and wall time per round trip, median of ``--runs``. The ways:

* ``stream``: a trio ``SocketStream``: ``send_all``, then ``receive_some``
  (which tries a ``recv`` that finds nothing before it waits), inside a
  cancel scope for the call's deadline: the lean connection before issue
  18's fourth round;
* ``link``: :class:`bayeux_trio.redis._lean.Link` on its own, which reads
  and writes its socket directly and still gives each call a cancel scope;
* ``link-watched``: the same link with its :meth:`~Link.watch` task running,
  as the bus runs it: no cancel scope per call;
* ``socket``: a bare non-blocking socket, send, ``wait_readable``, ``recv``
  and nothing else (the floor under the three above).

Run: ``.venv/bin/python bench/redis_roundtrip.py`` (it starts a
``redis-server`` of its own, as ``bench/redis_bench.py`` does; ``--port``
uses one already running instead).
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio
from coredis.connection import Location, TCPLocation

for _path in (Path(__file__).resolve().parents[1], Path(__file__).resolve().parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from redis_bench import Redis  # noqa: E402

from bayeux_trio.redis._lean import Endpoint, Link  # noqa: E402

PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(call: Callable[[], Awaitable[object]], count: int) -> tuple[float, float]:
    await call()
    cpu, wall = _cpu(), time.perf_counter()
    for _ in range(count):
        await call()
    return (_cpu() - cpu) / count * 1e6, (time.perf_counter() - wall) / count * 1e6


async def _stream(port: int, count: int) -> tuple[float, float]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)

    async def call() -> None:
        with trio.move_on_after(5):
            await stream.send_all(PING)
            got = b""
            while not got.endswith(b"\r\n"):
                got += await stream.receive_some(65536)

    try:
        return await _measure(call, count)
    finally:
        await stream.aclose()


async def _link(port: int, count: int, *, watched: bool) -> tuple[float, float]:
    async def locate() -> Location:
        return TCPLocation("127.0.0.1", port)

    link = Link(Endpoint(locate=locate), read_timeout=5)
    async with trio.open_nursery() as nursery:
        if watched:
            nursery.start_soon(link.watch)
            await trio.lowlevel.checkpoint()
        try:
            return await _measure(lambda: link.pipeline([("PING",)]), count)
        finally:
            await link.aclose()
            nursery.cancel_scope.cancel()


async def _socket(port: int, count: int) -> tuple[float, float]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    taken = stream.socket
    sock = socket.socket(taken.family, taken.type, taken.proto, fileno=taken.detach())
    sock.setblocking(False)

    async def call() -> None:
        sock.send(PING)
        got = b""
        while not got.endswith(b"\r\n"):
            await trio.lowlevel.wait_readable(sock)
            got += sock.recv(65536)

    try:
        return await _measure(call, count)
    finally:
        sock.close()


WAYS: dict[str, Callable[[int, int], Awaitable[tuple[float, float]]]] = {
    "stream": _stream,
    "link": lambda port, count: _link(port, count, watched=False),
    "link-watched": lambda port, count: _link(port, count, watched=True),
    "socket": _socket,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, help="a Redis already running on loopback")
    parser.add_argument("--count", type=int, default=20_000, help="round trips per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per way (median)")
    args = parser.parse_args(argv)
    results: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory(prefix="redis-roundtrip-") as directory:
        redis = Redis(Path(directory)) if args.port is None else None
        port = args.port if redis is None else redis.port
        try:
            for _ in range(args.runs):
                for way, run in WAYS.items():  # interleaved: a busy moment weighs on all
                    results[way].append(trio.run(run, port, args.count))
        finally:
            if redis is not None:
                redis.stop()
    print("| way | CPU per round trip (us) | wall per round trip (us) |")
    print("|---|---:|---:|")
    for way, runs in results.items():
        cpu = statistics.median(r[0] for r in runs)
        wall = statistics.median(r[1] for r in runs)
        print(f"| {way} | {cpu:.1f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
