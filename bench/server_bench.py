"""Our server against Faye 1.4.3, side by side, over loopback (issue 6).

Starts ``python -m bayeux_trio serve`` and the stock Faye 1.4.3 Node.js server
(``tests/interop/js/faye_server.js``: mount ``/faye``, timeout 25), with the
helpers of ``tests/interop/_support.py`` (the npm packages are installed into
a cache outside the tree), and runs each scenario against both, interleaved:
run 1 measures ours then Faye, run 2 Faye then ours, and so on. Every
measurement is one run of ``bench/js/loadgen.js`` (Node.js), which reads the
server's CPU time (utime + stime, ``/proc/<pid>/stat``) and RSS at the start
and the end of its measured phase. A table row is the median over the runs,
and the ratio is ours / Faye.

Scenarios (``--scenarios``, default every numbered one):

1. WebSocket fan-out: 500 subscribers on one channel, one publisher, 200
   messages as fast as acknowledged (16 outstanding).
2. Fixed-rate fan-out: 100 subscribers, 10,000 deliveries/s offered for 5 s;
   latency from the publish timestamp in each message; server CPU %.
3. Long-polling fan-out: 50 long-polling subscribers, 1,000 messages.
4. Many channels: 500 subscribers each on its own channel, 5,000 messages
   published round-robin.
5. Idle connections: WebSocket clients, handshaken, connected and
   subscribed, 2,000 in every run and then, in the first ``--idle-big-runs``
   runs (default 1) of each server, on to 19,000: RSS growth per connection,
   connect rate, server CPU per connection set up and server CPU % while
   the clients idle. Fresh servers for every run.
6. HTTP publish: form-encoded ``message=`` POSTs, 16 keep-alive connections,
   closed loop, 5 s.
7. Ping-pong: two clients bounce a message 2,000 times.

``f1`` and ``f7`` repeat 1 (200 subscribers, 300 messages) and 7 (1,000
round trips) with the npm faye client instead of the generator's own lean
clients, as a check on the generator (one run each by default). ``p1`` and
``p2`` sweep the subscriber count of 1 and 2 (one run per point) for the
plots of ``bench/plot_server_bench.py``.

Results go to stdout as a Markdown table and, with ``--json``, to a file.
Every generator run has a deadline.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.interop._support import (  # noqa: E402
    MOUNT,
    ServerProcess,
    ensure_node_modules,
    start_faye_server,
    start_our_server,
)

LOADGEN = Path(__file__).resolve().parent / "js" / "loadgen.js"
OURS = "ours"
FAYE = "faye"
#: the open-file limit wanted for scenario 5 (server and generator inherit it)
WANT_FILES = 20_000


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    #: "higher" or "lower" is better
    better: str
    #: the ratio ours / Faye the issue asks for, if any
    target: float | None = None
    fmt: str = ",.0f"


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    options: dict[str, Any]
    metrics: tuple[Metric, ...]
    #: start fresh servers before every run (else once per scenario)
    fresh: bool = False
    #: label of the point in a sweep (subscriber count) for plots
    point: int | None = None
    #: scenario 5: runs (per server) that go on past the first step
    big_runs: int | None = None


def _fanout_metrics(per_s_target: float | None, cpu_target: float | None) -> tuple[Metric, ...]:
    return (
        Metric("deliveries_per_s", "deliveries/s", "higher", per_s_target),
        Metric("deliveries_per_cpu_s", "deliveries per server CPU-second", "higher", cpu_target),
    )


RATE_METRICS = (
    Metric("p50_ms", "latency p50 (ms)", "lower", None, ".2f"),
    Metric("p99_ms", "latency p99 (ms)", "lower", 0.8, ".2f"),
    # issue 18 asks for 0.6x (issue 6 asked for 0.7x)
    Metric("server_cpu_percent", "server CPU %", "lower", 0.6, ".1f"),
)
PINGPONG_METRICS = (
    Metric("roundtrips_per_s", "round trips/s", "higher"),
    Metric("p50_ms", "round trip p50 (ms)", "lower", None, ".2f"),
    Metric("p99_ms", "round trip p99 (ms)", "lower", None, ".2f"),
)


IDLE_STEPS = (2000, 19_000)


def _idle() -> Scenario:
    metrics: list[Metric] = []
    for n in IDLE_STEPS:
        target = 0.7 if n == IDLE_STEPS[-1] else None
        metrics.append(
            Metric(f"rss_kb_{n}", f"RSS per connection at {n:,} (KB)", "lower", target, ".1f")
        )
        # issue 18: at the last step, >= 1.0x Faye's rate at <= 0.8x its CPU
        last = n == IDLE_STEPS[-1]
        metrics.append(
            Metric(
                f"connects_per_s_{n}", f"connects/s up to {n:,}", "higher", 1.0 if last else None
            )
        )
        metrics.append(
            Metric(
                f"cpu_ms_per_connect_{n}",
                f"server CPU per connection set up, up to {n:,} (ms)",
                "lower",
                0.8 if last else None,
                ".2f",
            )
        )
        metrics.append(
            Metric(f"idle_cpu_percent_{n}", f"server CPU % idling at {n:,}", "lower", None, ".1f")
        )
    return Scenario(
        "5",
        "idle WebSocket clients (handshaken, connected, subscribed): 2,000, then 19,000",
        # Connecting is the measured phase: allow 30 ms per connection. 400
        # set up at once keep both servers busy; 3 s of idling measure the
        # connect cycles of the clients (19,000 / 25 s = 760 a second).
        {
            "scenario": "idle",
            "steps": list(IDLE_STEPS),
            "deadline": IDLE_STEPS[-1] * 0.03,
            "idleConcurrency": 400,
            "settle": 3,
        },
        tuple(metrics),
        fresh=True,
        big_runs=1,
    )


SCENARIOS: dict[str, list[Scenario]] = {
    "1": [
        Scenario(
            "1",
            "WebSocket fan-out: 500 subscribers, 400 messages",
            {"scenario": "fanout", "subscribers": 500, "messages": 400},
            _fanout_metrics(3.0, 8.0),
        )
    ],
    "2": [
        Scenario(
            "2",
            "fixed-rate fan-out: 100 subscribers, 10,000 deliveries/s for 5 s",
            {"scenario": "rate", "subscribers": 100, "rate": 10_000, "seconds": 5},
            RATE_METRICS,
        )
    ],
    "3": [
        Scenario(
            "3",
            "long-polling fan-out: 50 subscribers, 1,000 messages",
            {"scenario": "longpoll", "subscribers": 50, "messages": 1000},
            _fanout_metrics(2.0, None),
        )
    ],
    "4": [
        Scenario(
            "4",
            "many channels: 500 subscribers on a channel each, 5,000 messages",
            {"scenario": "channels", "subscribers": 500, "messages": 5000},
            _fanout_metrics(1.0, None),
        )
    ],
    "5": [_idle()],
    "6": [
        Scenario(
            "6",
            "HTTP publish: form POSTs, 16 keep-alive connections, 5 s",
            {"scenario": "httppub", "connections": 16, "seconds": 5},
            (
                # issue 18 (issue 6 asked for 1.0x)
                Metric("publishes_per_s", "publishes/s", "higher", 1.3),
                Metric("publishes_per_cpu_s", "publishes per server CPU-second", "higher"),
                Metric("p99_ms", "latency p99 (ms)", "lower", 1.0, ".2f"),
            ),
        )
    ],
    "7": [
        Scenario(
            "7",
            "ping-pong: 2,000 round trips between two clients",
            {"scenario": "pingpong", "roundtrips": 2000},
            PINGPONG_METRICS,
        )
    ],
    "f1": [
        Scenario(
            "f1",
            "npm faye client: WebSocket fan-out, 200 subscribers, 300 messages",
            {"scenario": "fanout", "client": "faye", "subscribers": 200, "messages": 300},
            _fanout_metrics(None, None),
        )
    ],
    "f7": [
        Scenario(
            "f7",
            "npm faye client: ping-pong, 1,000 round trips",
            {"scenario": "pingpong", "client": "faye", "roundtrips": 1000},
            PINGPONG_METRICS,
        )
    ],
    "p1": [
        Scenario(
            f"p1-{n}",
            f"sweep: WebSocket fan-out, {n:,} subscribers",
            {"scenario": "fanout", "subscribers": n, "messages": max(20, 100_000 // n)},
            _fanout_metrics(None, None),
            point=n,
        )
        for n in (50, 100, 250, 500, 1000, 2000)
    ],
    "p2": [
        Scenario(
            f"p2-{n}",
            f"sweep: 10,000 deliveries/s to {n:,} subscribers",
            {"scenario": "rate", "subscribers": n, "rate": 10_000, "seconds": 3},
            RATE_METRICS,
            point=n,
        )
        for n in (25, 50, 100, 200, 500, 1000)
    ],
}
DEFAULT = "1,2,3,4,5,6,7,f1,f7,p1,p2"
#: sweeps and the faye-client checks get one run unless --sweep-runs says otherwise
SWEEPS = ("p1", "p2", "f1", "f7")


@dataclass
class Outcome:
    scenario: Scenario
    runs: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {OURS: [], FAYE: []})

    def median(self, server: str, key: str) -> float | None:
        values = [r[key] for r in self.runs[server] if r.get(key) is not None]
        return statistics.median(values) if values else None


# ------------------------------------------------------------------ servers


class Servers:
    """Our server and Faye's, started on free loopback ports."""

    def __init__(self, node_modules: Path, logs: Path, our_args: Sequence[str] = ()) -> None:
        self.node_modules = node_modules
        self.logs = logs
        self.our_args = our_args
        self.running: dict[str, ServerProcess] = {}

    def start(self) -> None:
        self.stop()
        self.running[OURS] = start_our_server(self.logs / "ours.log", self.our_args)
        self.running[FAYE] = start_faye_server(self.node_modules, self.logs / "faye.log")

    def stop(self) -> None:
        for server in self.running.values():
            server.stop()
        self.running.clear()

    def check(self) -> None:
        for name, server in self.running.items():
            if server.process.poll() is not None:
                raise RuntimeError(f"{name} server died; log:\n{server.log_tail()}")


