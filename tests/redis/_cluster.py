"""A real local Redis Cluster: three masters, no replicas, on free loopback ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

from tests._support.ports import HOST, free_port
from tests._support.waiting import wait_until

__all__ = ["REDIS_CLI", "LocalCluster"]

REDIS_CLI = shutil.which("redis-cli")


def _ask(port: int, command: bytes) -> bytes:
    with socket.create_connection((HOST, port), timeout=1) as sock:
        sock.sendall(command)
        return sock.recv(4096)


class LocalCluster:
    """``redis-server --cluster-enabled yes`` x3, joined by ``redis-cli --cluster create``."""

    def __init__(self, server: str, directory: Path, masters: int = 3) -> None:
        self.server = server
        self.directory = directory
        self.ports = [free_port() for _ in range(masters)]
        # The cluster bus would be port + 10000, past 65535 for most free ports.
        self.bus_ports = [free_port() for _ in range(masters)]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The bus's URL: two startup nodes; coredis discovers the third."""
        return f"redis+cluster://127.0.0.1:{self.ports[0]},127.0.0.1:{self.ports[1]}"

    def start(self) -> None:
        assert REDIS_CLI is not None
        for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
            node_dir = self.directory / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            command = [
                self.server, "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no",
                "--dir", str(node_dir), "--daemonize", "no",
            ]  # fmt: skip
            self.processes.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        for port in self.ports:
            self._wait(port, b"PING\r\n", b"+PONG")
        subprocess.run(
            [
                REDIS_CLI, "--cluster", "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas", "0", "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        for port in self.ports:
            self._wait(port, b"CLUSTER INFO\r\n", b"cluster_state:ok")

    def _wait(self, port: int, command: bytes, expect: bytes) -> None:
        def answered() -> bool:
            try:
                return expect in _ask(port, command)
            except OSError:
                return False

        wait_until(answered, f"redis cluster node {port} to answer {expect!r}", timeout=30)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes.clear()
