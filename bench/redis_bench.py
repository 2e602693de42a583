"""The Redis engine under load: 1 and 2 processes against the in-memory engine and Faye.

Runs two scenarios of ``bench/js/loadgen.js`` (the generator of
``bench/server_bench.py``, whose helpers this script imports) against each
server configuration, over loopback:

* HTTP publish: form-encoded ``message=`` POSTs on 16 keep-alive
  connections, closed loop, 5 s (no subscribers);
* WebSocket fan-out: 200 subscribers on one channel, one publisher, 500
  messages as fast as acknowledged (100,000 deliveries).

Configurations: ours with the in-memory engine (1 process), ours on Redis
(1 process, and 2 with ``--workers 2`` sharing the port), Faye 1.4.3 in
memory, and Faye 1.4.3 with the faye-redis 0.2.0 engine (1 process, and 2
sharing the port through Node's ``cluster`` module). One ``redis-server``
(AOF, ``appendfsync everysec``, as docs/deployment.md recommends) is started
on a free loopback port and flushed before each configuration.

The generator measures throughput. CPU is measured here, from
``/proc/<pid>/stat``, over each whole generator run (setup included): the
server's process tree and redis-server, reported per 1,000 operations.

The npm packages (``bench/faye-redis/package.json``: faye, faye-redis and the
callback-style ``redis`` client it needs, pinned) are installed into a cache
outside the tree, like the interop peers. Bounded: about two minutes with
``--runs 1`` (the default) on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
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

from server_bench import loadavg, machine, run_generator  # noqa: E402

from tests.interop._support import (  # noqa: E402
    INSTALL_TIMEOUT,
    ServerProcess,
    cache_root,
    free_port,
    installed_versions,
    start_faye_server,
    start_our_server,
)

NPM_DIR = Path(__file__).resolve().parent / "faye-redis"
FAYE_REDIS_SERVER = NPM_DIR / "faye_redis_server.js"
CLK_TCK = os.sysconf("SC_CLK_TCK")

SCENARIOS: dict[str, dict[str, Any]] = {
    "httppub": {"scenario": "httppub", "connections": 16, "seconds": 5},
    "fanout": {"scenario": "fanout", "subscribers": 200, "messages": 500},
}
#: the generator's throughput metric, and what one operation is
RATE = {
    "httppub": ("publishes_per_s", "publishes"),
    "fanout": ("deliveries_per_s", "deliveries"),
}
BASELINE = "ours-memory-1"


# ----------------------------------------------------------------- npm


def ensure_modules() -> Path:
    """faye + faye-redis + redis (pinned), installed into the npm cache if missing."""
    manifest = NPM_DIR / "package.json"
    lock = NPM_DIR / "package-lock.json"
    pins: dict[str, str] = json.loads(manifest.read_text())["dependencies"]
    digest = hashlib.sha256(manifest.read_bytes() + b"\0" + lock.read_bytes()).hexdigest()[:16]
    target = cache_root() / f"bench-faye-redis-{digest}"
    modules = target / "node_modules"
    if installed_versions(modules, list(pins)) == pins:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not on PATH")
    staging = target.parent / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        shutil.copy2(manifest, staging / "package.json")
        shutil.copy2(lock, staging / "package-lock.json")
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=staging,
            check=True,
            capture_output=True,
            timeout=INSTALL_TIMEOUT,
        )
        got = installed_versions(staging / "node_modules", list(pins))
        if got != pins:
            raise RuntimeError(f"npm installed {got}, expected {pins}")
        with contextlib.suppress(OSError):  # another run may have finished first
            staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return modules


# --------------------------------------------------------------- Redis


class Redis:
    """A redis-server on a free loopback port, AOF with fsync every second."""

    def __init__(self, directory: Path) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not on PATH")
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while self._ask(b"PING\r\n") != b"+PONG\r\n":
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def _ask(self, command: bytes) -> bytes:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.sendall(command)
                return sock.recv(256)
        except OSError:
            return b""

    def flush(self) -> None:
        if self._ask(b"FLUSHALL\r\n") != b"+OK\r\n":
            raise RuntimeError("FLUSHALL failed")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


# ------------------------------------------------------------------ CPU


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (workers), from /proc."""
    found = [pid]
    for current in found:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                found.extend(int(c) for c in children)
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its descendants."""
    total = 0.0
    for member in _tree(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{member}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def coredis_cost(port: int, count: int = 2000) -> dict[str, float]:
    """CPU and wall milliseconds per coredis round trip under trio (one at a time)."""
    import coredis
    import trio
    from coredis.retry import NoRetryPolicy

    out: dict[str, float] = {}

    async def run() -> None:
        client: coredis.Redis[bytes] = coredis.Redis.from_url(
            f"redis://127.0.0.1:{port}/0", decode_responses=False, retry_policy=NoRetryPolicy()
        )
        async with client:
            await client.ping()

            async def pipelined() -> None:
                async with client.pipeline(transaction=False) as pipe:
                    pipe.xadd("bench:coredis", {"c": "x", "p": "y"})

            calls: dict[str, Callable[[], Any]] = {
                "ping": client.ping,
                "xadd": lambda: client.xadd("bench:coredis", {"c": "x", "p": "y"}),
                "pipeline_xadd": pipelined,
            }
            for name, call in calls.items():
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(count):
                    await call()
                out[f"{name}_cpu_ms"] = 1000 * (time.process_time() - cpu) / count
                out[f"{name}_wall_ms"] = 1000 * (time.perf_counter() - wall) / count
        # The floor under trio: the same PING on a bare trio socket, no client
        # library (what coredis adds to a round trip is the difference).
        sock = await trio.open_tcp_stream("127.0.0.1", port)
        async with sock:
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(count):
                await sock.send_all(b"*1\r\n$4\r\nPING\r\n")
                got = b""
                while not got.endswith(b"\r\n"):
                    got += await sock.receive_some(64)
            out["raw_ping_cpu_ms"] = 1000 * (time.process_time() - cpu) / count
            out["raw_ping_wall_ms"] = 1000 * (time.perf_counter() - wall) / count

    trio.run(run)
    return out


# -------------------------------------------------------------- configs


@dataclass(frozen=True)
class Config:
    name: str
    label: str
    start: Callable[[Path], ServerProcess]
    redis: bool
    processes: int


def configs(modules: Path | None, redis: Redis) -> list[Config]:
    url = f"redis://127.0.0.1:{redis.port}/0"
    quiet = ["--log-level", "warning"]

    def faye_redis(workers: int) -> Callable[[Path], ServerProcess]:
        def start(log: Path) -> ServerProcess:
            assert modules is not None
            os.environ["BENCH_REDIS_PORT"] = str(redis.port)
            os.environ["BENCH_WORKERS"] = str(workers)
            return start_faye_server(modules, log, FAYE_REDIS_SERVER)

        return start

    found = [
        Config(BASELINE, "ours, in-memory, 1 process", lambda log: start_our_server(log, quiet),
               False, 1),
        Config("ours-redis-1", "ours, Redis, 1 process",
               lambda log: start_our_server(log, ["--engine", url, *quiet]), True, 1),
        Config("ours-redis-2", "ours, Redis, 2 processes (`--workers 2`)",
               lambda log: start_our_server(log, ["--engine", url, "--workers", "2", *quiet]),
               True, 2),
    ]  # fmt: skip
    if modules is not None:
        found += [
            Config("faye-memory-1", "Faye 1.4.3, in-memory, 1 process",
                   lambda log: start_faye_server(modules, log), False, 1),
            Config("faye-redis-1", "Faye 1.4.3 + faye-redis 0.2.0, 1 process",
                   faye_redis(1), True, 1),
            Config("faye-redis-2", "Faye 1.4.3 + faye-redis 0.2.0, 2 processes (cluster)",
                   faye_redis(2), True, 2),
        ]  # fmt: skip
    return found


@dataclass
class Outcome:
    config: Config
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def median(self, scenario: str, key: str) -> float | None:
        values = [r[key] for r in self.runs.get(scenario, []) if r.get(key) is not None]
        return statistics.median(values) if values else None


@contextlib.contextmanager
def running(config: Config, logs: Path, redis: Redis) -> Iterator[ServerProcess]:
    if config.redis:
        redis.flush()
    server = config.start(logs / f"{config.name}.log")
    try:
        if config.processes > 1:
            time.sleep(2.0)  # the other workers listen too (they start in parallel)
        yield server
    finally:
        server.stop()


def measure(
    config: Config,
    *,
    modules: Path,
    logs: Path,
    redis: Redis,
    scenarios: Sequence[str],
    log: Callable[[str], None],
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with running(config, logs, redis) as server:
        for name in scenarios:
            cpu0, redis0 = cpu_seconds(server.process.pid), cpu_seconds(redis.process.pid)
            result = run_generator(modules, server, SCENARIOS[name], timeout=180)
            result["tree_cpu"] = cpu_seconds(server.process.pid) - cpu0
            result["redis_cpu"] = cpu_seconds(redis.process.pid) - redis0
            if server.process.poll() is not None:
                raise RuntimeError(f"{config.name} died; log:\n{server.log_tail()}")
            key, _ = RATE[name]
            ops = result.get("requests") or result.get("deliveries") or 0
            result["ops"] = ops
            # CPU-milliseconds per 1,000 operations
            result["server_cpu_per_1k"] = 1e6 * result["tree_cpu"] / ops if ops else None
            result["redis_cpu_per_1k"] = 1e6 * result["redis_cpu"] / ops if ops else None
            results[name] = result
            log(
                f"  {config.name} {name}: {key}={result.get(key, 0):,.0f} "
                f"failures={result.get('failures', result.get('publish_failures'))} "
                f"server_cpu={result['tree_cpu']:.2f}s redis_cpu={result['redis_cpu']:.2f}s"
            )
            time.sleep(0.5)
    return results


# -------------------------------------------------------------- report


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def table(outcomes: Sequence[Outcome], scenarios: Sequence[str]) -> str:
    base = next((o for o in outcomes if o.config.name == BASELINE), None)
    lines = []
    for name in scenarios:
        key, op = RATE[name]
        lines += [
            f"`{json.dumps(SCENARIOS[name])}`",
            "",
            f"| server | {op}/s | vs ours in-memory | server CPU-ms per 1k {op} "
            f"| redis-server CPU-ms per 1k {op} |",
            "|---|---:|---:|---:|---:|",
        ]
        reference = base.median(name, key) if base is not None else None
        for outcome in outcomes:
            rate = outcome.median(name, key)
            ratio = rate / reference if rate is not None and reference else None
            redis_cpu = outcome.median(name, "redis_cpu_per_1k") if outcome.config.redis else None
            lines.append(
                f"| {outcome.config.label} | {_num(rate, ',.0f')} | {_num(ratio, '.2f')} "
                f"| {_num(outcome.median(name, 'server_cpu_per_1k'), ',.1f')} "
                f"| {_num(redis_cpu, ',.1f') if outcome.config.redis else '-'} |"
            )
        lines.append("")
        if name == "httppub":
            lines += [_targets(outcomes, name, key), ""]
    return "\n".join(lines)


def _targets(outcomes: Sequence[Outcome], name: str, key: str) -> str:
    """Issue 18's targets for HTTP publish on Redis, one process: >= 0.7x our
    in-memory engine and >= 1.3x Faye with faye-redis."""
    rates = {o.config.name: o.median(name, key) for o in outcomes}
    ours = rates.get("ours-redis-1")
    parts = []
    for other, label, target in (
        (BASELINE, "ours in-memory", 0.7),
        ("faye-redis-1", "faye-redis", 1.3),
    ):
        reference = rates.get(other)
        if ours is None or not reference:
            continue
        ratio = ours / reference
        met = "met" if ratio >= target else "not met"
        parts.append(f"{ratio:.2f}x {label} (target >= {target}x: {met})")
    return "Targets, ours on Redis, 1 process: " + ("; ".join(parts) or "n/a")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1, help="runs per configuration (median)")
    parser.add_argument(
        "--scenarios", default="httppub,fanout", help="comma-separated: httppub, fanout"
    )
    parser.add_argument("--no-faye", action="store_true", help="only our server")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")

    started = time.monotonic()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    try:
        modules = ensure_modules()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"Redis benchmark unavailable (npm packages): {exc}", file=sys.stderr)
        return 2
    logs = Path(tempfile.mkdtemp(prefix="bayeux-redis-bench-"))
    try:
        redis = Redis(logs)
    except RuntimeError as exc:
        print(f"Redis benchmark unavailable: {exc}", file=sys.stderr)
        return 2
    info = machine()
    info["loadavg_start"] = loadavg()
    log(f"logs in {logs}; redis-server on port {redis.port}; load {info['loadavg_start']}")
    outcomes: list[Outcome] = []
    try:
        cost = coredis_cost(redis.port)
        info["coredis"] = cost
        log(
            "coredis per round trip (ms, cpu/wall): "
            + ", ".join(
                f"{name} {cost[name + '_cpu_ms']:.3f}/{cost[name + '_wall_ms']:.3f}"
                for name in ("ping", "xadd", "pipeline_xadd", "raw_ping")
            )
        )
        chosen = configs(None if args.no_faye else modules, redis)
        outcomes = [Outcome(config) for config in chosen]
        for run in range(max(1, args.runs)):
            # Alternate the order between runs, as server_bench.py does.
            order = outcomes if run % 2 == 0 else outcomes[::-1]
            for outcome in order:
                log(f"run {run + 1}: {outcome.config.label}")
                results = measure(
                    outcome.config,
                    modules=modules,
                    logs=logs,
                    redis=redis,
                    scenarios=scenarios,
                    log=log,
                )
                for name, result in results.items():
                    outcome.runs.setdefault(name, []).append(result)
    finally:
        redis.stop()
    info["loadavg_end"] = loadavg()
    info["seconds"] = round(time.monotonic() - started, 1)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "machine": info,
            "command": " ".join(["bench/redis_bench.py", *(argv or sys.argv[1:])]),
            "scenarios": SCENARIOS,
            "configs": {o.config.name: o.runs for o in outcomes},
        }
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    print(table(outcomes, scenarios))
    cost = info["coredis"]
    print(
        "coredis round trip, one at a time under trio (CPU ms / wall ms): "
        + ", ".join(
            f"{name} {cost[name + '_cpu_ms']:.3f} / {cost[name + '_wall_ms']:.3f}"
            for name in ("ping", "xadd", "pipeline_xadd")
        )
        + f"; a bare trio socket's PING {cost['raw_ping_cpu_ms']:.3f} / "
        + f"{cost['raw_ping_wall_ms']:.3f}"
        + "\n"
    )
    print(
        f"{info['date']}; {info['cpus']} CPUs ({info['cpu_model']}); Python {info['python']}, "
        f"Node {info['node']}; median of {max(1, args.runs)} run(s); load average "
        f"{info['loadavg_start']} -> {info['loadavg_end']}; {info['seconds']:.0f} s in all."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
