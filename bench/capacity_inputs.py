"""The inputs of docs/scaling.md's capacity plan, measured on this machine (issue 18).

A capacity plan is arithmetic on a few costs per operation. This script
measures each of them for our server, in memory and on a ``redis-server`` of
its own (AOF, ``appendfsync everysec``: ``redis_bench.Redis``), prints them,
then prints the plan's arithmetic for docs/scaling.md's workloads:

* **memory per connection**: RSS growth per idle WebSocket client
  (handshaken, connected, subscribed to one of 100 channels) at each of
  ``--clients`` (2,000 and 10,000); on Redis also redis-server's
  ``used_memory`` per session;
* **CPU per connection set up**, and per ``/meta/connect`` cycle of an idle
  client (a WebSocket client too keeps a connect held, ``--timeout`` long,
  and sends the next when it is answered): 2,000 clients against
  ``--timeout 2`` make 1,000 cycles a second, measured while they idle;
* **CPU per WebSocket publish and per delivery**, from two fixed-rate runs
  (``RATE_POINTS``): 1 subscriber at 1,000 publishes a second, and 1,000
  subscribers at 10 a second. Each publish goes out alone, and in the second
  run each subscriber gets a message every 100 ms, so that every delivery is
  a frame and a ``send`` of its own and, on Redis, a cursor write of its own
  (cursors are written every 50 ms for the sessions that got pushes): the
  plan's clients get a message or two a second, not hundreds. The line
  through the two points gives the publish (received, routed, answered; on
  Redis also appended and read back) and the delivery. Under load,
  deliveries share frames and cursor writes and cost far less
  (docs/benchmarks.md, scenario 1); the plan does not count on that;
* **CPU per HTTP publish**: form POSTs on 16 keep-alive connections, closed
  loop, as a backend publishes;
* **the log**: ``--readers`` server processes with no client on the same
  Redis, while entries (a delivery of 100 bytes of data, the fields a node
  appends: docs/redis.md, "Keys") are appended straight to the log at each
  of ``LOG_RATES`` a second: what reading one entry costs a node (every node
  reads the whole log), what appending and each reader cost redis-server,
  and how many entries one ``XREAD`` brings; with redis-server's CPU per
  connection set up, per connect cycle (the claim of the session record),
  per publish and per delivery (its cursor write), and its memory per
  session and per log entry.

**CPU is process CPU time**, ``utime + stime`` from ``/proc/<pid>/stat`` (10 ms
ticks) of the server and of redis-server, not wall time: the machine is
shared, and the load generator (``bench/js/loadgen.js``, run through
``server_bench.run_generator``) runs on the same two cores, so rates per
wall-clock second swing with whatever else runs; CPU per operation much less.
Every run has a deadline.

``make bench-capacity`` runs it (about five minutes); ``--json FILE`` keeps
every raw result. The figures and the plan: docs/scaling.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from redis_bench import Redis, cpu_seconds  # noqa: E402
from server_bench import loadavg, machine, raise_file_limit, run_generator  # noqa: E402

from tests.interop._support import (  # noqa: E402
    ServerProcess,
    ensure_node_modules,
    raw_request,
    running,
    start_our_server,
)

ENGINES = ("memory", "redis")
QUIET = ("--log-level", "warning")
#: (subscribers, deliveries/s offered) of the fixed-rate runs
RATE_POINTS = ((1, 1000), (1000, 10_000))
#: entries a second appended to the log while the reading nodes are measured
LOG_RATES = (1000, 5000, 20_000)
#: the log's key with the default namespace (docs/redis.md, "Keys")
LOG_KEY = b"bayeux:{log}"
#: warm-up requests of loadgen's httppub
HTTP_WARMUP = 200

Results = dict[str, Any]


# ------------------------------------------------------------------ the lab


@dataclass
class Lab:
    """Where the runs happen: npm packages, logs, the Redis (if any), a log line."""

    node_modules: Path
    logs: Path
    redis: Redis | None
    say: Callable[[str], None]
    seconds: float
    names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def url(self) -> str:
        assert self.redis is not None
        return f"redis://127.0.0.1:{self.redis.port}/0"

    def start(self, engine: str, *extra: str) -> ServerProcess:
        """``bayeux serve`` on a free port; on Redis, on the lab's (not flushed)."""
        args = ["--engine", self.url] if engine == "redis" else []
        log = self.logs / f"{next(self.names):02d}-{engine}.log"
        return start_our_server(log, [*QUIET, *args, *extra])

    @contextlib.contextmanager
    def server(self, engine: str, *extra: str) -> Iterator[ServerProcess]:
        """A fresh server, on a flushed Redis for ``redis``."""
        if engine == "redis":
            assert self.redis is not None
            self.redis.flush()
        with running(self.start(engine, *extra)) as server:
            yield server

    def run(
        self, server: ServerProcess, options: dict[str, Any], *, redis_cpu: bool = False
    ) -> Results:
        """One generator run against ``server``. The generator reads the CPU
        of the process it is given at its phases; with ``redis_cpu`` it is
        given redis-server's, for redis-server's share of exactly those phases."""
        target = server
        if redis_cpu:
            assert self.redis is not None
            target = ServerProcess(server.name, self.redis.process, server.log, server.port)
        deadline = float(options.get("deadline", 60))
        result = run_generator(self.node_modules, target, options, timeout=2 * deadline + 180)
        if server.process.poll() is not None:
            raise RuntimeError(f"the server died; log:\n{server.log_tail()}")
        return result

    def redis_cpu(self) -> float:
        return cpu_seconds(self.redis.process.pid) if self.redis is not None else 0.0

    def redis_info(self, section: str) -> dict[str, str]:
        """``INFO <section>`` of our redis-server as a dict ({} without redis-cli)."""
        cli = shutil.which("redis-cli")
        if self.redis is None or cli is None:
            return {}
        done = subprocess.run(
            [cli, "-p", str(self.redis.port), "INFO", section],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        pairs = (line.split(":", 1) for line in done.stdout.splitlines() if ":" in line)
        return {key: value.strip() for key, value in pairs}

    def redis_memory(self) -> int | None:
        value = self.redis_info("memory").get("used_memory")
        return int(value) if value is not None else None

    def xread_calls(self) -> int | None:
        stats = self.redis_info("commandstats")
        if not stats:
            return None
        entry = stats.get("cmdstat_xread", "calls=0")
        return int(entry.split(",", 1)[0].split("=", 1)[1])


def allocator(pid: int) -> str:
    """jemalloc if the process has libjemalloc mapped (``--allocator auto``)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "?"
    return "jemalloc" if "libjemalloc" in maps else "python"


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def _per(value: float | None, count: float, scale: float = 1.0) -> float | None:
    return None if value is None or count <= 0 else scale * value / count


# ------------------------------------------------------------ measurements


def idle_clients(lab: Lab, engine: str, steps: Sequence[int]) -> Results:
    """Memory and CPU per connection set up, at each step of idle clients."""
    options = {
        "scenario": "idle",
        "steps": list(steps),
        "deadline": max(steps) * 0.03,  # as server_bench's scenario 5
        "idleConcurrency": 400,
        "settle": 3,
    }
    with lab.server(engine) as server:
        cpu0, memory0 = lab.redis_cpu(), lab.redis_memory()
        result = lab.run(server, options)
        # Nothing else happens meanwhile: with --timeout 25 no held connect
        # comes due during the run, so redis-server's CPU is the set-up's.
        cpu1, memory1 = lab.redis_cpu(), lab.redis_memory()
        out: Results = {
            "allocator": allocator(server.process.pid),
            "rss_mb_base": result["server_rss_before"] / 2**20,
        }
    done = 0
    for step in result["steps"]:
        n = step["connections"]
        out[f"rss_kb_per_client_{n}"] = step["rss_per_connection"] / 1024
        out[f"cpu_us_per_connect_{n}"] = 1000 * step["server_cpu_ms_per_connect"]
        out[f"connects_per_s_{n}"] = step["connects_per_s"]
        done = n
    out["rss_kb_per_client"] = out[f"rss_kb_per_client_{done}"]  # the plan's: the last step
    out["cpu_us_per_connect"] = out[f"cpu_us_per_connect_{done}"]
    if engine == "redis":
        out["redis_cpu_us_per_connect"] = _per(cpu1 - cpu0, done, 1e6)
        out["redis_bytes_per_session"] = _per(_delta(memory1, memory0), done)
    out["raw"] = result
    return out


def connect_cycles(lab: Lab, engine: str, clients: int, timeout: float) -> Results:
    """CPU per /meta/connect cycle of an idle client, while ``clients`` idle."""
    options = {
        "scenario": "idle",
        "steps": [clients],
        "deadline": clients * 0.03,
        "idleConcurrency": 400,
        "settle": max(3.0, lab.seconds),
    }
    cycles_per_s = clients / timeout  # each connect is held `timeout`, then sent again
    keys = [("cpu_us_per_connect_cycle", False)]
    if engine == "redis":
        keys.append(("redis_cpu_us_per_connect_cycle", True))
    out: Results = {"cycles_per_s": cycles_per_s, "raw": {}}
    # A fresh server for each: the sessions of a run expire after it, which
    # would land in the next run's idle window.
    for key, of_redis in keys:
        with lab.server(engine, "--timeout", f"{timeout:g}") as server:
            result = lab.run(server, options, redis_cpu=of_redis)
        idle_share = result["steps"][0]["server_cpu_idle_percent"] / 100
        out[key] = 1e6 * idle_share / cycles_per_s
        out["raw"][key] = result
    return out


def fixed_rate(lab: Lab, engine: str) -> Results:
    """CPU per WebSocket publish and per delivery: the line through RATE_POINTS."""
    points: list[Results] = []
    with lab.server(engine) as server:
        for subscribers, rate in RATE_POINTS:
            options = {
                "scenario": "rate",
                "subscribers": subscribers,
                "rate": rate,
                "seconds": lab.seconds,
                "deadline": 60,
            }
            result = lab.run(server, options)
            point: Results = {
                "subscribers": subscribers,
                "publishes_per_s": rate / subscribers,
                "cpu_us_per_publish": 1e6 * result["server_cpu"] / result["messages"],
                "p99_ms": result.get("p99_ms"),
                "raw": result,
            }
            if engine == "redis":  # the same again, for redis-server's CPU in that phase
                again = lab.run(server, options, redis_cpu=True)
                point["redis_cpu_us_per_publish"] = 1e6 * again["server_cpu"] / again["messages"]
                point["raw_redis"] = again
            points.append(point)
            lab.say(
                f"  {engine}, {subscribers:,} subscriber(s) at {rate / subscribers:,.0f} "
                f"publishes/s: {points[-1]['cpu_us_per_publish']:,.1f} µs of server CPU a publish"
            )
    xs = [p["subscribers"] for p in points]
    slope, intercept = _line(xs, [p["cpu_us_per_publish"] for p in points])
    out: Results = {
        "cpu_us_per_ws_publish": intercept,
        "cpu_us_per_delivery": slope,
        "points": points,
    }
    if engine == "redis":
        slope, intercept = _line(xs, [p["redis_cpu_us_per_publish"] for p in points])
        out["redis_cpu_us_per_ws_publish"] = intercept
        out["redis_cpu_us_per_delivery"] = slope
    return out


def _line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope and intercept."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx


def http_publish(lab: Lab, engine: str) -> Results:
    """CPU per HTTP publish (and, on Redis, redis-server's CPU and memory per entry)."""
    options = {"scenario": "httppub", "connections": 16, "seconds": lab.seconds}
    with lab.server(engine) as server:
        cpu0, memory0 = lab.redis_cpu(), lab.redis_memory()
        result = lab.run(server, options)
        cpu1, memory1 = lab.redis_cpu(), lab.redis_memory()
    out: Results = {
        "cpu_us_per_http_publish": 1e6 * result["server_cpu"] / result["requests"],
        "publishes_per_s": result["publishes_per_s"],
        "raw": result,
    }
    if engine == "redis":
        logged = result["requests"] + HTTP_WARMUP
        out["redis_cpu_us_per_http_publish"] = _per(cpu1 - cpu0, logged, 1e6)
        out["redis_bytes_per_entry"] = _per(_delta(memory1, memory0), logged)
    return out


# ----------------------------------------------------------------- the log


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def _entry() -> bytes:
    """An XADD of what a node appends for a publish of DATA_BYTES of data."""
    delivery = json.dumps(
        {"channel": "/bench/log", "data": {"pad": "x" * (DATA_BYTES - 10)}, "id": "1"},
        separators=(",", ":"),
    ).encode()
    return _command(b"XADD", LOG_KEY, b"*", b"c", b"/bench/log", b"p", delivery)


def append(port: int, rate: int, seconds: float) -> tuple[int, str]:
    """Append ``rate`` entries a second to the log for ``seconds``, pipelined
    in a batch every 10 ms; the count and the last id."""
    command = _entry()
    total = max(1, round(rate * seconds))
    sent = 0
    last = b""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        while sent < total:
            if time.monotonic() - start > seconds + 30:
                raise RuntimeError(f"appending {total} entries took too long ({sent} done)")
            due = min(total, round(rate * (time.monotonic() - start)) + 1)
            if due > sent:
                sock.sendall(command * (due - sent))
                last = _replies(sock, due - sent)
                sent = due
            time.sleep(0.01)
    return sent, last.decode()


def _replies(sock: socket.socket, count: int) -> bytes:
    """Read ``count`` bulk-string replies (each ``$n``, CRLF, id, CRLF); the last id."""
    data = b""
    while data.count(b"\r\n") < 2 * count:
        chunk = sock.recv(65536)
        if not chunk or chunk.startswith(b"-"):
            raise RuntimeError(f"XADD failed: {chunk[:200]!r}")
        data += chunk
    return data.rsplit(b"\r\n", 2)[-2]


def _position(node: ServerProcess) -> tuple[int, int]:
    """The node's log position, from its health endpoint."""
    status, _, body = raw_request(node.port, "GET", "/health")
    text = json.loads(body)["bus"]["position"] if status == 200 else "0-0"
    ms, _, seq = str(text).partition("-")
    return int(ms or 0), int(seq or 0)


def log_reads(lab: Lab, readers: int) -> Results:
    """The log at each of LOG_RATES: appended alone, then read by ``readers`` nodes."""
    assert lab.redis is not None
    port = lab.redis.port
    out: Results = {"readers": readers, "rates": []}
    lab.redis.flush()
    alone: dict[int, float] = {}
    for rate in LOG_RATES:
        before = lab.redis_cpu()
        count, _ = append(port, rate, lab.seconds)
        alone[rate] = 1e6 * (lab.redis_cpu() - before) / count
    lab.redis.flush()  # the nodes start at the log's end: nothing old to read
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(running(lab.start("redis"))) for _ in range(readers)]
        time.sleep(1.0)  # every reader blocked in XREAD
        for rate in LOG_RATES:
            nodes0 = [cpu_seconds(node.process.pid) for node in nodes]
            redis0, xread0 = lab.redis_cpu(), lab.xread_calls()
            count, last = append(port, rate, lab.seconds)
            ms, _, seq = last.partition("-")
            target = (int(ms), int(seq))
            deadline = time.monotonic() + 60
            while any(_position(node) < target for node in nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the readers did not reach {last} within 60 s")
                time.sleep(0.05)
            nodes1 = [cpu_seconds(node.process.pid) for node in nodes]
            redis1, xread1 = lab.redis_cpu(), lab.xread_calls()
            spent = statistics.fmean(b - a for a, b in zip(nodes0, nodes1, strict=True))
            node_us = 1e6 * spent / count
            redis_us = 1e6 * (redis1 - redis0) / count
            out["rates"].append(
                {
                    "rate": rate,
                    "entries": count,
                    "node_cpu_us_per_entry": node_us,
                    "redis_cpu_us_per_append": alone[rate],
                    "redis_cpu_us_per_entry": redis_us,
                    "redis_cpu_us_per_entry_per_reader": (redis_us - alone[rate]) / readers,
                    "entries_per_xread": _per(count * readers, _delta(xread1, xread0) or 0),
                }
            )
            lab.say(
                f"  log at {rate:,}/s: a reading node {node_us:.1f} µs per entry, "
                f"redis-server {alone[rate]:.1f} µs per append"
            )
    return out


# -------------------------------------------------------------- the inputs


@dataclass(frozen=True)
class Row:
    """One line of the inputs table, and where its values are in the results."""

    label: str
    unit: str
    memory: tuple[str | int, ...] | None
    redis: tuple[str | int, ...] | None
    fmt: str = ",.1f"


def rows(steps: Sequence[int]) -> list[Row]:
    both: list[tuple[str, str, tuple[str, ...], str]] = [
        *[(f"RSS per idle WebSocket client, at {n:,} clients", "KB",
           ("idle", f"rss_kb_per_client_{n}"), ",.1f") for n in steps],
        ("server RSS before any client", "MB", ("idle", "rss_mb_base"), ",.1f"),
        ("server CPU per connection set up (handshake, connect, subscribe)", "µs",
         ("idle", "cpu_us_per_connect"), ",.0f"),
        ("server CPU per /meta/connect cycle of an idle client", "µs",
         ("cycles", "cpu_us_per_connect_cycle"), ",.0f"),
        ("server CPU per WebSocket publish (received, routed, answered)", "µs",
         ("rate", "cpu_us_per_ws_publish"), ",.0f"),
        ("server CPU per delivery (its own frame)", "µs", ("rate", "cpu_us_per_delivery"), ",.1f"),
        ("server CPU per HTTP publish", "µs", ("http", "cpu_us_per_http_publish"), ",.0f"),
    ]  # fmt: skip
    found = [Row(label, unit, path, path, fmt) for label, unit, path, fmt in both]
    redis_only: list[tuple[str, str, tuple[str | int, ...], str]] = [
        ("redis-server CPU per connection set up", "µs", ("idle", "redis_cpu_us_per_connect"),
         ",.0f"),
        ("redis-server CPU per connect cycle (the claim)", "µs",
         ("cycles", "redis_cpu_us_per_connect_cycle"), ",.0f"),
        ("redis-server CPU per WebSocket publish (appended, read by its node)", "µs",
         ("rate", "redis_cpu_us_per_ws_publish"), ",.0f"),
        ("redis-server CPU per delivery (the session's cursor write)", "µs",
         ("rate", "redis_cpu_us_per_delivery"), ",.1f"),
        ("redis-server CPU per HTTP publish (appended, read by its node)", "µs",
         ("http", "redis_cpu_us_per_http_publish"), ",.0f"),
        ("redis-server memory per session", "B", ("idle", "redis_bytes_per_session"), ",.0f"),
        (f"redis-server memory per log entry ({MEASURED_DATA_BYTES} bytes of data)", "B",
         ("http", "redis_bytes_per_entry"), ",.0f"),
    ]  # fmt: skip
    for i, rate in enumerate(LOG_RATES):
        redis_only += [
            (f"log at {rate:,} entries/s: a reading node's CPU per entry", "µs",
             ("log", "rates", i, "node_cpu_us_per_entry"), ",.1f"),
            (f"log at {rate:,} entries/s: redis-server CPU per append", "µs",
             ("log", "rates", i, "redis_cpu_us_per_append"), ",.1f"),
            (f"log at {rate:,} entries/s: redis-server CPU per entry per reading node", "µs",
             ("log", "rates", i, "redis_cpu_us_per_entry_per_reader"), ",.1f"),
            (f"log at {rate:,} entries/s: entries per XREAD", "",
             ("log", "rates", i, "entries_per_xread"), ",.1f"),
        ]  # fmt: skip
    found += [Row(label, unit, None, path, fmt) for label, unit, path, fmt in redis_only]
    return found


def pick(results: Results, path: tuple[str | int, ...] | None) -> float | None:
    if not path:
        return None
    value: Any = results
    for key in path:
        if isinstance(value, dict):
            if key not in value:
                return None
        elif not (isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value)):
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def inputs_table(results: dict[str, Results], steps: Sequence[int]) -> str:
    lines = ["| input | in memory | on Redis | unit |", "|---|---:|---:|---|"]
    for row in rows(steps):
        memory = pick(results.get("memory", {}), row.memory)
        redis = pick(results.get("redis", {}), row.redis)
        lines.append(
            f"| {row.label} | {_num(memory, row.fmt)} | {_num(redis, row.fmt)} | {row.unit} |"
        )
    lines += ["", "The fixed-rate runs, server CPU per publish (its deliveries included):", ""]
    lines += ["| subscribers | publishes/s | in memory (µs) | on Redis (µs) | p99 on Redis (ms) |"]
    lines += ["|---:|---:|---:|---:|---:|"]
    for i, (subscribers, rate) in enumerate(RATE_POINTS):
        cells = [
            _num(pick(results.get(engine, {}), ("rate", "points", i, "cpu_us_per_publish")), ",.0f")
            for engine in ENGINES
        ]
        p99 = _num(pick(results.get("redis", {}), ("rate", "points", i, "p99_ms")), ",.1f")
        lines.append(
            f"| {subscribers:,} | {rate // subscribers:,} | {cells[0]} | {cells[1]} | {p99} |"
        )
    return "\n".join(lines)


def flat(results: dict[str, Results]) -> dict[str, Results]:
    """Each engine's inputs under one name each, for the plan."""
    names = {
        "rss_kb": ("idle", "rss_kb_per_client"),
        "rss_mb_base": ("idle", "rss_mb_base"),
        "connect_us": ("idle", "cpu_us_per_connect"),
        "cycle_us": ("cycles", "cpu_us_per_connect_cycle"),
        "ws_publish_us": ("rate", "cpu_us_per_ws_publish"),
        "delivery_us": ("rate", "cpu_us_per_delivery"),
        "http_publish_us": ("http", "cpu_us_per_http_publish"),
        "redis_connect_us": ("idle", "redis_cpu_us_per_connect"),
        "redis_cycle_us": ("cycles", "redis_cpu_us_per_connect_cycle"),
        "redis_publish_us": ("rate", "redis_cpu_us_per_ws_publish"),
        "redis_delivery_us": ("rate", "redis_cpu_us_per_delivery"),
        "redis_session_b": ("idle", "redis_bytes_per_session"),
        "redis_entry_b": ("http", "redis_bytes_per_entry"),
    }
    out: dict[str, Results] = {}
    for engine in ENGINES:
        got = results.get(engine, {})
        values: Results = {}
        for name, path in names.items():
            value = pick(got, path)
            if value is not None:
                values[name] = value
        curve = [
            (r["rate"], r["node_cpu_us_per_entry"], r["redis_cpu_us_per_entry_per_reader"])
            for r in got.get("log", {}).get("rates", [])
        ]
        if curve:
            values["log"] = curve
        out[engine] = values
    return out


# ---------------------------------------------------------------- the plan

#: The plan's assumptions (docs/scaling.md, "Workloads and assumptions").
TIMEOUT = 25.0  # --timeout: every idle client makes a connect cycle this often
BUDGET = 0.7  # of one core, for a server process and for redis-server: room for bursts
CLIENTS_PER_PROCESS = 19_000  # --max-connections' default
CORES = 2  # per machine, as this one: one process per core (--workers 2)
DATA_BYTES = 100  # the data object of a message
MEASURED_DATA_BYTES = 22  # loadgen's HTTP publish data, {"text":"hello","n":1}
DELIVERY_BYTES = 220  # on the wire per delivery: message, WebSocket frame, TCP/IP headers
ENTRY_BYTES = 250  # from Redis to a node per entry read: fields, id, RESP, TCP/IP share
RETENTION = 170.0  # seconds of log kept: twice the record TTL (25 + 50 + 10 s)
LINK = 1.25e9  # bytes/s of a 10 Gbit/s link


@dataclass(frozen=True)
class Workload:
    name: str
    title: str
    #: subscribers per channel (each client is in one channel)
    group: int
    #: seconds between two publishes of one client (over its WebSocket)
    interval: float


WORKLOADS = (
    Workload("groups", "channels of 100 subscribers, 1 publish per client per minute", 100, 60.0),
    Workload("chat", "rooms of 10, 1 message per client every 20 s", 10, 20.0),
)
CLIENT_COUNTS = (100_000, 1_000_000)


def at_rate(curve: Sequence[tuple[float, float, float]], rate: float) -> tuple[float, float]:
    """(node µs, redis-server µs per reader) per entry at ``rate`` entries/s: between
    measured rates on a log-log line; below or above them, the nearest one's."""
    points = sorted(curve)
    if rate <= points[0][0]:
        return points[0][1], points[0][2]
    for (r0, n0, s0), (r1, n1, s1) in itertools.pairwise(points):
        if rate <= r1:
            f = math.log(rate / r0) / math.log(r1 / r0)
            return (_geo(n0, n1, f), _geo(s0, s1, f))
    return points[-1][1], points[-1][2]


def _geo(a: float, b: float, f: float) -> float:
    if a <= 0 or b <= 0:
        return a + (b - a) * f
    return float(math.exp(math.log(a) + (math.log(b) - math.log(a)) * f))


@dataclass(frozen=True)
class Plan:
    """The arithmetic for ``clients`` clients of one workload on Redis."""

    clients: int
    publishes: float  # per second, cluster-wide: log appends
    deliveries: float  # per second
    cycles: float  # connect cycles per second
    work: float  # cores, spread over the processes: cycles, publishes, deliveries
    reading: float  # cores, paid by every process: reading the whole log
    records: float  # redis-server cores: claims and cursor writes of session records
    client_out: float  # bytes/s to the clients, whole cluster
    redis_mb: float  # session records and the retained log
    #: the rest is None when reading the log alone is more than a process's budget
    processes: int | None = None
    binding: str = "reading the log"
    cpu_per_process: float | None = None
    mb_per_process: float | None = None
    log: float | None = None  # redis-server cores for the log: appends, and reads by every node
    redis_out: float | None = None  # bytes/s the log sends to the nodes

    @property
    def machines(self) -> int | None:
        return None if self.processes is None else math.ceil(self.processes / CORES)

    @property
    def masters_today(self) -> int | None:
        """Redis Cluster masters: the log on one, session records spread over all."""
        if self.log is None or self.log >= BUDGET:
            return None
        return max(1, math.ceil(self.records / (BUDGET - self.log)))

    @property
    def masters_sharded(self) -> int | None:
        """The same with the log sharded too (docs/scaling.md: a plan, not built)."""
        if self.log is None:
            return None
        return max(1, math.ceil((self.log + self.records) / BUDGET))


def plan(i: Results, workload: Workload, clients: int) -> Plan:
    publishes = clients / workload.interval
    deliveries = publishes * workload.group
    cycles = clients / TIMEOUT
    work = (
        cycles * i["cycle_us"] + publishes * i["ws_publish_us"] + deliveries * i["delivery_us"]
    ) / 1e6
    read_us, redis_read_us = at_rate(i["log"], publishes)
    entry_mb = (i["redis_entry_b"] + DATA_BYTES - MEASURED_DATA_BYTES) / 2**20
    base = Plan(
        clients=clients,
        publishes=publishes,
        deliveries=deliveries,
        cycles=cycles,
        work=work,
        reading=publishes * read_us / 1e6,
        records=(cycles * i["redis_cycle_us"] + deliveries * i["redis_delivery_us"]) / 1e6,
        client_out=deliveries * DELIVERY_BYTES,
        redis_mb=clients * i["redis_session_b"] / 2**20 + publishes * RETENTION * entry_mb,
    )
    if base.reading >= BUDGET:
        return base
    by_cpu = math.ceil(work / (BUDGET - base.reading))
    by_connections = math.ceil(clients / CLIENTS_PER_PROCESS)
    processes = max(by_cpu, by_connections)
    return dataclasses.replace(
        base,
        processes=processes,
        binding="CPU" if by_cpu >= by_connections else f"{CLIENTS_PER_PROCESS:,} clients each",
        cpu_per_process=work / processes + base.reading,
        mb_per_process=i["rss_mb_base"] + clients / processes * i["rss_kb"] / 1024,
        log=publishes * (i["redis_publish_us"] + (processes - 1) * max(0.0, redis_read_us)) / 1e6,
        redis_out=publishes * processes * ENTRY_BYTES,
    )


def one_process(i: Results, workload: Workload) -> float:
    """In memory (one process): server CPU µs per second per client of ``workload``."""
    return float(
        i["cycle_us"] / TIMEOUT
        + i["ws_publish_us"] / workload.interval
        + i["delivery_us"] * workload.group / workload.interval
    )


LIMITS: tuple[tuple[str, Callable[[Plan], bool]], ...] = (
    ("one redis-server for everything",
     lambda p: p.log is None or p.log + p.records > BUDGET),
    ("the log's redis-server, session records spread by Redis Cluster",
     lambda p: p.log is None or p.log > BUDGET),
    ("the log's egress from Redis (10 Gbit/s)",
     lambda p: p.redis_out is None or p.redis_out > LINK),
    ("a process's CPU reading the whole log", lambda p: p.processes is None),
)  # fmt: skip


def limits(i: Results, workload: Workload) -> dict[str, int | None]:
    """The first client count (on a 2% grid) at which each limit is reached, on Redis."""
    found: dict[str, int | None] = {name: None for name, _ in LIMITS}
    n = 1000.0
    while n <= 1e8 and None in found.values():
        p = plan(i, workload, int(n))
        for name, hit in LIMITS:
            if found[name] is None and hit(p):
                found[name] = int(n)
        n *= 1.02
    return found


def _n(value: float | None, fmt: str = ",.0f") -> str:
    return "not possible" if value is None else format(value, fmt)


PLAN_ROWS: tuple[tuple[str, Callable[[Plan], str]], ...] = (
    ("publishes/s (log appends)", lambda p: _n(p.publishes)),
    ("deliveries/s", lambda p: _n(p.deliveries)),
    ("connect cycles/s", lambda p: _n(p.cycles)),
    ("cores for cycles, publishes, deliveries (spread)", lambda p: _n(p.work, ",.1f")),
    ("cores each process spends reading the log", lambda p: _n(p.reading, ",.2f")),
    ("processes (one per core)", lambda p: _n(p.processes)),
    ("what sets the process count", lambda p: p.binding),
    ("CPU per process (cores)", lambda p: _n(p.cpu_per_process, ",.2f")),
    ("memory per process (MB)", lambda p: _n(p.mb_per_process)),
    (f"{CORES}-core machines", lambda p: _n(p.machines)),
    ("log entries read from Redis/s (appends x processes)",
     lambda p: _n(None if p.processes is None else p.publishes * p.processes)),
    ("redis-server cores for the log (one master)", lambda p: _n(p.log, ",.2f")),
    ("redis-server cores for session records (claims, cursor writes)",
     lambda p: _n(p.records, ",.2f")),
    ("Redis masters today (log on one, records spread by Cluster)",
     lambda p: _n(p.masters_today)),
    ("Redis masters with a sharded log (not built)", lambda p: _n(p.masters_sharded)),
    ("the log's egress from Redis (Gbit/s)",
     lambda p: _n(None if p.redis_out is None else p.redis_out * 8 / 1e9, ",.2f")),
    ("egress to clients, whole cluster (Gbit/s)", lambda p: _n(p.client_out * 8 / 1e9, ",.2f")),
    ("Redis memory: records + retained log (MB)", lambda p: _n(p.redis_mb)),
)  # fmt: skip
NEEDED = ("cycle_us", "ws_publish_us", "delivery_us", "log", "redis_cycle_us",
          "redis_publish_us", "redis_delivery_us", "redis_session_b", "redis_entry_b",
          "rss_kb", "rss_mb_base")  # fmt: skip


def plan_report(inputs: dict[str, Results]) -> str:
    redis, memory = inputs.get("redis", {}), inputs.get("memory", {})
    missing = [k for k in NEEDED if k not in redis]
    if missing:
        return f"(no plan: inputs missing on Redis: {', '.join(missing)})"
    lines: list[str] = []
    for w in WORKLOADS:
        lines += [f"### {w.name}: {w.title}", ""]
        if all(k in memory for k in ("cycle_us", "ws_publish_us", "delivery_us")):
            each = one_process(memory, w)
            most = BUDGET * 1e6 / each
            lines += [
                f"In memory, one process: {each:,.1f} µs of CPU per client per second; "
                f"{BUDGET:.0%} of a core serves {most:,.0f} clients"
                + (f" (--max-connections stops it at {CLIENTS_PER_PROCESS:,})"
                   if most > CLIENTS_PER_PROCESS else "")
                + ".",
                "",
            ]  # fmt: skip
        plans = [plan(redis, w, n) for n in CLIENT_COUNTS]
        lines += ["| on Redis | " + " | ".join(f"{n:,} clients" for n in CLIENT_COUNTS) + " |"]
        lines += ["|---|" + "---:|" * len(CLIENT_COUNTS)]
        for label, cell in PLAN_ROWS:
            lines.append(f"| {label} | " + " | ".join(cell(p) for p in plans) + " |")
        reached = sorted(
            limits(redis, w).items(), key=lambda kv: math.inf if kv[1] is None else kv[1]
        )
        lines += [
            "",
            "Limits, and the client count at which each is reached: "
            + "; ".join(f"{name}, {_n(n) if n else 'beyond 100,000,000'}" for name, n in reached)
            + ".",
            "",
        ]
    return "\n".join(lines)


# -------------------------------------------------------------------- main


def median_of(runs: Sequence[Results]) -> Results:
    """Key by key, the median of the runs' numbers (nested); the first run's other values."""
    out: Results = {}
    for key, first in runs[0].items():
        if isinstance(first, dict) and not key.startswith("raw"):
            out[key] = median_of([r[key] for r in runs])
        elif isinstance(first, list) and first and all(isinstance(x, dict) for x in first):
            out[key] = [median_of([r[key][j] for r in runs]) for j in range(len(first))]
        elif isinstance(first, int | float) and not isinstance(first, bool):
            out[key] = statistics.median(r[key] for r in runs)
        else:
            out[key] = first
    return out


def measure(lab: Lab, engine: str, args: argparse.Namespace) -> Results:
    jobs: list[tuple[str, Callable[[], Results]]] = [
        ("idle", lambda: idle_clients(lab, engine, args.clients)),
        ("cycles", lambda: connect_cycles(lab, engine, args.cycle_clients, args.cycle_timeout)),
        ("rate", lambda: fixed_rate(lab, engine)),
        ("http", lambda: http_publish(lab, engine)),
    ]
    if engine == "redis" and args.readers > 0:
        jobs.append(("log", lambda: log_reads(lab, args.readers)))
    got: Results = {}
    for name, job in jobs:
        lab.say(f"{engine}: {name}")
        got[name] = median_of([job() for _ in range(args.runs)])
    return got


def commit() -> str:
    def git(*argv: str) -> str:
        done = subprocess.run(
            ["git", *argv], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "?"
    changed = git("status", "--porcelain", "--untracked-files=no").splitlines()
    return head + (f" (+{len(changed)} changed files)" if changed else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--clients",
        default=[2000, 10_000],
        type=lambda text: sorted(int(n) for n in text.split(",") if n.strip()),
        help="idle WebSocket clients at which memory is read (default: 2000,10000)",
    )
    parser.add_argument("--cycle-clients", type=int, default=2000, help="idle clients cycling")
    parser.add_argument(
        "--cycle-timeout", type=float, default=2.0, help="--timeout of the cycling runs (s)"
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each timed run")
    parser.add_argument("--readers", type=int, default=2, help="nodes reading the log")
    parser.add_argument("--runs", type=int, default=1, help="runs of each measurement (median)")
    parser.add_argument("--no-redis", action="store_true", help="in memory only")
    parser.add_argument("--json", type=Path, default=None, help="write every result here")
    args = parser.parse_args(argv)
    if not args.clients:
        parser.error("--clients: give at least one count")
    args.runs = max(1, args.runs)

    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    try:
        node_modules = ensure_node_modules()
    except BaseException as exc:  # pytest's skip/fail outcomes are BaseExceptions
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        print(f"capacity inputs unavailable (npm packages): {exc}", file=sys.stderr)
        return 2
    files = raise_file_limit()
    if files < max(args.clients) + 500:
        print(f"the open-file limit is {files}: too low for {max(args.clients):,} clients",
              file=sys.stderr)  # fmt: skip
        return 2
    logs = Path(tempfile.mkdtemp(prefix="bayeux-capacity-"))
    info = machine()
    info["loadavg_start"] = loadavg()
    info["commit"] = commit()
    redis: Redis | None = None
    if not args.no_redis:
        try:
            redis = Redis(logs)
        except RuntimeError as exc:
            print(f"capacity inputs unavailable: {exc} (--no-redis: in memory only)",
                  file=sys.stderr)  # fmt: skip
            return 2
    say(f"logs in {logs}; load average {info['loadavg_start']}; commit {info['commit']}")
    lab = Lab(node_modules, logs, redis, say, args.seconds)
    results: dict[str, Results] = {}
    try:
        for engine in ENGINES if redis is not None else ENGINES[:1]:
            results[engine] = measure(lab, engine, args)
    finally:
        if redis is not None:
            redis.stop()
    info["loadavg_end"] = loadavg()
    info["seconds"] = round(time.monotonic() - started, 1)
    inputs = flat(results)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "machine": info,
            "command": " ".join(["bench/capacity_inputs.py", *(argv or sys.argv[1:])]),
            "inputs": inputs,
            "results": results,
        }
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    print(inputs_table(results, args.clients))
    print(
        f"\n{info['date']}; commit {info['commit']}; {info['cpus']} CPUs ({info['cpu_model']}); "
        f"Python {info['python']}, Node {info['node']}; allocator "
        f"{results['memory']['idle'].get('allocator', '?')}; {args.runs} run(s) of each; "
        f"load average {info['loadavg_start']} -> {info['loadavg_end']}; "
        f"{info['seconds']:.0f} s.\n"
    )
    print(plan_report(inputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
