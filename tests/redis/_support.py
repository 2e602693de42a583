"""Helpers for the cluster tests: servers on one Redis, round-robin clients."""

from __future__ import annotations

import itertools
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import trio

from bayeux_core import EngineConfig
from bayeux_trio import BayeuxServer
from bayeux_trio.redis import RedisBus
from tests._support.ports import free_port
from tests._support.processes import wait_listening
from tests.trio.helpers import HANDSHAKE, bayeux, deliveries, make_config


class Node:
    """A ``bayeux serve --engine <url>`` process on a free port, with ``args``."""

    def __init__(self, url: str, *args: str) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "bayeux_trio", "serve",
                "--port", str(self.port), "--engine", url, "--log-level", "warning", *args,
            ],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip

    def wait_listening(self) -> None:
        # slow under load
        listening = wait_listening(self.port, timeout=60, process=self.process)
        assert self.process.poll() is None, "the server exited"
        assert listening, "the server never listened"

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def namespace() -> str:
    """A fresh key prefix: tests share one redis-server."""
    return "t" + secrets.token_hex(4)


async def start_nodes(
    nursery: trio.Nursery,
    url: str,
    count: int,
    *,
    ns: str | None = None,
    engine: EngineConfig | None = None,
) -> list[BayeuxServer]:
    """``count`` servers sharing ``url`` under one namespace."""
    ns = ns if ns is not None else namespace()
    servers = []
    for _ in range(count):
        config = make_config(engine=engine or EngineConfig(timeout=10))
        server = BayeuxServer(config, bus=RedisBus(url, namespace=ns))
        await nursery.start(server.serve)
        servers.append(server)
    return servers


class RoundRobin:
    """A long-polling client whose every request goes to the next port."""

    def __init__(self, ports: Sequence[int], start: int = 0) -> None:
        self.ports = list(ports)
        self._next = itertools.count(start)
        self.client_id = ""
        self.received: list[dict[str, Any]] = []

    def port(self) -> int:
        return self.ports[next(self._next) % len(self.ports)]

    async def send(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for message in messages:
            if self.client_id and message["channel"] != "/meta/handshake":
                message.setdefault("clientId", self.client_id)
        return await bayeux(self.port(), messages)

    async def handshake(self) -> None:
        (reply,) = await self.send([dict(HANDSHAKE)])
        assert reply["successful"] is True, reply
        self.client_id = reply["clientId"]

    async def subscribe(self, *channels: str) -> None:
        replies = await self.send(
            [{"channel": "/meta/subscribe", "subscription": c} for c in channels]
        )
        assert all(r["successful"] for r in replies), replies

    async def connect(self, **extra: Any) -> list[dict[str, Any]]:
        replies = await self.send(
            [{"channel": "/meta/connect", "connectionType": "long-polling", **extra}]
        )
        assert replies[0]["channel"] == "/meta/connect", replies
        got = deliveries(replies)
        self.received.extend(got)
        return replies

    async def publish(self, channel: str, data: Any) -> None:
        (reply,) = await self.send([{"channel": channel, "data": data}])
        assert reply["successful"] is True, reply

    async def poll_until(self, count: int, *, limit: int = 1000) -> None:
        """Connect (round-robin) until ``count`` deliveries have arrived."""
        for _ in range(limit):
            if len(self.received) >= count:
                return
            replies = await self.connect()
            assert replies[0]["successful"] is True, replies
        raise AssertionError(f"only {len(self.received)} of {count} deliveries")


def check_exactly_once_in_order(
    received: list[dict[str, Any]], publishers: int, per_publisher: int
) -> None:
    """Each (publisher, n) once, and each publisher's in order."""
    seen = [(m["data"]["p"], m["data"]["n"]) for m in received]
    expected = {(p, n) for p in range(publishers) for n in range(per_publisher)}
    assert len(seen) == len(set(seen)), f"duplicates: {len(seen) - len(set(seen))}"
    assert set(seen) == expected, f"missing: {sorted(expected - set(seen))[:10]}"
    for p in range(publishers):
        order = [n for q, n in seen if q == p]
        assert order == sorted(order), f"publisher {p} out of order: {order}"
