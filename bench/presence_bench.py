"""What presence costs: handshake + subscribe + disconnect cycles with it on and off.

Issue 16's "Cost" item: a join or leave is one message per presence
subscriber, encoded once, and a subscribe without presence costs nothing
extra; presence on should cost at most 20% of the cycle rate. Three parts:

* ``engine``: ``bayeux_core`` alone, no I/O. One cycle is a handshake, a
  subscribe to ``/chat/room`` and a disconnect, each its own ``receive`` (as
  three long-polling requests would be), with every action drained. ``W``
  watchers are stream-bound sessions (WebSocket-like) subscribed to
  ``/presence/chat/room``. Cases: ``off`` (no presence configured: the
  watchers' channel is an ordinary one and gets nothing), ``on`` (``presence
  =("/chat/**",)``: every cycle is one join and one leave, each one
  ``Deliver`` to the W watchers) and ``on, other channel`` (presence on, the
  cycle subscribes to ``/news/room``, which has none: the "a subscribe
  without presence costs nothing extra" claim). The cases of one W run
  interleaved (run 1 in order, run 2 reversed, ...), each run about
  ``--run-seconds``. A run's rate is cycles per CPU-second of this process
  (``time.process_time``: on a shared machine, time spent descheduled does
  not count; the wall-clock rate is reported too). Medians, and the ratio to
  ``off`` as the median of the per-run ratios (neighbours in time, so drift
  mostly cancels).
* ``memory``: ``--members`` sessions (each its own user), each subscribed to
  one of ``--channels`` presence channels, built under ``tracemalloc`` with
  presence off and on: bytes per session, and the difference per member.
* ``server``: the same cycle through a real server process (``python -m
  bayeux_trio serve`` on a free loopback port), ``--concurrency`` clients
  each on one kept-alive HTTP connection (long-polling: three POSTs per
  cycle), ``W`` WebSocket watchers of ``/presence/chat/room`` that count the
  joins and leaves they get. The servers (presence off and on; with
  ``--redis`` also both on ``--engine redis://`` against a ``redis-server``
  started on a free loopback port) run side by side and are measured in
  turn, interleaved. Reported: cycles/s (wall), the server's CPU per cycle
  (``utime + stime`` of its process from ``/proc``, so the client's own CPU
  on the same machine does not count), and both as ratios to presence off.

Every loop is bounded in count and in time; everything is on 127.0.0.1.
``--profile`` adds a cProfile of the engine cycle with presence off and on (W
= the largest watcher count); ``--server-profile DIR`` runs each server under
cProfile (on CPython's allocator) and prints its top functions, whose CPU
figures are then inflated by the profiler. Run it with ``make bench-presence`` or
``python bench/presence_bench.py`` (``--help``). Figures: docs/benchmarks.md,
"Presence".
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import gc
import io
import itertools
import json
import math
import os
import platform
import pstats
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from server_bench import loadavg  # noqa: E402
from soak import Http, ok_reply  # noqa: E402

from bayeux_core import Deliver, Engine, EngineConfig, Handshaken, Message  # noqa: E402
from tests._support.ports import free_port  # noqa: E402

HOST = "127.0.0.1"
MOUNT = "/faye"
PATTERN = "/chat/**"
ROOM = "/chat/room"
OTHER = "/news/room"
WATCHED = "/presence" + ROOM
CLK_TCK = os.sysconf("SC_CLK_TCK")
#: seconds a server holds a /meta/connect: the watchers' stay held for a whole run
SERVER_TIMEOUT = 900


def _handshake(connection_type: str) -> Message:
    return {
        "channel": "/meta/handshake",
        "version": "1.0",
        "supportedConnectionTypes": [connection_type],
    }


def _subscribe(client_id: str, channel: str) -> Message:
    return {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel}


def _disconnect(client_id: str) -> Message:
    return {"channel": "/meta/disconnect", "clientId": client_id}


def _connect(client_id: str, connection_type: str) -> Message:
    return {"channel": "/meta/connect", "clientId": client_id, "connectionType": connection_type}


def _median_ratio(values: Sequence[float], bases: Sequence[float]) -> float | None:
    ratios = [v / b for v, b in zip(values, bases, strict=True) if b]
    return statistics.median(ratios) if ratios else None


# ------------------------------------------------------------- the engine


@dataclass(frozen=True, slots=True)
class EngineCase:
    name: str
    presence: bool
    channel: str
    #: presence off, and the cycle publishes the join and the leave itself to
    #: the watchers' channel, as an application without presence does (from
    #: its subscribe and disconnect events, with server.publish)
    hand_rolled: bool = False


ENGINE_CASES = (
    EngineCase("off", False, ROOM),
    EngineCase("on", True, ROOM),
    EngineCase("on, other channel", True, OTHER),
    EngineCase("off, joins published by hand", False, ROOM, hand_rolled=True),
)


class EngineCycler:
    """One engine with ``watchers`` stream sessions on ``/presence/chat/room``."""

    def __init__(self, case: EngineCase, watchers: int) -> None:
        self.case = case
        self.watchers = watchers
        self.engine = Engine(EngineConfig(presence=(PATTERN,) if case.presence else ()))
        self.now = 0.0
        self._conns = itertools.count(1)
        engine = self.engine
        for _ in range(watchers):
            conn = next(self._conns)
            engine.open_stream(conn, now=self._tick())
            engine.receive(conn, [_handshake("websocket")], now=self._tick())
            client_id = self._client_id()
            engine.receive(
                conn,
                [_connect(client_id, "websocket"), _subscribe(client_id, WATCHED)],
                now=self._tick(),
            )
            engine.actions_to_send()

    def _tick(self) -> float:
        self.now += 1e-6
        return self.now

    def _client_id(self) -> str:
        for action in self.engine.actions_to_send():
            if type(action) is Handshaken:
                return action.client_id
        raise RuntimeError("no handshake")

    def expected_deliveries(self, cycles: int) -> int:
        """Joins and leaves the watchers must get over ``cycles`` cycles."""
        if (self.case.presence or self.case.hand_rolled) and self.case.channel == ROOM:
            return 2 * cycles * self.watchers
        return 0

    def run(self, cycles: int) -> tuple[float, float]:
        """``cycles`` cycles; the seconds they took, wall-clock and CPU (this process)."""
        engine = self.engine
        conns = self._conns
        tick = self._tick
        channel = self.case.channel
        by_hand = self.case.hand_rolled
        delivered = 0
        cpu = time.process_time()
        start = time.perf_counter()
        for _ in range(cycles):
            engine.receive(next(conns), [_handshake("long-polling")], now=tick())
            client_id = self._client_id()
            engine.receive(next(conns), [_subscribe(client_id, channel)], now=tick())
            if by_hand:
                member = {"user": client_id, "info": None}
                engine.publish(WATCHED, {"join": member}, now=tick())
            for action in engine.actions_to_send():
                if type(action) is Deliver:
                    delivered += len(action.conns)
            engine.receive(next(conns), [_disconnect(client_id)], now=tick())
            if by_hand:
                engine.publish(WATCHED, {"leave": member}, now=tick())
            for action in engine.actions_to_send():
                if type(action) is Deliver:
                    delivered += len(action.conns)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
        expected = self.expected_deliveries(cycles)
        if delivered != expected:
            raise RuntimeError(f"{self.case.name}: {delivered} deliveries, expected {expected}")
        return elapsed, cpu


@dataclass
class EngineResult:
    watchers: int
    case: str
    cycles_per_run: int
    #: cycles per CPU-second of this process, one per run
    rates: list[float] = field(default_factory=list)
    #: rates over presence off's in the same round
    ratios: list[float] = field(default_factory=list)
    #: cycles per wall-clock second, and their ratios
    wall_rates: list[float] = field(default_factory=list)
    wall_ratios: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)


def measure_engine(
    watchers: int, runs: int, run_seconds: float, deadline_seconds: float
) -> list[EngineResult]:
    cyclers = [EngineCycler(case, watchers) for case in ENGINE_CASES]
    sizes: list[int] = []
    for cycler in cyclers:  # warm up, and size each run
        count = 10
        for _ in range(6):
            took, _ = cycler.run(count)
            if took >= run_seconds / 10:
                break
            count *= 10
        sizes.append(max(10, round(count * run_seconds / max(took, 1e-9))))
    results = [
        EngineResult(watchers, cycler.case.name, size)
        for cycler, size in zip(cyclers, sizes, strict=True)
    ]
    deadline = time.perf_counter() + deadline_seconds
    for index in range(runs):
        order = list(range(len(cyclers)))
        if index % 2:
            order.reverse()
        for i in order:
            gc.collect()
            wall, cpu = cyclers[i].run(sizes[i])
            results[i].rates.append(sizes[i] / max(cpu, 1e-9))
            results[i].wall_rates.append(sizes[i] / wall)
        for result in results:
            result.ratios.append(result.rates[-1] / results[0].rates[-1])
            result.wall_ratios.append(result.wall_rates[-1] / results[0].wall_rates[-1])
        if time.perf_counter() > deadline and index >= 2:
            break
    return results


def engine_table(results: Sequence[EngineResult]) -> str:
    lines = [
        "| watchers | presence | cycles per CPU-second | CPU µs per cycle | ratio to off "
        "| cycles/s (wall) | ratio to off (wall) | runs x cycles |",
        "|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.watchers:,} | {r.case} | {r.rate:,.0f} | {1e6 / r.rate:,.1f} | {r.ratio:.3f} "
            f"| {statistics.median(r.wall_rates):,.0f} | {statistics.median(r.wall_ratios):.3f} "
            f"| {len(r.rates)} x {r.cycles_per_run:,} |"
        )
    return "\n".join(lines)


def profile_engine(watchers: int, seconds: float, top: int = 25) -> str:
    """cProfile of the cycle with presence on and off (about ``seconds`` each)."""
    out = io.StringIO()
    for case in ENGINE_CASES[:2]:
        cycler = EngineCycler(case, watchers)
        cycler.run(200)
        count = max(10, round(200 * seconds / cycler.run(200)[0]))
        profiler = cProfile.Profile()
        profiler.enable()
        cycler.run(count)
        profiler.disable()
        out.write(f"\n### presence {case.name}, {watchers} watchers, {count:,} cycles\n\n")
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


# ------------------------------------------------------------ the memory


@dataclass(frozen=True, slots=True)
class MemoryResult:
    members: int
    channels: int
    off_bytes: int
    on_bytes: int

    @property
    def per_member(self) -> float:
        return (self.on_bytes - self.off_bytes) / self.members


def _traced_sessions(members: int, channels: int, presence: bool) -> int:
    """Bytes traced for an engine holding ``members`` subscribed sessions."""
    gc.collect()
    tracemalloc.start()
    try:
        engine = Engine(EngineConfig(presence=(PATTERN,) if presence else ()))
        for n in range(members):
            engine.receive(n, [_handshake("long-polling")], now=1.0)
            (client_id,) = [a.client_id for a in engine.actions_to_send() if type(a) is Handshaken]
            engine.receive(n, [_subscribe(client_id, f"/chat/{n % channels}")], now=1.0)
            engine.actions_to_send()
        if presence and len(engine.presence_counts()) != min(members, channels):
            raise RuntimeError("the members are not all in")
        gc.collect()
        traced, _ = tracemalloc.get_traced_memory()
        del engine
        return traced
    finally:
        tracemalloc.stop()


def measure_memory(members: int, channels: int) -> MemoryResult:
    off = _traced_sessions(members, channels, presence=False)
    on = _traced_sessions(members, channels, presence=True)
    return MemoryResult(members, channels, off, on)


def memory_table(result: MemoryResult) -> str:
    return "\n".join(
        [
            "| sessions (= members) | channels | bytes per session, off | bytes per session, on "
            "| presence bytes per member |",
            "|---:|---:|---:|---:|---:|",
            f"| {result.members:,} | {result.channels:,} "
            f"| {result.off_bytes / result.members:,.0f} "
            f"| {result.on_bytes / result.members:,.0f} | {result.per_member:,.0f} |",
        ]
    )


# ------------------------------------------------------------ the server


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class RedisServer:
    """A redis-server on a free loopback port, no persistence."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                binary, "--port", str(self.port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", str(directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self._ping():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def _ping(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64) == b"+PONG\r\n"
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@dataclass
class ServerUnderTest:
    name: str
    presence: bool
    engine_url: str
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    log: Path | None = None
    #: where cProfile writes the server's profile when it exits, if anywhere
    profile: Path | None = None

    def start(self, logs: Path) -> None:
        self.log = logs / f"server-{self.name.replace(' ', '-').replace(',', '')}.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        for _attempt in range(3):
            self.port = free_port()
            profiler = ["-m", "cProfile", "-o", str(self.profile)] if self.profile else []
            command = [
                sys.executable, *profiler, "-m", "bayeux_trio", "serve", "--host", HOST,
                "--port", str(self.port), "--mount", MOUNT, "--timeout", str(SERVER_TIMEOUT),
                "--grace", "1", "--log-level", "warning", "--engine", self.engine_url,
            ]  # fmt: skip
            if self.presence:
                command += ["--presence", PATTERN]
            if self.profile:  # jemalloc would mean a re-exec, without the profiler
                command += ["--allocator", "python"]
            with self.log.open("ab") as out:
                self.process = subprocess.Popen(
                    command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            if self._wait_serving(time.monotonic() + 30):
                return
            self.stop()
        raise RuntimeError(f"{self.name} did not start; log:\n{self.log.read_text()[-3000:]}")

    def _wait_serving(self, deadline: float) -> bool:
        import http.client

        assert self.process is not None
        body = orjson.dumps([_handshake("long-polling")])
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                connection = http.client.HTTPConnection(HOST, self.port, timeout=1)
                try:
                    connection.request(
                        "POST", MOUNT, body=body, headers={"Content-Type": "application/json"}
                    )
                    reply = orjson.loads(connection.getresponse().read())
                finally:
                    connection.close()
                if reply[0].get("successful") is True:
                    return True
            except (OSError, ValueError, IndexError, AttributeError):
                pass
            time.sleep(0.05)
        return False

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


class Watcher:
    """A WebSocket client subscribed to /presence/chat/room that counts joins and leaves.

    wsproto carries the handshake and the subscribe; after that (the server
    sends nothing but deliveries, and the held connect stays held for the
    whole run) the bytes are only scanned for the two markers.
    """

    def __init__(self) -> None:
        self.joins = 0
        self.leaves = 0
        self.ready = False

    async def run(self, port: int, task_status: Any) -> None:
        import trio
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Request, TextMessage

        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            ws = WSConnection(ConnectionType.CLIENT)
            await stream.send_all(ws.send(Request(host=f"{HOST}:{port}", target=MOUNT)))
            texts: list[str] = []
            accepted = False

            async def events() -> None:
                nonlocal accepted
                data = await stream.receive_some(65536)
                if not data:
                    raise RuntimeError("the server closed a watcher")
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, TextMessage):
                        texts.append(event.data)  # one frame per array here
                    elif isinstance(event, AcceptConnection):
                        accepted = True
                    else:
                        raise RuntimeError(f"watcher: {event!r}")

            async def replies(channel: str) -> dict[str, Any]:
                for _ in range(1000):
                    while texts:
                        for message in orjson.loads(texts.pop(0)):
                            if message.get("channel") == channel and "successful" in message:
                                return ok_reply([message], channel)
                    await events()
                raise RuntimeError(f"watcher: no {channel} reply")

            async def send(messages: list[Message]) -> None:
                await stream.send_all(ws.send(TextMessage(data=orjson.dumps(messages).decode())))

            for _ in range(100):
                if accepted:
                    break
                await events()
            else:
                raise RuntimeError("watcher: no WebSocket upgrade")
            await send([_handshake("websocket")])
            client_id = (await replies("/meta/handshake"))["clientId"]
            await send([_connect(client_id, "websocket"), _subscribe(client_id, WATCHED)])
            await replies("/meta/subscribe")
            self.ready = True
            task_status.started()
            join, leave = b'"join":', b'"leave":'
            join_tail = leave_tail = b""
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                chunk = join_tail + data
                self.joins += chunk.count(join)
                join_tail = chunk[-(len(join) - 1) :]
                chunk = leave_tail + data
                self.leaves += chunk.count(leave)
                leave_tail = chunk[-(len(leave) - 1) :]


@dataclass
class ServerResult:
    name: str
    watchers: int
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    redis_cpu_us: list[float] = field(default_factory=list)
    cycles: list[int] = field(default_factory=list)
    rate_ratios: list[float] = field(default_factory=list)
    cpu_ratios: list[float] = field(default_factory=list)
    #: with --server-profile: the server's cProfile, top functions by own time
    profile: str = ""


async def _cycles(
    port: int, concurrency: int, limit: int, seconds: float, channel: str
) -> tuple[int, float]:
    """Cycles from ``concurrency`` kept-alive connections until ``limit`` or ``seconds``."""
    import trio

    counter = itertools.count()
    done = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            http = Http(stream)
            while time.monotonic() < stop_at and next(counter) < limit:
                client_id = ok_reply(
                    await http.post([_handshake("long-polling")]), "/meta/handshake"
                )["clientId"]
                ok_reply(await http.post([_subscribe(client_id, channel)]), "/meta/subscribe")
                ok_reply(await http.post([_disconnect(client_id)]), "/meta/disconnect")
                done += 1

    start = time.perf_counter()
    with trio.fail_after(seconds + 30):
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
    return done, time.perf_counter() - start


async def _settle(watchers: Sequence[Watcher], joins: int, seconds: float = 30.0) -> None:
    """Wait (bounded) until every watcher has ``joins`` joins and as many leaves."""
    import trio

    with trio.move_on_after(seconds):
        # The watchers count in their read loops; polling them is simplest.
        while any(w.joins < joins or w.leaves < joins for w in watchers):  # noqa: ASYNC110
            await trio.sleep(0.01)
    if any(w.joins != joins or w.leaves != joins for w in watchers):
        counts = sorted({(w.joins, w.leaves) for w in watchers})
        raise RuntimeError(
            f"watchers got (joins, leaves) {counts} within {seconds} s, expected {joins} each"
        )


@dataclass(frozen=True, slots=True)
class ServerSettings:
    #: interleaved runs per server
    runs: int = 5
    #: seconds per run at most
    seconds: float = 3.0
    #: cycles per run at most
    limit: int = 100_000
    #: clients cycling at once, each on its own kept-alive connection
    concurrency: int = 8
    #: cycles per server before the runs
    warmup: int = 500
    #: also measure both servers on --engine redis://
    redis: bool = False
    #: run each server under cProfile, its profile kept here (its CPU figures
    #: are then the profiler's too)
    profile: Path | None = None


async def _measure_servers(
    servers: Sequence[ServerUnderTest],
    watchers: int,
    settings: ServerSettings,
    redis_pid: int | None,
) -> list[ServerResult]:
    import trio

    seconds, limit, concurrency = settings.seconds, settings.limit, settings.concurrency

    results = [ServerResult(server.name, watchers) for server in servers]
    flocks: list[list[Watcher]] = [[Watcher() for _ in range(watchers)] for _ in servers]
    joins = [0] * len(servers)
    async with trio.open_nursery() as nursery:
        for server, flock in zip(servers, flocks, strict=True):
            for watcher in flock:
                await nursery.start(watcher.run, server.port)
        for i, server in enumerate(servers):  # warm up
            done, _ = await _cycles(server.port, concurrency, settings.warmup, seconds, ROOM)
            if server.presence:
                joins[i] += done
                await _settle(flocks[i], joins[i])
        for index in range(settings.runs):
            order = list(range(len(servers)))
            if index % 2:
                order.reverse()
            for i in order:
                server = servers[i]
                gc.collect()
                cpu0 = cpu_seconds(server.pid)
                on_redis = redis_pid is not None and server.engine_url.startswith("redis")
                redis0 = cpu_seconds(redis_pid) if redis_pid and on_redis else 0.0
                done, elapsed = await _cycles(server.port, concurrency, limit, seconds, ROOM)
                if server.presence:
                    joins[i] += done
                    await _settle(flocks[i], joins[i])
                cpu = cpu_seconds(server.pid) - cpu0
                result = results[i]
                result.cycles.append(done)
                result.rates.append(done / elapsed)
                result.cpu_us.append(cpu / done * 1e6)
                if redis_pid and on_redis:
                    result.redis_cpu_us.append((cpu_seconds(redis_pid) - redis0) / done * 1e6)
                print(
                    f"  run {index + 1}: {server.name}, {watchers} watchers: {done:,} cycles, "
                    f"{done / elapsed:,.0f}/s, {cpu / done * 1e6:,.0f} µs server CPU per cycle",
                    file=sys.stderr,
                    flush=True,
                )
        nursery.cancel_scope.cancel()
    for result, server in zip(results, servers, strict=True):
        # against presence off on the same engine (the server listed just before, or itself)
        base = result if not server.presence else results[servers.index(server) - 1]
        result.rate_ratios = [a / b for a, b in zip(result.rates, base.rates, strict=True)]
        # cycles per server CPU-second, over presence off's
        result.cpu_ratios = [
            b / a if a else math.nan for a, b in zip(result.cpu_us, base.cpu_us, strict=True)
        ]
    return results


@contextlib.contextmanager
def running(servers: Sequence[ServerUnderTest], logs: Path) -> Iterator[None]:
    try:
        for server in servers:
            server.start(logs)
        yield
    finally:
        for server in servers:
            server.stop()


def measure_server(watcher_counts: Sequence[int], settings: ServerSettings) -> list[ServerResult]:
    import trio

    results: list[ServerResult] = []
    with tempfile.TemporaryDirectory(prefix="presence-bench-") as scratch:
        logs = Path(scratch)
        redis_server = RedisServer(logs) if settings.redis else None
        try:
            for group, watchers in enumerate(watcher_counts):
                servers = [
                    ServerUnderTest("memory, off", False, "memory"),
                    ServerUnderTest("memory, on", True, "memory"),
                ]
                if redis_server is not None:
                    url = f"redis://{HOST}:{redis_server.port}"
                    # A database each: the two servers must not share sessions.
                    servers += [
                        ServerUnderTest("redis, off", False, f"{url}/{(2 * group) % 16}"),
                        ServerUnderTest("redis, on", True, f"{url}/{(2 * group + 1) % 16}"),
                    ]
                if settings.profile is not None:
                    settings.profile.mkdir(parents=True, exist_ok=True)
                    for server in servers:
                        name = server.name.replace(", ", "-")
                        server.profile = settings.profile / f"{name}-{watchers}-watchers.prof"
                print(f"server, {watchers} watchers:", file=sys.stderr, flush=True)
                with running(servers, logs):
                    group_results = trio.run(
                        _measure_servers,
                        servers,
                        watchers,
                        settings,
                        redis_server.process.pid if redis_server else None,
                    )
                for result, server in zip(group_results, servers, strict=True):
                    if server.profile is not None and server.profile.exists():
                        out = io.StringIO()
                        stats = pstats.Stats(str(server.profile), stream=out)
                        stats.sort_stats("tottime").print_stats(30)
                        result.profile = out.getvalue()
                results += group_results
        finally:
            if redis_server is not None:
                redis_server.stop()
    return results


def server_table(results: Sequence[ServerResult]) -> str:
    lines = [
        "| watchers | engine, presence | server CPU µs per cycle | cycles per server "
        "CPU-second | ratio to off | cycles/s (wall) | ratio to off | redis-server CPU µs "
        "per cycle | runs x cycles |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        redis_cpu = f"{statistics.median(r.redis_cpu_us):,.0f}" if r.redis_cpu_us else "-"
        cpu = statistics.median(r.cpu_us)
        lines.append(
            f"| {r.watchers:,} | {r.name} | {cpu:,.0f} | {1e6 / cpu if cpu else math.nan:,.0f} "
            f"| {statistics.median(r.cpu_ratios):.3f} | {statistics.median(r.rates):,.0f} "
            f"| {statistics.median(r.rate_ratios):.3f} | {redis_cpu} "
            f"| {len(r.cycles)} x {int(statistics.median(r.cycles)):,} |"
        )
    return "\n".join(lines)


# -------------------------------------------------------------- the whole


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "orjson": orjson.__version__,
        "loadavg": loadavg(),
    }


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--parts",
        default="engine,memory,server",
        help="which parts, comma-separated: engine, memory, server (default: %(default)s)",
    )
    parser.add_argument(
        "--runs", type=int, default=15, help="engine part: interleaved runs per case"
    )
    parser.add_argument(
        "--watchers", default="0,10,100", help="engine part: watcher counts (default: %(default)s)"
    )
    parser.add_argument(
        "--run-seconds", type=float, default=0.15, help="engine part: seconds per run"
    )
    parser.add_argument("--members", type=int, default=100_000, help="memory part: sessions")
    parser.add_argument("--channels", type=int, default=1_000, help="memory part: channels")
    parser.add_argument(
        "--server-watchers",
        default="0,10",
        help="server part: WebSocket watcher counts (default: %(default)s)",
    )
    parser.add_argument(
        "--server-runs", type=int, default=5, help="server part: interleaved runs per server"
    )
    parser.add_argument(
        "--server-seconds", type=float, default=3.0, help="server part: seconds per run at most"
    )
    parser.add_argument(
        "--server-cycles", type=int, default=100_000, help="server part: cycles per run at most"
    )
    parser.add_argument(
        "--warmup", type=int, default=500, help="server part: cycles per server before the runs"
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="server part: clients cycling at once"
    )
    parser.add_argument(
        "--redis",
        action="store_true",
        help="server part: also both servers on --engine redis:// (starts a redis-server)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of the engine cycle, off and on"
    )
    parser.add_argument(
        "--profile-seconds", type=float, default=2.0, help="seconds each profile runs for"
    )
    parser.add_argument(
        "--server-profile",
        type=Path,
        metavar="DIR",
        help="server part: run each server under cProfile, keep the profiles in DIR and "
        "print their top functions (the profiler inflates the CPU figures: not for the tables)",
    )
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args(argv)
    parts = {part.strip() for part in args.parts.split(",") if part.strip()}
    unknown = parts - {"engine", "memory", "server"}
    if unknown:
        parser.error(f"unknown parts: {sorted(unknown)}")
    info = machine()
    command = " ".join(["bench/presence_bench.py", *(sys.argv[1:] if argv is None else argv)])
    print(
        f"{command}\n{info['date']}; {info['cpus']} CPUs ({info['cpu_model']}); Python "
        f"{info['python']}, orjson {info['orjson']}; load average {info['loadavg']}\n"
    )
    started = time.perf_counter()
    data: dict[str, Any] = {"machine": info, "command": command}
    if "engine" in parts:
        engine_results: list[EngineResult] = []
        for watchers in _ints(args.watchers):
            engine_results += measure_engine(
                watchers, args.runs, args.run_seconds, deadline_seconds=args.runs * 3.0
            )
        print("Engine (bayeux_core alone): handshake + subscribe + disconnect\n")
        print(engine_table(engine_results) + "\n")
        data["engine"] = [vars(r) | {"rate": r.rate, "ratio": r.ratio} for r in engine_results]
    if "memory" in parts:
        memory = measure_memory(args.members, args.channels)
        print("Memory (tracemalloc): sessions subscribed to a presence channel each\n")
        print(memory_table(memory) + "\n")
        data["memory"] = {
            "members": memory.members,
            "channels": memory.channels,
            "off_bytes": memory.off_bytes,
            "on_bytes": memory.on_bytes,
            "per_member": memory.per_member,
        }
    if "server" in parts:
        settings = ServerSettings(
            runs=args.server_runs,
            seconds=args.server_seconds,
            limit=args.server_cycles,
            concurrency=args.concurrency,
            warmup=args.warmup,
            redis=args.redis,
            profile=args.server_profile,
        )
        server_results = measure_server(_ints(args.server_watchers), settings)
        print(
            f"Server (one process, loopback): {args.concurrency} long-polling clients on "
            f"kept-alive connections; WebSocket watchers of {WATCHED}\n"
        )
        print(server_table(server_results) + "\n")
        for result in server_results:
            if result.profile:
                print(f"cProfile of the server, {result.name}, {result.watchers} watchers")
                print(result.profile)
        data["server"] = [vars(r) for r in server_results]
    if args.profile:
        profile = profile_engine(max(_ints(args.watchers)), seconds=args.profile_seconds)
        print("cProfile of the engine cycle (tottime)\n" + profile)
        data["profile"] = profile
    info["loadavg_end"] = loadavg()
    print(
        f"{time.perf_counter() - started:.0f} s in all; load average at the end "
        f"{info['loadavg_end']}."
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
