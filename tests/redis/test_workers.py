"""``bayeux serve --workers N``: N processes on one port (SO_REUSEPORT), one Redis."""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import trio

from bayeux_trio.cli._main import main
from tests._support.ports import HOST, free_port, listening_sockets
from tests._support.waiting import wait_for
from tests.trio.helpers import bayeux, fail_after

from ._support import RoundRobin
from .conftest import RedisProcess

pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--engine", "mysql://x"],
        ["serve", "--workers", "2"],
        ["serve", "--workers", "2", "--engine", "redis://127.0.0.1:1/0", "--port", "0"],
        ["serve", "--workers", "0", "--engine", "redis://127.0.0.1:1/0"],
    ],
)
def test_bad_engine_or_workers_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


@fail_after(90)
async def test_workers_share_the_port_and_the_sessions(redis_server: RedisProcess) -> None:
    port = free_port()
    url = redis_server.url.rsplit("/", 1)[0] + "/4"
    parent = subprocess.Popen(  # noqa: ASYNC220 - a test, the wait is short
        [
            sys.executable, "-m", "bayeux_trio", "serve", "--port", str(port),
            "--engine", url, "--workers", "2", "--log-level", "warning",
        ],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert parent.poll() is None, "the supervisor exited"
            assert time.monotonic() < deadline, "the workers never listened"
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
                break
            except OSError:
                await trio.sleep(0.05)
        # the second worker too: two listening sockets share the port
        await wait_for(lambda: listening_sockets(port) == 2, attempts=6000, delay=0.01)
        # Many fresh connections: the kernel spreads them over both workers,
        # and a session made on one is known to the other.
        client = RoundRobin([port])
        await client.handshake()
        await client.subscribe("/w")
        await client.connect()
        for n in range(10):
            await client.publish("/w", {"p": 0, "n": n})
        await client.poll_until(10)
        assert [m["data"]["n"] for m in client.received] == list(range(10))
        assert (
            await bayeux(port, [{"channel": "/meta/disconnect", "clientId": client.client_id}])
        )[0]["successful"] is True
    finally:
        parent.send_signal(signal.SIGTERM)
        try:
            _, err = parent.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            parent.kill()
            _, err = parent.communicate()
    assert parent.returncode == 0, err
    pids = err.decode().split("workers: ")[1].split("]")[0]
    assert len(pids.strip("[").split(",")) == 2
    gc.collect()
