"""Soak test: many short sessions, then many long-lived clients; nothing leaks.

``make soak`` (or ``python bench/soak.py``) starts a server process and drives
it from this one, over loopback only:

A. ``--cycles`` (default 100,000) handshake / subscribe / publish / disconnect
   cycles from ``--workers`` concurrent clients, each cycle on a fresh
   connection: HTTP (four requests on one kept-alive connection; the publish
   is queued for the client and dropped by its disconnect) or WebSocket (the
   publish comes back on the socket before the disconnect), alternately.
B. ``--clients`` (default 2,000) long-lived clients, half WebSocket and half
   long-polling, subscribed to one of ``--rooms`` channels, for
   ``SOAK_MINUTES`` (default 10) while each room gets a publish every
   ``--publish-period`` seconds; then they disconnect. Each client counts what
   it got against what was published to its room.

The server's RSS and open file descriptors (from /proc/<pid>) are sampled at
baseline, during and after each part, with the server's own counts, which it
writes to a file every half second: connections, sessions, held connects,
queued messages, stream endpoints, output buffers waiting to be flushed or
drained, trio tasks (walked from the root task) and the objects the garbage
collector tracks. ``--rounds`` repeats part B, to tell a leak (growth with
every round) from the allocator keeping its high-water mark. The final sample
is taken ``--final-wait`` seconds after the last part. ``--allocator jemalloc``
runs the server on jemalloc, as ``bayeux serve --allocator jemalloc`` does. At
the end the server gets SIGTERM and must exit 0. Prints a table; writes JSON
(``--json``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import itertools
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

__all__ = ["main"]

HOST = "127.0.0.1"
HANDSHAKE = {
    "channel": "/meta/handshake",
    "version": "1.0",
    "supportedConnectionTypes": ["long-polling", "websocket"],
}
_READ = 65536
#: how often the server writes its counts
_STATS_PERIOD = 0.5


# ------------------------------------------------------------------ server


def _task_count() -> int:
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count, stack = 0, [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def _internal(server: Any) -> dict[str, int]:
    """The server's own tables (private attributes: this is a test tool)."""
    engine = server.engine
    hub = server.hub
    return {
        "connections": server._connections,
        "streams": len(server._streams),
        "endpoints": len(hub._endpoints),
        "sessions": len(engine.store),
        "held": len(engine._held),
        "queued": sum(len(session.queue) for session in engine.store),
        "dirty_outputs": len(hub._dirty),
        "draining_outputs": hub.drains.active,
        "tasks": _task_count(),
        # Objects the cyclic GC tracks: unlike RSS, not kept high by the allocator.
        "gc_objects": len(gc.get_objects()),
    }


async def _serve(port: int, stats_path: Path) -> None:
    from bayeux_trio import BayeuxServer, ServerConfig

    server = BayeuxServer(ServerConfig(host=HOST, port=port))
    seq = itertools.count()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)

            async def dump() -> None:
                while True:
                    data = {"seq": next(seq), **_internal(server)}
                    tmp = stats_path.with_suffix(".tmp")
                    tmp.write_bytes(orjson.dumps(data))
                    tmp.replace(stats_path)
                    await trio.sleep(_STATS_PERIOD)

            nursery.start_soon(dump)
            async for _ in signals:
                await server.close(grace=5.0)
                nursery.cancel_scope.cancel()
                break


# ------------------------------------------------------------- sampling


def _proc(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open file descriptors) of a process, from /proc."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    return rss_kb, len(os.listdir(f"/proc/{pid}/fd"))


