"""HTTP publish in memory: our server against the floor under trio (issue 18).

The floor is a trio server that parses nothing: it finds each request's
``\\r\\n\\r\\n`` and ``Content-Length``, skips the body and sends a canned
200 with a publish's reply (``serve_floor`` below). What it costs per request
is the kernel's loopback TCP and trio's scheduling and epoll; what our server
costs above it is our own Python. Both are measured by the same
``bench/js/loadgen.js`` scenario as ``bench/server_bench.py``'s scenario 6
(``httppub``: form-encoded ``message=`` POSTs on 16 keep-alive connections,
closed loop), one run after the other, so that a busy machine weighs on both
alike: run 1 measures the floor then ours, run 2 ours then the floor, and so
on. Each run gets a fresh server.

``--tree DIR`` (repeatable) adds our server from another checkout (``git
worktree add /tmp/before <rev>``) to the rotation, for before/after pairs.

``--wait-first`` adds a second floor that reads as our server does. trio's
``receive_some`` tries a ``recv`` first, which between keep-alive requests
returns ``EAGAIN`` (a system call and a Python exception) before it waits;
our server waits for readability first and then reads once. The second floor
does the same, so that what ours costs above a floor is not flattered by the
first floor's extra read.

``--redis`` runs our servers on a ``redis-server`` the script starts
(``redis_bench.Redis``: AOF, fsync every second, as ``make bench-redis``)
and empties before each run, so that every run starts from an empty log (the
floor makes no sense there: add ``--no-floor``).

Run: ``.venv/bin/python bench/http_floor.py --runs 4`` (Node.js, and the npm
packages of ``tests/interop``, which it installs into a cache if missing).
The floor server alone: ``.venv/bin/python bench/http_floor.py --serve PORT``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "bench"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from redis_bench import Redis  # noqa: E402
from server_bench import loadavg, run_generator  # noqa: E402

from tests._support.ports import free_port  # noqa: E402
from tests._support.processes import wait_listening  # noqa: E402
from tests.interop._support import ServerProcess, ensure_node_modules  # noqa: E402

FLOOR = "floor"
#: the floor that waits for readability before each read, as our server does
FLOOR_WAIT = "floor, wait first"
OURS = "ours"
#: a publish's reply, as our server sends it (the loadgen only counts 200s)
_BODY = b'[{"channel":"/bench/http","successful":true}]'
FLOOR_REPLY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_BODY), _BODY)
)
START_TIMEOUT = 30.0
#: the columns printed, from each run's loadgen result
COLUMNS = (
    ("publishes_per_s", "publishes/s", ",.0f"),
    ("publishes_per_cpu_s", "publishes per server CPU-s", ",.0f"),
    ("cpu_us", "server CPU per publish (us)", ".1f"),
    ("p99_ms", "p99 (ms)", ".2f"),
)


# ------------------------------------------------------------ the floor


def serve_floor(port: int, wait_first: bool = False) -> None:
    """The floor server on 127.0.0.1:``port``, until killed.

    ``wait_first``: each read waits for readability, then reads the socket
    once (as our ``HttpConnection._receive`` does), instead of trio's
    ``receive_some``.
    """
    import trio

    async def receive(stream: trio.SocketStream) -> bytes:
        if not wait_first:
            return bytes(await stream.receive_some(65536))
        fd = stream.socket.fileno()  # read(2) on it: recv(2) without flags
        while True:
            await trio.lowlevel.wait_readable(fd)
            try:
                return os.read(fd, 65536)
            except BlockingIOError:
                continue

    async def handle(stream: trio.SocketStream) -> None:
        buffer = b""
        while True:
            data = await receive(stream)
            if not data:
                return
            buffer += data
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                at = buffer.find(b"Content-Length: ", 0, end)
                length = int(buffer[at + 16 : buffer.index(b"\r\n", at)]) if at >= 0 else 0
                if len(buffer) < end + 4 + length:
                    break
                buffer = buffer[end + 4 + length :]
                await stream.send_all(FLOOR_REPLY)

    async def main() -> None:
        await trio.serve_tcp(handle, port, host="127.0.0.1")

    trio.run(main)


# -------------------------------------------------------------- servers


def start(kind: str, tree: Path, log: Path, engine: str | None = None) -> ServerProcess:
    """The floor, or ``bayeux serve --allocator python`` from ``tree``, on a free port."""
    port = free_port()
    if kind in (FLOOR, FLOOR_WAIT):
        command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)]
        if kind == FLOOR_WAIT:
            command.append("--wait-first")
    else:
        command = [sys.executable, "-m", "bayeux_trio", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--allocator", "python", "--log-level", "warning"]
        if engine is not None:
            command += ["--engine", engine]
    env = dict(os.environ, PYTHONPATH=str(tree))
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = ServerProcess(kind, process, log, port)
    if not wait_listening(port, timeout=START_TIMEOUT, process=process):
        server.stop()
        raise RuntimeError(f"{kind} did not listen on {port}; log:\n{server.log_tail()}")
    return server


def measure(
    kind: str,
    tree: Path,
    node_modules: Path,
    logs: Path,
    options: dict[str, Any],
    *,
    redis: Redis | None = None,
) -> dict[str, Any]:
    """One loadgen run against a fresh server; its result, with CPU per publish."""
    engine = None
    if redis is not None and kind == OURS:
        redis.flush()
        engine = f"redis://127.0.0.1:{redis.port}/0"
    server = start(kind, tree, logs / f"{kind.replace(' ', '-')}-{tree.name}.log", engine)
    try:
        result = run_generator(node_modules, server, options, timeout=options["seconds"] + 60)
    finally:
        server.stop()
    per_cpu = result.get("publishes_per_cpu_s") or 0
    result["cpu_us"] = 1e6 / per_cpu if per_cpu else None
    return result


def table(rows: dict[str, list[dict[str, Any]]]) -> str:
    """Medians per server, and each one's CPU per publish above each floor."""
    floors = {
        name: statistics.median(r["cpu_us"] for r in rows[name])
        for name in (FLOOR, FLOOR_WAIT)
        if rows.get(name)
    }
    head = ["server", *(label for _, label, _ in COLUMNS)]
    head += [f"above the {name} (us)" for name in floors]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, runs in rows.items():
        cells = [name]
        for key, _, fmt in COLUMNS:
            values = [r[key] for r in runs if r.get(key) is not None]
            cells.append(format(statistics.median(values), fmt) if values else "-")
        mine = [r["cpu_us"] for r in runs if r.get("cpu_us") is not None]
        for floor in floors.values():
            above = statistics.median(mine) - floor if mine else None
            cells.append("-" if above is None or name in floors else f"{above:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="runs per server (median)")
    parser.add_argument("--seconds", type=float, default=6, help="measured seconds per run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--tree",
        type=Path,
        action="append",
        default=[],
        help="also measure our server from this checkout (repeatable)",
    )
    parser.add_argument("--no-ours", action="store_true", help="not this checkout's server")
    parser.add_argument("--no-floor", action="store_true", help="not the floor")
    parser.add_argument(
        "--wait-first",
        action="store_true",
        help="also the floor that waits for readability before each read, as ours does "
        "(with --serve: serve that floor)",
    )
    parser.add_argument("--serve", type=int, metavar="PORT", help="run the floor server only")
    parser.add_argument(
        "--redis",
        action="store_true",
        help="run our servers on a redis-server of the script's own, emptied before each run",
    )
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve_floor(args.serve, args.wait_first)
        return 0
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    servers: list[tuple[str, str, Path]] = []
    if not args.no_floor:
        servers.append((FLOOR, FLOOR, REPO_ROOT))
    if args.wait_first:
        servers.append((FLOOR_WAIT, FLOOR_WAIT, REPO_ROOT))
    if not args.no_ours:
        servers.append((OURS, OURS, REPO_ROOT))
    for tree in args.tree:
        servers.append((f"ours ({tree})", OURS, tree.resolve()))
    if args.redis and not args.no_floor:
        parser.error("--redis: the floor has no engine; add --no-floor")
    options = {"scenario": "httppub", "connections": args.connections, "seconds": args.seconds}
    node_modules = ensure_node_modules()
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in servers}
    with tempfile.TemporaryDirectory(prefix="http-floor-") as logs:
        redis = Redis(Path(logs)) if args.redis else None
        try:
            for run in range(args.runs):
                # Alternate the order, so that neither side always goes first.
                order = servers if run % 2 == 0 else servers[::-1]
                for name, kind, tree in order:
                    result = measure(kind, tree, node_modules, Path(logs), options, redis=redis)
                    rows[name].append(result)
                    print(
                        f"run {run + 1} {name}: {result['publishes_per_s']:,.0f}/s, "
                        f"{result['publishes_per_cpu_s']:,.0f} per CPU-s, "
                        f"p99 {result['p99_ms']:.2f} ms (load {loadavg()})",
                        file=sys.stderr,
                        flush=True,
                    )
        finally:
            if redis is not None:
                redis.stop()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