@contextmanager
def servers(node_modules: Path, logs: Path, our_args: Sequence[str] = ()) -> Iterator[Servers]:
    pair = Servers(node_modules, logs, our_args)
    try:
        yield pair
    finally:
        pair.stop()


# ------------------------------------------------------------- generator


def run_generator(
    node_modules: Path, server: ServerProcess, options: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """One loadgen.js run against ``server``; its result line."""
    config = dict(options, port=server.port, path=MOUNT, pid=server.process.pid)
    env = dict(os.environ, NODE_PATH=str(node_modules))
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        env.pop(name, None)
    try:
        done = subprocess.run(
            ["node", str(LOADGEN), json.dumps(config)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"loadgen {config} timed out after {timeout} s") from exc
    for line in done.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "result":
            result: dict[str, Any] = event
            return result
    raise RuntimeError(
        f"loadgen {config} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
        f"{done.stderr[-3000:]}\n--- server log ---\n{server.log_tail()}"
    )


def derive(result: dict[str, Any]) -> dict[str, Any]:
    for step in result.get("steps", ()):
        n = step["connections"]
        result[f"rss_kb_{n}"] = step["rss_per_connection"] / 1024
        result[f"connects_per_s_{n}"] = step["connects_per_s"]
        result[f"cpu_ms_per_connect_{n}"] = step.get("server_cpu_ms_per_connect")
        result[f"idle_cpu_percent_{n}"] = step.get("server_cpu_idle_percent")
    return result


def open_file_limit(pid: int) -> int | None:
    """The soft open-file limit of a running process (``/proc/<pid>/limits``)."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft = line.split()[3]
                return None if soft == "unlimited" else int(soft)
    except (OSError, ValueError, IndexError):
        pass
    return None


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, WANT_FILES)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def fits(scenario: Scenario, files: int) -> bool:
    needed = max(scenario.options.get("steps", [0])) + 200
    return scenario.options.get("scenario") != "idle" or needed <= files


def measure(
    scenario: Scenario,
    node_modules: Path,
    pair: Servers,
    runs: int,
    log: Callable[[str], None],
) -> Outcome:
    outcome = Outcome(scenario)
    timeout = 60.0 + 2 * float(scenario.options.get("deadline", 60)) + 120
    if not scenario.fresh:
        pair.start()
    for run in range(runs):
        if scenario.fresh:
            pair.start()
        options = scenario.options
        if scenario.big_runs is not None and run >= scenario.big_runs:
            options = dict(options, steps=options["steps"][:1])
        if "steps" in options:
            needed = max(options["steps"]) + 100
            for name, server in pair.running.items():
                limit = open_file_limit(server.process.pid)
                log(f"  {name} server: open-file limit {limit}")
                if limit is not None and limit < needed:
                    raise RuntimeError(f"the {name} server may open only {limit} files")
        order = (OURS, FAYE) if run % 2 == 0 else (FAYE, OURS)
        for name in order:
            result = derive(run_generator(node_modules, pair.running[name], options, timeout))
            pair.check()
            outcome.runs[name].append(result)
            log(f"  {scenario.id} run {run + 1} {name}: {_brief(scenario, result)}")
            time.sleep(0.5)
    pair.stop()
    return outcome


def _brief(scenario: Scenario, result: dict[str, Any]) -> str:
    parts = [f"{m.key}={_num(result.get(m.key), m.fmt)}" for m in scenario.metrics]
    parts.append(f"server_cpu={result.get('server_cpu', 0):.2f}s")
    parts.append(f"generator_cpu={result.get('generator_cpu', 0):.2f}s")
    return " ".join(parts)


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


# ------------------------------------------------------------------ report


def table(outcomes: Sequence[Outcome]) -> str:
    lines = [
        "| # | scenario | metric | ours | Faye 1.4.3 | ours/Faye | target | met |",
        "|---|---|---|---:|---:|---:|---|---|",
    ]
    for outcome in outcomes:
        s = outcome.scenario
        for metric in s.metrics:
            ours = outcome.median(OURS, metric.key)
            faye = outcome.median(FAYE, metric.key)
            ratio = ours / faye if ours is not None and faye else None
            if metric.target is None:
                target = met = ""
            else:
                sign = ">=" if metric.better == "higher" else "<="
                target = f"{sign} {metric.target:g}x"
                if ratio is None:
                    met = "?"
                elif metric.better == "higher":
                    met = "yes" if ratio >= metric.target else "**no**"
                else:
                    met = "yes" if ratio <= metric.target else "**no**"
            lines.append(
                f"| {s.id} | {s.title} | {metric.label} | {_num(ours, metric.fmt)} "
                f"| {_num(faye, metric.fmt)} | {_num(ratio, '.2f')} | {target} | {met} |"
            )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = shutil.which("node")
    node_version = (
        subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout
        if node
        else ""
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "node": node_version.strip(),
        "kernel": platform.release(),
        "open_files": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def save(
    path: Path, info: dict[str, Any], argv: Sequence[str] | None, outcomes: Sequence[Outcome]
) -> None:
    data = {
        "machine": info,
        "command": " ".join(["bench/server_bench.py", *(argv or sys.argv[1:])]),
        "scenarios": [
            {
                "id": o.scenario.id,
                "title": o.scenario.title,
                "point": o.scenario.point,
                "options": o.scenario.options,
                "medians": {
                    server: {m.key: o.median(server, m.key) for m in o.scenario.metrics}
                    for server in (OURS, FAYE)
                },
                "runs": o.runs,
            }
            for o in outcomes
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--scenarios",
        default=DEFAULT,
        help="comma-separated scenario ids (default: %(default)s); 'all' for every one",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per server (median; >= 1)")
    parser.add_argument(
        "--sweep-runs", type=int, default=1, help="runs of f1, f7 and per point of p1, p2"
    )
    parser.add_argument(
        "--idle-big-runs",
        type=int,
        default=None,
        help="runs of scenario 5 that go on to 19,000 clients (default 1; the "
        "others stop at 2,000)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--our-args",
        default="",
        help="extra arguments for our server, e.g. '--allocator jemalloc' (default: none)",
    )
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if wanted == ["all"]:
        wanted = list(SCENARIOS)
    unknown = [s for s in wanted if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios {unknown}; choose from {', '.join(SCENARIOS)}")

    try:
        node_modules = ensure_node_modules()
    except BaseException as exc:  # pytest's skip/fail outcomes are BaseExceptions
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        print(f"server benchmark unavailable: {exc}", file=sys.stderr)
        return 2
    files = raise_file_limit()
    logs = Path(tempfile.mkdtemp(prefix="bayeux-bench-"))
    started = time.monotonic()
    info = machine()
    info["loadavg_start"] = loadavg()

    def log(text: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {text}", file=sys.stderr, flush=True)

    log(f"server logs in {logs}; open-file limit {files}; load average {info['loadavg_start']}")
    outcomes: list[Outcome] = []
    with servers(node_modules, logs, shlex.split(args.our_args)) as pair:
        for group in wanted:
            runs = args.sweep_runs if group in SWEEPS else args.runs
            for listed in SCENARIOS[group]:
                scenario = listed
                if listed.big_runs is not None and args.idle_big_runs is not None:
                    scenario = dataclasses.replace(listed, big_runs=args.idle_big_runs)
                if not fits(scenario, files):
                    log(f"skipping {scenario.id}: the open-file limit is {files}")
                    continue
                log(f"scenario {scenario.id}: {scenario.title}")
                outcomes.append(measure(scenario, node_modules, pair, max(1, runs), log))
                if args.json is not None:  # after every scenario: a stopped run keeps its data
                    save(args.json, info, argv, outcomes)
    info["loadavg_end"] = loadavg()
    info["seconds"] = round(time.monotonic() - started, 1)
    if args.json is not None:
        save(args.json, info, argv, outcomes)
    print(table(outcomes))
    print(
        f"\n{info['date']}; {info['cpus']} CPUs ({info['cpu_model']}); Python {info['python']}, "
        f"Node {info['node']}; median of {args.runs} runs per server, interleaved; "
        f"load average {info['loadavg_start']} -> {info['loadavg_end']}; "
        f"{info['seconds']:.0f} s in all."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