class Sampler:
    def __init__(self, process: subprocess.Popen[bytes], stats_path: Path) -> None:
        self.process = process
        self.stats_path = stats_path
        self.samples: list[dict[str, Any]] = []
        self.start = time.monotonic()

    def _stats(self) -> dict[str, Any]:
        try:
            loaded: dict[str, Any] = json.loads(self.stats_path.read_bytes())
        except (OSError, ValueError):
            return {}
        return loaded

    async def fresh_stats(self) -> dict[str, Any]:
        """Counts written after this call began (bounded wait)."""
        first = self._stats().get("seq", -1)
        for _ in range(200):
            await trio.sleep(_STATS_PERIOD / 2)
            stats = self._stats()
            if stats.get("seq", -1) > first:
                return stats
        raise RuntimeError("the server stopped writing its counts")

    async def sample(self, label: str) -> dict[str, Any]:
        stats = await self.fresh_stats()
        rss_kb, fds = _proc(self.process.pid)
        row = {
            "label": label,
            "t": round(time.monotonic() - self.start, 1),
            "rss_mb": round(rss_kb / 1024, 1),
            "fds": fds,
            **{k: v for k, v in stats.items() if k != "seq"},
        }
        self.samples.append(row)
        print(_format_row(row), flush=True)
        return row

    async def settle(self, label: str, *, seconds: float = 60.0) -> dict[str, Any]:
        """Wait (bounded) until no connection, session or held connect is left, then sample."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            stats = await self.fresh_stats()
            if not (stats["connections"] or stats["sessions"] or stats["held"]):
                break
        return await self.sample(label)


_COLUMNS = [
    ("label", 22),
    ("t", 7),
    ("rss_mb", 7),
    ("fds", 6),
    ("connections", 6),
    ("sessions", 6),
    ("held", 6),
    ("queued", 7),
    ("streams", 6),
    ("endpoints", 6),
    ("dirty_outputs", 6),
    ("draining_outputs", 6),
    ("tasks", 6),
    ("gc_objects", 9),
]
_HEADERS = {
    "rss_mb": "RSS MB",
    "connections": "conns",
    "sessions": "sess",
    "streams": "strms",
    "endpoints": "endpt",
    "dirty_outputs": "dirty",
    "draining_outputs": "drain",
    "gc_objects": "objects",
}


def _format_row(row: dict[str, Any]) -> str:
    return " ".join(str(row.get(key, "")).rjust(width) for key, width in _COLUMNS)


def _header() -> str:
    return " ".join(_HEADERS.get(key, key).rjust(width) for key, width in _COLUMNS)


# -------------------------------------------------------------- clients


class Http:
    """One kept-alive connection; requests written and parsed by hand (fast)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def open(cls, port: int) -> Http:
        return cls(await trio.open_tcp_stream(HOST, port))

    async def post(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = orjson.dumps(messages)
        await self.stream.send_all(
            b"POST /faye HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        while b"\r\n\r\n" not in self.buffer:
            await self._read()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200 "):
            raise RuntimeError(f"unexpected response: {head[:60]!r}")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            await self._read()
            rest = self.buffer.partition(b"\r\n\r\n")[2]
        self.buffer = rest[length:]
        replies: list[dict[str, Any]] = orjson.loads(rest[:length])
        return replies

    async def _read(self) -> None:
        data = await self.stream.receive_some(_READ)
        if not data:
            raise RuntimeError("the server closed the connection")
        self.buffer += data


class Ws:
    """A WebSocket client on wsproto."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: list[Any] = []
        self.closed = False
        self.closed_event = trio.Event()

    @classmethod
    async def open(cls, port: int) -> Ws:
        client = cls(await trio.open_tcp_stream(HOST, port))
        await client.stream.send_all(client.ws.send(Request(host=f"{HOST}:{port}", target="/faye")))
        for _ in range(100):
            for event in await client._events():
                if isinstance(event, AcceptConnection):
                    return client
                if isinstance(event, RejectConnection):
                    raise RuntimeError("WebSocket refused")
        raise RuntimeError("no WebSocket upgrade")

    async def _events(self) -> list[Any]:
        data = await self.stream.receive_some(_READ)
        if not data:
            raise RuntimeError("the server closed the WebSocket")
        self.ws.receive_data(data)
        return list(self.ws.events())

    async def send(self, messages: list[dict[str, Any]]) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=orjson.dumps(messages).decode())))

    async def receive(self) -> list[dict[str, Any]]:
        """The next JSON array (pings answered); raises once the server closes."""
        parts: list[str] = []
        for _ in range(100_000):
            if not self.pending:
                self.pending.extend(await self._events())
                continue
            event = self.pending.pop(0)
            if isinstance(event, TextMessage):
                parts.append(event.data)
                if event.message_finished:
                    messages: list[dict[str, Any]] = orjson.loads("".join(parts))
                    return messages
            elif isinstance(event, Ping):
                await self.stream.send_all(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                self.closed = True
                self.closed_event.set()
                raise ConnectionError(f"closed {event.code}")
        raise RuntimeError("no message")

    async def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                await self.stream.send_all(self.ws.send(CloseConnection(code=1000)))
        await self.stream.aclose()


def ok_reply(replies: list[dict[str, Any]], channel: str) -> dict[str, Any]:
    for reply in replies:
        if reply.get("channel") == channel and "successful" in reply:
            if reply["successful"] is not True:
                raise RuntimeError(f"refused: {reply}")
            return reply
    raise RuntimeError(f"no {channel} reply in {replies}")


async def _http_cycle(port: int, n: int) -> None:
    http = await Http.open(port)
    try:
        client_id = ok_reply(await http.post([HANDSHAKE]), "/meta/handshake")["clientId"]
        channel = f"/soak/{n % 64}"
        sub = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel}
        ok_reply(await http.post([sub]), "/meta/subscribe")
        ok_reply(await http.post([{"channel": channel, "clientId": client_id, "data": n}]), channel)
        ok_reply(
            await http.post([{"channel": "/meta/disconnect", "clientId": client_id}]),
            "/meta/disconnect",
        )
    finally:
        await http.stream.aclose()


async def _ws_cycle(port: int, n: int) -> None:
    ws = await Ws.open(port)
    try:
        await ws.send([HANDSHAKE])
        client_id = ok_reply(await ws.receive(), "/meta/handshake")["clientId"]
        channel = f"/soak/ws/{n}"
        await ws.send(
            [
                {"channel": "/meta/subscribe", "clientId": client_id, "subscription": channel},
                {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"},
            ]
        )
        ok_reply(await ws.receive(), "/meta/subscribe")
        await ws.send([{"channel": channel, "clientId": client_id, "data": n, "id": "p"}])
        acked = delivered = False
        for _ in range(10):
            for message in await ws.receive():
                if message.get("channel") == channel:
                    if "successful" in message:
                        acked = message["successful"] is True
                    elif message.get("data") == n:
                        delivered = True
            if acked and delivered:
                break
        if not (acked and delivered):
            raise RuntimeError("the WebSocket publish did not come back")
        await ws.send([{"channel": "/meta/disconnect", "clientId": client_id}])
        for _ in range(10):
            replies = await ws.receive()
            if any(r.get("channel") == "/meta/disconnect" for r in replies):
                ok_reply(replies, "/meta/disconnect")
                break
    finally:
        await ws.close()


async def cycles(
    port: int, total: int, workers: int, sampler: Sampler, every: int
) -> dict[str, Any]:
    counter = itertools.count()
    done = {"http": 0, "ws": 0, "errors": 0}
    first_errors: list[str] = []

    async def worker() -> None:
        while (n := next(counter)) < total:
            try:
                if n % 2:
                    await _ws_cycle(port, n)
                    done["ws"] += 1
                else:
                    await _http_cycle(port, n)
                    done["http"] += 1
            except (OSError, RuntimeError, ConnectionError, trio.BrokenResourceError) as exc:
                done["errors"] += 1
                if len(first_errors) < 5:
                    first_errors.append(f"cycle {n}: {exc!r}")

    async def progress() -> None:
        next_mark = every
        while True:
            await trio.sleep(1.0)
            if done["http"] + done["ws"] >= next_mark:
                next_mark += every
                await sampler.sample(f"cycles {done['http'] + done['ws']}")

    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(progress)
        async with trio.open_nursery() as pool:
            for _ in range(workers):
                pool.start_soon(worker)
        nursery.cancel_scope.cancel()
    elapsed = time.monotonic() - started
    return {
        **done,
        "seconds": round(elapsed, 1),
        "cycles_per_second": round((done["http"] + done["ws"]) / elapsed, 1),
        "first_errors": first_errors,
    }


class LongLived:
    """Part B: counts deliveries per client against publishes per room."""

    def __init__(self, port: int, clients: int, rooms: int) -> None:
        self.port = port
        self.clients = clients
        self.rooms = rooms
        self.received = [0] * clients
        self.published = [0] * rooms
        self.errors: list[str] = []
        self.ready = 0
        self.stop = trio.Event()
        self.all_up = trio.Event()

    def _check_up(self) -> None:
        if self.ready + len(self.errors) >= self.clients:
            self.all_up.set()

    async def _ws_client(self, index: int) -> None:
        ws = await Ws.open(self.port)
        room = f"/room/{index % self.rooms}"
        try:
            await ws.send([HANDSHAKE])
            client_id = ok_reply(await ws.receive(), "/meta/handshake")["clientId"]
            connect = {
                "channel": "/meta/connect",
                "clientId": client_id,
                "connectionType": "websocket",
            }
            await ws.send(
                [
                    {"channel": "/meta/subscribe", "clientId": client_id, "subscription": room},
                    connect,
                ]
            )
            replies = await ws.receive()
            ok_reply(replies, "/meta/subscribe")
            if any(r.get("channel") == "/meta/connect" for r in replies):
                await ws.send([connect])  # the first connect is answered at once
            self.ready += 1
            self._check_up()
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    while True:
                        try:
                            messages = await ws.receive()
                        except ConnectionError:
                            if self.stop.is_set():
                                return  # closed after our disconnect, as it should be
                            raise
                        for message in messages:
                            channel = message.get("channel")
                            if channel == room and "data" in message:
                                self.received[index] += 1
                            elif channel == "/meta/connect" and not self.stop.is_set():
                                if message.get("successful") is not True:
                                    raise RuntimeError(f"connect refused: {message}")
                                await ws.send([connect])

                nursery.start_soon(read)
                await self.stop.wait()
                # Deliveries still in flight arrive before the disconnect reply.
                await ws.send([{"channel": "/meta/disconnect", "clientId": client_id}])
                with trio.move_on_after(30):
                    await ws.closed_event.wait()
                nursery.cancel_scope.cancel()
        finally:
            await ws.close()

    async def _polling_client(self, index: int) -> None:
        http = await Http.open(self.port)
        room = f"/room/{index % self.rooms}"
        try:
            client_id = ok_reply(await http.post([HANDSHAKE]), "/meta/handshake")["clientId"]
            connect = {
                "channel": "/meta/connect",
                "clientId": client_id,
                "connectionType": "long-polling",
            }
            sub = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": room}
            ok_reply(await http.post([sub, connect]), "/meta/subscribe")
            self.ready += 1
            self._check_up()
            while not self.stop.is_set():
                replies = await http.post([connect])
                ok_reply(replies, "/meta/connect")
                self.received[index] += sum(1 for m in replies if m.get("channel") == room)
            # What was queued since the last connect, without a hold.
            replies = await http.post([{**connect, "advice": {"timeout": 0}}])
            self.received[index] += sum(1 for m in replies if m.get("channel") == room)
            ok_reply(
                await http.post([{"channel": "/meta/disconnect", "clientId": client_id}]),
                "/meta/disconnect",
            )
        finally:
            await http.stream.aclose()

    async def _client(self, index: int) -> None:
        try:
            if index % 2:
                await self._ws_client(index)
            else:
                await self._polling_client(index)
        except (
            OSError,
            RuntimeError,
            ConnectionError,
            trio.BrokenResourceError,
            ExceptionGroup,
        ) as exc:
            self.errors.append(f"client {index}: {exc!r}")
            self._check_up()

    async def run(
        self, minutes: float, period: float, sampler: Sampler, sample_every: float
    ) -> dict[str, Any]:
        async with trio.open_nursery() as nursery:
            for index in range(self.clients):
                nursery.start_soon(self._client, index)
                if index % 100 == 99:
                    await trio.sleep(0.05)  # a gentle ramp: no accept-queue overflow
            with trio.move_on_after(120):
                await self.all_up.wait()
            await sampler.sample(f"{self.ready} clients up")
            publisher = await Http.open(self.port)
            started = time.monotonic()
            end = started + minutes * 60
            next_sample = started + sample_every
            seq = 0
            while time.monotonic() < end:
                batch = [{"channel": f"/room/{r}", "data": seq} for r in range(self.rooms)]
                replies = await publisher.post(batch)
                for reply in replies:
                    if reply.get("successful") is True:
                        self.published[int(str(reply["channel"]).rsplit("/", 1)[1])] += 1
                seq += 1
                await trio.sleep(period)
                if time.monotonic() >= next_sample:
                    next_sample += sample_every
                    await sampler.sample(
                        f"long-lived {round((time.monotonic() - started) / 60, 1)} min"
                    )
            await publisher.stream.aclose()
            await trio.sleep(2.0)  # the last publishes reach every client
            self.stop.set()
        missing = 0
        extra = 0
        for index, got in enumerate(self.received):
            expected = self.published[index % self.rooms]
            missing += max(0, expected - got)
            extra += max(0, got - expected)
        return {
            "clients_up": self.ready,
            "publishes": sum(self.published),
            "deliveries": sum(self.received),
            "expected_deliveries": sum(self.published[i % self.rooms] for i in range(self.clients)),
            "missing": missing,
            "extra": extra,
            "errors": len(self.errors),
            "first_errors": self.errors[:5],
        }


# ----------------------------------------------------------------- driver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _server_env(allocator: str) -> dict[str, str]:
    """The server's environment: ``--allocator jemalloc`` as ``bayeux serve`` sets it up."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", "LD_PRELOAD")}
    if allocator == "jemalloc":
        from bayeux_trio.cli._main import find_jemalloc

        path = find_jemalloc()
        if path is None:
            raise SystemExit("libjemalloc.so.2 not found (apt-get install libjemalloc2)")
        env.update(LD_PRELOAD=path, PYTHONMALLOC="malloc")
    return env


def _start_server(workdir: Path, allocator: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    with (workdir / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), str(workdir / "stats.json")],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_server_env(allocator),
        )
    return process, port


async def _drive(
    args: argparse.Namespace, process: subprocess.Popen[bytes], port: int, workdir: Path
) -> dict[str, Any]:
    stats_path = workdir / "stats.json"
    log_path = workdir / "server.log"
    result: dict[str, Any] = {
        "command": " ".join(["python", "bench/soak.py", *sys.argv[1:]]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), "
        f"Python {platform.python_version()}",
        "config": {
            "cycles": args.cycles,
            "workers": args.workers,
            "clients": args.clients,
            "rooms": args.rooms,
            "minutes": args.minutes,
            "publish_period": args.publish_period,
            "allocator": args.allocator,
        },
    }
    sampler = Sampler(process, stats_path)
    try:
        for _ in range(600):
            try:
                http = await Http.open(port)
                break
            except OSError:
                await trio.sleep(0.05)
        else:
            raise RuntimeError("the server never listened")
        await http.stream.aclose()
        print(_header())
        await _http_cycle(port, 0)  # lazy imports and first allocations
        await _ws_cycle(port, 1)
        baseline = await sampler.settle("baseline")
        if args.cycles:
            result["cycles"] = await cycles(
                port, args.cycles, args.workers, sampler, max(1, args.cycles // 10)
            )
            await sampler.settle("after cycles")
        if args.clients and args.minutes > 0:
            rounds = []
            for round_ in range(1, args.rounds + 1):
                rounds.append(
                    await LongLived(port, args.clients, args.rooms).run(
                        args.minutes, args.publish_period, sampler, args.sample_every
                    )
                )
                await sampler.settle(f"after long-lived #{round_}")
            result["long_lived"] = rounds[0] if len(rounds) == 1 else rounds
        # Two lazily pruned heaps keep what departed clients left for a while:
        # the engine's timers hold ended sessions until they fall due (at most
        # timeout + session_timeout, 55 s by default) and trio's deadline heap
        # holds the cancel scopes of closed connections until their deadlines
        # pass (at most idle_timeout, 120 s). Wait that long for the last sample.
        await trio.sleep(args.final_wait)
        final = await sampler.settle("final", seconds=10)
        result["growth"] = {
            key: round(final[key] - baseline[key], 1)
            for key in (
                "gc_objects",
                "rss_mb",
                "fds",
                "connections",
                "sessions",
                "held",
                "queued",
                "streams",
                "endpoints",
                "tasks",
            )
        }
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            result["exit_code"] = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            result["exit_code"] = process.wait()
        result["server_log_tail"] = log_path.read_text(errors="replace").splitlines()[-5:]
    result["samples"] = sampler.samples
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=16, help="concurrent cycle clients")
    parser.add_argument("--clients", type=int, default=2_000)
    parser.add_argument("--rooms", type=int, default=20)
    parser.add_argument(
        "--minutes",
        type=float,
        default=float(os.environ.get("SOAK_MINUTES", "10")),
        help="length of part B (default: $SOAK_MINUTES or 10)",
    )
    parser.add_argument("--publish-period", type=float, default=1.0)
    parser.add_argument(
        "--rounds", type=int, default=1, help="times part B is run (memory high-water check)"
    )
    parser.add_argument("--sample-every", type=float, default=60.0, help="seconds, in part B")
    parser.add_argument(
        "--allocator",
        choices=["python", "jemalloc"],
        default="python",
        help="the server's allocator, as bayeux serve --allocator (default: %(default)s)",
    )
    parser.add_argument(
        "--final-wait",
        type=float,
        default=150.0,
        help="seconds between the last part and the final sample (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, default=Path("bench/results/soak.json"))
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "STATS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        trio.run(_serve, int(args.serve[0]), Path(args.serve[1]))
        return 0
    if min(args.cycles, args.clients) < 0 or min(args.workers, args.rooms, args.rounds) < 1:
        parser.error("counts must be positive")
    budget = 600 + args.cycles * 0.05 + args.rounds * (args.minutes * 60 * 1.5 + 300)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    process, port = _start_server(workdir, args.allocator)
    try:
        result = trio.run(_run_bounded, args, budget, process, port, workdir)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    print(f"wrote {args.json}")
    failed = (
        result.get("exit_code") != 0
        or result.get("cycles", {}).get("errors", 0)
        or any(r.get("errors", 0) for r in _as_list(result.get("long_lived")))
    )
    return 1 if failed else 0


def _as_list(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


async def _run_bounded(
    args: argparse.Namespace,
    budget: float,
    process: subprocess.Popen[bytes],
    port: int,
    workdir: Path,
) -> dict[str, Any]:
    with trio.fail_after(budget):
        return await _drive(args, process, port, workdir)


if __name__ == "__main__":
    sys.exit(main())
