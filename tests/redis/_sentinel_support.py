"""A real Sentinel setup for the failover tests: a master, a replica, three sentinels.

Each process is a ``redis-server`` (the replica with ``--replicaof``) or a
``redis-sentinel`` on a free loopback port, with its files in a directory of
its own. Timings are short (down after 1 s) so that a failover takes a few
seconds. Every wait is bounded.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests._support.ports import HOST, free_port
from tests._support.waiting import wait_until

__all__ = ["REDIS_SENTINEL", "SERVICE", "SentinelGroup", "command"]

REDIS_SENTINEL = shutil.which("redis-sentinel")
SERVICE = "bayeuxmaster"

Reply = bytes | int | list["Reply"] | None


def command(port: int, *args: str | int, timeout: float = 2.0) -> Any:
    """One command to the Redis (or sentinel) on ``port``; its decoded reply.

    A minimal RESP2 client, so that the test can talk to Redis while its own
    event loop is busy with the servers. Error replies raise ``RuntimeError``.
    """
    parts = [str(a).encode() for a in args]
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        reader = sock.makefile("rb")
        return _read(reader)


def _read(reader: Any) -> Reply:
    line: bytes = reader.readline()
    if not line:
        raise ConnectionError("the server closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data: bytes = reader.read(size + 2)[:-2]
        return data
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read(reader) for _ in range(count)]
    raise RuntimeError(f"unexpected reply {line!r}")


def _pairs(flat: list[bytes]) -> dict[str, str]:
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


def _info(port: int, section: str) -> dict[str, str]:
    text: bytes = command(port, "INFO", section)
    return dict(
        line.split(":", 1) for line in text.decode().splitlines() if ":" in line and line[0] != "#"
    )


class SentinelGroup:
    """A master and a replica watched by three sentinels (quorum 2)."""

    def __init__(self, server: str, sentinel: str, directory: Path) -> None:
        self.server = server
        self.sentinel = sentinel
        self.directory = directory
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def _spawn(self, port: int, args: list[str]) -> None:
        workdir = self.directory / str(port)
        workdir.mkdir(parents=True, exist_ok=True)
        self._processes[port] = subprocess.Popen(
            args, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _server(self, port: int, *extra: str) -> None:
        self._spawn(
            port,
            [
                self.server, "--port", str(port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", str(self.directory / str(port)),
                "--daemonize", "no", *extra,
            ],
        )  # fmt: skip

    def start(self) -> None:
        """Start them all; return once the sentinels know each other and the replica."""
        # a replica syncs at once, not after the default 5 s of diskless-sync delay
        self._server(self.master_port, "--repl-diskless-sync-delay", "0")
        self._server(self.replica_port, "--replicaof", HOST, str(self.master_port))
        wait_until(
            lambda: self._ask(self.replica_port, "master_link_status") == "up",
            "the replica to sync",
            timeout=10,
            interval=0.02,
        )
        for port in self.sentinel_ports:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(
                f"port {port}\nbind {HOST}\ndir {self.directory / str(port)}\n"
                f"sentinel monitor {SERVICE} {HOST} {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 2000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            (self.directory / str(port)).mkdir(parents=True, exist_ok=True)
            self._spawn(port, [self.sentinel, str(config)])
        wait_until(self._ready, "the sentinels to find each other", timeout=20, interval=0.1)

    def _ask(self, port: int, key: str) -> str | None:
        try:
            return _info(port, "replication").get(key)
        except (OSError, RuntimeError):
            return None

    def _ready(self) -> bool:
        for port in self.sentinel_ports:
            try:
                state = _pairs(command(port, "SENTINEL", "MASTER", SERVICE))
            except (OSError, RuntimeError):
                return False
            if state.get("num-other-sentinels") != "2" or state.get("num-slaves") != "1":
                return False
        return True

    def master(self) -> int | None:
        """The master's port, as the first sentinel that answers says."""
        for port in self.sentinel_ports:
            try:
                host_port = command(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            except OSError:
                continue
            return int(host_port[1])
        return None

    def replicated(self) -> bool:
        """True once the replica has everything the master wrote."""
        master = self._ask(self.master_port, "master_repl_offset")
        replica = self._ask(self.replica_port, "slave_repl_offset")
        return master is not None and master == replica

    def kill_master(self) -> None:
        process = self._processes.pop(self.master_port)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def wait_failover(self, timeout: float) -> float:
        """Block until every sentinel names the replica as master; the seconds it took."""
        started = time.monotonic()

        def switched() -> bool:
            for port in self.sentinel_ports:
                try:
                    host_port = command(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                except OSError:
                    return False
                if int(host_port[1]) != self.replica_port:
                    return False
            return self._ask(self.replica_port, "role") == "master"

        wait_until(switched, "the sentinels to promote the replica", timeout=timeout)
        return time.monotonic() - started

    def stop(self) -> None:
        for process in self._processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self._processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._processes.clear()
