"""Helpers for the fault tests: a ``bayeux serve`` subprocess, and leak counters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import trio

from bayeux_trio import BayeuxServer
from tests._support.ports import free_port
from tests._support.processes import until_serving
from tests.trio.helpers import HANDSHAKE, HttpClient, WsClient

__all__ = [
    "JSON",
    "ServeProcess",
    "check_clean_log",
    "fd_count",
    "held_long_poller",
    "held_websocket",
    "post",
    "server_state",
    "task_count",
    "wait_for_baseline",
]

ROOT = Path(__file__).resolve().parents[2]


def fd_count() -> int:
    """Open file descriptors of this process (the in-process server's included)."""
    return len(os.listdir("/proc/self/fd"))


def task_count() -> int:
    """Tasks alive in this trio run, counted from the root task down."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    count = 0
    stack = [root]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


def server_state(server: BayeuxServer) -> dict[str, int]:
    """What a leak would grow: fds, tasks, and the server's own tables."""
    return {
        "fds": fd_count(),
        "tasks": task_count(),
        "connections": server._connections,
        "streams": len(server._streams),
        "endpoints": len(server.hub._endpoints),
        "drains": server.hub.drains.active,
    }


async def wait_for_baseline(
    server: BayeuxServer, baseline: dict[str, int], *, attempts: int = 400
) -> None:
    """Poll (bounded) until no count is above ``baseline`` (from :func:`server_state`)."""
    state: dict[str, int] = {}
    for _ in range(attempts):
        state = server_state(server)
        if all(state[key] <= value for key, value in baseline.items()):
            return
        await trio.sleep(0.025)
    raise AssertionError(f"not back to baseline {baseline}: {state}")


JSON = [("content-type", "application/json")]


async def post(client: HttpClient, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = await client.request("POST", "/faye", headers=JSON, body=orjson.dumps(messages))
    assert response.status == 200, response
    replies: list[dict[str, Any]] = response.json()
    return replies


async def held_long_poller(port: int, ready: trio.Semaphore, out: list[dict[str, Any]]) -> None:
    """Handshake, subscribe and connect on one kept-alive connection, then hold."""
    async with await HttpClient.connect(port) as client:
        (reply,) = await post(client, [HANDSHAKE])
        client_id = reply["clientId"]
        connect = {
            "channel": "/meta/connect",
            "clientId": client_id,
            "connectionType": "long-polling",
        }
        subscribe = {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/idle"}
        await post(client, [subscribe, connect])  # the first connect is not held
        await client.send_request("POST", "/faye", headers=JSON, body=orjson.dumps([connect]))
        ready.release()
        head = await client.read_head()
        assert head.status_code == 200
        replies = orjson.loads(await client.read_body())
        out.append(replies[0])
        # the server closes the connection after this response
        assert await client.at_eof()


async def held_websocket(port: int, ready: trio.Semaphore, out: list[Any]) -> None:
    """A WebSocket client whose connect is held; then its reply and the close."""
    async with await WsClient.connect(port) as ws:
        await ws.send_json([HANDSHAKE])
        (reply,) = await ws.receive_json()
        client_id = reply["clientId"]
        connect = {"channel": "/meta/connect", "clientId": client_id, "connectionType": "websocket"}
        await ws.send_json(
            [
                {"channel": "/meta/subscribe", "clientId": client_id, "subscription": "/idle"},
                connect,
            ]
        )
        await ws.receive_json()  # subscribe + first connect replies
        await ws.send_json([connect])
        # Frames are handled in order: this reply proves the connect is held.
        await ws.send_json(
            [{"channel": "/meta/unsubscribe", "clientId": client_id, "subscription": "/none"}]
        )
        (unsubscribed,) = await ws.receive_json()
        assert unsubscribed["channel"] == "/meta/unsubscribe", unsubscribed
        ready.release()
        replies = await ws.receive_json()
        close = await ws.receive()
        out.append((replies[0], close))
        await ws.close(1000)


class ServeProcess:
    """``bayeux serve`` on a free port, its log in a file."""

    def __init__(self, log_path: Path, *args: str, port: int | None = None) -> None:
        self.port = port if port is not None else free_port()
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bayeux_trio", "serve", "--port", str(self.port), *args],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_serving(self) -> None:
        """Until a handshake is answered (bounded: slow when the box is busy)."""
        await until_serving(
            self.port,
            alive=lambda: self.process.poll() is None,
            seconds=30.0,
            describe=lambda: self.log,
        )

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    async def wait_exit(self, seconds: float) -> int:
        """The exit status, polled for at most ``seconds``."""
        for _ in range(int(seconds / 0.02) + 1):
            code = self.process.poll()
            if code is not None:
                return code
            await trio.sleep(0.02)
        raise AssertionError(f"still running after {seconds} s:\n{self.log}")

    def stop(self) -> None:
        """Cleanup: kill if still running (the test itself asserts a clean exit)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


def check_clean_log(text: str) -> None:
    """No traceback and nothing logged at ERROR or above."""
    assert "Traceback" not in text, text
    assert " ERROR " not in text, text
    assert " CRITICAL " not in text, text
